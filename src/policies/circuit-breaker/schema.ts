// The `circuit_breaker:` config of an upstream: `false`, or when to stop calling a failing upstream and for how long.
import { Type, type Static, type TString } from '@sinclair/typebox';
import { falseOr } from '../../config/false-or.ts';

export function circuitBreakerSettingsSchema(t: { Duration: (description: string, defaultValue?: string) => TString }) {
  return Type.Object(
    {
      failures: Type.Integer({ minimum: 1, default: 5, description: 'failures (5xx, timeouts, unreachable) within `window` that open the circuit' }),
      window: t.Duration('the window failures are counted in', '10s'),
      open_for: t.Duration('how long calls fail fast with 503 CIRCUIT_OPEN before one probe is let through', '10s'),
    },
    { additionalProperties: false },
  );
}

export type CircuitBreakerSettings = Static<ReturnType<typeof circuitBreakerSettingsSchema>>;

export function circuitBreakerSchema(t: { Duration: (description: string, defaultValue?: string) => TString }) {
  return falseOr(circuitBreakerSettingsSchema(t), 'false to turn it off, or {failures, window, open_for}');
}

// The `circuit_breaker:` config of an upstream: `false`, or when to stop calling a failing upstream and for how long.
import { Type, type Static } from '@sinclair/typebox';
import { falseOr } from '../../config/false-or.ts';
import { Duration } from '../../config/schema-helpers.ts';

export function circuitBreakerSettingsSchema() {
  return Type.Object(
    {
      failures: Type.Integer({ minimum: 1, default: 5, description: 'failures (5xx, timeouts, unreachable) within `window` that open the circuit' }),
      window: Duration('the window failures are counted in', '10s'),
      open_for: Duration('how long calls fail fast with 503 CIRCUIT_OPEN before one probe is let through', '10s'),
    },
    { additionalProperties: false },
  );
}

export type CircuitBreakerSettings = Static<ReturnType<typeof circuitBreakerSettingsSchema>>;

export function circuitBreakerSchema() {
  return falseOr(circuitBreakerSettingsSchema(), 'false to turn it off, or {failures, window, open_for}');
}

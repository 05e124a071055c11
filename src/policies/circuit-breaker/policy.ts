// The circuit breaker of one upstream as a policy: refuses fast while the upstream is failing, and learns from every
// call's result. One instance per upstream, shared by all its routes.
import type { Logger } from 'pino';
import { GatewayError } from '../../errors/problem.ts';
import { parseDuration } from '../../config/units.ts';
import type { GatewayMetrics } from '../../observability/metrics.ts';
import type { UpstreamResult } from '../../upstream-result.ts';
import { CONTINUE, refuse, type Exchange, type Policy, type PolicyFactory, type RequestHooks, type Verdict } from '../contract.ts';
import { CircuitBreaker, CIRCUIT_STATE_VALUE } from './breaker.ts';
import type { CircuitBreakerSettings } from './schema.ts';

export const circuitBreaker: PolicyFactory = {
  name: 'circuit-breaker',
  compile: ({ config, upstream, deps, shared }) =>
    shared(`circuit-breaker:${upstream.name}`, () => compileCircuitBreaker(upstream.name, config.upstreams[upstream.name]!.circuit_breaker ?? false, deps)),
};

/** The upstream's breaker, or undefined when it has none; its gauge starts at closed either way (every upstream has one). */
export function compileCircuitBreaker(
  upstream: string,
  settings: false | CircuitBreakerSettings,
  deps: CircuitDeps,
): UpstreamCircuit | undefined {
  deps.metrics.circuitBreakerState.labels({ upstream }).set(CIRCUIT_STATE_VALUE.closed);
  return settings ? new UpstreamCircuit(upstream, settings, deps) : undefined;
}

interface CircuitDeps {
  metrics: GatewayMetrics;
  logger: Logger;
  /** The breaker's clock; tests move their own. */
  clock?: () => number;
}

export class UpstreamCircuit implements Policy {
  readonly name = 'circuit-breaker';
  readonly breaker: CircuitBreaker;
  private readonly upstream: string;
  /** The request whose admission or result is being taken (both synchronous), so a state change it causes is logged with its id. */
  private activeRequestId: string | undefined;

  constructor(upstream: string, settings: CircuitBreakerSettings, deps: CircuitDeps) {
    this.upstream = upstream;
    const logger = deps.logger.child({ policy: 'circuit-breaker' });
    const gauge = deps.metrics.circuitBreakerState.labels({ upstream });
    this.breaker = new CircuitBreaker({
      failureThreshold: settings.failures,
      windowMs: parseDuration(settings.window),
      openMs: parseDuration(settings.open_for),
      clock: deps.clock,
      onStateChange: (state) => {
        gauge.set(CIRCUIT_STATE_VALUE[state]);
        logger[state === 'open' ? 'error' : 'info']({ request_id: this.activeRequestId, upstream, state }, `circuit ${state.replace('_', '-')} for upstream '${upstream}'`);
      },
    });
  }

  /** Right before forwarding (a replayed or refused request never takes the half-open probe's slot). */
  beforeForward(ex: Exchange): Verdict {
    const requestId = ex.ctx.requestId;
    this.activeRequestId = requestId;
    const admission = this.breaker.admit();
    this.activeRequestId = undefined;
    if (!admission.allowed) {
      return refuse(
        new GatewayError('CIRCUIT_OPEN', `Upstream '${this.upstream}' is failing, so calls to it are paused for now.`, { retryAfterSeconds: admission.retryAfterMs / 1000 }),
      );
    }
    ex.use(new BreakerCall(this, admission.probe, requestId));
    return CONTINUE;
  }

  /** A call's result: 5xx answers, timeouts and unreachable count as failures; whatever the client caused counts for nothing. */
  record(call: BreakerCall, result: UpstreamResult): void {
    if (result.kind === 'client_closed' || (result.kind === 'failed' && result.clientFault)) {
      if (call.probe) this.breaker.abandonProbe();
      return;
    }
    const status = result.kind === 'response' ? (result.response.statusCode ?? 502) : undefined;
    this.activeRequestId = call.requestId;
    this.breaker.record(status !== undefined && status < 500, call.probe);
    this.activeRequestId = undefined;
  }
}

/** One call through the breaker: recorded once with its result, and a probe slot given back if the request ends without one. */
class BreakerCall implements RequestHooks {
  readonly probe: boolean;
  readonly requestId: string;
  private readonly circuit: UpstreamCircuit;
  private resultTaken = false;

  constructor(circuit: UpstreamCircuit, probe: boolean, requestId: string) {
    this.circuit = circuit;
    this.probe = probe;
    this.requestId = requestId;
  }

  onUpstreamResult(result: UpstreamResult): void {
    this.resultTaken = true;
    this.circuit.record(this, result);
  }

  close(): void {
    // The request ended without a result (an exception before or while forwarding): the probe slot is not kept forever.
    if (!this.resultTaken && this.probe) this.circuit.breaker.abandonProbe();
  }
}

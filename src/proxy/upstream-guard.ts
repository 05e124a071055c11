// Consulted before and after every upstream call: the circuit breaker and the auth-failure halt of one upstream.
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { GatewayError } from '../errors/problem.ts';
import { hashIdentity } from '../identity/consumer.ts';
import { CircuitBreaker, CIRCUIT_STATE_VALUE } from '../policies/circuit-breaker/breaker.ts';
import type { CircuitBreakerSettings } from '../policies/circuit-breaker/schema.ts';
import { AuthFailureHalt } from '../policies/auth-halt/halt.ts';
import type { AuthHaltSettings } from '../policies/auth-halt/schema.ts';
import { parseDuration } from '../config/units.ts';
import type { GatewayMetrics } from '../observability/metrics.ts';
import type { UpstreamResult } from '../upstream-result.ts';

/** Request headers that carry an agent's own credential to the upstream (unless the gateway injects that header). */
const CREDENTIAL_HEADERS = ['authorization', 'x-api-key', 'cookie'];

export interface Ticket {
  /** Set when the call must not be made; the answer to give instead. */
  readonly refusal: GatewayError | undefined;
  readonly probe: boolean;
  readonly credential: string | undefined;
  /** The request the call belongs to: its id goes on every log line the call causes. */
  readonly requestId: string;
}

export class UpstreamGuard {
  private readonly name: string;
  private readonly breaker: CircuitBreaker | undefined;
  private readonly halt: AuthFailureHalt | undefined;
  /** The headers the gateway injects (all of them, whatever their names): part of every call's credential. */
  private readonly injectedCredential: string | undefined;
  /** The agent's own credential headers that reach the upstream, i.e. those the gateway does not replace. */
  private readonly agentCredentialHeaders: readonly string[];
  private readonly metrics: GatewayMetrics;
  /** The auth-failure halt's own logger (the breaker's is its state-change callback's). */
  private readonly logger: Logger;
  /** The request whose admit or record is running (both synchronous), so a state change it causes is logged with its id. */
  private activeRequestId: string | undefined;

  constructor(
    name: string,
    settings: { circuitBreaker: false | CircuitBreakerSettings; authHalt: false | AuthHaltSettings; injectedHeaders: Record<string, string> },
    deps: { metrics: GatewayMetrics; logger: Logger },
  ) {
    this.name = name;
    this.metrics = deps.metrics;
    // A child logger per policy, as every policy has: each line says whether the breaker or the halt wrote it.
    const breakerLogger = deps.logger.child({ policy: 'circuit-breaker' });
    this.logger = deps.logger.child({ policy: 'auth-halt' });
    const cb = settings.circuitBreaker;
    const state = deps.metrics.circuitBreakerState.labels({ upstream: name });
    state.set(CIRCUIT_STATE_VALUE.closed);
    this.breaker = cb
      ? new CircuitBreaker({
          failureThreshold: cb.failures,
          windowMs: parseDuration(cb.window),
          openMs: parseDuration(cb.open_for),
          onStateChange: (s) => {
            state.set(CIRCUIT_STATE_VALUE[s]);
            breakerLogger[s === 'open' ? 'error' : 'info']({ request_id: this.activeRequestId, upstream: name, state: s }, `circuit ${s.replace('_', '-')} for upstream '${name}'`);
          },
        })
      : undefined;
    this.halt = settings.authHalt ? new AuthFailureHalt({ threshold: settings.authHalt.after, cooldownMs: parseDuration(settings.authHalt.cooldown) }) : undefined;
    // The credential is what the upstream receives: every injected header (an X-Auth-Token counts as much as an
    // Authorization), plus the agent's own credential headers the injection leaves in place.
    const injected = Object.entries(settings.injectedHeaders).sort(([a], [b]) => a.localeCompare(b));
    this.injectedCredential = injected.length > 0 ? injected.map(([h, v]) => `${h}=${v}`).join('\u0000') : undefined;
    this.agentCredentialHeaders = CREDENTIAL_HEADERS.filter((h) => settings.injectedHeaders[h] === undefined);
  }

  /** Before the call: refuse fast when the circuit is open or the credential is halted. */
  admit(req: IncomingMessage, requestId: string): Ticket {
    const credential = this.halt ? this.credentialOf(req) : undefined;
    const haltedMs = credential !== undefined ? this.halt!.haltedFor(credential) : undefined;
    if (haltedMs !== undefined) return { refusal: this.haltedError(haltedMs), probe: false, credential, requestId };
    this.activeRequestId = requestId;
    const admission = this.breaker?.admit() ?? { allowed: true as const, probe: false };
    this.activeRequestId = undefined;
    if (!admission.allowed) {
      return {
        refusal: new GatewayError('CIRCUIT_OPEN', `Upstream '${this.name}' is failing, so calls to it are paused for now.`, {
          retryAfterSeconds: admission.retryAfterMs / 1000,
        }),
        probe: false,
        credential,
        requestId,
      };
    }
    return { refusal: undefined, probe: admission.probe, credential, requestId };
  }

  /** After the call: feeds the breaker (5xx, timeouts and unreachable are failures) and the halt (consecutive 401s). */
  record(ticket: Ticket, result: UpstreamResult): void {
    if (ticket.refusal) return;
    // The client left, or was too slow to send its request: that says nothing about the upstream.
    if (result.kind === 'client_closed' || (result.kind === 'failed' && result.clientFault)) {
      if (ticket.probe) this.breaker?.abandonProbe();
      return;
    }
    const status = result.kind === 'response' ? (result.response.statusCode ?? 502) : undefined;
    this.activeRequestId = ticket.requestId;
    this.breaker?.record(status !== undefined && status < 500, ticket.probe);
    this.activeRequestId = undefined;
    if (status === undefined || ticket.credential === undefined || !this.halt) return;
    if (this.halt.record(ticket.credential, status)) {
      this.metrics.authHalts.inc({ upstream: this.name });
      this.logger.error(
        { request_id: ticket.requestId, upstream: this.name, credential_hash: ticket.credential },
        `upstream '${this.name}' refused one credential repeatedly; calls using it are halted until a human fixes it or the cool-down ends`,
      );
    }
  }

  /** A hash of the credential the upstream will see for this call; undefined when the call carries none. */
  private credentialOf(req: IncomingMessage): string | undefined {
    const values = this.agentCredentialHeaders.map((h) => req.headers[h]).filter((v) => v !== undefined);
    if (this.injectedCredential !== undefined) values.unshift(this.injectedCredential);
    return values.length > 0 ? hashIdentity(`${this.name}\u0000${values.join('\u0000')}`) : undefined;
  }

  private haltedError(ms: number): GatewayError {
    return new GatewayError(
      'UNAUTHENTICATED',
      `Upstream '${this.name}' refused this credential several times in a row, so the gateway stopped sending it for ${Math.ceil(ms / 1000)} more seconds.`,
      {
        retryable: false,
        suggestion: 'Do not retry: the credential is being refused. A human must fix or rotate it; calls resume after the cool-down.',
        extensions: { auth_halted: true, halted_for_seconds: Math.ceil(ms / 1000) },
      },
    );
  }
}

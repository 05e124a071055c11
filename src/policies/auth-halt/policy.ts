// The auth-failure halt of one upstream as a policy: stops sending a credential the upstream keeps refusing (401),
// so one bad key cannot burn through the fleet. One instance per upstream, shared by all its routes.
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { GatewayError } from '../../errors/problem.ts';
import { hashIdentity } from '../../identity/consumer.ts';
import { parseDuration } from '../../config/units.ts';
import type { GatewayMetrics } from '../../observability/metrics.ts';
import type { UpstreamResult } from '../../upstream-result.ts';
import { CONTINUE, refuse, type Exchange, type Policy, type PolicyFactory, type Verdict } from '../contract.ts';
import { AuthFailureHalt } from './halt.ts';
import type { AuthHaltSettings } from './schema.ts';

/** Request headers that carry an agent's own credential to the upstream (unless the gateway injects that header). */
const CREDENTIAL_HEADERS = ['authorization', 'x-api-key', 'cookie'];

export const authHalt: PolicyFactory = {
  name: 'auth-halt',
  compile: ({ config, upstream, deps, shared }) =>
    shared(`auth-halt:${upstream.name}`, () => {
      const settings = config.upstreams[upstream.name]!.auth_halt ?? false;
      return settings ? new CredentialHalt(upstream.name, settings, upstream.headers ?? {}, deps) : undefined;
    }),
};

export class CredentialHalt implements Policy {
  readonly name = 'auth-halt';
  private readonly upstream: string;
  private readonly halt: AuthFailureHalt;
  /** The headers the gateway injects (all of them, whatever their names): part of every call's credential. */
  private readonly injectedCredential: string | undefined;
  /** The agent's own credential headers that reach the upstream, i.e. those the gateway does not replace. */
  private readonly agentCredentialHeaders: readonly string[];
  private readonly metrics: GatewayMetrics;
  private readonly logger: Logger;

  constructor(upstream: string, settings: AuthHaltSettings, injectedHeaders: Record<string, string>, deps: { metrics: GatewayMetrics; logger: Logger }) {
    this.upstream = upstream;
    this.metrics = deps.metrics;
    this.logger = deps.logger.child({ policy: 'auth-halt' });
    this.halt = new AuthFailureHalt({ threshold: settings.after, cooldownMs: parseDuration(settings.cooldown) });
    // The credential is what the upstream receives: every injected header (an X-Auth-Token counts as much as an
    // Authorization), plus the agent's own credential headers the injection leaves in place.
    const injected = Object.entries(injectedHeaders).sort(([a], [b]) => a.localeCompare(b));
    this.injectedCredential = injected.length > 0 ? injected.map(([h, v]) => `${h}=${v}`).join('\u0000') : undefined;
    this.agentCredentialHeaders = CREDENTIAL_HEADERS.filter((h) => injectedHeaders[h] === undefined);
  }

  /** Before the call (and before the circuit breaker: a halted credential says nothing about the upstream). */
  beforeForward(ex: Exchange): Verdict {
    const credential = this.credentialOf(ex.req);
    if (credential === undefined) return CONTINUE;
    const haltedMs = this.halt.haltedFor(credential);
    if (haltedMs !== undefined) return refuse(this.haltedError(haltedMs));
    const requestId = ex.ctx.requestId;
    ex.use({ onUpstreamResult: (result) => this.record(credential, requestId, result) });
    return CONTINUE;
  }

  /** After the call: a 401 extends the credential's streak, any other answer ends it. */
  record(credential: string, requestId: string, result: UpstreamResult): void {
    if (result.kind !== 'response') return;
    if (!this.halt.record(credential, result.response.statusCode ?? 502)) return;
    this.metrics.authHalts.inc({ upstream: this.upstream });
    this.logger.error(
      { request_id: requestId, upstream: this.upstream, credential_hash: credential },
      `upstream '${this.upstream}' refused one credential repeatedly; calls using it are halted until a human fixes it or the cool-down ends`,
    );
  }

  /** A hash of the credential the upstream will see for this call; undefined when the call carries none. */
  private credentialOf(req: IncomingMessage): string | undefined {
    const values = this.agentCredentialHeaders.map((h) => req.headers[h]).filter((v) => v !== undefined);
    if (this.injectedCredential !== undefined) values.unshift(this.injectedCredential);
    return values.length > 0 ? hashIdentity(`${this.upstream}\u0000${values.join('\u0000')}`) : undefined;
  }

  private haltedError(ms: number): GatewayError {
    return new GatewayError(
      'UNAUTHENTICATED',
      `Upstream '${this.upstream}' refused this credential several times in a row, so the gateway stopped sending it for ${Math.ceil(ms / 1000)} more seconds.`,
      {
        retryable: false,
        suggestion: 'Do not retry: the credential is being refused. A human must fix or rotate it; calls resume after the cool-down.',
        extensions: { auth_halted: true, halted_for_seconds: Math.ceil(ms / 1000) },
      },
    );
  }
}

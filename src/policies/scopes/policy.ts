// routes[].scopes: an agent may call a route only holding every scope it names. Checked first, before any body is read.
import type { GatewayMetrics } from '../../observability/metrics.ts';
import { GatewayError } from '../../errors/problem.ts';
import { CONTINUE, refuse, type Exchange, type Policy, type PolicyFactory, type Verdict } from '../contract.ts';

export const scopes: PolicyFactory = {
  name: 'scopes',
  compile: ({ route, deps }) => (route.scopes ? new RequiredScopes(route.name, route.scopes, deps.metrics) : undefined),
};

export class RequiredScopes implements Policy {
  readonly name = 'scopes';
  private readonly route: string;
  private readonly required: readonly string[];
  private readonly missingScope: { inc(): void };
  private readonly noAgent: { inc(): void };

  constructor(route: string, required: readonly string[], metrics: GatewayMetrics) {
    this.route = route;
    this.required = required;
    this.missingScope = metrics.authFailures.labels({ reason: 'missing_scope' });
    this.noAgent = metrics.authFailures.labels({ reason: 'missing' });
  }

  onRequest(ex: Exchange): Verdict {
    const agent = ex.ctx.agent;
    if (agent === undefined) {
      // An anonymous caller (anonymous: identify) holds no scope; a credential would give it some.
      this.noAgent.inc();
      return refuse(
        new GatewayError('UNAUTHENTICATED', `Route '${this.route}' is only for agents holding ${list(this.required)}, and this request carries no credential.`, {
          retryable: false,
          headers: { 'www-authenticate': 'Bearer realm="agentgate"' },
          suggestion: 'Send your agent key (Authorization: Bearer <key>) or token; if you have none, escalate to a human.',
          extensions: { reason: 'missing', required_scopes: this.required },
        }),
      );
    }
    const missing = this.required.filter((scope) => !agent.scopes.has(scope));
    if (missing.length === 0) return CONTINUE;
    this.missingScope.inc();
    return refuse(
      new GatewayError('FORBIDDEN', `Agent '${agent.id}' lacks ${list(missing)}, which route '${this.route}' requires; nothing was forwarded.`, {
        suggestion: `Do not retry: this agent may not call this route. Ask a human to grant ${list(missing)} if it should.`,
        extensions: { reason: 'missing_scope', missing_scopes: missing, required_scopes: this.required },
      }),
    );
  }
}

function list(scopes: readonly string[]): string {
  return scopes.length === 1 ? `scope '${scopes[0]}'` : `scopes ${scopes.map((s) => `'${s}'`).join(', ')}`;
}

// routes[].approval: a destructive call waits for the agent's confirmation or a person's approval (CONTRACT §9); and
// the rules it brings for the admin port, where people decide.
import { Type, type Static } from '@sinclair/typebox';
import { Duration, isRecord, Size, type CheckProblem, type ConfigCheck } from '../../config/schema-helpers.ts';
import { isLoopbackHost, parseListenAddress } from '../../config/units.ts';

export function approvalSchema() {
  return Type.Object(
    {
      by: Type.Union([Type.Literal('agent'), Type.Literal('human')], {
        description:
          'agent: the agent confirms by sending the identical request again with Approval-Id (a checkpoint after the preview); human: it executes only once a person approved it on the admin port',
      }),
      ttl: Duration('how long a pending approval may be decided, and an approved one executed (counted from the approval)', '15m'),
      notify: Type.Optional(
        Type.Object(
          {
            webhook: Type.String({ pattern: '^https?://', description: 'URL the pending approval is POSTed to (JSON), retried with backoff; never delays the agent' }),
            secret: Type.String({
              minLength: 16,
              writeOnly: true,
              description: 'key of the HMAC-SHA256 signature in the X-Agentgate-Signature header, so the receiver can tell a real notice from a forged one; use ${VAR}',
            }),
          },
          { additionalProperties: false, description: 'tell people an approval is waiting' },
        ),
      ),
      max_pending: Type.Integer({
        minimum: 1,
        default: 10,
        description:
          'most approvals one agent may ask for on this route within ttl (asking costs no budget, so this bounds it); one more gets 429 RATE_LIMITED with Retry-After. The same request asked again while pending is the same approval and does not count',
      }),
      max_body_bytes: Size('largest request body accepted on this route (it is read whole to bind the approval to it and preview it); larger ones get 413', '1mb'),
    },
    { additionalProperties: false, description: 'calls need an approval first: 428 APPROVAL_REQUIRED, then the identical request with Approval-Id executes once' },
  );
}

export type ApprovalSettings = Static<ReturnType<typeof approvalSchema>>;

/** server.admin_token and server.admin_url, the admin port's settings approvals bring (added to the server schema). */
export function adminApprovalProperties() {
  return {
    admin_token: Type.Optional(
      Type.String({
        minLength: 16,
        writeOnly: true,
        description:
          'bearer token the approvals API and page on the admin port require (use ${VAR}); required when a route has approval by: human and admin_listen is not loopback',
      }),
    ),
    admin_url: Type.Optional(
      Type.String({
        pattern: '^https?://',
        description: 'the admin port as people reach it (e.g. https://gateway-admin.internal), for the approval links in webhooks; default http://<admin_listen>',
      }),
    ),
  };
}

/**
 * A person decides on the admin port. Off loopback, anyone who reaches that port could approve what agents ask for,
 * so there it needs server.admin_token; on loopback, only this machine reaches it.
 */
export const check: ConfigCheck = (config) => {
  const problems: CheckProblem[] = [];
  const routes = Array.isArray(config.routes) ? config.routes : [];
  routes.forEach((route: unknown, i) => {
    if (isRecord(route) && isRecord(route.approval) && route.approval.by === 'agent' && route.approval.notify !== undefined) {
      problems.push({ keyPath: ['routes', i, 'approval', 'notify'], message: 'notify tells people that an approval waits for them, and a by: agent approval waits for no person (the agent confirms it): remove notify, or make it by: human' });
    }
  });
  const human = routes.findIndex((route: unknown) => isRecord(route) && isRecord(route.approval) && route.approval.by === 'human');
  if (human === -1) return problems;
  const server = isRecord(config.server) ? config.server : {};
  if (server.workers !== undefined && server.workers !== 1) {
    problems.push({
      keyPath: ['routes', human, 'approval', 'by'],
      message: 'a person approves on the admin port, which server.workers > 1 does not serve approvals on yet: use one worker per process (and replicas sharing Redis), or by: agent',
    });
  }
  const admin = typeof server.admin_listen === 'string' ? parseListenAddress(server.admin_listen) : undefined;
  if (admin && !isLoopbackHost(admin.host) && server.admin_token === undefined) {
    problems.push({
      keyPath: ['routes', human, 'approval', 'by'],
      message: `a person approves on the admin port, and admin_listen ${admin.host} is reachable from other machines: set server.admin_token (e.g. admin_token: \${ADMIN_TOKEN}) so that only those holding it can decide`,
    });
  }
  return problems;
};

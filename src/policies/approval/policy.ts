// A destructive call waits for an approval: without one it is not forwarded (428 APPROVAL_REQUIRED, which asks for one
// in the store), and the identical request sent again with Approval-Id executes once the approval allows it, exactly
// once however many copies race, on any replica. The approval is the gateway's record, bound to the agent and the
// request's fingerprint: nothing the client says in-band can grant it.
import { hash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { parseSize, parseDuration } from '../../config/units.ts';
import { GatewayError, requestBodyStalled, storeUnavailable } from '../../errors/problem.ts';
import type { GatewayMetrics } from '../../observability/metrics.ts';
import { readRequestBodyOnce } from '../../proxy/body.ts';
import { StoreError } from '../../store/store.ts';
import { gatewayUrl } from '../../proxy/gateway-url.ts';
import { ApprovalStore, type Execution } from '../../approvals/store.ts';
import { APPROVAL_ID_PATTERN, previewOf, type Approval, type ApprovalStatus } from '../../approvals/record.ts';
import { approvalView, statusPath } from '../../approvals/view.ts';
import type { ApprovalNotifier } from '../../approvals/webhook.ts';
import type { UpstreamResult } from '../../upstream-result.ts';
import { CLIENT_CLOSED, CONTINUE, refuse, type Exchange, type Policy, type PolicyFactory, type Verdict } from '../contract.ts';
import { fingerprint } from '../fingerprint.ts';
import type { ApprovalSettings } from './schema.ts';

/** Longest an agent is told to wait before asking again about a pending approval: people take minutes, agents poll. */
const PENDING_RETRY_SECONDS = 10;

export const approval: PolicyFactory = {
  name: 'approval',
  compile: ({ route, deps, shared }) => {
    if (!route.approval) return undefined;
    const approvals = shared('approvals', () => new ApprovalStore(deps.store, deps.keyPrefix));
    return new ApprovalPolicy(route.name, route.approval, approvals, deps);
  },
};

/** What the policy knows of one request once its onRequest ran. */
interface Pending {
  readonly fingerprint: string;
  readonly body: Buffer;
  /** Let through only so that idempotency can replay an execution already made: it must not reach the upstream. */
  readonly replayOnly?: Approval;
}

export class ApprovalPolicy implements Policy {
  readonly name = 'approval';
  readonly by: ApprovalSettings['by'];
  readonly ttlMs: number;
  private readonly ttl: string;
  private readonly maxPending: number;
  private readonly route: string;
  private readonly maxBodyBytes: number;
  private readonly webhook: ApprovalSettings['notify'];
  private readonly approvals: ApprovalStore;
  private readonly metrics: GatewayMetrics;
  private readonly logger: Logger;
  private readonly notifier: ApprovalNotifier | undefined;
  private readonly requestBodyIdleMs: number;
  private readonly requests = new WeakMap<Exchange, Pending>();

  constructor(
    route: string,
    settings: ApprovalSettings,
    approvals: ApprovalStore,
    deps: { metrics: GatewayMetrics; logger: Logger; requestBodyIdleMs: number; approvalNotifier?: ApprovalNotifier },
  ) {
    this.route = route;
    this.by = settings.by;
    this.ttl = settings.ttl;
    this.ttlMs = parseDuration(settings.ttl);
    this.maxPending = settings.max_pending;
    this.maxBodyBytes = parseSize(settings.max_body_bytes);
    this.webhook = settings.notify;
    this.approvals = approvals;
    this.metrics = deps.metrics;
    this.logger = deps.logger.child({ policy: 'approval', route });
    this.notifier = deps.approvalNotifier;
    this.requestBodyIdleMs = deps.requestBodyIdleMs;
  }

  /**
   * Binds the request (its fingerprint needs the body), then reads its Approval-Id: none asks for an approval once the
   * budgets allow the request; a usable one is taken for this execution; any other is answered here, charged nothing.
   */
  async onRequest(ex: Exchange): Promise<Verdict> {
    const { req, ctx } = ex;
    const body = await readRequestBodyOnce(req, ctx, this.maxBodyBytes, this.requestBodyIdleMs);
    if (body === undefined) return CLIENT_CLOSED;
    if (body === 'timeout') return refuse(requestBodyStalled());
    if (body === 'too_large') return refuse(payloadTooLarge(this.maxBodyBytes));
    const print = boundFingerprint(req, body);
    const ids = req.headersDistinct['approval-id'];
    if (ids === undefined) return this.askInstead(ex, { fingerprint: print, body }, undefined);
    const id = ids[0]!.trim();
    if (ids.length > 1 || !APPROVAL_ID_PATTERN.test(id)) {
      return refuse(new GatewayError('INVALID_REQUEST', 'The Approval-Id header must be one approval id (apr_ and 22 characters) exactly as a 428 APPROVAL_REQUIRED gave it.'));
    }
    let execution: Execution;
    try {
      execution = await this.approvals.execute(id, { agent: agentOf(ex), fingerprint: print, by: this.by, requestId: ctx.requestId, idempotency: ctx.idempotencyKeyHash });
    } catch (err) {
      if (!(err instanceof StoreError)) throw err;
      // Never executed unapproved: whatever the route's other policies do on a store outage, this one fails closed.
      return refuse(storeUnavailable('The approval store cannot be reached, so the approval cannot be checked; nothing was executed.', err));
    }
    switch (execution.kind) {
      case 'executing':
        this.hold(ex, execution);
        return CONTINUE;
      case 'mismatch':
        this.count('mismatch');
        this.logger.warn({ request_id: ctx.requestId, approval_id: id }, 'Approval-Id sent with another request or by another agent: refused');
        return refuse(
          new GatewayError(
            'APPROVAL_MISMATCH',
            `Approval ${id} covers another request (method, path, query and body) or another agent, so it cannot be used for this one; nothing was executed.`,
          ),
        );
      case 'refused':
        return this.refused(ex, { fingerprint: print, body }, id, execution);
    }
  }

  /** A request let through for its idempotency replay reached forwarding after all (its record is gone): it needs a new approval. */
  beforeForward(ex: Exchange): Verdict | Promise<Verdict> {
    const pending = this.requests.get(ex);
    if (pending?.replayOnly === undefined) return CONTINUE;
    this.count('expired');
    return this.ask(ex, pending, { id: pending.replayOnly.id, status: 'executed' });
  }

  private refused(ex: Exchange, request: Pending, id: string, execution: Extract<Execution, { kind: 'refused' }>): Verdict {
    const { approval: current, status } = execution;
    if (current && status === 'pending') {
      this.count('pending');
      const left = Math.max(1, Math.ceil((current.expires_at - execution.now) / 1000));
      return refuse(
        new GatewayError('APPROVAL_PENDING', `Approval ${id} waits for a person's decision; nothing was executed yet.`, {
          retryAfterSeconds: Math.min(PENDING_RETRY_SECONDS, left),
          extensions: { approval: approvalView(current, status, gatewayUrl(ex.req, ex.ctx.peerTrusted)) },
        }),
      );
    }
    if (current && status === 'denied') {
      this.count('refused');
      const reason = current.reason ? `: ${current.reason}` : '';
      return refuse(
        new GatewayError('APPROVAL_DENIED', `${current.decided_by ?? 'A person'} denied approval ${id}${reason}. Nothing was executed.`, {
          extensions: { approval: approvalView(current, status, gatewayUrl(ex.req, ex.ctx.peerTrusted)), ...(current.reason ? { reason: current.reason } : {}) },
        }),
      );
    }
    // Executed already: the same request under the same Idempotency-Key is a retry, which idempotency answers with the
    // first execution's answer (or "in progress"); it never executes again (beforeForward stops it if it would).
    if (current && status === 'executed' && current.idempotency !== undefined && current.idempotency === ex.ctx.idempotencyKeyHash) {
      this.requests.set(ex, { ...request, replayOnly: current });
      return CONTINUE;
    }
    this.count('expired');
    return this.askInstead(ex, request, { id, status });
  }

  /** Asks for an approval instead of forwarding, once the request's budgets would let it through (and it costs nothing). */
  private askInstead(ex: Exchange, request: Pending, prior: Prior | undefined): Verdict {
    ex.batch.answerInstead(() => this.ask(ex, request, prior));
    return CONTINUE;
  }

  private async ask(ex: Exchange, request: Pending, prior: Prior | undefined): Promise<Verdict> {
    const { req, ctx } = ex;
    const method = req.method ?? 'GET';
    let asked: Awaited<ReturnType<ApprovalStore['ask']>>;
    try {
      asked = await this.approvals.ask({
        route: this.route,
        by: this.by,
        agent: agentOf(ex),
        fingerprint: request.fingerprint,
        preview: previewOf(method, req.url ?? '/', { contentType: req.headers['content-type'], contentEncoding: req.headers['content-encoding'] }, request.body),
        requestId: ctx.requestId,
        ttlMs: this.ttlMs,
        maxPending: this.maxPending,
      });
    } catch (err) {
      if (!(err instanceof StoreError)) throw err;
      return refuse(storeUnavailable('The approval store cannot be reached, so no approval could be asked for; nothing was executed.', err));
    }
    if (asked.kind === 'too_many') {
      this.count('too_many');
      return refuse(
        new GatewayError('RATE_LIMITED', `You asked for ${this.maxPending} approvals on this route within ${this.ttl}, the most an agent may; nothing was executed.`, {
          retryAfterSeconds: Math.max(1, asked.waitMs / 1000),
          suggestion: 'Wait for a decision on the approvals you asked for (or for them to expire) before asking for another.',
        }),
      );
    }
    const { approval: created, reused } = asked;
    if (reused) {
      this.count('asked_again');
      this.logger.info({ request_id: ctx.requestId, approval_id: created.id }, 'approval asked for again: the same pending approval');
    } else {
      this.count('requested');
      this.logger.info({ request_id: ctx.requestId, approval_id: created.id, by: this.by, agent: created.agent }, 'approval asked for: the call waits');
      if (this.webhook && this.notifier) this.notifier.notify(created, this.webhook);
    }
    const base = gatewayUrl(req, ctx.peerTrusted);
    const view = approvalView(created, 'pending', base);
    const until = view.expires_at;
    const before = prior ? `Approval ${prior.id} ${PRIOR_STATE[prior.status]}, so ${reused ? `the pending approval of this same request, ${created.id}, stands` : 'a new one was made'}. ` : '';
    const next =
      this.by === 'human'
        ? `A person must approve it first: approval ${created.id} is pending until ${until}. Poll ${view.url}; once it is approved, send the identical request again with the header Approval-Id: ${created.id}.`
        : `Check the preview; to go ahead, send the identical request again with the header Approval-Id: ${created.id} before ${until}.`;
    return refuse(
      new GatewayError('APPROVAL_REQUIRED', `${before}${method} ${ctx.path} needs approval before it runs; nothing was executed. ${next}`, {
        // prior: the Approval-Id this request carried, and why it could not be used, for clients that act on it.
        extensions: { approval: view, preview: created.preview, ...(prior ? { prior: { id: prior.id, status: prior.status } } : {}) },
      }),
    );
  }

  /** This request holds the approval: it is given back if the request is never sent, counted as executed if it is. */
  private hold(ex: Exchange, execution: Extract<Execution, { kind: 'executing' }>): void {
    const { ctx } = ex;
    let sent: boolean | undefined;
    ex.use({
      onUpstreamResult: (result: UpstreamResult) => {
        sent = result.kind === 'response' || result.reachedUpstream;
      },
      close: async (forwarded) => {
        if (forwarded && sent !== false) {
          this.count('executed');
          this.logger.info({ request_id: ctx.requestId, approval_id: execution.approval.id }, 'approved call executed');
          return;
        }
        try {
          const restored = await this.approvals.restore(execution);
          if (restored) this.count('restored');
          this.logger.info({ request_id: ctx.requestId, approval_id: execution.approval.id, restored }, 'approved call was not sent: its approval is given back');
        } catch (err) {
          this.logger.warn({ request_id: ctx.requestId, approval_id: execution.approval.id, err: (err as Error).message }, 'approved call was not sent, and its approval could not be given back');
        }
      },
    });
  }

  private count(outcome: string): void {
    this.metrics.approvals.inc({ route: this.route, outcome });
  }
}

type Prior = { readonly id: string; readonly status: ApprovalStatus | 'unknown' };

const PRIOR_STATE: Record<ApprovalStatus | 'unknown', string> = {
  pending: 'is still pending',
  approved: 'is approved',
  denied: 'was denied',
  executed: 'was used already',
  expired: 'has expired',
  unknown: 'is unknown (or expired long ago)',
};

/**
 * The request an approval covers: method, target and body bytes (as idempotency fingerprints a request), and how the
 * body is to be read, so that the same bytes sent as another media type or coding are another request.
 */
function boundFingerprint(req: IncomingMessage, body: Buffer): string {
  const print = fingerprint(req.method ?? 'GET', req.url ?? '/', body);
  return hash('sha256', `${print}\u0000${req.headers['content-type'] ?? ''}\u0000${req.headers['content-encoding'] ?? ''}`, 'base64url');
}

/** Who the approval is bound to: the verified agent, or the caller as consumers.identify tells them apart. */
function agentOf(ex: Exchange): string {
  return ex.ctx.consumer?.id ?? 'anonymous';
}

function payloadTooLarge(max: number): GatewayError {
  return new GatewayError('PAYLOAD_TOO_LARGE', `The request body is larger than ${max} bytes, the most this route accepts for a call that needs approval.`, {
    headers: { connection: 'close' },
  });
}

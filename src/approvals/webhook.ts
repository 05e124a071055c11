// approval.notify.webhook: tells people an approval is waiting. The pending approval is POSTed as JSON, signed with
// an HMAC (X-Agentgate-Signature, Stripe's scheme) so the receiver can tell a real notice from a forged one, and
// retried with backoff in the background: a webhook that fails or hangs never delays or fails the agent's request.
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { GatewayMetrics } from '../observability/metrics.ts';
import { adminView } from './admin.ts';
import type { Approval } from './record.ts';

export interface WebhookTarget {
  readonly webhook: string;
  readonly secret: string;
}

/** Sends a pending approval to a webhook in the background: never delays or fails the agent's request. */
export interface ApprovalNotifier {
  notify(approval: Approval, target: WebhookTarget): void;
}

export const SIGNATURE_HEADER = 'x-agentgate-signature';
export const EVENT_HEADER = 'x-agentgate-event';
export const DELIVERY_HEADER = 'x-agentgate-delivery';
export const PENDING_EVENT = 'approval.pending';

/** The body of a notice. `sent_at` is when the notice was first sent: every retry of it carries the same bytes. */
export interface WebhookPayload {
  readonly type: typeof PENDING_EVENT;
  /** The approval as the admin port's JSON shows it (GET /approvals/{id}): id, route, agent, preview, expires_at... */
  readonly approval: Record<string, unknown>;
  /** The approvals page on the admin port, at this approval. */
  readonly page_url: string;
  readonly sent_at: string;
}

export interface WebhookNotifierOptions {
  readonly logger: Logger;
  readonly metrics: GatewayMetrics;
  /** The admin port as people reach it (server.admin_url, else the admin listener's address), read per notice. */
  readonly adminBase: () => string;
  /** The proxy port's URL, for the agent's status link in the approval. */
  readonly proxyUrl: () => string | undefined;
  /** Delay before the first retry; each next one doubles it (with ±20% jitter). Default 1 s. */
  readonly baseDelayMs?: number;
  /** Attempts per notice, the first included. Default 6 (retries after about 1, 2, 4, 8 and 16 s). */
  readonly maxAttempts?: number;
  /** Longest one attempt may take, response head included. Default 5 s. */
  readonly timeoutMs?: number;
  /** Most notices in flight or waiting for a retry; past it a new notice is dropped (and logged). Default 1000. */
  readonly maxPending?: number;
  /** Most attempts sent at once (the others wait their turn). Default 8. */
  readonly concurrency?: number;
}

/** One notice: the same body and delivery id on every attempt. */
interface Notice {
  readonly delivery: string;
  readonly route: string;
  readonly approvalId: string;
  readonly url: string;
  /** Protocol and host of the webhook, for logs: its path and query may hold a token (as Slack's do). */
  readonly origin: string;
  readonly secret: string;
  readonly body: string;
  attempt: number;
  timer?: NodeJS.Timeout;
  abort?: AbortController;
}

type Outcome = { readonly ok: true; readonly status: number } | { readonly ok: false; readonly retry: boolean; readonly status?: number; readonly error?: string };

export class WebhookNotifier implements ApprovalNotifier {
  private readonly logger: Logger;
  private readonly metrics: GatewayMetrics;
  private readonly adminBase: () => string;
  private readonly proxyUrl: () => string | undefined;
  private readonly baseDelayMs: number;
  private readonly maxAttempts: number;
  private readonly timeoutMs: number;
  private readonly maxPending: number;
  private readonly concurrency: number;
  /** Every notice not yet delivered or given up: sending, waiting for a retry, or waiting for its turn. */
  private readonly pending = new Set<Notice>();
  /** Notices due to be sent, waiting for a free slot. */
  private readonly ready: Notice[] = [];
  private sending = 0;
  private closed = false;

  constructor(options: WebhookNotifierOptions) {
    this.logger = options.logger.child({ component: 'approval-webhook' });
    this.metrics = options.metrics;
    this.adminBase = options.adminBase;
    this.proxyUrl = options.proxyUrl;
    this.baseDelayMs = options.baseDelayMs ?? 1000;
    this.maxAttempts = Math.max(1, options.maxAttempts ?? 6);
    this.timeoutMs = options.timeoutMs ?? 5000;
    this.maxPending = options.maxPending ?? 1000;
    this.concurrency = Math.max(1, options.concurrency ?? 8);
  }

  /** Notices in flight or waiting for a retry. */
  get size(): number {
    return this.pending.size;
  }

  notify(approval: Approval, target: WebhookTarget): void {
    try {
      if (this.closed) return this.drop(approval.route, approval.id, 'shutting down');
      if (this.pending.size >= this.maxPending) return this.drop(approval.route, approval.id, `${this.maxPending} notices are in flight or waiting for a retry already`);
      let url: URL;
      try {
        url = new URL(target.webhook);
      } catch {
        this.count(approval.route, 'failed');
        this.logger.warn({ route: approval.route, approval_id: approval.id }, 'approval webhook not sent: its URL is not valid');
        return;
      }
      const notice: Notice = {
        delivery: randomUUID(),
        route: approval.route,
        approvalId: approval.id,
        url: url.href,
        origin: url.origin,
        secret: target.secret,
        body: JSON.stringify(this.payload(approval)),
        attempt: 0,
      };
      this.pending.add(notice);
      this.enqueue(notice);
    } catch (err) {
      // Nothing here may reach the agent's request.
      this.logger.warn({ route: approval.route, approval_id: approval.id, err: (err as Error).name }, 'approval webhook not sent: it could not be prepared');
    }
  }

  /** Cancels every retry and attempt still pending (on shutdown); later notices are dropped. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const left = this.pending.size;
    for (const notice of this.pending) {
      clearTimeout(notice.timer);
      notice.abort?.abort();
      this.count(notice.route, 'dropped');
    }
    this.pending.clear();
    this.ready.length = 0;
    if (left > 0) this.logger.warn({ notices: left }, `shutting down: ${left} approval webhook notice(s) not delivered`);
  }

  private payload(approval: Approval): WebhookPayload {
    const base = this.adminBase().replace(/\/+$/, '');
    return {
      type: PENDING_EVENT,
      approval: adminView(approval, approval.status, this.proxyUrl()),
      page_url: `${base}/approvals/#${approval.id}`,
      sent_at: new Date().toISOString(),
    };
  }

  private drop(route: string, approvalId: string, why: string): void {
    this.count(route, 'dropped');
    this.logger.warn({ route, approval_id: approvalId }, `approval webhook dropped: ${why}`);
  }

  private enqueue(notice: Notice): void {
    this.ready.push(notice);
    this.pump();
  }

  private pump(): void {
    while (!this.closed && this.sending < this.concurrency && this.ready.length > 0) {
      const notice = this.ready.shift()!;
      this.sending++;
      void this.attempt(notice)
        .catch((err: unknown) => {
          this.logger.warn({ route: notice.route, approval_id: notice.approvalId, err: (err as Error).name }, 'approval webhook attempt failed inside the gateway');
          this.settle(notice);
        })
        .finally(() => {
          this.sending--;
          this.pump();
        });
    }
  }

  private async attempt(notice: Notice): Promise<void> {
    notice.attempt++;
    const outcome = await this.send(notice);
    if (this.closed || !this.pending.has(notice)) return;
    if (outcome.ok) {
      this.count(notice.route, 'delivered');
      this.logger.info({ route: notice.route, approval_id: notice.approvalId, delivery: notice.delivery, attempt: notice.attempt, status: outcome.status }, 'approval webhook delivered');
      return this.settle(notice);
    }
    const failure = {
      route: notice.route,
      approval_id: notice.approvalId,
      webhook: notice.origin,
      delivery: notice.delivery,
      attempt: notice.attempt,
      ...(outcome.status !== undefined ? { status: outcome.status } : {}),
      ...(outcome.error !== undefined ? { error: outcome.error } : {}),
    };
    if (outcome.retry && notice.attempt < this.maxAttempts) {
      const delayMs = this.backoff(notice.attempt);
      this.count(notice.route, 'retried');
      this.logger.warn({ ...failure, retry_in_ms: delayMs }, 'approval webhook attempt failed; retrying');
      notice.timer = setTimeout(() => {
        notice.timer = undefined;
        if (!this.closed && this.pending.has(notice)) this.enqueue(notice);
      }, delayMs);
      notice.timer.unref();
      return;
    }
    this.count(notice.route, 'failed');
    this.logger.warn(
      failure,
      outcome.retry ? `approval webhook failed ${notice.attempt} times; giving up` : 'approval webhook refused (not retried: the receiver answered a 4xx other than 408 or 429)',
    );
    this.settle(notice);
  }

  /** About baseDelay × 2^(n-1), ±20%, so that receivers coming back are not met by every notice at once. */
  private backoff(failedAttempts: number): number {
    const delay = this.baseDelayMs * 2 ** (failedAttempts - 1);
    return Math.round(delay * (0.8 + Math.random() * 0.4));
  }

  private async send(notice: Notice): Promise<Outcome> {
    const abort = new AbortController();
    notice.abort = abort;
    const timer = setTimeout(() => abort.abort(new TimeoutError()), this.timeoutMs);
    try {
      const timestamp = Math.floor(Date.now() / 1000);
      const response = await fetch(notice.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'agentgate-webhook',
          [EVENT_HEADER]: PENDING_EVENT,
          [DELIVERY_HEADER]: notice.delivery,
          [SIGNATURE_HEADER]: signatureHeader(notice.secret, timestamp, notice.body),
        },
        body: notice.body,
        // A redirect is not followed: the body and its signature go to the URL configured, nowhere else.
        redirect: 'manual',
        signal: abort.signal,
      });
      // The answer's body is not wanted; it is let go so the connection is freed.
      await response.body?.cancel().catch(() => undefined);
      const status = response.status;
      if (status >= 200 && status < 300) return { ok: true, status };
      return { ok: false, retry: status === 408 || status === 429 || status >= 500, status };
    } catch (err) {
      return { ok: false, retry: true, error: errorCode(err, abort.signal) };
    } finally {
      clearTimeout(timer);
      notice.abort = undefined;
    }
  }

  private settle(notice: Notice): void {
    clearTimeout(notice.timer);
    this.pending.delete(notice);
  }

  private count(route: string, result: 'delivered' | 'retried' | 'failed' | 'dropped'): void {
    this.metrics.approvalWebhooks.inc({ route, result });
  }
}

class TimeoutError extends Error {
  override readonly name = 'TimeoutError';
}

/** What went wrong, as a code safe to log (never a message: it could quote the URL). */
function errorCode(err: unknown, signal: AbortSignal): string {
  if (signal.aborted) return signal.reason instanceof TimeoutError ? 'timeout' : 'aborted';
  const cause = (err as { cause?: { code?: unknown } } | undefined)?.cause;
  if (cause && typeof cause.code === 'string') return cause.code;
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string') return code;
  return err instanceof Error ? err.name : 'error';
}

/** `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the secret>`. */
export function signatureHeader(secret: string, timestamp: number, body: string | Buffer): string {
  return `t=${timestamp},v1=${sign(secret, timestamp, body)}`;
}

function sign(secret: string, timestamp: number | string, body: string | Buffer | Uint8Array): string {
  return createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex');
}

/**
 * For receivers: true when `header` (X-Agentgate-Signature) signs exactly `rawBody` (the bytes as received, before any
 * JSON parsing) under `secret`, and its timestamp is within `toleranceSeconds` of `now` (epoch ms), so an old notice
 * captured on the way cannot be replayed later. Several v1= values (while a secret is rotated) pass if one matches.
 */
export function verifyWebhookSignature(
  secret: string,
  header: string | undefined,
  rawBody: string | Buffer | Uint8Array,
  { toleranceSeconds = 300, now = Date.now() }: { toleranceSeconds?: number; now?: number } = {},
): boolean {
  if (typeof header !== 'string' || typeof secret !== 'string' || secret === '') return false;
  let timestamp: string | undefined;
  const signatures: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq === -1) return false;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't') {
      if (timestamp !== undefined || !/^\d{1,12}$/.test(value)) return false;
      timestamp = value;
    } else if (key === 'v1') {
      if (/^[0-9a-f]{64}$/.test(value)) signatures.push(value);
    }
  }
  if (timestamp === undefined || signatures.length === 0) return false;
  if (Math.abs(now / 1000 - Number(timestamp)) > toleranceSeconds) return false;
  const expected = Buffer.from(sign(secret, timestamp, rawBody), 'utf8');
  let match = false;
  // Every candidate is compared, in constant time each, so the time taken says nothing about which one matched.
  for (const signature of signatures) if (timingSafeEqual(Buffer.from(signature, 'utf8'), expected)) match = true;
  return match;
}

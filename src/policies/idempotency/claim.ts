// One request's hold on its idempotency key, from the claim to the answer it settles on; and what a replay carries.
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import type { RequestContext } from '../../context.ts';
import type { Answer, RequestHooks } from '../contract.ts';
import type { UpstreamResult } from '../../upstream-result.ts';
import { StoreFullError, type Store } from '../../store/store.ts';
import { encodeRecord, type CompletedRecord, type NotReplayableRecord, type PendingRecord, type UnknownReason, type UnknownRecord } from './record.ts';

export type IdempotencyEvent =
  | 'stored'
  | 'replayed'
  | 'in_progress'
  | 'reused'
  | 'unknown_outcome'
  | 'missing_key'
  | 'invalid_key'
  | 'blocked'
  | 'released'
  | 'not_replayable'
  | 'fail_open'
  | 'fail_closed';

/** Upstream statuses that say "not done, try again": never stored, the key is released (as Stripe and the IETF draft do). */
const RELEASED_STATUSES = new Set([408, 409, 425, 429]);

/**
 * Response headers a replay carries: what describes the stored body and the resource the write created. Everything
 * else (Set-Cookie above all, dates, connection handling, the upstream's own request id) stays with the first answer.
 */
export const REPLAYED_HEADERS = new Set([
  'content-type',
  // A replayed error envelope keeps telling SDKs whether to retry.
  'x-should-retry',
  'content-encoding',
  'content-language',
  'content-location',
  'content-disposition',
  'location',
  'etag',
  'last-modified',
  'link',
  'cache-control',
  'expires',
  'vary',
]);

/** The route's settings a claim acts on. */
export interface ClaimSettings {
  readonly ttlMs: number;
  readonly leaseMs: number;
  readonly onOutcomeUnknown: 'block' | 'release';
  readonly on5xx: 'release' | 'store';
  readonly maxResponseBytes: number;
}

/** What a claim needs of its route's policy (IdempotencyPolicy): its settings, the store, its events and its logger. */
export interface ClaimOwner {
  readonly settings: ClaimSettings;
  readonly store: Store;
  readonly logger: Logger;
  count(event: IdempotencyEvent): void;
}

/**
 * One request's hold on its key, from the claim until the upstream's answer is settled: renews the lease while the
 * upstream call is open, then stores the answer, marks the outcome unknown, or releases the key. It is the policy's
 * hooks for the request (registered by the policy, closed by the pipeline on every path): it never outlives its request.
 */
export class Claim implements RequestHooks {
  private value: string;
  private record: PendingRecord;
  private readonly renewal: NodeJS.Timeout;
  /** Store operations of this claim, one after another, so each compare-and-set sees the value the previous one wrote. */
  private queue: Promise<unknown> = Promise.resolve();
  private settled = false;
  private lost = false;

  private readonly policy: ClaimOwner;
  private readonly key: string;
  private readonly ctx: RequestContext;

  constructor(policy: ClaimOwner, key: string, value: string, record: PendingRecord, ctx: RequestContext) {
    this.policy = policy;
    this.key = key;
    this.ctx = ctx;
    this.value = value;
    this.record = record;
    this.renewal = setInterval(() => this.renew(), Math.max(10, Math.floor(policy.settings.leaseMs / 3)));
    this.renewal.unref();
  }

  onUpstreamResult(result: UpstreamResult): void {
    if (result.kind !== 'response') this.settle(result);
  }

  onAnswer(answer: Answer): void {
    switch (answer.kind) {
      case 'upstream_error':
        return this.settleAnswer(answer.upstreamStatus, answer);
      case 'discarded':
        return this.abandon(answer.why);
      case 'buffered':
        return this.settleAnswer(answer.status, answer);
      case 'stream':
        return this.captureStream(answer.response);
    }
  }

  /**
   * Ends the claim if nothing settled it (an exception, a path that forgot): released when the request cannot have
   * reached the upstream, otherwise its outcome is unknown. Renewal stops either way, so the lease lapses at worst.
   */
  close(forwarded: boolean): Promise<void> {
    if (!this.settled) {
      if (!forwarded) this.release('the request ended before it was sent upstream');
      else {
        const outcome = this.ctx.outcome;
        this.unknown(outcome === 'client_closed' || outcome === 'upstream_timeout' || outcome === 'upstream_aborted' ? outcome : 'gateway_error');
      }
    }
    return this.recorded();
  }

  /** Decides from a forwarding attempt that brought no answer. */
  settle(result: Exclude<UpstreamResult, { kind: 'response' }>): void {
    // Nothing was sent (the client left first, the connect phase failed, an open circuit): nothing can have happened
    // upstream, so a retry is safe.
    if (!result.reachedUpstream) return this.release(result.kind === 'client_closed' ? 'the client left before the request was sent' : `upstream not reached (${result.error.code})`);
    if (result.kind === 'client_closed') return this.unknown('client_closed');
    return this.unknown(result.error.code === 'UPSTREAM_TIMEOUT' ? 'upstream_timeout' : 'upstream_error');
  }

  /**
   * Settles on an answer the gateway delivers from memory (a normalized upstream error, a body checked for silent
   * failures): kept for replay, or released, by the upstream's status, exactly like a streamed answer.
   */
  settleAnswer(upstreamStatus: number, answer: { status: number; headers: Record<string, string | string[]>; body: Buffer }): void {
    if (this.releases(upstreamStatus)) return this.release(`upstream answered ${upstreamStatus}`);
    this.complete(answer.status, answer.headers, answer.body);
  }

  /** The upstream's "success" was a failure in disguise: nothing trustworthy happened, so a retry must run again. */
  abandon(why: string): void {
    this.release(why);
  }

  /**
   * Resolves once the claim's final state (stored answer, unknown outcome, or release) is written, or failed to be.
   * The pipeline ends the client's response only then, so a client that has the whole answer and retries gets a replay.
   */
  recorded(): Promise<void> {
    return this.queue.then(() => undefined);
  }

  private releases(upstreamStatus: number): boolean {
    return RELEASED_STATUSES.has(upstreamStatus) || (upstreamStatus >= 500 && this.policy.settings.on5xx === 'release');
  }

  /** Captures a streamed answer's body as it goes to the client (call before delivering it). */
  captureStream(upstream: IncomingMessage): void {
    const status = upstream.statusCode ?? 502;
    if (this.releases(status)) return this.release(`upstream answered ${status}`);
    // A bounded tee: the response streams to the client as usual while a copy of at most max_response_bytes is kept.
    const max = this.policy.settings.maxResponseBytes;
    let chunks: Buffer[] = [];
    let size = 0;
    let ended = false;
    upstream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= max) chunks.push(chunk);
      else chunks = [];
    });
    upstream.once('end', () => {
      ended = true;
      if (size > max) return this.notReplayable(status, 'response_too_large');
      this.complete(status, upstream.headers, Buffer.concat(chunks, size));
    });
    // Errors are handled by the delivery step; this listener only keeps a second one from going unhandled.
    upstream.on('error', () => {});
    upstream.once('close', () => {
      if (ended) return;
      // Fully received from the upstream but not read to the end (the client left while it was paused): the request
      // certainly took effect, but there is no body to replay.
      if (upstream.complete) return this.notReplayable(status, 'response_not_read');
      this.unknown(this.ctx.outcome === 'upstream_timeout' ? 'upstream_timeout' : this.ctx.outcome === 'client_closed' ? 'client_closed' : 'upstream_aborted');
    });
  }

  private complete(status: number, headers: Record<string, string | string[] | undefined>, body: Buffer): void {
    const kept: [string, string | string[]][] = [];
    for (const [name, value] of Object.entries(headers)) if (value !== undefined && REPLAYED_HEADERS.has(name)) kept.push([name, value]);
    this.finish({ state: 'completed', fingerprint: this.record.fingerprint, status, headers: kept, body: body.toString('base64') }, 'stored');
  }

  private notReplayable(status: number, reason: NotReplayableRecord['reason']): void {
    this.finish({ state: 'not_replayable', fingerprint: this.record.fingerprint, status, reason }, 'not_replayable');
  }

  private unknown(reason: UnknownReason): void {
    this.policy.count('unknown_outcome');
    if (this.policy.settings.onOutcomeUnknown === 'release') return this.release(`outcome unknown (${reason}), on_outcome_unknown: release`);
    this.finish({ state: 'unknown', fingerprint: this.record.fingerprint, reason }, undefined);
  }

  /**
   * Replaces the pending record with its final state, for the record's TTL (counted from now). An answer the store has
   * no room for is kept as not replayable instead: the record still says the request completed, so a retry is refused
   * (409 IDEMPOTENCY_OUTCOME_UNKNOWN), never executed again.
   */
  private finish(record: CompletedRecord | NotReplayableRecord | UnknownRecord, event: IdempotencyEvent | undefined): void {
    if (!this.stop()) return;
    this.enqueue('finish', async () => {
      const { store, settings } = this.policy;
      let kept = record;
      let keptEvent = event;
      let replaced: boolean;
      try {
        replaced = await store.replaceIf(this.key, this.value, encodeRecord(record), settings.ttlMs);
      } catch (err) {
        if (!(err instanceof StoreFullError) || record.state !== 'completed') throw err;
        this.log('warn', { status: record.status, err: err.message }, 'idempotency store full: the answer was delivered but cannot be kept for replay; retries get 409 IDEMPOTENCY_OUTCOME_UNKNOWN');
        kept = { state: 'not_replayable', fingerprint: record.fingerprint, status: record.status, reason: 'response_too_large' };
        keptEvent = 'not_replayable';
        // No larger than the pending record it replaces, so it fits.
        replaced = await store.replaceIf(this.key, this.value, encodeRecord(kept), settings.ttlMs);
      }
      if (replaced) {
        if (keptEvent) this.policy.count(keptEvent);
        if (kept.state === 'unknown') this.log('info', { reason: kept.reason }, 'outcome unknown: retries with this key are refused until the record expires');
      } else {
        this.log('warn', { state: kept.state }, 'idempotency claim was lost before the answer could be recorded (its lease lapsed); the answer was delivered but not recorded');
      }
    });
  }

  private release(why: string): void {
    if (!this.stop()) return;
    this.enqueue('release', async () => {
      if (await this.policy.store.deleteIf(this.key, this.value)) {
        this.policy.count('released');
        this.log('debug', { why }, 'idempotency key released');
      }
    });
  }

  private renew(): void {
    if (this.settled || this.lost) return;
    this.enqueue('renew', async () => {
      if (this.settled || this.lost) return;
      const next: PendingRecord = { ...this.record, lease: (await this.policy.store.now()) + this.policy.settings.leaseMs };
      const value = encodeRecord(next);
      if (await this.policy.store.replaceIf(this.key, this.value, value, this.policy.settings.ttlMs)) {
        this.value = value;
        this.record = next;
      } else {
        this.lost = true;
        this.log('warn', {}, 'idempotency lease lapsed and the key was taken over while the request was in flight');
      }
    });
  }

  /** Marks the claim settled; false when it already was. */
  private stop(): boolean {
    if (this.settled) return false;
    this.settled = true;
    clearInterval(this.renewal);
    return true;
  }

  private enqueue(operation: string, run: () => Promise<void>): void {
    this.queue = this.queue.then(run).catch((err: unknown) => {
      // The answer is already on its way to the client; a store failure here only means retries may see the claim's
      // lease lapse and resolve it by on_outcome_unknown.
      this.log('warn', { operation, err: err instanceof Error ? err.message : String(err) }, 'idempotency store operation failed');
    });
  }

  private log(level: 'debug' | 'info' | 'warn', fields: Record<string, unknown>, msg: string): void {
    this.policy.logger[level]({ request_id: this.ctx.requestId, idempotency_key_hash: this.ctx.idempotencyKeyHash, ...fields }, msg);
  }
}

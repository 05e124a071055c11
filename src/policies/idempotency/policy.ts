// Idempotency replay: claims a key atomically before forwarding, stores the upstream's answer as it streams, replays it to retries.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { RequestContext, RequestResource } from '../../context.ts';
import { GatewayError, storeUnavailable } from '../../errors/problem.ts';
import { parseDuration, parseSize } from '../../config/units.ts';
import type { UpstreamResult } from '../../upstream-result.ts';
import { readRequestBody } from '../../proxy/body.ts';
import { storeKey } from '../../store/keys.ts';
import { StoreError, StoreFullError, type ClaimRequest, type Store } from '../../store/store.ts';
import type { GatewayMetrics } from '../../observability/metrics.ts';
import type { PolicyDeps } from '../deps.ts';
import type { IdempotencySettings } from './schema.ts';
import { fingerprint, headerValues, parseIdempotencyKey, recordId } from './key.ts';
import {
  decodeRecord,
  encodeRecord,
  type CompletedRecord,
  type NotReplayableRecord,
  type PendingRecord,
  type UnknownReason,
  type UnknownRecord,
} from './record.ts';

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

/** The first half's result: whether the request takes part, and what it claims. */
export type IdempotencyOpening =
  /** The policy does not apply (another method, or no key where none is required): forward the request stream as it is. */
  | { kind: 'pass' }
  | { kind: 'claim'; intent: ClaimIntent }
  /** No key where one is required, a malformed key, a body too large to keep: answer with `error`. */
  | { kind: 'refuse'; error: GatewayError }
  /** The client left while its body was being read. */
  | { kind: 'client_closed' };

/** A request with a valid key and its body read, ready to claim its record. */
export interface ClaimIntent {
  readonly key: string;
  readonly fingerprint: string;
  readonly body: Buffer;
  /** On a rate-limited route, the claim for the rate limiter to make together with its charge (one store round trip), with the record it writes. */
  readonly withCharge: { readonly request: ClaimRequest; readonly pending: PendingRecord } | undefined;
  /** The store failed while the claim was prepared (its clock could not be read): decide() applies on_store_error without asking it again. */
  readonly storeError: StoreError | undefined;
}

/** What the pipeline does next, decided before anything is forwarded. */
export type IdempotencyDecision =
  /** Forward the request (its body already read, in the intent). `claim` is settled with the forwarding result; it is absent when the store failed and the route fails open. */
  | { kind: 'proceed'; claim: Claim | undefined }
  /** Answer with the stored response (writeReplay). */
  | { kind: 'replay'; record: CompletedRecord };

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

/** Whole seconds a duplicate is told to wait while the first request with its key is in flight. */
const IN_PROGRESS_RETRY_AFTER_SECONDS = 1;
/** Claim attempts in one decision: more than a couple happen only under heavy contention on one key. */
const MAX_CLAIM_ATTEMPTS = 10;

/** The compiled settings of one route. */
interface Settings {
  readonly required: boolean;
  readonly ttlMs: number;
  readonly methods: ReadonlySet<string>;
  readonly leaseMs: number;
  readonly inFlight: 'reject' | 'wait';
  readonly inFlightWaitMs: number;
  readonly onOutcomeUnknown: 'block' | 'release';
  readonly on5xx: 'release' | 'store';
  readonly onStoreError: 'fail_closed' | 'fail_open';
  readonly maxBodyBytes: number;
  readonly maxResponseBytes: number;
}

/** Builds a route's policy from its `idempotency:` config (defaults already filled in by the schema); undefined when off. */
export function compileIdempotency(
  config: false | IdempotencySettings | undefined,
  routeName: string,
  deps: PolicyDeps,
  /** The route is rate limited: its first claim is made together with the charge. */
  claimWithCharge: boolean,
): IdempotencyPolicy | undefined {
  if (!config) return undefined;
  const leaseMs = parseDuration(config.lease);
  const settings: Settings = {
    required: config.required,
    // A record must outlive the lease of its claim, or a claim could vanish while its request is still running.
    ttlMs: parseDuration(config.ttl), // at least 2 × lease: config load refuses less (idempotencySettingsProblems)
    methods: new Set(config.methods),
    leaseMs,
    inFlight: config.in_flight,
    inFlightWaitMs: parseDuration(config.in_flight_wait),
    onOutcomeUnknown: config.on_outcome_unknown,
    on5xx: config.on_5xx,
    onStoreError: config.on_store_error,
    maxBodyBytes: parseSize(config.max_body_bytes),
    maxResponseBytes: parseSize(config.max_response_bytes),
  };
  return new IdempotencyPolicy(routeName, settings, deps, claimWithCharge);
}

export class IdempotencyPolicy {
  readonly routeName: string;
  readonly settings: Settings;
  readonly store: Store;
  /** The policy's own child logger (policy: idempotency, route). */
  readonly logger: Logger;
  private readonly keyPrefix: string;
  private readonly metrics: GatewayMetrics;
  /** agentgate_idempotency_events_total's children for this route, looked up once per event rather than on every request. */
  private readonly eventCounters = new Map<IdempotencyEvent, { inc(): void }>();
  private readonly claimWithCharge: boolean;
  private readonly requestBodyIdleMs: number;

  constructor(routeName: string, settings: Settings, deps: PolicyDeps, claimWithCharge: boolean) {
    this.routeName = routeName;
    this.settings = settings;
    this.claimWithCharge = claimWithCharge;
    this.requestBodyIdleMs = deps.requestBodyIdleMs;
    this.store = deps.store;
    this.keyPrefix = deps.keyPrefix;
    this.metrics = deps.metrics;
    this.logger = deps.logger.child({ policy: 'idempotency', route: routeName });
  }

  count(event: IdempotencyEvent): void {
    let counter = this.eventCounters.get(event);
    if (!counter) {
      counter = this.metrics.idempotencyEvents.labels({ route: this.routeName, event });
      this.eventCounters.set(event, counter);
    }
    counter.inc();
  }

  /**
   * The first half, before the rate limit: validates the key, reads and fingerprints the body. Nothing is stored yet.
   */
  async open(req: IncomingMessage, ctx: RequestContext): Promise<IdempotencyOpening> {
    const method = req.method ?? 'GET';
    if (!this.settings.methods.has(method)) return { kind: 'pass' };
    const parsed = parseIdempotencyKey(headerValues(req.rawHeaders, 'idempotency-key'));
    if (parsed.kind === 'absent') {
      this.count('missing_key');
      if (!this.settings.required) return { kind: 'pass' };
      return refuse('IDEMPOTENCY_KEY_REQUIRED', `${method} on this route needs an Idempotency-Key header, so that a retry cannot run it twice.`);
    }
    if (parsed.kind === 'invalid') {
      this.count('invalid_key');
      return refuse('IDEMPOTENCY_KEY_INVALID', `The Idempotency-Key header is malformed: ${parsed.reason}.`);
    }
    const id = recordId(ctx.consumer?.id ?? 'anonymous', this.routeName, parsed.key);
    ctx.idempotencyKeyHash = id;

    const body = await readRequestBody(req, this.settings.maxBodyBytes, this.requestBodyIdleMs);
    if (body === undefined) return { kind: 'client_closed' };
    if (body === 'timeout') return { kind: 'refuse', error: requestTimeout() };
    if (body === 'too_large') return { kind: 'refuse', error: payloadTooLarge(this.settings.maxBodyBytes) };
    const print = fingerprint(method, req.url ?? '/', body);
    const key = storeKey(this.keyPrefix, 'idem', id);
    let withCharge: ClaimIntent['withCharge'];
    let storeError: StoreError | undefined;
    if (this.claimWithCharge) {
      try {
        const pending = this.pending(print, await this.store.now());
        withCharge = { request: { key, value: encodeRecord(pending), ttlMs: this.settings.ttlMs }, pending };
      } catch (err) {
        if (!(err instanceof StoreError)) throw err;
        storeError = err;
      }
    }
    return { kind: 'claim', intent: { key, fingerprint: print, body, withCharge, storeError } };
  }

  /**
   * The second half, after the rate limit: claims the record atomically (SET NX), or reads what the rate limiter's
   * claim answered (`answered`: null when it claimed the key, else the value there; undefined when it made none). Of any
   * number of concurrent identical requests exactly one proceeds; the others get the stored answer or a refusal.
   */
  async decide(intent: ClaimIntent, res: ServerResponse, ctx: RequestContext, answered: string | null | undefined): Promise<IdempotencyDecision> {
    try {
      if (intent.storeError) throw intent.storeError;
      const claim = await this.claimOrRead(intent, ctx, res, answered);
      if (claim instanceof Claim) return { kind: 'proceed', claim };
      return { kind: 'replay', record: claim };
    } catch (err) {
      if (!(err instanceof StoreError)) throw err;
      if (err instanceof StoreFullError) {
        // No room for this key's record (the memory store's records part is full). The store answers, so this is no
        // outage and fail_open does not apply: forwarded without a record, the request would run again on every retry,
        // unannounced. It is refused, retryable: room comes back as records expire or are released.
        this.logger.warn({ request_id: ctx.requestId, idempotency_key_hash: ctx.idempotencyKeyHash, err: err.message }, 'idempotency store full: request refused (503), not forwarded');
        throw storeUnavailable(
          "The gateway's idempotency store is full, so it cannot record this request to make sure it runs only once; it was not forwarded.",
          err,
          'Nothing was executed. Wait, then send the same request again: room comes back as older idempotency records expire.',
        );
      }
      if (this.settings.onStoreError === 'fail_open') {
        this.count('fail_open');
        this.logger.warn({ request_id: ctx.requestId, idempotency_key_hash: ctx.idempotencyKeyHash, err: err.message }, 'store unreachable: forwarding without idempotency protection (fail_open)');
        return { kind: 'proceed', claim: undefined };
      }
      this.count('fail_closed');
      throw storeUnavailable('The gateway cannot reach its state store, so it cannot make sure this request runs only once; it was not forwarded.', err);
    }
  }

  private pending(print: string, now: number): PendingRecord {
    return { state: 'pending', fingerprint: print, owner: randomUUID(), lease: now + this.settings.leaseMs, started: now };
  }

  /** Claims the record (or takes the rate limiter's claim), or finds out what the existing one means for this request. */
  private async claimOrRead(intent: ClaimIntent, ctx: RequestContext, res: ServerResponse, answered: string | null | undefined): Promise<Claim | CompletedRecord> {
    const { key, fingerprint: print } = intent;
    const waitUntil = this.settings.inFlight === 'wait' ? Date.now() + this.settings.inFlightWaitMs : 0;
    let pollMs = 25;
    for (let attempt = 0; ; attempt++) {
      let pending: PendingRecord;
      let value: string;
      let existing: string | null;
      if (attempt === 0 && answered !== undefined && intent.withCharge) {
        pending = intent.withCharge.pending;
        value = intent.withCharge.request.value;
        existing = answered;
      } else {
        pending = this.pending(print, await this.store.now());
        value = encodeRecord(pending);
        existing = await this.store.claim(key, value, this.settings.ttlMs);
      }
      const now = pending.started;
      if (existing === null) return new Claim(this, key, value, pending, ctx);

      const record = decodeRecord(existing);
      if (record === undefined) throw new GatewayError('GATEWAY_ERROR', 'The stored idempotency record for this key cannot be read.');
      if (record.fingerprint !== print) {
        this.count('reused');
        throw new GatewayError(
          'IDEMPOTENCY_KEY_REUSED',
          'This Idempotency-Key was already used for a different request (its method, path, query or body differ); a key belongs to exactly one request.',
        );
      }
      switch (record.state) {
        case 'completed':
          this.count('replayed');
          return record;
        case 'not_replayable':
        case 'unknown':
          this.count('blocked');
          throw outcomeUnknown(record);
        case 'pending': {
          if (record.lease > now) {
            // The first request is in flight. Wait for it (in_flight: wait) while the bound and the client allow.
            if (Date.now() + pollMs < waitUntil && !res.destroyed) {
              await sleep(pollMs);
              pollMs = Math.min(pollMs * 2, 250);
              continue;
            }
            this.count('in_progress');
            throw new GatewayError(
              'IDEMPOTENCY_IN_PROGRESS',
              `The first request with this Idempotency-Key is still running (for ${Math.max(0, now - record.started)} ms so far).`,
              { retryAfterSeconds: IN_PROGRESS_RETRY_AFTER_SECONDS },
            );
          }
          // The lease lapsed: the gateway that claimed the key died (or lost the store) mid-request. Whether the upstream
          // executed it is unknown, so it resolves by on_outcome_unknown; the compare-and-set lets only one retry do so.
          if (attempt >= MAX_CLAIM_ATTEMPTS) throw new GatewayError('IDEMPOTENCY_IN_PROGRESS', 'The record for this key is changing too fast to decide.', { retryAfterSeconds: 1 });
          if (this.settings.onOutcomeUnknown === 'release') {
            if (!(await this.store.replaceIf(key, existing, value, this.settings.ttlMs))) continue;
            this.count('unknown_outcome');
            this.logger.warn({ request_id: ctx.requestId, idempotency_key_hash: ctx.idempotencyKeyHash }, 'claim of a lost gateway taken over (on_outcome_unknown: release): executing again');
            return new Claim(this, key, value, pending, ctx);
          }
          const unknown: UnknownRecord = { state: 'unknown', fingerprint: print, reason: 'gateway_lost' };
          if (!(await this.store.replaceIf(key, existing, encodeRecord(unknown), this.settings.ttlMs))) continue;
          this.count('unknown_outcome');
          this.count('blocked');
          this.logger.warn({ request_id: ctx.requestId, idempotency_key_hash: ctx.idempotencyKeyHash }, 'claim of a lost gateway expired: outcome unknown, key blocked');
          throw outcomeUnknown(unknown);
        }
      }
    }
  }
}

/**
 * One request's hold on its key, from the claim until the upstream's answer is settled: renews the lease while the
 * upstream call is open, then stores the answer, marks the outcome unknown, or releases the key.
 */
export class Claim implements RequestResource {
  private value: string;
  private record: PendingRecord;
  private readonly renewal: NodeJS.Timeout;
  /** Store operations of this claim, one after another, so each compare-and-set sees the value the previous one wrote. */
  private queue: Promise<unknown> = Promise.resolve();
  private settled = false;
  private lost = false;

  private readonly policy: IdempotencyPolicy;
  private readonly key: string;
  private readonly ctx: RequestContext;

  constructor(policy: IdempotencyPolicy, key: string, value: string, record: PendingRecord, ctx: RequestContext) {
    this.policy = policy;
    this.key = key;
    this.ctx = ctx;
    this.value = value;
    this.record = record;
    this.renewal = setInterval(() => this.renew(), Math.max(10, Math.floor(policy.settings.leaseMs / 3)));
    this.renewal.unref();
    // The pipeline closes it when the request ends, whatever path it took: a claim never outlives its request.
    (ctx.resources ??= []).push(this);
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

/** The answer to a retry whose first attempt's outcome is unknown, or whose answer cannot be replayed. */
function outcomeUnknown(record: UnknownRecord | NotReplayableRecord): GatewayError {
  if (record.state === 'not_replayable') {
    const why = record.reason === 'response_too_large' ? 'was too large to keep for replay' : 'was not read to its end, so it was not kept';
    return new GatewayError(
      'IDEMPOTENCY_OUTCOME_UNKNOWN',
      `The first request with this Idempotency-Key completed with status ${record.status}, but its response ${why}.`,
      {
        suggestion: 'Do not send it again: it took effect. Read the current state of the resource instead; use a new Idempotency-Key only for a new request.',
        extensions: { reason: record.reason, original_status: record.status },
      },
    );
  }
  const what: Record<UnknownReason, string> = {
    upstream_timeout: 'timed out at the upstream',
    upstream_error: 'lost its connection to the upstream before an answer came',
    upstream_aborted: 'got an incomplete answer from the upstream',
    client_closed: 'was abandoned by its client before the answer was complete',
    gateway_lost: 'was in flight on a gateway instance that stopped answering',
    gateway_error: 'failed inside the gateway after it had been sent upstream',
  };
  return new GatewayError(
    'IDEMPOTENCY_OUTCOME_UNKNOWN',
    `The first request with this Idempotency-Key ${what[record.reason]}: it may or may not have taken effect, so it is not run again.`,
    { extensions: { reason: record.reason } },
  );
}

/** Writes a stored answer: its status, body and allow-listed headers, marked as a replay; X-Request-Id stays this request's own. */
export function writeReplay(res: ServerResponse, record: CompletedRecord): void {
  const body = Buffer.from(record.body, 'base64');
  for (const [name, value] of record.headers) res.setHeader(name, value as string | string[]);
  res.setHeader('idempotent-replayed', 'true');
  res.setHeader('x-idempotent-replayed', 'true');
  res.setHeader('content-length', body.length);
  res.statusCode = record.status;
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

function refuse(code: 'IDEMPOTENCY_KEY_REQUIRED' | 'IDEMPOTENCY_KEY_INVALID', detail: string): IdempotencyOpening {
  return { kind: 'refuse', error: new GatewayError(code, detail) };
}

/** The client stopped sending the body this policy must read: its fault, answered before anything is charged or claimed. */
export function requestTimeout(): GatewayError {
  return new GatewayError('REQUEST_TIMEOUT', 'The request body stopped arriving before it was complete, so the request was not forwarded.', {
    // The rest of the body is unread, so this connection cannot carry another request.
    headers: { connection: 'close' },
  });
}

function payloadTooLarge(max: number): GatewayError {
  return new GatewayError('PAYLOAD_TOO_LARGE', `The request body is larger than ${max} bytes, the most this route accepts for a request with an Idempotency-Key.`, {
    // The rest of the body may be unread, so this connection cannot carry another request.
    headers: { connection: 'close' },
  });
}

// Idempotency replay: claims a key atomically before forwarding, stores the upstream's answer as it streams, replays it to retries.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { RequestContext } from '../../context.ts';
import { GatewayError, requestBodyStalled, storeUnavailable } from '../../errors/problem.ts';
import { parseDuration, parseSize } from '../../config/units.ts';
import { readRequestBodyOnce } from '../../proxy/body.ts';
import { storeKey } from '../../store/keys.ts';
import { StoreError, StoreFullError, type ClaimRequest, type Store } from '../../store/store.ts';
import type { GatewayMetrics } from '../../observability/metrics.ts';
import type { PolicyDeps } from '../deps.ts';
import { CLIENT_CLOSED, CONTINUE, refuse, type ClaimReply, type Exchange, type Policy, type PolicyFactory, type Verdict } from '../contract.ts';
import type { IdempotencySettings } from './schema.ts';
import { fingerprint } from '../fingerprint.ts';
import { headerValues, parseIdempotencyKey, recordId } from './key.ts';
import { Claim, type ClaimSettings, type IdempotencyEvent } from './claim.ts';
import {
  decodeRecord,
  encodeRecord,
  type CompletedRecord,
  type NotReplayableRecord,
  type PendingRecord,
  type UnknownReason,
  type UnknownRecord,
} from './record.ts';

export const idempotency: PolicyFactory = {
  name: 'idempotency',
  // A route's own setting, false included, replaces the inherited one as a whole (settings are not merged).
  compile: ({ route, config, deps }) => compileIdempotency(route.idempotency ?? config.defaults.idempotency, route.name, deps),
};

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
  /** The claim as prepared for the store (made with the rate limiter's charge when there is one), with the record it writes. */
  readonly prepared: { readonly request: ClaimRequest; readonly pending: PendingRecord } | undefined;
  /** The store failed while the claim was prepared (its clock could not be read): decide() applies on_store_error without asking it again. */
  readonly storeError: StoreError | undefined;
}

/** Whole seconds a duplicate is told to wait while the first request with its key is in flight. */
const IN_PROGRESS_RETRY_AFTER_SECONDS = 1;
/** Claim attempts in one decision: more than a couple happen only under heavy contention on one key. */
const MAX_CLAIM_ATTEMPTS = 10;

/** The compiled settings of one route (a claim's own are in ClaimSettings). */
interface Settings extends ClaimSettings {
  readonly required: boolean;
  readonly methods: ReadonlySet<string>;
  readonly inFlight: 'reject' | 'wait';
  readonly inFlightWaitMs: number;
  readonly onStoreError: 'fail_closed' | 'fail_open';
  readonly maxBodyBytes: number;
}

/** Builds a route's policy from its `idempotency:` config (defaults already filled in by the schema); undefined when off. */
export function compileIdempotency(
  config: false | IdempotencySettings | undefined,
  routeName: string,
  deps: PolicyDeps,
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
  return new IdempotencyPolicy(routeName, settings, deps);
}

export class IdempotencyPolicy implements Policy {
  readonly name = 'idempotency';
  readonly routeName: string;
  readonly settings: Settings;
  readonly store: Store;
  /** The policy's own child logger (policy: idempotency, route). */
  readonly logger: Logger;
  private readonly keyPrefix: string;
  private readonly metrics: GatewayMetrics;
  /** agentgate_idempotency_events_total's children for this route, looked up once per event rather than on every request. */
  private readonly eventCounters = new Map<IdempotencyEvent, { inc(): void }>();
  private readonly requestBodyIdleMs: number;

  constructor(routeName: string, settings: Settings, deps: PolicyDeps) {
    this.routeName = routeName;
    this.settings = settings;
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
   * Checks the Idempotency-Key and reads the body it is fingerprinted with, before the rate limit, so that a request
   * refused here (no key where one is required, a malformed key, a body too large to keep) is not charged; then adds
   * its claim to the request's store batch, to be made with the charge.
   */
  async onRequest(ex: Exchange): Promise<Verdict> {
    const opening = await this.open(ex.req, ex.ctx);
    switch (opening.kind) {
      case 'pass':
        return CONTINUE;
      case 'client_closed':
        return CLIENT_CLOSED;
      case 'refuse':
        return refuse(opening.error);
    }
    const { intent } = opening;
    ex.ctx.requestBody = intent.body;
    ex.batch.addClaim(intent.prepared?.request, (answered) => this.decide(intent, ex, answered));
    return CONTINUE;
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
      return refused('IDEMPOTENCY_KEY_REQUIRED', `${method} on this route needs an Idempotency-Key header, so that a retry cannot run it twice.`);
    }
    if (parsed.kind === 'invalid') {
      this.count('invalid_key');
      return refused('IDEMPOTENCY_KEY_INVALID', `The Idempotency-Key header is malformed: ${parsed.reason}.`);
    }
    const id = recordId(ctx.consumer?.id ?? 'anonymous', this.routeName, parsed.key);
    ctx.idempotencyKeyHash = id;

    const body = await readRequestBodyOnce(req, ctx, this.settings.maxBodyBytes, this.requestBodyIdleMs);
    if (body === undefined) return { kind: 'client_closed' };
    // The client's fault, answered before anything is charged or claimed.
    if (body === 'timeout') return { kind: 'refuse', error: requestBodyStalled() };
    if (body === 'too_large') return { kind: 'refuse', error: payloadTooLarge(this.settings.maxBodyBytes) };
    const print = fingerprint(method, req.url ?? '/', body);
    const key = storeKey(this.keyPrefix, 'idem', id);
    let prepared: ClaimIntent['prepared'];
    let storeError: StoreError | undefined;
    try {
      const pending = this.pending(print, await this.store.now());
      prepared = { request: { key, value: encodeRecord(pending), ttlMs: this.settings.ttlMs }, pending };
    } catch (err) {
      if (!(err instanceof StoreError)) throw err;
      storeError = err;
    }
    return { kind: 'claim', intent: { key, fingerprint: print, body, prepared, storeError } };
  }

  /**
   * The second half, with the store's answer, right before forwarding (the key must be held before the upstream can
   * execute anything): claims the record atomically (SET NX), or reads what the batch's claim answered (`answered`:
   * null when it claimed the key, else the value there; undefined when it made none). Of any number of concurrent
   * identical requests exactly one proceeds, holding the claim; the others get the stored answer or a refusal.
   */
  async decide(intent: ClaimIntent, ex: Exchange, answered: ClaimReply): Promise<Verdict> {
    const { ctx } = ex;
    try {
      if (intent.storeError) throw intent.storeError;
      const claim = await this.claimOrRead(intent, ctx, ex.res, answered);
      if (claim instanceof Claim) {
        ex.use(claim);
        ctx.retryReplays = true;
        return CONTINUE;
      }
      return { kind: 'respond', outcome: 'replayed', write: (res) => writeReplay(res, claim) };
    } catch (err) {
      if (err instanceof GatewayError) return refuse(err);
      if (!(err instanceof StoreError)) throw err;
      if (err instanceof StoreFullError) {
        // No room for this key's record (the memory store's records part is full). The store answers, so this is no
        // outage and fail_open does not apply: forwarded without a record, the request would run again on every retry,
        // unannounced. It is refused, retryable: room comes back as records expire or are released.
        this.logger.warn({ request_id: ctx.requestId, idempotency_key_hash: ctx.idempotencyKeyHash, err: err.message }, 'idempotency store full: request refused (503), not forwarded');
        return refuse(storeUnavailable(
          "The gateway's idempotency store is full, so it cannot record this request to make sure it runs only once; it was not forwarded.",
          err,
          'Nothing was executed. Wait, then send the same request again: room comes back as older idempotency records expire.',
        ));
      }
      if (this.settings.onStoreError === 'fail_open') {
        this.count('fail_open');
        this.logger.warn({ request_id: ctx.requestId, idempotency_key_hash: ctx.idempotencyKeyHash, err: err.message }, 'store unreachable: forwarding without idempotency protection (fail_open)');
        return CONTINUE;
      }
      this.count('fail_closed');
      return refuse(storeUnavailable('The gateway cannot reach its state store, so it cannot make sure this request runs only once; it was not forwarded.', err));
    }
  }

  private pending(print: string, now: number): PendingRecord {
    return { state: 'pending', fingerprint: print, owner: randomUUID(), lease: now + this.settings.leaseMs, started: now };
  }

  /** Claims the record (or takes the batch's claim), or finds out what the existing one means for this request. */
  private async claimOrRead(intent: ClaimIntent, ctx: RequestContext, res: ServerResponse, answered: ClaimReply): Promise<Claim | CompletedRecord> {
    const { key, fingerprint: print } = intent;
    const waitUntil = this.settings.inFlight === 'wait' ? Date.now() + this.settings.inFlightWaitMs : 0;
    let pollMs = 25;
    for (let attempt = 0; ; attempt++) {
      let pending: PendingRecord;
      let value: string;
      let existing: string | null;
      if (attempt === 0 && intent.prepared) {
        // The claim prepared before the batch: made with the charge (answered), or now, by this policy itself.
        pending = intent.prepared.pending;
        value = intent.prepared.request.value;
        existing = answered !== undefined ? answered : await this.store.claim(key, value, this.settings.ttlMs);
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

function refused(code: 'IDEMPOTENCY_KEY_REQUIRED' | 'IDEMPOTENCY_KEY_INVALID', detail: string): IdempotencyOpening {
  return { kind: 'refuse', error: new GatewayError(code, detail) };
}

function payloadTooLarge(max: number): GatewayError {
  return new GatewayError('PAYLOAD_TOO_LARGE', `The request body is larger than ${max} bytes, the most this route accepts for a request with an Idempotency-Key.`, {
    // The rest of the body may be unread, so this connection cannot carry another request.
    headers: { connection: 'close' },
  });
}

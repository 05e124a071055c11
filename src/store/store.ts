// The small set of atomic operations every policy's shared state is built on; memory and Redis implement it alike.

export interface Store {
  /** 'memory' or 'redis': the store label of agentgate_store_errors_total. */
  readonly kind: 'memory' | 'redis';
  /** The value under key, or null when absent or expired. */
  get(key: string): Promise<string | null>;
  /**
   * Sets key to value with a TTL only if the key is absent (SET NX PX). Returns null when this call claimed it, else the
   * value already there. A call that fails removes its claim again (best effort), in case Redis applied it all the same:
   * give every attempt a value of its own. A key written by claim is a record: the memory store never evicts one to
   * make room for other keys (Redis keeps it as its maxmemory-policy does), and refuses a new one it has no room for
   * with StoreFullError.
   */
  claim(key: string, value: string, ttlMs: number): Promise<string | null>;
  /**
   * Replaces the value, and its TTL, only if the current value is exactly `expected`. True when replaced. A new value
   * that does not fit (StoreFullError) leaves the current one in place.
   */
  replaceIf(key: string, expected: string, value: string, ttlMs: number): Promise<boolean>;
  /** Deletes the key only if its current value is exactly `expected`. True when deleted. */
  deleteIf(key: string, expected: string): Promise<boolean>;
  /** Milliseconds since the epoch by the store's own clock (Redis TIME), so that replicas agree on time. */
  now(): Promise<number>;
  /**
   * Charges `cost` units to every bucket, all or nothing: when any bucket lacks room none is charged and `allowed` is false.
   * Buckets refill continuously (capacity units per perMs) by the store's clock. A negative cost refunds (never refused);
   * mode 'dry_run' only reports, 'force' charges even without room (settling a cost learnt after the fact).
   * Buckets under one hash tag change in one atomic step (one EVALSHA); on Redis Cluster, buckets under several tags
   * are charged tag by tag in the order given, and a later refusal refunds the earlier ones.
   */
  consume(buckets: readonly Bucket[], cost: number, mode?: ConsumeMode): Promise<ConsumeResult>;
  /**
   * consume(buckets, cost) and, only when the charge is allowed, claim(claim.key, claim.value, claim.ttlMs): a
   * rate-limited idempotent write's whole decision before forwarding, in one atomic step (one EVALSHA, one round trip)
   * instead of two. A refused charge claims nothing. On Redis Cluster the claim key lives in another slot than the
   * buckets, so there it is consume() then claim(); a claim that fails after the charge leaves the charge in place and
   * answers `claim: undefined`, so that the caller claims itself. A call that fails removes its claim again, as claim() does.
   * A claim refused for room (StoreFullError) likewise leaves the charge in place and answers `claim: undefined`: the
   * caller's own claim() then tells it why.
   */
  chargeAndClaim(buckets: readonly Bucket[], cost: number, claim: ClaimRequest): Promise<ChargeAndClaimResult>;
  /** Whether the store can serve operations right now; never throws. */
  ready(): Promise<boolean>;
  close(): Promise<void>;
}

/** A token bucket of Store.consume: `capacity` units, refilled continuously, completely every `perMs`. */
export interface Bucket {
  readonly key: string;
  readonly capacity: number;
  readonly perMs: number;
}

export type ConsumeMode = 'charge' | 'dry_run' | 'force';

/** The arguments of one Store.claim. */
export interface ClaimRequest {
  readonly key: string;
  readonly value: string;
  readonly ttlMs: number;
}

export interface ChargeAndClaimResult {
  readonly consumed: ConsumeResult;
  /** What claim() answered (null: this call claimed the key; else the value already there); undefined when no claim was made. */
  readonly claim: string | null | undefined;
}

export interface BucketState {
  /** Whole units left after this call (what was charged, if anything, already taken off); never negative. */
  readonly remaining: number;
  /** Milliseconds until the bucket is full again; 0 when it is full. */
  readonly resetMs: number;
  /** Milliseconds until the cost fits in this bucket (judged before this call charged anything): 0 when it fits now, -1 when it never can (cost > capacity). */
  readonly waitMs: number;
}

export interface ConsumeResult {
  /** Every bucket had room (for a dry run: would have), or the cost was a refund. */
  readonly allowed: boolean;
  /** The store's clock at the decision, ms since the epoch. */
  readonly now: number;
  /** In the order of the buckets given. */
  readonly buckets: readonly BucketState[];
}

/** A store operation failed (connection lost, timed out); policies choose per route whether to fail open or closed. */
export class StoreError extends Error {
  readonly operation: string;
  constructor(operation: string, cause: unknown) {
    super(`store ${operation} failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'StoreError';
    this.operation = operation;
  }
}

/**
 * A write refused because the store has no room left for it (the memory store's records part, store.memory.records):
 * nothing was written and nothing else was evicted to make room. The store is reachable, so this is no outage: the
 * idempotency policy answers it as "full", whatever its on_store_error says, rather than as "unreachable".
 */
export class StoreFullError extends StoreError {
  constructor(operation: string, detail: string) {
    super(operation, new Error(detail));
    this.name = 'StoreFullError';
  }
}

/** Called on every failed operation, for metrics and logs. */
export type StoreErrorListener = (error: StoreError) => void;

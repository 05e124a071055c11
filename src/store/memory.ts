// In-process store for a single instance, in two bounded parts: budgets (least recently used evicted) and idempotency records (never evicted; full means refused).
import { StoreError, StoreFullError, type Bucket, type ChargeAndClaimResult, type ClaimRequest, type ConsumeMode, type ConsumeResult, type Store } from './store.ts';
import { consumeBuckets, type BucketIo } from './token-bucket.ts';

/*
 * Which part a key lives in follows from the operation that writes it. Budgets (token buckets, written by consume and
 * by chargeAndClaim's charge) may be evicted, least recently used first: losing one only refills a budget early.
 * Records (written by claim, replaceIf and chargeAndClaim's claim) are never evicted before their TTL: a completed
 * record that vanished would let a retry execute a second time. So one consumer's traffic can never push another's
 * record out; when the records part is full, a new record is refused with StoreFullError instead. The gateway never
 * writes one key both ways (budgets and records have different key kinds, src/store/keys.ts).
 */

/** A budget: its place in the recency list of the budgets part. */
interface Entry {
  readonly key: string;
  value: string;
  expiresAt: number;
  bytes: number;
  /** Neighbours in recency order; undefined at either end of the list. */
  older: Entry | undefined;
  newer: Entry | undefined;
}

/** A record: never evicted, so it needs no recency. */
interface RecordEntry {
  value: string;
  expiresAt: number;
  bytes: number;
}

export interface MemoryStoreOptions {
  /** Bound of the budgets part (store.memory.max_entries): beyond it the least recently used budget is evicted. */
  maxEntries: number;
  /** Bound of the budgets part in bytes (store.memory.max_bytes). */
  maxBytes: number;
  /** Bounds of the records part (store.memory.records): never evicted, a write beyond them is refused. Default DEFAULT_RECORD_BOUNDS. */
  records?: { maxEntries: number; maxBytes: number };
  /** How often expired entries are swept; between sweeps they are dropped when touched, and expired records when room is needed. */
  sweepIntervalMs?: number;
  /** Injectable clock for tests. */
  clock?: () => number;
}

/** The records part's bounds when none are given; the config's own defaults are in src/config/schema.ts (store.memory.records). */
export const DEFAULT_RECORD_BOUNDS = { maxEntries: 100_000, maxBytes: 64 * 1024 * 1024 };

/** What one part holds now, for the agentgate_memory_store_* metrics. */
export interface MemoryStorePartStats {
  readonly entries: number;
  readonly bytes: number;
  readonly maxEntries: number;
  readonly maxBytes: number;
  /** Entries removed to make room (budgets only: records are never evicted), since the store started. */
  readonly evictions: number;
  /** Writes refused for room, since the store started. */
  readonly refusals: number;
}

export interface MemoryStoreStats {
  readonly budgets: MemoryStorePartStats;
  readonly records: MemoryStorePartStats;
}

/**
 * What an entry holds on V8's heap beyond its two strings, measured (node 24, x64: fill a store in a fresh process,
 * collect, divide the heap's growth by the entries): a budget's Entry with its LRU links, its Map slot and its expiry
 * (about 170 bytes); a record's likewise without the links (about 140).
 */
const BUDGET_OVERHEAD_BYTES = 170;
const RECORD_OVERHEAD_BYTES = 140;
/**
 * RSS per byte of heap the entries hold, with the node flags the gateway ships with (`--heap-growing-percent=20` lets
 * the old generation grow a fifth over what survives, not up to 4 times): test/bench/store-rss.ts measured 1.0 to 1.05
 * (docs/performance.md, "Memory"); a tenth more keeps max_bytes an upper bound. Under node's default heap growth RSS
 * grew about 1.7 bytes per byte of heap.
 */
const HEAP_TO_RSS = 1.1;
/** A character V8 cannot keep in a one-byte string. */
const TWO_BYTE = /[^\x00-\xff]/;

/** A string's bytes as V8 keeps it: one byte per character, two when any character is beyond Latin-1. */
function stringBytes(text: string): number {
  return TWO_BYTE.test(text) ? text.length * 2 : text.length;
}

/** What a budget counts against max_bytes: the RSS its key, value and objects take. */
export function budgetBytes(key: string, value: string): number {
  return entryBytes(key, value, BUDGET_OVERHEAD_BYTES);
}

/** What a record counts against records.max_bytes. */
export function recordBytes(key: string, value: string): number {
  return entryBytes(key, value, RECORD_OVERHEAD_BYTES);
}

function entryBytes(key: string, value: string, overhead: number): number {
  return Math.ceil((stringBytes(key) + stringBytes(value) + overhead) * HEAP_TO_RSS);
}

export class MemoryStore implements Store {
  readonly kind = 'memory';

  // ---- the budgets part ----
  private readonly entries = new Map<string, Entry>();
  /**
   * Recency is kept in a list through the entries themselves, so using or updating an entry never changes the Map.
   * (Deleting and re-inserting into the Map, and iterating it to find the oldest, cost more than everything else the
   * store did: a Map keeps deleted slots until it is rebuilt, and every iteration walks past them.)
   */
  private oldest: Entry | undefined;
  private newest: Entry | undefined;
  private bytes = 0;
  private readonly maxEntries: number;
  private readonly maxBytes: number;
  private evictions = 0;
  private refusals = 0;
  /** consumeBuckets' reads and writes, made once rather than per call: every request charges a budget. */
  private readonly bucketIo: BucketIo = {
    read: (key) => this.live(key)?.value ?? null,
    write: (key, value, ttlMs) => (value === null ? this.remove(key) : this.put('consume', key, value, ttlMs)),
  };

  // ---- the records part ----
  private readonly records = new Map<string, RecordEntry>();
  private recordBytes = 0;
  private readonly maxRecords: number;
  private readonly maxRecordBytes: number;
  private recordRefusals = 0;
  /**
   * No record expires before this (store clock, ms): exact after a sweep, lowered by writes, not raised by removals.
   * A full records part is swept for expired records only once the clock has passed it, so refusing a write when
   * nothing can have expired costs nothing; a sweep makes it exact again, so one runs at most once per record that
   * expires or whose expiry a replace moved.
   */
  private recordsExpireFrom = Infinity;

  private readonly clock: () => number;
  private readonly sweeper: NodeJS.Timeout;

  constructor(options: MemoryStoreOptions) {
    this.maxEntries = options.maxEntries;
    this.maxBytes = options.maxBytes;
    this.maxRecords = options.records?.maxEntries ?? DEFAULT_RECORD_BOUNDS.maxEntries;
    this.maxRecordBytes = options.records?.maxBytes ?? DEFAULT_RECORD_BOUNDS.maxBytes;
    this.clock = options.clock ?? Date.now;
    this.sweeper = setInterval(() => this.sweep(), options.sweepIntervalMs ?? 10_000);
    this.sweeper.unref();
  }

  /** Entries of both parts (expired ones included until touched or swept). */
  get size(): number {
    return this.entries.size + this.records.size;
  }

  /** Bytes of both parts, as counted against their bounds. */
  get usedBytes(): number {
    return this.bytes + this.recordBytes;
  }

  stats(): MemoryStoreStats {
    return {
      budgets: { entries: this.entries.size, bytes: this.bytes, maxEntries: this.maxEntries, maxBytes: this.maxBytes, evictions: this.evictions, refusals: this.refusals },
      records: {
        entries: this.records.size,
        bytes: this.recordBytes,
        maxEntries: this.maxRecords,
        maxBytes: this.maxRecordBytes,
        evictions: 0,
        refusals: this.recordRefusals,
      },
    };
  }

  async get(key: string): Promise<string | null> {
    return (this.liveRecord(key, this.clock()) ?? this.live(key))?.value ?? null;
  }

  async claim(key: string, value: string, ttlMs: number): Promise<string | null> {
    const claimed = this.claimNow(key, value, ttlMs);
    if (claimed === undefined) throw this.full('claim', key, value, undefined);
    return claimed;
  }

  async replaceIf(key: string, expected: string, value: string, ttlMs: number): Promise<boolean> {
    const now = this.clock();
    const current = this.liveRecord(key, now);
    if (current?.value !== expected) return false;
    if (!this.putRecord(key, value, ttlMs, now, current)) throw this.full('replaceIf', key, value, current);
    return true;
  }

  async deleteIf(key: string, expected: string): Promise<boolean> {
    const current = this.liveRecord(key, this.clock());
    if (current?.value !== expected) return false;
    this.removeRecord(key, current);
    return true;
  }

  async now(): Promise<number> {
    return this.clock();
  }

  async consume(buckets: readonly Bucket[], cost: number, mode: ConsumeMode = 'charge'): Promise<ConsumeResult> {
    return consumeBuckets(buckets, cost, mode, this.clock(), this.bucketIo);
  }

  async chargeAndClaim(buckets: readonly Bucket[], cost: number, claim: ClaimRequest): Promise<ChargeAndClaimResult> {
    const consumed = consumeBuckets(buckets, cost, 'charge', this.clock(), this.bucketIo);
    // No room for the record (claimNow answers undefined): the charge stays and the caller claims itself, as after a
    // failed claim on Cluster, and learns why from its own claim(), which counts the refusal.
    return { consumed, claim: consumed.allowed ? this.claimNow(claim.key, claim.value, claim.ttlMs) : undefined };
  }

  async ready(): Promise<boolean> {
    return true;
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    this.entries.clear();
    this.oldest = this.newest = undefined;
    this.bytes = 0;
    this.records.clear();
    this.recordBytes = 0;
    this.recordsExpireFrom = Infinity;
  }

  // The operations proper are synchronous from read to write, so atomic: no other call runs in between.

  /** The value already under key, null when this call claimed it, undefined when there is no room for it. */
  private claimNow(key: string, value: string, ttlMs: number): string | null | undefined {
    const now = this.clock();
    const current = this.liveRecord(key, now);
    if (current) return current.value;
    return this.putRecord(key, value, ttlMs, now, undefined) ? null : undefined;
  }

  // ---- records: never evicted ----

  /** The unexpired record under key, as of `now`. */
  private liveRecord(key: string, now: number): RecordEntry | undefined {
    const record = this.records.get(key);
    if (!record) return undefined;
    if (record.expiresAt <= now) {
      this.removeRecord(key, record);
      return undefined;
    }
    return record;
  }

  /**
   * Writes a record (`existing`: the live record under key, to replace); false when it does not fit even after expired
   * records have made room. Nothing is evicted for it, and a write that does not fit changes nothing.
   */
  private putRecord(key: string, value: string, ttlMs: number, now: number, existing: RecordEntry | undefined): boolean {
    const bytes = recordBytes(key, value);
    const grows = existing ? 0 : 1;
    const delta = bytes - (existing?.bytes ?? 0);
    if (this.records.size + grows > this.maxRecords || this.recordBytes + delta > this.maxRecordBytes) {
      // `existing` is live at `now`, so a sweep as of `now` keeps it.
      if (now >= this.recordsExpireFrom) this.sweepRecords(now);
      if (this.records.size + grows > this.maxRecords || this.recordBytes + delta > this.maxRecordBytes) return false;
    }
    // Like Redis PX, a TTL is at least 1 ms.
    const expiresAt = now + Math.max(1, Math.ceil(ttlMs));
    if (existing) {
      existing.value = value;
      existing.expiresAt = expiresAt;
      existing.bytes = bytes;
    } else {
      this.records.set(key, { value, expiresAt, bytes });
    }
    this.recordBytes += delta;
    if (expiresAt < this.recordsExpireFrom) this.recordsExpireFrom = expiresAt;
    return true;
  }

  /** A refused record write, counted. */
  private full(operation: string, key: string, value: string, existing: RecordEntry | undefined): StoreFullError {
    this.recordRefusals++;
    const needs = recordBytes(key, value) - (existing?.bytes ?? 0);
    return new StoreFullError(
      operation,
      `the memory store's idempotency records are full (${this.records.size} of ${this.maxRecords} entries, ${this.recordBytes} of ${this.maxRecordBytes} bytes; this write needs ${needs} more bytes)`,
    );
  }

  private removeRecord(key: string, record: RecordEntry): void {
    this.records.delete(key);
    this.recordBytes -= record.bytes;
  }

  /** Drops every record expired as of `now`, and makes recordsExpireFrom exact again. */
  private sweepRecords(now: number): void {
    let earliest = Infinity;
    for (const [key, record] of this.records) {
      if (record.expiresAt <= now) this.removeRecord(key, record);
      else if (record.expiresAt < earliest) earliest = record.expiresAt;
    }
    this.recordsExpireFrom = earliest;
  }

  // ---- budgets: least recently used evicted first ----

  /** The unexpired budget under key, marked as most recently used. */
  private live(key: string): Entry | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.clock()) {
      this.remove(key);
      return undefined;
    }
    this.markUsed(entry);
    return entry;
  }

  private put(operation: string, key: string, value: string, ttlMs: number): void {
    const bytes = budgetBytes(key, value);
    // Storing it would evict it at once, and a caller told "stored" would then lose it: fail like an unreachable store.
    if (bytes > this.maxBytes) {
      this.refusals++;
      throw new StoreError(operation, new Error(`entry of ${bytes} bytes exceeds the memory store's max_bytes (${this.maxBytes})`));
    }
    // Like Redis PX, a TTL is at least 1 ms.
    const expiresAt = this.clock() + Math.max(1, Math.ceil(ttlMs));
    const existing = this.entries.get(key);
    if (existing) {
      this.bytes += bytes - existing.bytes;
      existing.value = value;
      existing.expiresAt = expiresAt;
      existing.bytes = bytes;
      this.markUsed(existing);
    } else {
      const entry: Entry = { key, value, expiresAt, bytes, older: this.newest, newer: undefined };
      this.entries.set(key, entry);
      if (this.newest) this.newest.newer = entry;
      else this.oldest = entry;
      this.newest = entry;
      this.bytes += bytes;
    }
    while (this.oldest && (this.entries.size > this.maxEntries || this.bytes > this.maxBytes)) {
      this.remove(this.oldest.key);
      this.evictions++;
    }
  }

  private remove(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    this.unlink(entry);
    this.bytes -= entry.bytes;
  }

  private markUsed(entry: Entry): void {
    if (entry === this.newest) return;
    this.unlink(entry);
    entry.older = this.newest;
    entry.newer = undefined;
    this.newest!.newer = entry;
    this.newest = entry;
  }

  private unlink(entry: Entry): void {
    if (entry.older) entry.older.newer = entry.newer;
    else this.oldest = entry.newer;
    if (entry.newer) entry.newer.older = entry.older;
    else this.newest = entry.older;
  }

  private sweep(): void {
    const now = this.clock();
    for (const [key, entry] of this.entries) if (entry.expiresAt <= now) this.remove(key);
    this.sweepRecords(now);
  }
}

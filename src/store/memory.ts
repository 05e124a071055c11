// In-process store for a single instance: bounded by entries and bytes (least recently used evicted first), TTLs without per-key timers.
import { StoreError, type Bucket, type ChargeAndClaimResult, type ClaimRequest, type ConsumeMode, type ConsumeResult, type Store } from './store.ts';
import { consumeBuckets } from './token-bucket.ts';

interface Entry {
  readonly key: string;
  value: string;
  expiresAt: number;
  bytes: number;
  /** Neighbours in recency order; undefined at either end of the list. */
  older: Entry | undefined;
  newer: Entry | undefined;
}

export interface MemoryStoreOptions {
  maxEntries: number;
  maxBytes: number;
  /** How often expired entries are swept; between sweeps they are dropped when touched. */
  sweepIntervalMs?: number;
  /** Injectable clock for tests. */
  clock?: () => number;
}

/** Rough per-entry overhead (Map slot, Entry object), so many tiny entries still count against maxBytes. */
const ENTRY_OVERHEAD_BYTES = 96;

export class MemoryStore implements Store {
  readonly kind = 'memory';
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
  private readonly clock: () => number;
  private readonly sweeper: NodeJS.Timeout;

  constructor(options: MemoryStoreOptions) {
    this.maxEntries = options.maxEntries;
    this.maxBytes = options.maxBytes;
    this.clock = options.clock ?? Date.now;
    this.sweeper = setInterval(() => this.sweep(), options.sweepIntervalMs ?? 10_000);
    this.sweeper.unref();
  }

  get size(): number {
    return this.entries.size;
  }

  get usedBytes(): number {
    return this.bytes;
  }

  async get(key: string): Promise<string | null> {
    return this.live(key)?.value ?? null;
  }

  async claim(key: string, value: string, ttlMs: number): Promise<string | null> {
    return this.claimNow(key, value, ttlMs);
  }

  async replaceIf(key: string, expected: string, value: string, ttlMs: number): Promise<boolean> {
    if (this.live(key)?.value !== expected) return false;
    this.put('replaceIf', key, value, ttlMs);
    return true;
  }

  async deleteIf(key: string, expected: string): Promise<boolean> {
    if (this.live(key)?.value !== expected) return false;
    this.remove(key);
    return true;
  }

  async now(): Promise<number> {
    return this.clock();
  }

  async consume(buckets: readonly Bucket[], cost: number, mode: ConsumeMode = 'charge'): Promise<ConsumeResult> {
    return this.consumeNow(buckets, cost, mode);
  }

  async chargeAndClaim(buckets: readonly Bucket[], cost: number, claim: ClaimRequest): Promise<ChargeAndClaimResult> {
    const consumed = this.consumeNow(buckets, cost, 'charge');
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
  }

  // The operations proper are synchronous from read to write, so atomic: no other call runs in between.

  private consumeNow(buckets: readonly Bucket[], cost: number, mode: ConsumeMode): ConsumeResult {
    return consumeBuckets(buckets, cost, mode, this.clock(), {
      read: (key) => this.live(key)?.value ?? null,
      write: (key, value, ttlMs) => (value === null ? this.remove(key) : this.put('consume', key, value, ttlMs)),
    });
  }

  private claimNow(key: string, value: string, ttlMs: number): string | null {
    const current = this.live(key);
    if (current) return current.value;
    this.put('claim', key, value, ttlMs);
    return null;
  }

  /** The unexpired entry under key, marked as most recently used. */
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
    const bytes = (key.length + value.length) * 2 + ENTRY_OVERHEAD_BYTES;
    // Storing it would evict it at once, and a caller told "stored" would then lose it: fail like an unreachable store.
    if (bytes > this.maxBytes) throw new StoreError(operation, new Error(`entry of ${bytes} bytes exceeds the memory store's max_bytes (${this.maxBytes})`));
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
    while (this.oldest && (this.entries.size > this.maxEntries || this.bytes > this.maxBytes)) this.remove(this.oldest.key);
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
  }
}

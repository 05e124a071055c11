// In-process store for a single instance: bounded by entries and bytes (least recently used evicted first), TTLs without per-key timers.
import { StoreError, type Bucket, type ConsumeMode, type ConsumeResult, type Store } from './store.ts';
import { consumeBuckets } from './token-bucket.ts';

interface Entry {
  value: string;
  expiresAt: number;
  bytes: number;
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
  /** Map iteration order is insertion order; re-inserting on use makes the first entry the least recently used. */
  private readonly entries = new Map<string, Entry>();
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
    const current = this.live(key);
    if (current) return current.value;
    this.put('claim', key, value, ttlMs);
    return null;
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
    // Synchronous from read to write, so atomic: no other call runs in between.
    return consumeBuckets(buckets, cost, mode, this.clock(), {
      read: (key) => this.live(key)?.value ?? null,
      write: (key, value, ttlMs) => (value === null ? this.remove(key) : this.put('consume', key, value, ttlMs)),
    });
  }

  async ready(): Promise<boolean> {
    return true;
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    this.entries.clear();
    this.bytes = 0;
  }

  /** The unexpired entry under key, marked as most recently used. */
  private live(key: string): Entry | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.clock()) {
      this.remove(key);
      return undefined;
    }
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry;
  }

  private put(operation: string, key: string, value: string, ttlMs: number): void {
    const bytes = (key.length + value.length) * 2 + ENTRY_OVERHEAD_BYTES;
    // Storing it would evict it at once, and a caller told "stored" would then lose it: fail like an unreachable store.
    if (bytes > this.maxBytes) throw new StoreError(operation, new Error(`entry of ${bytes} bytes exceeds the memory store's max_bytes (${this.maxBytes})`));
    this.remove(key);
    // Like Redis PX, a TTL is at least 1 ms.
    this.entries.set(key, { value, expiresAt: this.clock() + Math.max(1, Math.ceil(ttlMs)), bytes });
    this.bytes += bytes;
    for (const [oldest] of this.entries) {
      if (this.entries.size <= this.maxEntries && this.bytes <= this.maxBytes) break;
      this.remove(oldest);
    }
  }

  private remove(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    this.bytes -= entry.bytes;
  }

  private sweep(): void {
    const now = this.clock();
    for (const [key, entry] of this.entries) if (entry.expiresAt <= now) this.remove(key);
  }
}

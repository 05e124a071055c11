// The small set of atomic operations every policy's shared state is built on; memory and Redis implement it alike.

export interface Store {
  /** 'memory' or 'redis': the store label of agentgate_store_errors_total. */
  readonly kind: 'memory' | 'redis';
  /** The value under key, or null when absent or expired. */
  get(key: string): Promise<string | null>;
  /** Sets key to value with a TTL only if the key is absent (SET NX PX). Returns null when this call claimed it, else the value already there. */
  claim(key: string, value: string, ttlMs: number): Promise<string | null>;
  /** Replaces the value, and its TTL, only if the current value is exactly `expected`. True when replaced. */
  replaceIf(key: string, expected: string, value: string, ttlMs: number): Promise<boolean>;
  /** Deletes the key only if its current value is exactly `expected`. True when deleted. */
  deleteIf(key: string, expected: string): Promise<boolean>;
  /** Milliseconds since the epoch by the store's own clock (Redis TIME), so that replicas agree on time. */
  now(): Promise<number>;
  /** Whether the store can serve operations right now; never throws. */
  ready(): Promise<boolean>;
  close(): Promise<void>;
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

/** Called on every failed operation, for metrics and logs. */
export type StoreErrorListener = (error: StoreError) => void;

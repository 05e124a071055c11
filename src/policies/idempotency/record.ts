// What one idempotency record holds in the store, in each of its states, and its JSON encoding.

/** A request is being executed; `lease` (store clock, ms) says until when its gateway vouches for it. */
export interface PendingRecord {
  readonly state: 'pending';
  readonly fingerprint: string;
  /** Random id of the claim, so that a renewal or a takeover can never be mistaken for another claim's value. */
  readonly owner: string;
  readonly lease: number;
  readonly started: number;
}

/** The upstream's complete answer, replayed to every retry. */
export interface CompletedRecord {
  readonly state: 'completed';
  readonly fingerprint: string;
  readonly status: number;
  /** Allow-listed response headers, each name with all its values. */
  readonly headers: readonly (readonly [string, string | readonly string[]])[];
  /** base64 */
  readonly body: string;
}

/** The upstream answered completely, but the answer cannot be replayed (too large to store, or not fully read). */
export interface NotReplayableRecord {
  readonly state: 'not_replayable';
  readonly fingerprint: string;
  readonly status: number;
  readonly reason: 'response_too_large' | 'response_not_read';
}

/** The request reached the upstream but no complete answer came back: it may or may not have taken effect. */
export interface UnknownRecord {
  readonly state: 'unknown';
  readonly fingerprint: string;
  readonly reason: UnknownReason;
}

export type UnknownReason = 'upstream_timeout' | 'upstream_error' | 'upstream_aborted' | 'client_closed' | 'gateway_lost' | 'gateway_error';

export type IdempotencyRecord = PendingRecord | CompletedRecord | NotReplayableRecord | UnknownRecord;

export function encodeRecord(record: IdempotencyRecord): string {
  return JSON.stringify(record);
}

/** Decodes a stored value; undefined for anything that is not a record this version wrote (treated like a foreign key). */
export function decodeRecord(value: string): IdempotencyRecord | undefined {
  try {
    const record = JSON.parse(value) as Partial<IdempotencyRecord> | null;
    if (record === null || typeof record !== 'object' || typeof record.fingerprint !== 'string') return undefined;
    switch (record.state) {
      case 'pending':
        return typeof record.lease === 'number' && typeof record.owner === 'string' ? (record as PendingRecord) : undefined;
      case 'completed':
        return typeof record.status === 'number' && typeof record.body === 'string' && Array.isArray(record.headers) ? (record as CompletedRecord) : undefined;
      case 'not_replayable':
        return typeof record.status === 'number' ? (record as NotReplayableRecord) : undefined;
      case 'unknown':
        return record as UnknownRecord;
      default:
        return undefined;
    }
  } catch {
    return undefined;
  }
}

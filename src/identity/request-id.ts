// Request ids (X-Request-Id) and W3C trace context (traceparent) for every request that passes the gateway.
import { randomFillSync } from 'node:crypto';

const VALID_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** Random bytes are drawn in batches: one syscall per 512 ids instead of one per id. */
const pool = Buffer.alloc(8192);
let poolOffset = pool.length;
function randomBytes(n: number): Buffer {
  if (poolOffset + n > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const out = pool.subarray(poolOffset, poolOffset + n);
  poolOffset += n;
  return out;
}

/** The caller's id when it is a single valid one; otherwise a fresh UUIDv7 (time-ordered, so logs sort by it). */
export function requestIdFrom(header: string | string[] | undefined): string {
  if (typeof header === 'string' && VALID_REQUEST_ID.test(header)) return header;
  return uuidv7();
}

export function uuidv7(): string {
  const bytes = Buffer.from(randomBytes(16));
  const ms = Date.now();
  bytes.writeUIntBE(ms, 0, 6);
  bytes[6] = (bytes[6]! & 0x0f) | 0x70;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export interface TraceContext {
  readonly traceId: string;
  /** The traceparent to send upstream: the caller's trace, with this hop as the parent. */
  readonly traceparent: string;
}

/**
 * Continues the caller's trace when its traceparent is valid (W3C Trace Context level 1), starting a new one otherwise.
 * The gateway is a hop of its own, so the upstream sees a fresh parent id.
 */
export function traceContextFrom(header: string | string[] | undefined): TraceContext {
  const spanId = randomBytes(8).toString('hex');
  if (typeof header === 'string') {
    const m = TRACEPARENT.exec(header.trim());
    if (m && m[1] !== 'ff' && !/^0+$/.test(m[2]!) && !/^0+$/.test(m[3]!)) {
      return { traceId: m[2]!, traceparent: `00-${m[2]}-${spanId}-${m[4]}` };
    }
  }
  const traceId = randomBytes(16).toString('hex');
  return { traceId, traceparent: `00-${traceId}-${spanId}-01` };
}

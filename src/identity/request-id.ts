// Request ids (X-Request-Id) and W3C trace context (traceparent) for every request that passes the gateway.
import { randomFillSync } from 'node:crypto';

const VALID_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/**
 * W3C Trace Context level 1: version, trace id, parent id, flags, in lower-case hex. Version 00 is exactly these four
 * fields; a later version starts with them and may add more after a '-', which a version-00 reader ignores (section 4.3).
 */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/s;

/** Random hex is drawn in batches: one syscall and one hex conversion per couple of hundred requests instead of several per request. */
const POOL_BYTES = 8192;
let hexPool = '';
let hexOffset = 0;
function randomHex(chars: number): string {
  if (hexOffset + chars > hexPool.length) {
    hexPool = randomFillSync(Buffer.allocUnsafe(POOL_BYTES)).toString('hex');
    hexOffset = 0;
  }
  return hexPool.slice(hexOffset, (hexOffset += chars));
}

/** The caller's id when it is a single valid one; otherwise a fresh UUIDv7 (time-ordered, so logs sort by it). */
export function requestIdFrom(header: string | string[] | undefined): string {
  if (typeof header === 'string' && VALID_REQUEST_ID.test(header)) return header;
  return uuidv7();
}

const VARIANT_DIGITS = '89ab';

/** The hex milliseconds of the last id, kept for the millisecond they name: V8 formats a number in base 16 digit by digit. */
let timeMs = -1;
let timeHex = '';

/** RFC 9562 UUIDv7: 48 bits of Unix milliseconds, version 7, 74 random bits with the RFC variant. */
export function uuidv7(): string {
  const now = Date.now();
  if (now !== timeMs) {
    timeMs = now;
    timeHex = now.toString(16).padStart(12, '0');
  }
  const time = timeHex;
  const random = randomHex(19);
  const variant = VARIANT_DIGITS[Number.parseInt(random[3]!, 16) & 3];
  return `${time.slice(0, 8)}-${time.slice(8)}-7${random.slice(0, 3)}-${variant}${random.slice(4, 7)}-${random.slice(7)}`;
}

export interface TraceContext {
  readonly traceId: string;
  /** The traceparent to send upstream: the caller's trace, with this hop as the parent. */
  readonly traceparent: string;
  /**
   * Whether the caller's traceparent was valid and its trace is continued. Only then does its tracestate travel on:
   * a tracestate belongs to the traceparent it came with, never to a trace the gateway started.
   */
  readonly continued: boolean;
}

const ZEROS = /^0+$/;

/**
 * Continues the caller's trace when its traceparent is valid (W3C Trace Context level 1), starting a new one otherwise.
 * The gateway is a hop of its own, so the upstream sees a fresh parent id. A traceparent of a later version than 00
 * is read as its version-00 fields (what follows them after a '-' is ignored) and only its sampled flag is carried
 * on, since its other flags may mean what version 00 does not know; the gateway speaks version 00 to the upstream.
 */
export function traceContextFrom(header: string | string[] | undefined): TraceContext {
  const spanId = nonZeroHex(16);
  if (typeof header === 'string') {
    const m = TRACEPARENT.exec(header.trim());
    if (m) {
      const [, version, traceId, parentId, flags, rest] = m as unknown as [string, string, string, string, string, string | undefined];
      const valid = version !== 'ff' && (version !== '00' || rest === undefined) && !ZEROS.test(traceId) && !ZEROS.test(parentId);
      if (valid) {
        const carried = version === '00' ? flags : (Number.parseInt(flags, 16) & 1).toString(16).padStart(2, '0');
        return { traceId, traceparent: `00-${traceId}-${spanId}-${carried}`, continued: true };
      }
    }
  }
  const traceId = nonZeroHex(32);
  return { traceId, traceparent: `00-${traceId}-${spanId}-01`, continued: false };
}

/** All zeros is no valid trace or parent id; 2^-64 odds, but the gateway never sends one. */
function nonZeroHex(chars: number): string {
  let hex = randomHex(chars);
  while (ZEROS.test(hex)) hex = randomHex(chars);
  return hex;
}

// Is a non-2xx answer a valid error envelope (CONTRACT §3-4)? Returns what is wrong with it, never throws.
import type { IncomingHttpHeaders } from 'node:http';

/** The codes CONTRACT §4 says the catalog holds at least; the run adds whatever GET /_agentgate/errors lists. */
export const CONTRACT_CODES = [
  'INVALID_REQUEST', 'UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'ROUTE_NOT_FOUND', 'CONFLICT', 'VALIDATION_FAILED',
  'PAYLOAD_TOO_LARGE', 'IDEMPOTENCY_KEY_REQUIRED', 'IDEMPOTENCY_KEY_INVALID', 'IDEMPOTENCY_IN_PROGRESS', 'IDEMPOTENCY_KEY_REUSED',
  'IDEMPOTENCY_OUTCOME_UNKNOWN', 'RATE_LIMITED', 'COST_EXCEEDS_BUDGET', 'UPSTREAM_RATE_LIMITED', 'UPSTREAM_ERROR',
  'UPSTREAM_UNAVAILABLE', 'UPSTREAM_TIMEOUT', 'SILENT_FAILURE', 'CIRCUIT_OPEN', 'STORE_UNAVAILABLE', 'GATEWAY_ERROR',
];

/** Every member of the envelope the contract shows (RFC 9457's plus agentgate's). */
const MEMBERS = ['type', 'title', 'status', 'detail', 'code', 'retryable', 'retry_after_seconds', 'suggestion', 'request_id', 'upstream_status'];

export interface Envelope {
  code: string;
  status: number;
  retryable: boolean;
  retry_after_seconds: number | null;
  [member: string]: unknown;
}

export type EnvelopeCheck = { ok: true; envelope: Envelope } | { ok: false; problem: string };

/**
 * Checks one answer against the contract: application/problem+json, a JSON object with every member, `status` equal to
 * the HTTP status, `type` naming a catalog `code`, `retryable` a boolean echoed by X-Should-Retry, `request_id` equal
 * to X-Request-Id, and Retry-After (whole seconds ≥ 1, equal to retry_after_seconds) on every retryable 429 and 503.
 */
export function checkEnvelope(status: number, headers: IncomingHttpHeaders, body: Buffer, codes: ReadonlySet<string>): EnvelopeCheck {
  const contentType = headers['content-type'];
  if (!contentType?.startsWith('application/problem+json')) return { ok: false, problem: `content-type is '${contentType ?? ''}', not application/problem+json` };
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return { ok: false, problem: `body is not JSON: ${JSON.stringify(body.subarray(0, 120).toString())}` };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return { ok: false, problem: 'body is not a JSON object' };
  const e = parsed as Record<string, unknown>;
  const missing = MEMBERS.filter((m) => !(m in e));
  if (missing.length > 0) return { ok: false, problem: `members missing: ${missing.join(', ')}` };
  if (e.status !== status) return { ok: false, problem: `body status ${String(e.status)} differs from HTTP status ${status}` };
  if (typeof e.code !== 'string' || !codes.has(e.code)) return { ok: false, problem: `code ${String(e.code)} is not in the catalog` };
  if (e.type !== `/_agentgate/errors/${e.code}`) return { ok: false, problem: `type ${String(e.type)} does not name code ${e.code}` };
  if (typeof e.title !== 'string' || e.title === '') return { ok: false, problem: 'title is not a non-empty string' };
  if (typeof e.detail !== 'string') return { ok: false, problem: 'detail is not a string' };
  if (typeof e.retryable !== 'boolean') return { ok: false, problem: 'retryable is not a boolean' };
  if (headers['x-should-retry'] !== String(e.retryable)) return { ok: false, problem: `X-Should-Retry '${String(headers['x-should-retry'])}' differs from retryable ${e.retryable}` };
  if (typeof e.request_id !== 'string' || e.request_id === '') return { ok: false, problem: 'request_id is not a non-empty string' };
  if (headers['x-request-id'] !== e.request_id) return { ok: false, problem: `X-Request-Id '${String(headers['x-request-id'])}' differs from request_id '${e.request_id}'` };
  const retryAfter = headers['retry-after'];
  if (retryAfter !== undefined) {
    if (!/^[1-9]\d*$/.test(retryAfter)) return { ok: false, problem: `Retry-After '${retryAfter}' is not whole seconds ≥ 1` };
    if (e.retry_after_seconds !== Number(retryAfter)) return { ok: false, problem: `retry_after_seconds ${String(e.retry_after_seconds)} differs from Retry-After ${retryAfter}` };
  } else if ((status === 429 || status === 503) && e.retryable) {
    return { ok: false, problem: `a retryable ${status} without Retry-After` };
  }
  return { ok: true, envelope: e as Envelope };
}

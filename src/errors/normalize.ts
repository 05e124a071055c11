// Turns an upstream's own 4xx/5xx answer into the gateway's envelope: its status kept, its 4xx explanation passed on, 5xx internals never.
import type { IncomingHttpHeaders } from 'node:http';
import { ERROR_CATALOG, type ErrorCode } from './catalog.ts';
import { GatewayError } from './problem.ts';
import { clipText, redactSecrets } from './redact.ts';


/** A route's reinterpretation of an upstream status, for APIs whose codes mean something else. */
export interface StatusOverride {
  readonly code: ErrorCode;
  readonly retryable?: boolean;
  readonly suggestion?: string;
}

/** Wait given when an upstream asks agents to back off (429, 503) without saying for how long. */
export const DEFAULT_UPSTREAM_RETRY_AFTER_SECONDS = 5;
/** Longest wait passed on: an upstream asking for more is probably wrong, and an agent would rather ask a human. */
const MAX_RETRY_AFTER_SECONDS = 86_400;
/** How much of an upstream's 4xx explanation reaches the agent. */
const MAX_EXPLANATION_CHARS = 500;
const MAX_UPSTREAM_MEMBER_BYTES = 4096;

const BY_STATUS: Record<number, ErrorCode> = {
  400: 'INVALID_REQUEST',
  401: 'UNAUTHENTICATED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  408: 'UPSTREAM_TIMEOUT',
  409: 'CONFLICT',
  413: 'PAYLOAD_TOO_LARGE',
  422: 'VALIDATION_FAILED',
  429: 'UPSTREAM_RATE_LIMITED',
  500: 'UPSTREAM_ERROR',
  502: 'UPSTREAM_ERROR',
  503: 'UPSTREAM_UNAVAILABLE',
  504: 'UPSTREAM_TIMEOUT',
};

export function codeForStatus(status: number): ErrorCode {
  return BY_STATUS[status] ?? (status >= 500 ? 'UPSTREAM_ERROR' : 'INVALID_REQUEST');
}

export interface UpstreamErrorInput {
  status: number;
  headers: IncomingHttpHeaders;
  /** The first bytes of the upstream's body (bounded by the caller); only read for 4xx. */
  body: Buffer;
  upstream: string;
  override?: StatusOverride;
  /** Values that must never reach an agent (the credentials the gateway injects), in case the upstream echoes them. */
  secrets?: readonly string[];
  nowMs?: number;
}

export function normalizeUpstreamError(input: UpstreamErrorInput): GatewayError {
  const { status, headers, upstream, override } = input;
  const code = override?.code ?? codeForStatus(status);
  // A status the route reinterprets means what its new code means; otherwise "not now" statuses and 5xx are retryable.
  const retryable =
    override?.retryable ?? (override || !(status === 408 || status === 425 || status === 429 || status >= 500) ? ERROR_CATALOG[code].retryable : true);
  let retryAfter = parseRetryAfter(headers['retry-after'], input.nowMs ?? Date.now());
  if (retryAfter === undefined && (status === 429 || status === 503) && retryable) retryAfter = DEFAULT_UPSTREAM_RETRY_AFTER_SECONDS;

  let detail: string;
  let extensions: Record<string, unknown> | undefined;
  if (status < 500) {
    const explanation = explain(input.body, headers['content-type']);
    const secrets = input.secrets ?? [];
    const what = status === 429 ? `is rate limiting this gateway (429)` : `answered ${status}`;
    // Redacted first, then clipped: a clip that cut an echoed secret would leave a prefix no redaction recognizes.
    // (The envelope is redacted and clipped again where it is serialized; this keeps the error itself clean.)
    const text = clipText(redactSecrets(explanation.text, secrets), MAX_EXPLANATION_CHARS);
    detail = `Upstream '${upstream}' ${what}${text ? `: ${text}` : '.'}`;
    if (explanation.member !== undefined) extensions = { upstream: redactSecrets(explanation.member, secrets) };
  } else {
    // Stack traces, HTML error pages and internal host names stay behind the gateway.
    detail = `Upstream '${upstream}' failed with HTTP ${status}.`;
  }
  return new GatewayError(code, detail, {
    status,
    upstreamStatus: status,
    retryable,
    ...(retryAfter === undefined || !retryable ? {} : { retryAfterSeconds: retryAfter }),
    ...(override?.suggestion ? { suggestion: override.suggestion } : {}),
    ...(extensions ? { extensions } : {}),
  });
}

/** Retry-After in whole seconds (RFC 9110: delay-seconds or an HTTP-date), clamped to 1 s – 1 day; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | string[] | undefined, nowMs: number): number | undefined {
  const text = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!text) return undefined;
  let seconds: number;
  if (/^\d+(\.\d+)?$/.test(text)) seconds = Math.ceil(Number(text));
  else {
    // An HTTP-date names a weekday and month; anything else (a negative number, a bare year) is no wait we can trust.
    const at = /[A-Za-z]{3}/.test(text) ? Date.parse(text) : Number.NaN;
    if (Number.isNaN(at)) return undefined;
    seconds = Math.ceil((at - nowMs) / 1000);
  }
  return Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(1, seconds));
}

/** The upstream's own words for a 4xx, unclipped (it is clipped once redacted): a message out of its JSON, or plain text; never HTML. */
function explain(body: Buffer, contentType: string | undefined): { text: string; member?: unknown } {
  const type = (contentType ?? '').toLowerCase();
  const text = body.toString('utf8').trim();
  if (text === '' || type.includes('html') || /^<(!doctype|html)/i.test(text)) return { text: '' };
  if (type.includes('json') || /^[[{]/.test(text)) {
    try {
      const parsed: unknown = JSON.parse(text);
      return { text: messageOf(parsed) ?? text, member: body.length <= MAX_UPSTREAM_MEMBER_BYTES ? parsed : undefined };
    } catch {
      // a truncated or broken JSON body: fall through to plain text
    }
  }
  return { text: text.replace(/\s+/g, ' ') };
}

/** Keys an error body puts its human-readable message under, most specific first. */
const MESSAGE_KEYS = ['message', 'msg', 'error_description', 'detail', 'error', 'title'];
/** Keys of lists of individual (field) errors, reported beside the summary message. */
const LIST_KEYS = ['errors', 'details', 'field_errors'];
/** Keys an individual error names its field under (FastAPI's loc is a list of path segments). */
const FIELD_KEYS = ['field', 'param', 'loc', 'pointer', 'property', 'path'];

function messageOf(value: unknown): string | undefined {
  if (typeof value === 'string') return value.trim() || undefined;
  if (Array.isArray(value)) return listOf(value);
  if (value === null || typeof value !== 'object') return undefined;
  const record = value as Record<string, unknown>;
  const main = firstOf(MESSAGE_KEYS, record, messageOf);
  const list = firstOf(LIST_KEYS, record, (v) => (Array.isArray(v) ? listOf(v) : fieldMapOf(v)));
  // "order could not be created (item: is required)": the field errors say what to fix.
  return main && list && main !== list ? `${main} (${list})` : (main ?? list);
}

/** A list of errors, each with its field when it names one: "item: is required; quantity: must be positive". */
function listOf(items: unknown[]): string | undefined {
  const parts = items.map((item) => {
    const text = messageOf(item);
    if (!text || item === null || typeof item !== 'object' || Array.isArray(item)) return text;
    const record = item as Record<string, unknown>;
    const field = FIELD_KEYS.map((k) => record[k]).find((f) => (typeof f === 'string' && f !== '') || (Array.isArray(f) && f.length > 0));
    return field === undefined ? text : `${Array.isArray(field) ? field.join('.') : String(field)}: ${text}`;
  });
  return parts.filter(Boolean).join('; ') || undefined;
}

/** Rails-style {"email": ["is invalid"], "name": ["is too short"]}. */
function fieldMapOf(value: unknown): string | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const parts = Object.entries(value as Record<string, unknown>).map(([field, v]) => {
    const text = messageOf(v);
    return text ? `${field}: ${text}` : undefined;
  });
  return parts.filter(Boolean).join('; ') || undefined;
}

function firstOf(keys: readonly string[], record: Record<string, unknown>, read: (value: unknown) => string | undefined): string | undefined {
  for (const key of keys) {
    const found = read(record[key]);
    if (found) return found;
  }
  return undefined;
}

// Turns an upstream's own 4xx/5xx answer into the gateway's envelope: its status kept, its 4xx explanation passed on, 5xx internals never.
import type { IncomingHttpHeaders } from 'node:http';
import { ERROR_CATALOG, type ErrorCode } from './catalog.ts';
import { GatewayError } from './problem.ts';

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
  nowMs?: number;
}

export function normalizeUpstreamError(input: UpstreamErrorInput): GatewayError {
  const { status, headers, upstream, override } = input;
  const code = override?.code ?? codeForStatus(status);
  const retryable = override?.retryable ?? (status === 408 || status === 425 || status === 429 || status >= 500 ? true : ERROR_CATALOG[code].retryable);
  let retryAfter = parseRetryAfter(headers['retry-after'], input.nowMs ?? Date.now());
  if (retryAfter === undefined && (status === 429 || status === 503) && retryable) retryAfter = DEFAULT_UPSTREAM_RETRY_AFTER_SECONDS;

  let detail: string;
  let extensions: Record<string, unknown> | undefined;
  if (status < 500) {
    const explanation = explain(input.body, headers['content-type']);
    const what = status === 429 ? `is rate limiting this gateway (429)` : `answered ${status}`;
    detail = `Upstream '${upstream}' ${what}${explanation.text ? `: ${explanation.text}` : '.'}`;
    if (explanation.member !== undefined) extensions = { upstream: explanation.member };
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

/** The upstream's own words for a 4xx: a message out of its JSON, or a short plain text; never HTML. */
function explain(body: Buffer, contentType: string | undefined): { text: string; member?: unknown } {
  const type = (contentType ?? '').toLowerCase();
  const text = body.toString('utf8').trim();
  if (text === '' || type.includes('html') || /^<(!doctype|html)/i.test(text)) return { text: '' };
  if (type.includes('json') || /^[[{]/.test(text)) {
    try {
      const parsed: unknown = JSON.parse(text);
      return { text: clip(messageOf(parsed) ?? text), member: body.length <= MAX_UPSTREAM_MEMBER_BYTES ? parsed : undefined };
    } catch {
      // a truncated or broken JSON body: fall through to plain text
    }
  }
  return { text: clip(text.replace(/\s+/g, ' ')) };
}

function messageOf(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) return value.map(messageOf).filter(Boolean).join('; ') || undefined;
  if (value === null || typeof value !== 'object') return undefined;
  const record = value as Record<string, unknown>;
  for (const key of ['message', 'error_description', 'detail', 'error', 'title', 'errors']) {
    const found = messageOf(record[key]);
    if (found) return found;
  }
  return undefined;
}

function clip(text: string): string {
  return text.length > MAX_EXPLANATION_CHARS ? `${text.slice(0, MAX_EXPLANATION_CHARS - 3)}...` : text;
}

// The one place error answers are made: typed GatewayErrors become RFC 9457 problem+json with X-Should-Retry and Retry-After.
import type { ServerResponse } from 'node:http';
import { ERROR_CATALOG, type ErrorCode } from './catalog.ts';
import { clipStrings, redactSecrets } from './redact.ts';

export interface GatewayErrorOptions {
  /** Overrides the catalog's status, e.g. to keep an upstream's own 4xx status. */
  status?: number;
  /** Whole seconds until a retry can succeed, when known; sent as Retry-After. */
  retryAfterSeconds?: number;
  retryable?: boolean;
  suggestion?: string;
  upstreamStatus?: number | null;
  /** Extra problem members (RFC 9457 extensions), e.g. the failing rule of a silent failure. */
  extensions?: Record<string, unknown>;
  /** Extra response headers, e.g. rate-limit headers on a 429. */
  headers?: Record<string, string>;
  cause?: unknown;
}

export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly retryable: boolean;
  readonly retryAfterSeconds: number | undefined;
  readonly suggestion: string;
  readonly upstreamStatus: number | null;
  readonly extensions: Record<string, unknown> | undefined;
  readonly headers: Record<string, string> | undefined;

  constructor(code: ErrorCode, detail: string, options: GatewayErrorOptions = {}) {
    super(detail, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GatewayError';
    const entry = ERROR_CATALOG[code];
    this.code = code;
    this.status = options.status ?? entry.status;
    this.retryable = options.retryable ?? entry.retryable;
    this.retryAfterSeconds = options.retryAfterSeconds === undefined ? undefined : Math.max(1, Math.ceil(options.retryAfterSeconds));
    this.suggestion =
      options.suggestion ??
      (this.retryable && this.retryAfterSeconds !== undefined
        ? `Wait ${this.retryAfterSeconds} second${this.retryAfterSeconds === 1 ? '' : 's'}, then send the same request again.`
        : entry.suggestion);
    this.upstreamStatus = options.upstreamStatus ?? null;
    this.extensions = options.extensions;
    this.headers = options.headers;
  }
}

/** Whole seconds an agent is told to wait when the state store cannot serve a policy. */
const STORE_RETRY_AFTER_SECONDS = 2;

/** 503 STORE_UNAVAILABLE, the one way every policy and endpoint says the state store failed it: retryable after a short wait. */
export function storeUnavailable(detail: string, cause: unknown, suggestion?: string): GatewayError {
  return new GatewayError('STORE_UNAVAILABLE', detail, { retryAfterSeconds: STORE_RETRY_AFTER_SECONDS, cause, ...(suggestion ? { suggestion } : {}) });
}

/** Why a request gets 408 REQUEST_TIMEOUT once its body went silent (server.timeouts.request_body_idle), whoever was reading it. */
export const REQUEST_BODY_STALLED = 'The request body stopped arriving before it was complete, so the request was not completed.';

/**
 * 408 REQUEST_TIMEOUT for a body that stopped arriving, the one way the forwarder and the policies that read bodies say
 * it. The rest of the body is unread, so the connection cannot carry another request.
 */
export function requestBodyStalled(): GatewayError {
  return new GatewayError('REQUEST_TIMEOUT', REQUEST_BODY_STALLED, { headers: { connection: 'close' } });
}

export const PROBLEM_TYPE_BASE = '/_agentgate/errors/';

/** Longest string anywhere in an envelope (detail, suggestion, every extension, keys included); longer ones end in '...'. */
export const MAX_PROBLEM_STRING_CHARS = 500;

/**
 * The envelope as the agent gets it. Whatever an upstream put into it (a 4xx explanation, the upstream member, an
 * error field, schema error paths) may echo the credentials the gateway injected there: `secrets` (the route's
 * upstream's) are redacted from every member, keys and values, nested, in every encoding, and only then are long
 * strings clipped, so a clip never cuts a secret before redaction could recognize it. Creation sites need not remember.
 */
export function problemDocument(error: GatewayError, requestId: string, secrets: readonly string[] = []): Record<string, unknown> {
  const document: Record<string, unknown> = {
    type: PROBLEM_TYPE_BASE + error.code,
    title: ERROR_CATALOG[error.code].title,
    status: error.status,
    detail: error.message,
    code: error.code,
    retryable: error.retryable,
    retry_after_seconds: error.retryAfterSeconds ?? null,
    suggestion: error.suggestion,
    request_id: requestId,
    upstream_status: error.upstreamStatus,
    ...error.extensions,
  };
  const safe = clipStrings(redactSecrets(document, secrets), MAX_PROBLEM_STRING_CHARS);
  // The request id is the caller's own (or the gateway's): it stays exactly the X-Request-Id of the answer.
  safe.request_id = requestId;
  return safe;
}

/** The status, headers and body of an error answer: what sendProblem writes, and what an idempotency record keeps of it. */
export function problemAnswer(
  error: GatewayError,
  requestId: string,
  secrets: readonly string[] = [],
): { status: number; headers: Record<string, string>; body: string } {
  const headers: Record<string, string> = redactSecrets({ ...error.headers }, secrets);
  if (error.retryAfterSeconds !== undefined) headers['retry-after'] = String(error.retryAfterSeconds);
  headers['x-should-retry'] = error.retryable ? 'true' : 'false';
  headers['content-type'] = 'application/problem+json';
  headers['cache-control'] = 'no-store';
  return { status: error.status, headers, body: JSON.stringify(problemDocument(error, requestId, secrets)) };
}

/**
 * Answers with the error's envelope. When the response has already started (an upstream died mid-body),
 * the only honest signal left is to cut the connection, so the client sees a broken response, never a short "success".
 */
export function sendProblem(res: ServerResponse, error: GatewayError, requestId: string, secrets: readonly string[] = []): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const answer = problemAnswer(error, requestId, secrets);
  for (const [name, value] of Object.entries(answer.headers)) res.setHeader(name, value);
  res.setHeader('content-length', Buffer.byteLength(answer.body));
  res.statusCode = answer.status;
  res.end(res.req.method === 'HEAD' ? undefined : answer.body);
}

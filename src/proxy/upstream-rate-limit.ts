// An upstream's own 429 becomes an UPSTREAM_RATE_LIMITED envelope with a whole-second Retry-After, whatever form (or none) the upstream gave.
// Only the 429 case lives here; a general normalizer of upstream errors can take it over unchanged (same inputs, same result).
import type { IncomingMessage } from 'node:http';
import { GatewayError } from '../errors/problem.ts';

/** Wait given when an upstream answers 429 without a usable Retry-After. */
export const DEFAULT_UPSTREAM_RETRY_AFTER_SECONDS = 5;
/** Longest wait passed on: an upstream asking for more is probably wrong. */
const MAX_RETRY_AFTER_SECONDS = 86_400;
/** How much of the upstream's body is read for its explanation; the rest is discarded. */
const MAX_EXPLANATION_BYTES = 8 * 1024;
const MAX_EXPLANATION_CHARS = 300;

/**
 * Reads (bounded, within `idleTimeoutMs` of silence) and discards the upstream's 429 body, and returns the envelope:
 * status 429 kept, upstream_status 429, retryable, Retry-After from the upstream's delay-seconds or HTTP-date.
 */
export async function upstreamRateLimited(response: IncomingMessage, upstream: string, idleTimeoutMs: number, nowMs = Date.now()): Promise<GatewayError> {
  const retryAfter = parseRetryAfter(response.headers['retry-after'], nowMs) ?? DEFAULT_UPSTREAM_RETRY_AFTER_SECONDS;
  const explanation = explain(await readHead(response, idleTimeoutMs), response.headers['content-type']);
  return new GatewayError('UPSTREAM_RATE_LIMITED', `Upstream '${upstream}' is rate limiting this gateway (429)${explanation ? `: ${explanation}` : '.'}`, {
    status: 429,
    upstreamStatus: 429,
    retryAfterSeconds: retryAfter,
  });
}

/** Retry-After in whole seconds (RFC 9110: delay-seconds or an HTTP-date), rounded up and kept within 1 s – 1 day; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | string[] | undefined, nowMs: number): number | undefined {
  const text = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!text) return undefined;
  let seconds: number;
  if (/^\d+(\.\d+)?$/.test(text)) seconds = Math.ceil(Number(text));
  else {
    // An HTTP-date names a weekday and a month; anything else (a negative number, a bare year) is no wait to trust.
    const at = /[A-Za-z]{3}/.test(text) ? Date.parse(text) : Number.NaN;
    if (Number.isNaN(at)) return undefined;
    seconds = Math.ceil((at - nowMs) / 1000);
  }
  return Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(1, seconds));
}

/** The first bytes of the body; the rest is drained so the connection can be reused. Resolves with what came, however the body ends. */
function readHead(response: IncomingMessage, idleTimeoutMs: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = () => {
      clearTimeout(idle);
      resolve(Buffer.concat(chunks).subarray(0, MAX_EXPLANATION_BYTES));
    };
    const idle = setTimeout(() => {
      response.destroy();
      finish();
    }, idleTimeoutMs);
    response.on('data', (chunk: Buffer) => {
      idle.refresh();
      if (size < MAX_EXPLANATION_BYTES) chunks.push(chunk);
      size += chunk.length;
    });
    response.once('end', finish);
    response.once('error', finish);
    response.once('close', finish);
  });
}

/** The upstream's own words: a message out of its JSON, or a short plain text; never HTML. */
function explain(body: Buffer, contentType: string | undefined): string {
  const text = body.toString('utf8').trim();
  if (text === '' || (contentType ?? '').toLowerCase().includes('html') || text.startsWith('<')) return '';
  let message: string | undefined;
  if (/^[[{"]/.test(text)) {
    try {
      message = messageOf(JSON.parse(text));
    } catch {
      // truncated or broken JSON: used as plain text
    }
  }
  const words = (message ?? text).replace(/\s+/g, ' ');
  return words.length > MAX_EXPLANATION_CHARS ? `${words.slice(0, MAX_EXPLANATION_CHARS - 3)}...` : words;
}

function messageOf(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  for (const key of ['message', 'error_description', 'detail', 'error', 'title']) {
    const found = messageOf((value as Record<string, unknown>)[key]);
    if (found) return found;
  }
  return undefined;
}

// One approval: a durable record on the gateway, bound to the agent and the exact request it covers, never something the
// client asserts in-band. What it says, how its id looks, and the bounded, redacted preview a person decides on.
import { randomBytes } from 'node:crypto';
import { KEY_IN_TEXT_PATTERN } from '../agents/keys.ts';
import { decodeBody } from '../proxy/body.ts';

/** Who grants it: the agent itself, confirming after the preview (a checkpoint), or a person. */
export type ApprovalBy = 'agent' | 'human';

/**
 * pending: waiting for the agent's confirmation or a person's decision; approved: a person said yes, the agent may
 * execute; denied: a person said no; executed: used, once. "expired" is no stored status: a pending or approved record
 * past expires_at (by the store's clock) is expired.
 */
export type StoredStatus = 'pending' | 'approved' | 'denied' | 'executed';
export type ApprovalStatus = StoredStatus | 'expired';

export interface ApprovalPreview {
  readonly method: string;
  /** The path as forwarded, without the query. */
  readonly path: string;
  /** The query string (without '?'), sensitive parameters redacted, bounded. */
  readonly query?: string;
  readonly content_type?: string;
  readonly content_encoding?: string;
  /** Bytes as sent (compressed, if it was). */
  readonly body_bytes: number;
  /** A bounded summary of the body: JSON re-serialized with sensitive members redacted, text as text, else a note. */
  readonly body?: string;
  /** Set when the summary is shorter than the body. */
  readonly body_truncated?: boolean;
}

export interface Approval {
  readonly id: string;
  readonly route: string;
  readonly by: ApprovalBy;
  /** The consumer id of the agent that asked (agent:<id>, jwt:<sub>, or a hashed self-asserted identity). */
  readonly agent: string;
  /** The request it covers: method, path, query and body, hashed (src/policies/fingerprint.ts). */
  readonly fingerprint: string;
  readonly preview: ApprovalPreview;
  readonly status: StoredStatus;
  /** Epoch ms, by the store's clock. */
  readonly created_at: number;
  /** Until then a pending approval can be decided, an approved one executed; epoch ms. */
  readonly expires_at: number;
  /** The request that asked for it. */
  readonly request_id: string;
  readonly decided_at?: number;
  readonly decided_by?: string;
  readonly reason?: string;
  readonly executed_at?: number;
  readonly executed_request_id?: string;
  /** The Idempotency-Key record (hashed) the execution ran under, when the route has idempotency: its replays are no new execution. */
  readonly idempotency?: string;
}

/** `apr_` and 128 random bits: unguessable, so holding an id is no less private than holding the request. */
export function newApprovalId(): string {
  return `apr_${randomBytes(16).toString('base64url')}`;
}

/** What an Approval-Id header may hold; anything else is refused as malformed before the store is asked. */
export const APPROVAL_ID_PATTERN = /^apr_[A-Za-z0-9_-]{22}$/;

export function statusAt(approval: Approval, now: number): ApprovalStatus {
  return (approval.status === 'pending' || approval.status === 'approved') && now >= approval.expires_at ? 'expired' : approval.status;
}

/** Most characters of a body summary, and of a query, a person is shown (and a webhook is sent). */
const MAX_BODY_SUMMARY = 2000;
const MAX_QUERY = 1000;
/**
 * Member and parameter names whose values are never shown, as whole words of the name (`password`, `api_key`,
 * `X-Session-Token`), so that `bypass` or `passengers` stay visible: a person approves the action, not a password.
 */
const SENSITIVE_NAME = /(^|[^a-z])(pass(word|wd)?|secret|token|api[-_]?key|authorization|credentials?|private[-_]?key|session|cookie|pin|cvv|ssn)($|[^a-z])/i;
const REDACTED = '[redacted]';
/** Most bytes of a compressed body decoded for its preview. */
const MAX_DECODED = 64 * 1024;

/**
 * The preview of a request: what a person needs to decide, bounded, with what looks like a secret redacted. The body
 * is shown as sent (decoded when compressed), not re-serialized: a number beyond JSON's safe range, or a member given
 * twice, reads exactly as the API will read it.
 */
export function previewOf(method: string, target: string, headers: { contentType?: string; contentEncoding?: string }, body: Buffer): ApprovalPreview {
  const q = target.indexOf('?');
  const path = q === -1 ? target : target.slice(0, q);
  const query = q === -1 ? undefined : redactQuery(target.slice(q + 1));
  const { contentType, contentEncoding } = headers;
  const summary = body.length === 0 ? undefined : summarize(body, contentType, contentEncoding);
  return {
    method,
    path,
    ...(query ? { query } : {}),
    ...(contentType ? { content_type: contentType.slice(0, 200) } : {}),
    ...(contentEncoding ? { content_encoding: contentEncoding.slice(0, 100) } : {}),
    body_bytes: body.length,
    ...(summary ? { body: summary.text, ...(summary.truncated ? { body_truncated: true } : {}) } : {}),
  };
}

function redactQuery(query: string): string {
  const params = new URLSearchParams(query);
  const shown = new URLSearchParams();
  for (const [name, value] of params) shown.append(name, SENSITIVE_NAME.test(name) ? REDACTED : redactText(value));
  const text = shown.toString();
  return text.length > MAX_QUERY ? `${text.slice(0, MAX_QUERY)}…` : text;
}

function summarize(raw: Buffer, contentType: string | undefined, contentEncoding: string | undefined): { text: string; truncated: boolean } {
  let body = raw;
  if (contentEncoding && contentEncoding.trim().toLowerCase() !== 'identity') {
    const decoded = decodeBody(raw, contentEncoding, MAX_DECODED, true);
    if (decoded.kind !== 'decoded') return { text: `(${raw.length} bytes, ${contentEncoding}, cannot be shown)`, truncated: false };
    body = decoded.body;
  }
  const text = body.toString('utf8');
  if (text.includes('\uFFFD') || /[\x00-\x08\x0E-\x1F]/.test(text)) return { text: `(${body.length} bytes, not text)`, truncated: false };
  const json = /json/i.test(contentType ?? '') || /^\s*[[{]/.test(text);
  const form = /x-www-form-urlencoded/i.test(contentType ?? '');
  return bounded(json ? redactJsonText(text) : form ? redactQuery(text) : redactText(text));
}

function bounded(text: string): { text: string; truncated: boolean } {
  return text.length > MAX_BODY_SUMMARY ? { text: `${text.slice(0, MAX_BODY_SUMMARY)}…`, truncated: true } : { text, truncated: false };
}

/**
 * A JSON member's name and, when it is a string or a scalar, its value; an object or array value is not taken, so the
 * scan goes on inside it.
 */
const JSON_MEMBER = /"((?:[^"\\]|\\.)*)"(\s*:\s*)("(?:[^"\\]|\\.)*"|[^,{}[\]\s"]+)?/g;

/** The JSON text as sent, the values of secret-named members replaced (an object or array under such a name stays: rare, and then visible). */
function redactJsonText(text: string): string {
  return redactText(
    text.replace(JSON_MEMBER, (member, name: string, colon: string, value: string | undefined) =>
      value !== undefined && SENSITIVE_NAME.test(name) ? `"${name}"${colon}"${REDACTED}"` : member,
    ),
  );
}

/** Agent keys and bearer tokens inside free text. */
function redactText(text: string): string {
  return text.replace(new RegExp(KEY_IN_TEXT_PATTERN, 'g'), REDACTED).replace(/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi, `$1 ${REDACTED}`);
}

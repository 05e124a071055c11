// The Idempotency-Key header (bare token or structured-field string) and the record's scope hash.
import { hash } from 'node:crypto';

export const MAX_KEY_LENGTH = 255;

export type KeyParse =
  | { kind: 'absent' }
  | { kind: 'invalid'; reason: string }
  | { kind: 'valid'; key: string };

/**
 * Every value of one header, in the order sent: what node's headersDistinct holds for it, read from the raw header
 * lines instead of building headersDistinct, a second object of every header of the request, on each idempotent write.
 */
export function headerValues(rawHeaders: readonly string[], name: string): string[] | undefined {
  let values: string[] | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const raw = rawHeaders[i]!;
    if (raw.length === name.length && raw.toLowerCase() === name) (values ??= []).push(rawHeaders[i + 1]!);
  }
  return values;
}

/**
 * Reads the Idempotency-Key from every occurrence of the header (see headerValues), so a key sent twice is
 * refused rather than silently joined with ", ". The draft (draft-ietf-httpapi-idempotency-key-header) makes the
 * value a structured-field String, `"8e03978e-..."`; most clients send the bare value, so both are accepted and
 * `"abc"` and `abc` name the same key.
 */
export function parseIdempotencyKey(values: readonly string[] | undefined): KeyParse {
  if (values === undefined || values.length === 0) return { kind: 'absent' };
  if (values.length > 1) return { kind: 'invalid', reason: `the header was sent ${values.length} times; send it exactly once` };
  const raw = values[0]!;
  let key: string;
  if (raw.startsWith('"')) {
    const decoded = decodeStructuredString(raw);
    if (decoded === undefined) return { kind: 'invalid', reason: 'a value starting with " must be one structured-field string: "..." with only \\" and \\\\ escaped' };
    key = decoded;
  } else {
    key = raw;
  }
  if (key.length === 0) return { kind: 'invalid', reason: 'the key is empty' };
  if (key.length > MAX_KEY_LENGTH) return { kind: 'invalid', reason: `the key is ${key.length} characters long; at most ${MAX_KEY_LENGTH} are allowed` };
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return { kind: 'invalid', reason: `the key contains a character that is not printable ASCII at position ${i + 1}` };
  }
  return { kind: 'valid', key };
}

/** RFC 8941 sf-string: DQUOTE *( unescaped / "\" ( DQUOTE / "\" ) ) DQUOTE, with nothing after the closing quote. */
function decodeStructuredString(raw: string): string | undefined {
  let out = '';
  for (let i = 1; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === '\\') {
      const next = raw[i + 1];
      if (next !== '"' && next !== '\\') return undefined;
      out += next;
      i++;
    } else if (c === '"') {
      return i === raw.length - 1 ? out : undefined;
    } else {
      out += c;
    }
  }
  return undefined; // no closing quote
}

/**
 * The id of a record: consumer, route and the client's key, hashed together (Stripe's scope: a key names one request of
 * one consumer). Method and path are not part of it but of the fingerprint, so the same key sent with another method or
 * path on the route is refused as reused (422), never executed as a second request. Scoped by consumer so that one
 * consumer cannot read or block another's entry, as far as consumers are told apart (a self-asserted header is no proof:
 * see consumers.identify), and hashed so store keys and logs never carry the client's key.
 */
export function recordId(consumerId: string, routeName: string, key: string): string {
  return hash('sha256', `${consumerId}\u0000${routeName}\u0000${key}`, 'base64url');
}

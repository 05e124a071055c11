// Redaction of the values the gateway injects upstream (its credentials), wherever an upstream echoes them back to an
// agent: raw, URL-encoded, JSON-escaped, as a JSON Pointer, in base64 or base64url, whole or cut off.

const REDACTED = '[redacted]';
/** A secret's words shorter than this are not redacted on their own: they could not be told apart from ordinary words. */
export const DEFAULT_MIN_SECRET_CHARS = 8;

/** One way a character of a secret may be written; `caseless` ones (%2f, \u002f) match in either case of their hex digits. */
interface Spelling {
  readonly text: string;
  readonly caseless: boolean;
}

/** What is searched for: a sequence of units, each matched by any of its spellings. */
interface Needle {
  readonly units: readonly (readonly Spelling[])[];
  /** For a needle of one spelling per unit (base64): that text, compared character by character. */
  readonly literal: string | undefined;
  /** Fewest leading units a cut-off occurrence must show to be redacted; undefined: only whole occurrences are. */
  readonly partialMin: number | undefined;
  /** The characters an occurrence can start with. */
  readonly starts: ReadonlySet<string>;
  /** The first unit's raw character, and the characters the second unit can start with: most attempts end there. */
  readonly raw0: number;
  readonly starts1: string;
}

interface Matcher {
  /** By UTF-16 code unit: 1 when an occurrence can start with it (most characters start none). */
  readonly startsOne: Uint8Array;
  /** By UTF-16 code unit: the needles an occurrence starting with it may belong to. */
  readonly byStart: ReadonlyMap<number, readonly Needle[]>;
}

const JSON_SHORT_ESCAPES: Record<string, string> = { '"': '\\"', '\\': '\\\\', '/': '\\/', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t' };
/** RFC 6901: a key holding a secret reaches a JSON Pointer (a schema error's path) with ~ and / escaped. */
const POINTER_ESCAPES: Record<string, string> = { '~': '~0', '/': '~1' };

const hex4 = (unit: number) => unit.toString(16).padStart(4, '0');

/** Every spelling of one character (a code point) an upstream plausibly echoes. */
function spellingsOf(char: string): Spelling[] {
  const spellings: Spelling[] = [{ text: char, caseless: false }];
  // URL encoding (encodeURIComponent, form encoding): each UTF-8 byte as %XX, and + for a space.
  const percent = [...Buffer.from(char, 'utf8')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');
  spellings.push({ text: percent, caseless: true });
  if (char === ' ') spellings.push({ text: '+', caseless: false });
  // JSON string escapes: \uXXXX for any character (a surrogate pair beyond the BMP), and the short forms; each also
  // escaped once more, as JSON quoted inside a JSON string reads (and as any string of a document reads serialized).
  const unicode = [...char].flatMap((c) => Array.from({ length: c.length }, (_, i) => `\\u${hex4(c.charCodeAt(i))}`)).join('');
  spellings.push({ text: unicode, caseless: true }, { text: JSON.stringify(unicode).slice(1, -1), caseless: true });
  const short = JSON_SHORT_ESCAPES[char];
  if (short) spellings.push({ text: short, caseless: false }, { text: JSON.stringify(short).slice(1, -1), caseless: false });
  const pointer = POINTER_ESCAPES[char];
  if (pointer) spellings.push({ text: pointer, caseless: false });
  return spellings;
}

/**
 * The base64 of a secret wherever it sits in an encoded text: in each of the three alignments to a 3-byte group, the
 * characters that depend on the secret's bytes alone (those shared with the neighbours' bits are left out), in the
 * standard and the URL alphabet. Besides, the secret encoded on its own, padded and not, so that nothing of the most
 * common echo (exactly the value, base64-encoded) is left over.
 */
function base64Forms(secret: string): { cores: string[]; whole: string[] } {
  const bytes = Buffer.from(secret, 'utf8');
  const urlSafe = (b64: string) => b64.replaceAll('+', '-').replaceAll('/', '_');
  const cores = new Set<string>();
  for (let shift = 0; shift < 3; shift++) {
    const encoded = Buffer.concat([Buffer.alloc(shift), bytes]).toString('base64');
    const core = encoded.slice(Math.ceil((8 * shift) / 6), Math.floor((8 * (shift + bytes.length)) / 6));
    cores.add(core);
    cores.add(urlSafe(core));
  }
  const padded = bytes.toString('base64');
  const unpadded = padded.replace(/=+$/, '');
  const whole = new Set([padded, unpadded, urlSafe(padded), urlSafe(unpadded)].filter((w) => !cores.has(w)));
  return { cores: [...cores], whole: [...whole] };
}

function needle(units: Spelling[][], partialMin: number | undefined): Needle {
  const starts = new Set<string>();
  for (const spelling of units[0] ?? []) starts.add(spelling.text[0]!);
  const literal = units.every((u) => u.length === 1 && !u[0]!.caseless) ? units.map((u) => u[0]!.text).join('') : undefined;
  // Only where no other spelling of the first unit starts with the same character ('%' raw or %25, '~' raw or ~0).
  const first = units[0] ?? [];
  const raw0 = first[0]?.text.length === 1 && first.slice(1).every((sp) => sp.text[0] !== first[0]!.text) ? first[0].text.charCodeAt(0) : -1;
  const starts1 = [...new Set((units[1] ?? []).map((spelling) => spelling.text[0]!))].join('');
  return { units, literal, partialMin: partialMin !== undefined && partialMin < units.length ? partialMin : undefined, starts, raw0, starts1 };
}

function compile(secrets: readonly string[], minChars: number): Matcher | undefined {
  const needles: Needle[] = [];
  for (const secret of secrets) {
    if (secret.length === 0) continue;
    // A single word (a key, a token) is redacted even cut off, from its first `minChars` characters on; a value of
    // several words ('Bearer <token>') only whole, since its start is no secret: its long words are secrets of their own.
    const word = !/\s/.test(secret);
    needles.push(needle([...secret].map(spellingsOf), word ? minChars : undefined));
    const literal = (text: string) => [...text].map((c) => [{ text: c, caseless: false }]);
    const { cores, whole } = base64Forms(secret);
    for (const core of cores) {
      if (core.length >= minChars) needles.push(needle(literal(core), word ? Math.ceil((minChars * 4) / 3) : undefined));
    }
    for (const encoded of whole) needles.push(needle(literal(encoded), undefined));
  }
  if (needles.length === 0) return undefined;
  const startsOne = new Uint8Array(0x10000);
  const byStart = new Map<number, Needle[]>();
  for (const n of needles) {
    for (const c of n.starts) {
      startsOne[c.charCodeAt(0)] = 1;
      byStart.set(c.charCodeAt(0), [...(byStart.get(c.charCodeAt(0)) ?? []), n]);
    }
  }
  return { startsOne, byStart };
}

const matchers = new WeakMap<readonly string[], Matcher | null>();

/**
 * The list of secrets, with their spellings and encodings compiled once (per config, where runtime.ts builds it), not
 * per error. Any list works with redactSecrets; one made here is ready.
 */
export function secretSet(secrets: Iterable<string>, minChars = DEFAULT_MIN_SECRET_CHARS): readonly string[] {
  const list = Object.freeze([...secrets]);
  matchers.set(list, compile(list, minChars) ?? null);
  return list;
}

function matcherOf(secrets: readonly string[]): Matcher | undefined {
  let matcher = matchers.get(secrets);
  if (matcher === undefined) {
    matcher = compile(secrets, DEFAULT_MIN_SECRET_CHARS) ?? null;
    matchers.set(secrets, matcher);
  }
  return matcher ?? undefined;
}

function spelledAt(text: string, at: number, spelling: Spelling): boolean {
  // The first character decides most attempts; for a caseless spelling it is '%' or '\', which have no case.
  if (text.charCodeAt(at) !== spelling.text.charCodeAt(0)) return false;
  if (!spelling.caseless) return text.startsWith(spelling.text, at);
  return text.length >= at + spelling.text.length && text.slice(at, at + spelling.text.length).toLowerCase() === spelling.text;
}

/** The ends of the readings followed so far, and of the next unit's: reused, as the scan runs on every error answer. */
const MAX_READINGS = 32;
let readings = new Int32Array(MAX_READINGS);
let nextReadings = new Int32Array(MAX_READINGS);

/**
 * Where an occurrence of `n` starting at `at` ends, or -1. Units may be spelled differently from one another (a
 * half-URL-encoded value); every way of reading the text is followed, so '%' or '\' in a secret cannot derail it.
 */
function matchAt(text: string, at: number, n: Needle): number {
  const literal = n.literal;
  if (literal !== undefined) {
    let j = 0;
    while (j < literal.length && text.charCodeAt(at + j) === literal.charCodeAt(j)) j++;
    return j === literal.length || (n.partialMin !== undefined && j >= n.partialMin) ? at + j : -1;
  }
  // The first character raw and the second no start of the second unit: no occurrence (the common case, cheaply).
  if (n.units.length > 1 && text.charCodeAt(at) === n.raw0 && !n.starts1.includes(text.charAt(at + 1))) return -1;
  readings[0] = at;
  let count = 1;
  let matched = 0;
  for (const unit of n.units) {
    let found = 0;
    for (let r = 0; r < count; r++) {
      const end = readings[r]!;
      for (const spelling of unit) {
        if (!spelledAt(text, end, spelling)) continue;
        const next = end + spelling.text.length;
        let seen = false;
        for (let k = 0; k < found && !seen; k++) seen = nextReadings[k] === next;
        if (!seen && found < MAX_READINGS) nextReadings[found++] = next;
      }
    }
    if (found === 0) break;
    const swap = readings;
    readings = nextReadings;
    nextReadings = swap;
    count = found;
    matched++;
  }
  if (matched < n.units.length && (n.partialMin === undefined || matched < n.partialMin)) return -1;
  let last = readings[0]!;
  for (let r = 1; r < count; r++) last = Math.max(last, readings[r]!);
  return last;
}

/** Where secrets occur in a text (every occurrence, or with `first` only the first found). */
function occurrences(text: string, matcher: Matcher, first: boolean): [number, number][] {
  const found: [number, number][] = [];
  const { startsOne, byStart } = matcher;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (startsOne[code] === 0) continue;
    for (const n of byStart.get(code)!) {
      const end = matchAt(text, i, n);
      if (end <= i) continue;
      found.push([i, end]);
      if (first) return found;
    }
  }
  return found;
}

/** The text with every occurrence of a secret, in any of its spellings, replaced by [redacted]. */
function redactText(text: string, matcher: Matcher): string {
  const found = occurrences(text, matcher, false);
  if (found.length === 0) return text;
  // Overlapping occurrences (a value and its word, two encodings) become one [redacted].
  found.sort((a, b) => a[0] - b[0]);
  let out = '';
  let [start, end] = found[0]!;
  let last = 0;
  for (const [s, e] of found.slice(1)) {
    if (s <= end) end = Math.max(end, e);
    else {
      out += text.slice(last, start) + REDACTED;
      last = end;
      [start, end] = [s, e];
    }
  }
  return out + text.slice(last, start) + REDACTED + text.slice(end);
}

/**
 * Replaces every occurrence of a secret in a value (a text, or a parsed JSON document: its strings, its keys, and its
 * numbers, which become the string '[redacted]' when they hold one) with [redacted].
 */
export function redactSecrets<T>(value: T, secrets: readonly string[] | undefined): T {
  const matcher = secrets && secrets.length > 0 ? matcherOf(secrets) : undefined;
  if (!matcher) return value;
  if (typeof value === 'string') return redactText(value, matcher) as T;
  // Most documents hold no secret: looking first spares copying them.
  return holdsSecret(value, matcher) ? (redactWith(value, matcher) as T) : value;
}

function holdsSecret(value: unknown, matcher: Matcher): boolean {
  if (typeof value === 'string') return occurrences(value, matcher, true).length > 0;
  if (typeof value === 'number' || typeof value === 'bigint') return occurrences(String(value), matcher, true).length > 0;
  if (Array.isArray(value)) return value.some((v: unknown) => holdsSecret(v, matcher));
  if (value !== null && typeof value === 'object') return Object.entries(value).some(([k, v]) => holdsSecret(k, matcher) || holdsSecret(v, matcher));
  return false;
}

function redactWith(value: unknown, matcher: Matcher): unknown {
  if (typeof value === 'string') return redactText(value, matcher);
  if (typeof value === 'number' || typeof value === 'bigint') {
    const text = String(value);
    return redactText(text, matcher) === text ? value : REDACTED;
  }
  if (Array.isArray(value)) return value.map((v: unknown) => redactWith(v, matcher));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [redactText(k, matcher), redactWith(v, matcher)]));
  }
  return value;
}

/** A text of at most `max` characters: a longer one is cut (never inside a surrogate pair) and ends in '...'. */
export function clipText(text: string, max: number): string {
  if (text.length <= max) return text;
  let cut = max - 3;
  const code = text.charCodeAt(cut - 1);
  if (code >= 0xd800 && code <= 0xdbff) cut--;
  return `${text.slice(0, cut)}...`;
}

/** Every string of a JSON value (keys included) clipped to `max` characters; the value itself when none is longer. */
export function clipStrings<T>(value: T, max: number): T {
  return hasLongString(value, max) ? (clipAll(value, max) as T) : value;
}

function clipAll(value: unknown, max: number): unknown {
  if (typeof value === 'string') return clipText(value, max);
  if (Array.isArray(value)) return value.map((v: unknown) => clipAll(v, max));
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [clipText(k, max), clipAll(v, max)]));
  return value;
}

function hasLongString(value: unknown, max: number): boolean {
  if (typeof value === 'string') return value.length > max;
  if (Array.isArray(value)) return value.some((v: unknown) => hasLongString(v, max));
  if (value !== null && typeof value === 'object') return Object.entries(value).some(([k, v]) => k.length > max || hasLongString(v, max));
  return false;
}

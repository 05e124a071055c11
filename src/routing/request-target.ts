// The one reading of a request target that both the router and the forwarder use: normalised where RFC 3986 says two
// spellings are the same path, refused where upstreams disagree about what a spelling means.
//
// A gateway that routes by one reading of a path and forwards another lets a request around the route's policies:
// `/orders\` arrives as `/orders/` after a WHATWG re-parse, `/%6frders` is `/orders` to every framework that decodes
// unreserved characters, `/x/..;/orders` is `/orders` to Tomcat. So the target is read once, here; the router matches
// `matchPath` and the forwarder sends `target`, byte for byte (src/proxy/forwarder.ts forwards it without re-parsing).

export type TargetReading =
  | {
      kind: 'ok';
      /** The path as forwarded: the client's, with percent-encoded unreserved characters decoded and other escapes in upper case. */
      path: string;
      /** path plus the query string exactly as sent (with its '?'), i.e. what the upstream's request line carries. */
      target: string;
      /**
       * What routes are matched against: the path with every escape decoded (an encoded slash never gets this far), blanks
       * and trailing dots trimmed off segments, one trailing slash removed, and in lower case unless routing is
       * case-sensitive. Matching reads the path as leniently as the most lenient upstream would; forwarding keeps `path`.
       */
      matchPath: string;
    }
  | { kind: 'refuse'; detail: string };

const HEX = '0123456789ABCDEF';

/**
 * Bytes that may stand in a path as they are (RFC 3986 pchar and '/': unreserved, sub-delims, ':' and '@'), except ';'.
 * ';' starts a path parameter that Servlet containers and Spring strip before routing (`/orders;x=1` is `/orders`), so it
 * is refused rather than passed. Anything else is either percent-encoded on the way (a byte the RFC does not allow raw,
 * such as '"' or a UTF-8 byte) or refused ('\', '#').
 */
const RAW_ALLOWED = new Uint8Array(256);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,=:@/") RAW_ALLOWED[c.charCodeAt(0)] = 1;

/** Unreserved characters (RFC 3986 §2.3): percent-encoding one of them changes nothing, so it is decoded (§6.2.2.2). */
const UNRESERVED = new Uint8Array(256);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~') UNRESERVED[c.charCodeAt(0)] = 1;

/** Blanks at either end of a segment and dots at its end (see readRequestTarget). */
const TRIMMED_AT_SEGMENT_EDGES = /[\s.]+(?=\/|$)|(?<=\/)\s+/g;

const SLASH = 0x2f;
const PERCENT = 0x25;
const DOT = 0x2e;

/**
 * Reads a request target (what Node gives as req.url: the bytes of the request line, one char per byte) for routing and
 * forwarding. Refuses, with a reason an agent can act on: a target that is not a path, a fragment, a backslash, a ';'
 * path parameter, an empty segment ('//'), a '.' or '..' segment (raw, encoded, or dots with blanks), an encoded '/' or
 * '\', an encoded control character, and a malformed escape.
 */
export function readRequestTarget(url: string, caseSensitive: boolean): TargetReading {
  if (url.charCodeAt(0) !== SLASH) return refuse('The request target must be a path starting with / (origin-form).');
  const queryAt = url.indexOf('?');
  const rawPath = queryAt === -1 ? url : url.slice(0, queryAt);
  const query = queryAt === -1 ? '' : url.slice(queryAt);
  if (query.includes('#')) return refuse('The request target carries a fragment (#...); fragments are never sent to a server, so send the target without it.');

  // One pass over the path. `out` stays undefined while the path is already canonical (the common case: no allocation).
  let out: string | undefined;
  let decoded = false;
  let segmentStart = 1;
  const length = rawPath.length;
  for (let i = 1; i <= length; i++) {
    const c = i === length ? SLASH : rawPath.charCodeAt(i);
    if (c === SLASH) {
      const problem = checkSegment(rawPath, segmentStart, i, i === length);
      if (problem) return refuse(problem);
      segmentStart = i + 1;
      if (i < length && out !== undefined) out += '/';
      continue;
    }
    if (c === PERCENT) {
      const high = hexValue(rawPath.charCodeAt(i + 1));
      const low = hexValue(rawPath.charCodeAt(i + 2));
      if (high < 0 || low < 0) return refuse('The path has a malformed percent-escape: % must be followed by two hex digits.');
      const byte = high * 16 + low;
      if (byte === SLASH || byte === 0x5c) return refuse('The path has an encoded slash or backslash (%2F, %5C); upstreams disagree on whether it separates segments, so it is not accepted.');
      if (byte < 0x20 || byte === 0x7f) return refuse('The path has an encoded control character (%00-%1F, %7F); it is not accepted.');
      // %C0 and %C1 only ever start an overlong (invalid) UTF-8 form of an ASCII character, the classic disguise of '/'
      // and '.' (%c0%af) for decoders that accept it.
      if (byte === 0xc0 || byte === 0xc1) return refuse('The path has an overlong UTF-8 escape (%C0, %C1); it is not accepted.');
      // %252e is %2e to an upstream, or a proxy before it, that decodes twice: the dot segment again, one layer down.
      // A %25 followed by an escape is refused too: decoding that escape (%25%32%65 -> %252e) would build the same.
      const next = rawPath.charCodeAt(i + 3);
      if (byte === PERCENT && (hexValue(next) >= 0 || next === PERCENT)) {
        return refuse('The path has a double-encoded escape (%25 followed by two hex digits); it is not accepted. Send the character encoded once.');
      }
      decoded = true;
      const spelled = rawPath.slice(i, i + 3);
      const canonical = UNRESERVED[byte] ? String.fromCharCode(byte) : `%${HEX[high]}${HEX[low]}`;
      if (out === undefined && canonical !== spelled) out = rawPath.slice(0, i);
      if (out !== undefined) out += canonical;
      i += 2;
      continue;
    }
    if (c === 0x5c) return refuse('The path contains a backslash; some upstreams read it as /, so it is not accepted. Percent-encoding it does not help either.');
    if (c === 0x23) return refuse('The request target carries a fragment (#...); fragments are never sent to a server, so send the target without it.');
    if (c === 0x3b) return refuse("The path contains ';' (a path parameter, which many upstreams strip before routing); it is not accepted. Percent-encode it as %3B if it is data.");
    if (c > 0xff) return refuse('The request target has a character outside ISO-8859-1; send it percent-encoded as UTF-8.');
    if (RAW_ALLOWED[c]) {
      if (out !== undefined) out += rawPath[i];
      continue;
    }
    // A byte the RFC does not allow raw in a path ('"', '<', '{', a UTF-8 byte, ...): sent percent-encoded, as a
    // WHATWG-conforming upstream would re-encode it anyway.
    if (out === undefined) out = rawPath.slice(0, i);
    out += `%${HEX[c >> 4]}${HEX[c & 15]}`;
    decoded = true;
  }
  const path = out ?? rawPath;
  let matchPath = decoded ? decodeSegments(path) : path;
  // Windows and IIS drop blanks and dots at the end of a segment (`/admin./x` and `/admin%20/x` are `/admin/x` there),
  // and some frameworks trim blanks: such a segment is matched as its trimmed self and forwarded as it came.
  if (decoded || matchPath.endsWith('.') || matchPath.includes('./')) matchPath = matchPath.replace(TRIMMED_AT_SEGMENT_EDGES, '');
  if (matchPath.length > 1 && matchPath.charCodeAt(matchPath.length - 1) === SLASH) matchPath = matchPath.slice(0, -1);
  // Upper then lower case folds what some upstreams fold and lower case alone does not: .NET's invariant upper case
  // reads the long s (U+017F) as S, and the Kelvin sign is K either way. Only a decoded path can hold such characters.
  if (!caseSensitive) matchPath = decoded ? matchPath.toUpperCase().toLowerCase() : matchPath.toLowerCase();
  return { kind: 'ok', path, target: path + query, matchPath };
}

/** Refuses empty segments (except a trailing slash) and segments that any upstream could resolve as '.' or '..'. */
function checkSegment(path: string, start: number, end: number, last: boolean): string | undefined {
  if (start === end) return last ? undefined : 'The path has an empty segment (//); upstreams disagree on whether it is the same as /, so it is not accepted.';
  // Quick exit for the usual segment: it contains something other than a dot or an escape in its first character.
  const first = path.charCodeAt(start);
  if (first !== DOT && first !== PERCENT) return undefined;
  let text: string;
  try {
    text = decodeURIComponent(path.slice(start, end));
  } catch {
    return undefined; // an escape that is not UTF-8 cannot be a dot
  }
  if (/^[\s.]*\.[\s.]*$/.test(text)) return 'The path contains . or .. segments (raw, percent-encoded or padded with blanks); send the normalized path.';
  return undefined;
}

/** Every escape decoded, segment by segment, so one segment's escapes that are not UTF-8 leave the others decoded. */
function decodeSegments(path: string): string {
  const segments = path.split('/');
  for (let i = 0; i < segments.length; i++) {
    try {
      segments[i] = decodeURIComponent(segments[i]!);
    } catch {
      // Not UTF-8: it cannot equal a route's literal text, so matching it undecoded is as good.
    }
  }
  return segments.join('/');
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

function refuse(detail: string): TargetReading {
  return { kind: 'refuse', detail };
}

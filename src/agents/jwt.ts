// JWT verification for agents: a token signed by the configured identity provider names the agent and its scopes.
import { closeSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import {
  createLocalJWKSet,
  errors,
  jwtVerify,
  type CompactJWSHeaderParameters,
  type FlattenedJWSInput,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
} from 'jose';
import type { Logger } from 'pino';
import { AGENT_ID_PATTERN } from './schema.ts';
import { looksLikeJwt } from './keys.ts';
import { isLoopbackHost } from '../config/units.ts';

export interface JwtSettings {
  /** https URL of the IdP's JWKS (plain http only to a loopback host); exactly one of jwksUrl and jwksFile */
  readonly jwksUrl: string | undefined;
  /** a JWKS JSON file (absolute path), read at construction and re-read when a token names a kid not in it (bounded, see below) */
  readonly jwksFile: string | undefined;
  readonly issuer: string;
  readonly audience: string | readonly string[];
  /** claim naming the agent, e.g. 'sub' */
  readonly agentClaim: string;
  /** claim holding scopes: a space-separated string or an array of strings */
  readonly scopesClaim: string;
  readonly clockSkewSeconds: number;
  /** allowed asymmetric algorithms, e.g. ['RS256', 'ES256', 'EdDSA'] */
  readonly algorithms: readonly string[];
}

export type JwtVerification =
  | { kind: 'verified'; agentId: string; scopes: readonly string[]; expiresAt: number | undefined /* epoch seconds */ }
  | { kind: 'refused'; reason: JwtRefusal; detail: string };

export type JwtRefusal =
  | 'malformed'
  | 'bad_signature'
  | 'unknown_key'
  | 'expired'
  | 'not_yet_valid'
  | 'wrong_issuer'
  | 'wrong_audience'
  | 'bad_claims'
  | 'algorithm_refused'
  | 'jwks_unavailable';

/** Bounds on fetching and re-reading the key set; the defaults suit production, tests shorten them. */
export interface JwksLimits {
  /** How long one fetch of the JWKS URL may take, body included. */
  readonly fetchTimeoutMs?: number;
  /** The least time between two fetches (or re-reads) of the key set, however many unknown kids clients send. */
  readonly cooldownMs?: number;
  /** The largest key set accepted, in bytes. */
  readonly maxJwksBytes?: number;
  /** Keys older than this are renewed in the background (still used meanwhile), so keys the IdP removes stop working. */
  readonly maxAgeMs?: number;
}

const DEFAULT_LIMITS: Required<JwksLimits> = { fetchTimeoutMs: 5000, cooldownMs: 30_000, maxJwksBytes: 256 * 1024, maxAgeMs: 10 * 60_000 };

const AGENT_ID = new RegExp(AGENT_ID_PATTERN);
const MAX_TOKEN_LIFETIME_SECONDS = 366 * 24 * 3600;

/** Longer tokens are refused unread: real ones are a few KiB, and a long one only costs parsing. */
const MAX_TOKEN_LENGTH = 16 * 1024;

/** Only signatures made with a private key: an HMAC alg would let anyone holding the public key sign (algorithm confusion). */
const ASYMMETRIC_ALGORITHMS: ReadonlySet<string> = new Set(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519']);



type VerificationKey = Awaited<ReturnType<JWTVerifyGetKey>>;

/** Raised by the key lookup when the key set could not be loaded and a token names a key it does not hold. */
class JwksUnavailable extends Error {}

export class JwtVerifier {
  private readonly settings: JwtSettings;
  private readonly options: JWTVerifyOptions;
  private readonly keys: KeyCache;
  private readonly log: Logger;
  private readonly closed = new AbortController();
  private readonly keyFor: JWTVerifyGetKey = (header, token) => this.lookUpKey(header, token);

  constructor(settings: JwtSettings, logger: Logger, limits: JwksLimits = {}) {
    checkSettings(settings);
    this.settings = settings;
    this.options = {
      issuer: settings.issuer,
      audience: typeof settings.audience === 'string' ? settings.audience : [...settings.audience],
      algorithms: [...settings.algorithms],
      clockTolerance: settings.clockSkewSeconds,
      // A token that never expires would be a key for good once stolen: the identity provider must set exp.
      requiredClaims: ['exp'],
    };
    const bounds = { ...DEFAULT_LIMITS, ...limits };
    this.log = logger.child({ policy: 'authenticate' });
    if (settings.jwksUrl !== undefined) {
      const url = settings.jwksUrl;
      this.keys = new KeyCache({ jwks_url: loggableUrl(url) }, (signal) => fetchJwks(url, bounds, signal), bounds, this.log, this.closed.signal);
      // Fetched now rather than on the first request, so the first agent does not wait for the IdP.
      void this.keys.renew();
    } else {
      const file = settings.jwksFile!;
      let initial: KeySet;
      try {
        initial = keySetFrom(readJwksFile(file, bounds.maxJwksBytes));
      } catch (err) {
        throw new Error(`JWKS file ${file} cannot be used: ${describeFailure(err)}.`);
      }
      this.keys = new KeyCache({ jwks_file: file }, async () => readJwksFile(file, bounds.maxJwksBytes), bounds, this.log, this.closed.signal, initial);
    }
  }

  /** Never throws: a token that cannot be verified, for whatever reason, is refused with the reason. */
  async verify(token: string): Promise<JwtVerification> {
    if (token.length > MAX_TOKEN_LENGTH) return refused('malformed', `The token is longer than ${MAX_TOKEN_LENGTH} characters.`);
    if (!looksLikeJwt(token)) return refused('malformed', 'The token is not a JWT (three base64url segments separated by dots).');
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.keyFor, this.options));
    } catch (err) {
      return this.refusal(err);
    }
    return this.claimsOf(payload);
  }

  close(): void {
    this.closed.abort();
  }

  /**
   * The key a token names, from the cached set; a kid not in it renews the set first (at most once per cooldown, so
   * clients sending random kids cannot make the gateway hammer the IdP). Keys already held keep working while the IdP
   * is down or slow.
   */
  private async lookUpKey(header: CompactJWSHeaderParameters, token: FlattenedJWSInput): Promise<VerificationKey> {
    this.keys.renewIfOld();
    try {
      return await this.keys.lookUp(header, token);
    } catch (err) {
      if (!(err instanceof errors.JWKSNoMatchingKey)) throw err;
      await this.keys.renew();
      try {
        return await this.keys.lookUp(header, token);
      } catch (again) {
        if (again instanceof errors.JWKSNoMatchingKey && this.keys.failing) throw new JwksUnavailable();
        throw again;
      }
    }
  }

  /** The agent and its scopes from a token whose signature and registered claims passed. */
  private claimsOf(payload: JWTPayload): JwtVerification {
    const { agentClaim, scopesClaim } = this.settings;
    const agentId = payload[agentClaim];
    if (typeof agentId !== 'string' || agentId === '') {
      return refused('bad_claims', `The token's '${agentClaim}' claim, which names the agent, is missing, empty or not a string.`);
    }
    // The agent's name goes into every log line and store key: the same alphabet and length as an agents file's ids.
    if (!AGENT_ID.test(agentId)) {
      return refused('bad_claims', `The token's '${agentClaim}' claim is not a usable agent name (letters, digits and . _ : @ -, at most 128 characters).`);
    }
    // A lifetime past any a real identity provider issues is a token meant to never expire.
    if (typeof payload.exp === 'number' && payload.exp - Date.now() / 1000 > MAX_TOKEN_LIFETIME_SECONDS) {
      return refused('bad_claims', "The token's 'exp' claim lies more than a year ahead; tokens must expire.");
    }
    const scopes = scopesFrom(payload[scopesClaim]);
    if (scopes === undefined) {
      return refused('bad_claims', `The token's '${scopesClaim}' claim is neither a space-separated string nor an array of strings.`);
    }
    return { kind: 'verified', agentId, scopes, expiresAt: payload.exp };
  }

  /** Says what was wrong in the gateway's words: jose's messages and the token's own values are never passed on. */
  private refusal(err: unknown): JwtVerification {
    if (err instanceof JwksUnavailable) return refused('jwks_unavailable', "The identity provider's keys cannot be fetched right now; try again shortly.");
    if (err instanceof errors.JOSEAlgNotAllowed) {
      return refused('algorithm_refused', `The token is not signed with an allowed algorithm (${this.settings.algorithms.join(', ')}).`);
    }
    if (err instanceof errors.JWSSignatureVerificationFailed) return refused('bad_signature', "The token's signature does not verify.");
    if (err instanceof errors.JWKSNoMatchingKey) return refused('unknown_key', "The token is signed with a key the identity provider does not publish.");
    if (err instanceof errors.JWKSMultipleMatchingKeys) {
      return refused('unknown_key', "The token names no key id (kid), and several of the identity provider's keys could have signed it.");
    }
    if (err instanceof errors.JWTExpired) return refused('expired', `The token expired ${secondsSince(err.payload.exp)} seconds ago.`);
    if (err instanceof errors.JWTClaimValidationFailed) return this.claimRefusal(err);
    if (err instanceof errors.JOSEError) return refused('malformed', 'The token cannot be decoded as a signed JWT.');
    // Not the token's fault (a key in the set that cannot be imported, say): the operator needs to know.
    this.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'a token could not be verified for a reason other than the token');
    return refused('malformed', 'The token cannot be verified.');
  }

  private claimRefusal(err: InstanceType<typeof errors.JWTClaimValidationFailed>): JwtVerification {
    if (err.reason === 'invalid') return refused('bad_claims', `The token's '${err.claim}' claim is not a number.`);
    if (err.reason === 'missing' && err.claim === 'exp') return refused('bad_claims', "The token has no 'exp' claim; tokens must say when they expire.");
    switch (err.claim) {
      case 'nbf':
        return refused('not_yet_valid', `The token is not valid for another ${-secondsSince(err.payload.nbf)} seconds.`);
      case 'iss':
        return refused('wrong_issuer', `The token's issuer is not '${this.settings.issuer}'.`);
      case 'aud':
        return refused('wrong_audience', `The token's audience is not ${quotedList(this.settings.audience)}.`);
      default:
        return refused('bad_claims', `The token's '${err.claim}' claim is not acceptable.`);
    }
  }
}

/**
 * The key set a verifier trusts now, and its renewal: one attempt at a time, at most one per cooldown, bounded in
 * time and size by the loader. A failed attempt is logged and keeps the keys already held.
 */
class KeyCache {
  private readonly log: Logger;
  private readonly source: Record<string, string>;
  private readonly load: (signal: AbortSignal) => Promise<string>;
  private readonly limits: Required<JwksLimits>;
  private readonly closed: AbortSignal;
  private keys: JWTVerifyGetKey | undefined;
  private loadedAt = -Infinity;
  private attemptedAt = -Infinity;
  private pending: Promise<void> | undefined;
  private lastFailed = false;

  /** `initial`: the set already read (a file, read at construction so a bad one fails then). */
  constructor(source: Record<string, string>, load: (signal: AbortSignal) => Promise<string>, limits: Required<JwksLimits>, log: Logger, closed: AbortSignal, initial?: KeySet) {
    this.source = source;
    this.load = load;
    this.limits = limits;
    this.log = log;
    this.closed = closed;
    if (initial !== undefined) {
      this.keys = initial.keys;
      this.loadedAt = this.attemptedAt = performance.now();
    }
  }

  /** Whether the latest attempt failed: a kid not held may then be one the IdP has just added. */
  get failing(): boolean {
    return this.lastFailed;
  }

  async lookUp(header: CompactJWSHeaderParameters, token: FlattenedJWSInput): Promise<VerificationKey> {
    if (this.keys === undefined) throw new errors.JWKSNoMatchingKey();
    return this.keys(header, token);
  }

  /** Starts a renewal without waiting for it when the keys are old; the old keys serve until it succeeds. */
  renewIfOld(): void {
    if (performance.now() - this.loadedAt >= this.limits.maxAgeMs) void this.renew();
  }

  /** Resolves when the renewal in progress, or one started now, ends; at once when one was attempted within the cooldown. */
  renew(): Promise<void> {
    if (this.pending) return this.pending;
    const now = performance.now();
    if (this.closed.aborted || now - this.attemptedAt < this.limits.cooldownMs) return Promise.resolve();
    this.attemptedAt = now;
    this.pending = this.attempt().finally(() => (this.pending = undefined));
    return this.pending;
  }

  private async attempt(): Promise<void> {
    try {
      const { keys, count } = keySetFrom(await this.load(this.closed));
      this.keys = keys;
      this.loadedAt = performance.now();
      this.lastFailed = false;
      this.log.info({ ...this.source, keys: count }, 'JWKS loaded');
    } catch (err) {
      if (this.closed.aborted) return;
      this.lastFailed = true;
      this.log.warn(
        { ...this.source, err: describeFailure(err), retry_after_ms: this.limits.cooldownMs, keeps_cached_keys: this.keys !== undefined },
        'JWKS could not be loaded; the keys already held stay in use',
      );
    }
  }
}

/** The body of the JWKS URL, refused when it is not a 200, larger than the bound, or slower than the timeout. */
async function fetchJwks(url: string, limits: Required<JwksLimits>, closed: AbortSignal): Promise<string> {
  const timeout = AbortSignal.timeout(limits.fetchTimeoutMs);
  try {
    return await fetchBounded(url, limits.maxJwksBytes, AbortSignal.any([closed, timeout]));
  } catch (err) {
    if (timeout.aborted) throw new Error(`no complete answer within ${limits.fetchTimeoutMs} ms`);
    throw err;
  }
}

async function fetchBounded(url: string, maxBytes: number, signal: AbortSignal): Promise<string> {
  const response = await fetch(url, {
    signal,
    // A redirect could lead anywhere, plain http included: the configured URL must be the key set's own.
    redirect: 'manual',
    headers: { accept: 'application/jwk-set+json, application/json' },
  });
  if (response.status !== 200) {
    await response.body?.cancel();
    throw new Error(`it answered HTTP ${response.status}`);
  }
  const declared = Number(response.headers.get('content-length') ?? 0);
  if (declared > maxBytes) {
    await response.body?.cancel();
    throw new Error(`its answer is ${declared} bytes, more than the ${maxBytes} allowed`);
  }
  return readBounded(response.body, maxBytes);
}

/** A body read up to `maxBytes`: the stream is cancelled as soon as it passes them, whatever it declared. */
async function readBounded(body: ReadableStream<Uint8Array> | null, maxBytes: number): Promise<string> {
  if (body === null) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > maxBytes) throw new Error(`its answer is larger than the ${maxBytes} bytes allowed`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * A JWKS file, read synchronously up to `maxBytes`: at construction a bad file must fail then, and a re-read (at most
 * once per cooldown) of a file this small costs less than the hand-off to the thread pool.
 */
function readJwksFile(file: string, maxBytes: number): string {
  const fd = openSync(file, 'r');
  try {
    const buffer = Buffer.alloc(maxBytes + 1);
    let length = 0;
    while (length < buffer.length) {
      const read = readSync(fd, buffer, length, buffer.length - length, null);
      if (read === 0) break;
      length += read;
    }
    if (length > maxBytes) throw new Error(`it is larger than the ${maxBytes} bytes allowed`);
    return buffer.toString('utf8', 0, length);
  } finally {
    closeSync(fd);
  }
}

interface KeySet {
  readonly keys: JWTVerifyGetKey;
  readonly count: number;
}

/** The key set in a JWKS text; errors say what is wrong without quoting the text (JSON.parse's message would). */
function keySetFrom(text: string): KeySet {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error('it is not JSON');
  }
  try {
    return { keys: createLocalJWKSet(parsed as JSONWebKeySet), count: (parsed as JSONWebKeySet).keys.length };
  } catch {
    throw new Error('it is not a JSON Web Key Set (an object whose "keys" is an array of keys)');
  }
}

/** A failure to load keys in a few words, fit for a log line: no response body, no file contents. */
function describeFailure(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const { syscall, code } = err as NodeJS.ErrnoException;
  if (syscall !== undefined) return `it cannot be ${syscall === 'open' ? 'opened' : 'read'} (${code})`;
  // fetch says only 'fetch failed'; the reason (ECONNREFUSED, ENOTFOUND...) is its cause's code.
  const cause = (err.cause as NodeJS.ErrnoException | undefined)?.code;
  return cause === undefined ? err.message : `${err.message} (${cause})`;
}

/** Mistakes that would make every verification throw, or accept what it must not, fail at construction. */
function checkSettings(settings: JwtSettings): void {
  if ((settings.jwksUrl === undefined) === (settings.jwksFile === undefined)) throw new Error('JWT verification needs exactly one of a JWKS URL and a JWKS file.');
  if (settings.jwksUrl !== undefined) checkJwksUrl(settings.jwksUrl);
  if (settings.jwksFile !== undefined && !path.isAbsolute(settings.jwksFile)) throw new Error(`JWKS file ${settings.jwksFile} must be an absolute path.`);
  if (settings.algorithms.length === 0) throw new Error('JWT verification needs at least one allowed algorithm.');
  for (const alg of settings.algorithms) {
    if (!ASYMMETRIC_ALGORITHMS.has(alg)) throw new Error(`JWT algorithm '${alg}' is not allowed: only ${[...ASYMMETRIC_ALGORITHMS].join(', ')}.`);
  }
  if (!(settings.clockSkewSeconds >= 0 && Number.isFinite(settings.clockSkewSeconds))) throw new Error('JWT clock skew must be a non-negative number of seconds.');
}

/** Keys fetched over plain http could be swapped by anyone on the path; on loopback there is no path. */
function checkJwksUrl(text: string): void {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`JWKS URL ${text} is not a URL.`);
  }
  if (url.protocol === 'https:') return;
  if (url.protocol === 'http:' && isLoopbackHost(url.hostname)) return;
  throw new Error(`JWKS URL ${loggableUrl(text)} must use https (plain http only to a loopback host).`);
}

/** The URL without user info or query, either of which could hold a credential. */
function loggableUrl(text: string): string {
  const url = new URL(text);
  return `${url.origin}${url.pathname}`;
}

function scopesFrom(claim: unknown): readonly string[] | undefined {
  if (claim === undefined) return [];
  if (typeof claim === 'string') return claim.split(' ').filter((s) => s !== '');
  if (Array.isArray(claim) && claim.every((s) => typeof s === 'string')) return claim;
  return undefined;
}

function secondsSince(epochSeconds: unknown): number {
  return Math.round(Date.now() / 1000 - Number(epochSeconds));
}

function quotedList(values: string | readonly string[]): string {
  return typeof values === 'string' ? `'${values}'` : `any of ${values.map((v) => `'${v}'`).join(', ')}`;
}

function refused(reason: JwtRefusal, detail: string): JwtVerification {
  return { kind: 'refused', reason, detail };
}

// Who is calling: a verified agent (consumers.authenticate: an API key or a JWT), or, without authentication or for an
// anonymous caller under `anonymous: identify`, the self-asserted identity of consumers.identify.
import type { IncomingMessage } from 'node:http';
import path from 'node:path';
import type { Logger } from 'pino';
import { parseDuration } from '../config/units.ts';
import type { RequestContext } from '../context.ts';
import { GatewayError } from '../errors/problem.ts';
import type { ConsumerIdentifier } from '../identity/consumer.ts';
import type { GatewayMetrics } from '../observability/metrics.ts';
import { isKeyShaped, keyHash, KEY_PREFIX, looksLikeJwt } from './keys.ts';
import { agentConsumer, type AgentRegistry, type VerifiedAgent } from './registry.ts';
import type { JwksLimits, JwtRefusal, JwtSettings, JwtVerifier } from './jwt.ts';
import type { JwtConfig } from './schema.ts';

/** The header an agent may send its key in instead of Authorization (which then stays free for the upstream's own scheme). */
export const AGENT_KEY_HEADER = 'x-agent-key';

export type AuthFailureReason = 'missing' | 'malformed' | 'unknown_key' | 'ambiguous' | 'missing_scope' | JwtRefusal;

/** What one request's credential proved. */
export type Authentication =
  | { readonly kind: 'agent'; readonly agent: VerifiedAgent; readonly credentialHeader: string }
  /** The request carries no credential. */
  | { readonly kind: 'none' }
  | { readonly kind: 'refused'; readonly reason: AuthFailureReason; readonly detail: string; readonly presented: boolean };

/** A credential as the request presents it: which header, and the value. */
type Presented = { kind: 'key' | 'token'; value: string; header: string } | { kind: 'none' } | { kind: 'refused'; reason: AuthFailureReason; detail: string };

/** Verifies agent keys against the agents file and tokens against the identity provider. */
export class Authenticator {
  /** The agents file in force; replaced when the file changes (AgentsFileWatch). */
  registry: AgentRegistry | undefined;
  readonly jwt: JwtVerifier | undefined;
  /** Tokens already verified, with their agent, until they expire (bounded: when full it starts afresh). */
  private readonly verifiedTokens = new Map<string, { agent: VerifiedAgent; until: number }>();
  /** A JWT's agent as a consumer, made once per agent id (bounded), not per request. */
  private readonly jwtConsumers = new Map<string, { limits: ReadonlyMap<string, number> | undefined; consumer: ReturnType<typeof agentConsumer> }>();

  constructor(registry: AgentRegistry | undefined, jwt: JwtVerifier | undefined) {
    this.registry = registry;
    this.jwt = jwt;
  }

  authenticate(req: IncomingMessage): Authentication | Promise<Authentication> {
    const presented = this.presented(req);
    if (presented.kind === 'none') return presented;
    if (presented.kind === 'refused') return { ...presented, presented: true };
    if (presented.kind === 'key') return this.byKey(presented.value, presented.header);
    return this.byToken(presented.value, presented.header);
  }

  private presented(req: IncomingMessage): Presented {
    if (this.registry !== undefined) {
      const stray = strayKey(req);
      if (stray !== undefined) {
        return { kind: 'refused', reason: 'malformed', detail: `An agent key was sent in ${stray}; send it only as Authorization: Bearer <key> or X-Agent-Key. Nothing was forwarded.` };
      }
    }
    const headers = req.headers;
    // Node joins a repeated header with ', ', which no key contains: two keys are refused as malformed.
    const keyHeader = headers[AGENT_KEY_HEADER] as string | undefined;
    const authorization = headers.authorization;
    const bearer = authorization !== undefined && /^bearer(\s|$)/i.test(authorization) ? authorization.slice(6).trim() : undefined;
    if (keyHeader !== undefined && bearer !== undefined) {
      return { kind: 'refused', reason: 'ambiguous', detail: 'The request carries two credentials (X-Agent-Key and an Authorization bearer token); send exactly one.' };
    }
    if (keyHeader !== undefined) {
      if (this.registry === undefined) return { kind: 'refused', reason: 'malformed', detail: 'This gateway does not accept agent keys (X-Agent-Key); send a bearer token.' };
      return { kind: 'key', value: keyHeader.trim(), header: AGENT_KEY_HEADER };
    }
    if (bearer === undefined) return { kind: 'none' };
    if (bearer === '') return { kind: 'refused', reason: 'malformed', detail: 'The Authorization header says Bearer but carries no credential.' };
    if (bearer.startsWith(KEY_PREFIX) && this.registry !== undefined) return { kind: 'key', value: bearer, header: 'authorization' };
    if (this.jwt !== undefined && looksLikeJwt(bearer)) return { kind: 'token', value: bearer, header: 'authorization' };
    return { kind: 'refused', reason: 'malformed', detail: `The bearer credential is neither ${this.accepted()}.` };
  }

  private accepted(): string {
    const kinds = [this.registry && `an agent key (${KEY_PREFIX}...)`, this.jwt && 'a JWT'].filter(Boolean);
    return kinds.length > 1 ? kinds.join(' nor ') : `${kinds[0]}`;
  }

  private byKey(key: string, header: string): Authentication {
    // The shape is checked before anything is hashed, and the hash is looked up whole: a comparison never runs over the
    // key's own characters, so timing says nothing about how much of a guess was right.
    if (!isKeyShaped(key)) return { kind: 'refused', reason: 'malformed', detail: `The agent key is malformed: keys are '${KEY_PREFIX}' and 43 base64url characters.`, presented: true };
    const agent = this.registry!.byKey(keyHash(key));
    if (!agent) return { kind: 'refused', reason: 'unknown_key', detail: 'The agent key is not known to this gateway (never issued here, or revoked).', presented: true };
    return { kind: 'agent', agent, credentialHeader: header };
  }

  private byToken(token: string, header: string): Authentication | Promise<Authentication> {
    // An agent sends the same token until it expires: its signature is checked once, not on every request.
    const known = this.verifiedTokens.get(token);
    if (known !== undefined && known.until > Date.now()) {
      // The agents file may have changed the agent's budget overrides since.
      const consumer = this.jwtConsumer(known.agent.id);
      if (consumer !== known.agent.consumer) known.agent = { ...known.agent, consumer };
      return { kind: 'agent', agent: known.agent, credentialHeader: header };
    }
    return this.verifyToken(token, header);
  }

  private async verifyToken(token: string, header: string): Promise<Authentication> {
    const verified = await this.jwt!.verify(token);
    if (verified.kind === 'refused') return { kind: 'refused', reason: verified.reason, detail: verified.detail, presented: true };
    const agent: VerifiedAgent = { id: verified.agentId, scopes: new Set(verified.scopes), via: 'jwt', expiresAt: verified.expiresAt, consumer: this.jwtConsumer(verified.agentId) };
    // Kept until it expires, at most VERIFIED_TOKEN_MS: a key the identity provider withdraws stops working within that.
    const until = Math.min(Date.now() + VERIFIED_TOKEN_MS, verified.expiresAt === undefined ? Infinity : verified.expiresAt * 1000);
    if (this.verifiedTokens.size >= MAX_VERIFIED_TOKENS) this.verifiedTokens.clear();
    this.verifiedTokens.set(token, { agent, until });
    return { kind: 'agent', agent, credentialHeader: header };
  }

  private jwtConsumer(id: string) {
    const limits = this.registry?.limitsForSubject(id);
    let cached = this.jwtConsumers.get(id);
    // A reload of the agents file may have changed the agent's overrides.
    if (cached === undefined || cached.limits !== limits) {
      if (this.jwtConsumers.size >= MAX_REMEMBERED_JWT_AGENTS) this.jwtConsumers.clear();
      cached = { limits, consumer: agentConsumer(id, 'jwt', limits) };
      this.jwtConsumers.set(id, cached);
    }
    return cached.consumer;
  }

  close(): void {
    this.jwt?.close();
  }
}

/** An agent key as clients paste it where it does not belong (another header, another scheme, the query), also URL-encoded. */
const STRAY_KEY = /agk(?:_|%5F)[A-Za-z0-9_-]{20,}/i;

/**
 * Where the request carries an agent key other than the two places the gateway reads one: there it would travel to the
 * upstream (as the upstream's business) and the caller would pass for anonymous. Most requests have no 'agk' at all,
 * so this is one substring search per header.
 */
function strayKey(req: IncomingMessage): string | undefined {
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const value = raw[i + 1]!;
    if (!value.includes('agk') && !value.includes('AGK')) continue;
    const name = raw[i]!.toLowerCase();
    if (name === AGENT_KEY_HEADER || (name === 'authorization' && /^bearer\s+agk_/i.test(value))) continue;
    if (STRAY_KEY.test(value)) return `the ${raw[i]!.slice(0, 64)} header`;
  }
  const url = req.url ?? '';
  if (/agk/i.test(url) && STRAY_KEY.test(url)) return 'the URL';
  return undefined;
}

/** Bounded: when full it starts afresh, which costs one small object per agent. */
const MAX_REMEMBERED_JWT_AGENTS = 10_000;
/** Verified tokens remembered at most (a few MB of tokens); and for at most this long each, whatever their expiry. */
const MAX_VERIFIED_TOKENS = 10_000;
const VERIFIED_TOKEN_MS = 5 * 60_000;

/**
 * Settles who the caller is, for pipeline step 4 and the gateway's own endpoints: sets ctx.consumer (and ctx.agent for a
 * verified agent), or throws 401 UNAUTHENTICATED. Synchronous unless a JWT has to be verified.
 */
export class Callers {
  private readonly identify: ConsumerIdentifier;
  readonly authenticator: Authenticator | undefined;
  private readonly anonymous: 'refuse' | 'identify';
  private readonly metrics: GatewayMetrics;
  /** agentgate_auth_failures_total's children, looked up once per reason. */
  private readonly failureCounters = new Map<AuthFailureReason, { inc(): void }>();

  constructor(identify: ConsumerIdentifier, authenticator: Authenticator | undefined, anonymous: 'refuse' | 'identify', metrics: GatewayMetrics) {
    this.identify = identify;
    this.authenticator = authenticator;
    this.anonymous = anonymous;
    this.metrics = metrics;
  }

  resolve(req: IncomingMessage, ctx: RequestContext): void | Promise<void> {
    if (this.authenticator === undefined) {
      ctx.consumer = this.identify(req, ctx.clientAddress);
      return;
    }
    // Whatever happens next, a credential meant for the gateway never travels upstream.
    ctx.credentialHeaders = CREDENTIAL_HEADERS_KEY_ONLY;
    const result = this.authenticator.authenticate(req);
    if (result instanceof Promise) return result.then((r) => this.settle(r, req, ctx));
    this.settle(result, req, ctx);
  }

  private settle(result: Authentication, req: IncomingMessage, ctx: RequestContext): void {
    if (result.kind === 'agent') {
      ctx.agent = result.agent;
      ctx.consumer = result.agent.consumer;
      if (result.credentialHeader === 'authorization') ctx.credentialHeaders = CREDENTIAL_HEADERS_BOTH;
      return;
    }
    if (result.kind === 'none' && this.anonymous === 'identify') {
      ctx.consumer = this.identify(req, ctx.clientAddress);
      return;
    }
    const reason = result.kind === 'none' ? 'missing' : result.reason;
    const detail = result.kind === 'none' ? 'The request carries no credential: send your agent key as Authorization: Bearer <key> (or X-Agent-Key), or a token from the identity provider.' : result.detail;
    throw this.unauthenticated(reason, detail, result.kind === 'refused');
  }

  /** Counts the refusal by reason (no per-key label: keys and agents are unbounded) and makes the 401. */
  unauthenticated(reason: AuthFailureReason, detail: string, presented: boolean): GatewayError {
    let counter = this.failureCounters.get(reason);
    if (!counter) {
      counter = this.metrics.authFailures.labels({ reason });
      this.failureCounters.set(reason, counter);
    }
    counter.inc();
    // RFC 6750 §3: a challenge, and invalid_token when a credential was presented and refused.
    const challenge = presented ? 'Bearer realm="agentgate", error="invalid_token"' : 'Bearer realm="agentgate"';
    return new GatewayError('UNAUTHENTICATED', detail, {
      retryable: false,
      headers: { 'www-authenticate': challenge },
      suggestion: presented
        ? 'Do not retry with the same credential: it is refused. Use a valid key or a fresh token; if you have none, escalate to a human.'
        : 'Send your credential with the request; if you have none, escalate to a human.',
      extensions: { reason },
    });
  }
}

const CREDENTIAL_HEADERS_KEY_ONLY: readonly string[] = [AGENT_KEY_HEADER];
const CREDENTIAL_HEADERS_BOTH: readonly string[] = [AGENT_KEY_HEADER, 'authorization'];

/**
 * The JWT verifier's module, and with it jose, is loaded only when a config verifies tokens: merely importing jose made
 * a gateway that never sees a token spend ~20% more CPU per request on its every-policy GET (measured in paired runs,
 * docs/performance-log.md), so a config without `jwt` never pays for it.
 */
let jwtModule: typeof import('./jwt.ts') | undefined;

/** Loads JWT verification for a config that needs it (`authenticate.jwt`); call before buildRuntime. */
export async function loadJwtSupport(config: { consumers: { authenticate?: { jwt?: unknown } } }): Promise<void> {
  if (config.consumers.authenticate?.jwt !== undefined) jwtModule ??= await import('./jwt.ts');
}

/**
 * JWT verifiers outlive config reloads while their settings are unchanged, so a reload keeps the JWKS already fetched:
 * an identity provider that is down during a reload does not stop the keys it served from working.
 */
export class JwtVerifiers {
  private readonly verifiers = new Map<string, JwtVerifier>();

  get(settings: JwtSettings, limits: JwksLimits, logger: Logger): JwtVerifier {
    const key = JSON.stringify([settings, limits]);
    let verifier = this.verifiers.get(key);
    if (!verifier) {
      if (!jwtModule) throw new Error('JWT verification was not loaded for this config: call loadJwtSupport(config) before buildRuntime');
      verifier = new jwtModule.JwtVerifier(settings, logger, limits);
      this.verifiers.set(key, verifier);
    }
    return verifier;
  }

  /** Closes the verifiers no longer in `used`. */
  releaseUnused(used: ReadonlySet<JwtVerifier>): void {
    for (const [key, verifier] of this.verifiers) {
      if (used.has(verifier)) continue;
      this.verifiers.delete(key);
      verifier.close();
    }
  }

  closeAll(): void {
    this.releaseUnused(new Set());
  }
}

/** What the JWT verifier is built with, from consumers.authenticate.jwt (paths resolved against the config's folder). */
export function jwtSettings(config: JwtConfig, configDir: string): { settings: JwtSettings; limits: JwksLimits } {
  return { settings: jwtVerifierSettings(config, configDir), limits: { cooldownMs: parseDuration(config.jwks_min_refresh) } };
}

function jwtVerifierSettings(config: JwtConfig, configDir: string): JwtSettings {
  return {
    jwksUrl: config.jwks_url,
    jwksFile: config.jwks_file === undefined ? undefined : path.resolve(configDir, config.jwks_file),
    issuer: config.issuer,
    audience: config.audience,
    agentClaim: config.agent_claim,
    scopesClaim: config.scopes_claim,
    clockSkewSeconds: parseDuration(config.clock_skew) / 1000,
    algorithms: config.algorithms,
  };
}

// The configuration of agent authentication (consumers.authenticate) and the agents file it names, with their checks.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { Duration, NAME_PATTERN, isRecord, quote, type CheckProblem, type ConfigCheck } from '../config/schema-helpers.ts';
import { KEY_HASH_PATTERN, KEY_IN_TEXT_PATTERN } from './keys.ts';
import { isDuration, isLoopbackHost, parseDuration } from '../config/units.ts';
import { SCOPE_PATTERN } from '../policies/scopes/schema.ts';

/** Agent ids appear in logs, store keys and metrics-free answers: a safe alphabet, and no `{` `}` (Redis hash tags). */
export const AGENT_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$';
/** Asymmetric signature algorithms a JWT may use: HMAC is refused (a public key must never verify as a shared secret). */
export const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

const Scope = (description: string) => Type.String({ pattern: SCOPE_PATTERN, description });

export function authenticateSchema() {
  return Type.Object(
    {
      api_keys: Type.Optional(
        Type.Object(
          {
            file: Type.String({
              minLength: 1,
              description: 'the agents file (agents, the SHA-256 of their keys, scopes, budget overrides), relative to this config; reloaded when it changes',
            }),
          },
          { additionalProperties: false, description: 'agents authenticate with keys issued by `agentgate keys new`' },
        ),
      ),
      jwt: Type.Optional(
        Type.Object(
          {
            jwks_url: Type.Optional(Type.String({ minLength: 1, description: "the identity provider's JWKS: https, or http to a loopback address" })),
            jwks_file: Type.Optional(Type.String({ minLength: 1, description: 'a JWKS file, relative to this config (instead of jwks_url)' })),
            issuer: Type.String({ minLength: 1, description: 'the `iss` every token must carry' }),
            audience: Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })], {
              description: 'the `aud` a token must carry (one of these, for a list)',
            }),
            agent_claim: Type.String({ minLength: 1, default: 'sub', description: 'the claim that names the agent' }),
            scopes_claim: Type.String({ minLength: 1, default: 'scope', description: "the claim holding the agent's scopes: a space-separated string or an array" }),
            clock_skew: Duration('how far `exp` and `nbf` may be off, for clocks that disagree', '30s'),
            jwks_min_refresh: Duration(
              'the least time between two fetches of the JWKS, however many tokens name a key it does not hold: a new key at the identity provider is seen within this',
              '30s',
            ),
            algorithms: Type.Array(Type.Union(JWT_ALGORITHMS.map((a) => Type.Literal(a))), {
              minItems: 1,
              default: ['RS256', 'ES256', 'EdDSA'],
              description: 'the signature algorithms accepted (asymmetric only)',
            }),
          },
          { additionalProperties: false, description: 'agents authenticate with JWTs from an identity provider' },
        ),
      ),
    },
    {
      additionalProperties: false,
      minProperties: 1,
      description: 'verify who is calling: every request must carry a key or a token the gateway checks (see docs on agents)',
    },
  );
}

export type AuthenticateSettings = Static<ReturnType<typeof authenticateSchema>>;
export type JwtConfig = NonNullable<AuthenticateSettings['jwt']>;

export function anonymousSchema() {
  return Type.Union([Type.Literal('refuse'), Type.Literal('identify')], {
    default: 'refuse',
    description: 'with authenticate, a request without a credential: refuse (401), or identify it by consumers.identify (self-asserted)',
  });
}

const AgentSchema = Type.Object(
  {
    id: Type.String({ pattern: AGENT_ID_PATTERN, description: "the agent's id: what logs, budgets and idempotency records name it by" }),
    description: Type.Optional(Type.String({ maxLength: 512, description: 'for the people reading this file' })),
    token_subject: Type.Optional(
      Type.String({
        pattern: AGENT_ID_PATTERN,
        description: "the agent a token names by this subject (consumers.authenticate.jwt): this entry's rate_limits are its own",
      }),
    ),
    keys: Type.Array(Type.String({ pattern: KEY_HASH_PATTERN, description: 'sha256:<hex> of a key, as `agentgate keys new` prints it' }), {
      default: [],
      description: 'the SHA-256 of its keys; several make rotation seamless',
    }),
    scopes: Type.Array(Scope('a scope'), { default: [], uniqueItems: true, description: 'what the agent may do (routes[].scopes)' }),
    rate_limits: Type.Optional(
      Type.Record(
        Type.String({ pattern: NAME_PATTERN }),
        Type.Object({ capacity: Type.Integer({ minimum: 1, description: "this agent's capacity for the policy" }) }, { additionalProperties: false }),
        { description: "this agent's own figures for named rate-limit policies (scope: consumer)" },
      ),
    ),
  },
  { additionalProperties: false },
);

export const AgentsFileSchema = Type.Object(
  { agents: Type.Array(AgentSchema, { description: 'the agents that may call, with their keys' }) },
  { additionalProperties: false, $id: 'https://agentgate.dev/schema/agents.schema.json', title: 'agentgate agents file' },
);

export type AgentsFile = Static<typeof AgentsFileSchema>;
export type AgentEntry = AgentsFile['agents'][number];

/** consumers.authenticate: a JWT source is either a URL or a file, and a URL is https unless it is on this machine. */
export const authenticateCheck: ConfigCheck = (config, context) => {
  const problems: CheckProblem[] = [];
  const consumers = isRecord(config.consumers) ? config.consumers : {};
  const authenticate = isRecord(consumers.authenticate) ? consumers.authenticate : undefined;
  const jwt = authenticate && isRecord(authenticate.jwt) ? authenticate.jwt : undefined;
  if (jwt) {
    const at = ['consumers', 'authenticate', 'jwt'];
    if ((jwt.jwks_url === undefined) === (jwt.jwks_file === undefined)) problems.push({ keyPath: at, message: 'needs exactly one of jwks_url and jwks_file' });
    // A floor and a ceiling the schema's duration format cannot say: unknown kids must not make every request a fetch,
    // and a skew of days would accept long-expired tokens.
    if (typeof jwt.jwks_min_refresh === 'string' && isDuration(jwt.jwks_min_refresh) && parseDuration(jwt.jwks_min_refresh) < 1000) {
      problems.push({ keyPath: [...at, 'jwks_min_refresh'], message: 'must be at least 1s: below it, tokens naming unknown keys could make the gateway fetch the JWKS on every request' });
    }
    if (typeof jwt.clock_skew === 'string' && isDuration(jwt.clock_skew) && parseDuration(jwt.clock_skew) > 5 * 60_000) {
      problems.push({ keyPath: [...at, 'clock_skew'], message: 'must be at most 5m: a larger skew accepts tokens long after they expired' });
    }
    if (typeof jwt.jwks_file === 'string') {
      const problem = jwksFileProblem(path.resolve(context.configDir, jwt.jwks_file));
      if (problem) problems.push({ keyPath: [...at, 'jwks_file'], message: problem });
    }
    if (typeof jwt.jwks_url === 'string') {
      const problem = jwksUrlProblem(jwt.jwks_url);
      if (problem) problems.push({ keyPath: [...at, 'jwks_url'], message: problem });
    }
  }
  return problems;
};

/** Read at start and on reload: a file that cannot serve as a key set is a config problem, not a crash. Its contents are never quoted. */
function jwksFileProblem(file: string): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ? `cannot read ${file} (${(err as NodeJS.ErrnoException).code})` : `${file} is not JSON`;
  }
  if (!isRecord(parsed) || !Array.isArray(parsed.keys)) return `${file} is not a JWKS: it needs a "keys" array`;
  return undefined;
}

function jwksUrlProblem(text: string): string | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return 'must be a URL';
  }
  if (url.protocol === 'https:') return undefined;
  if (url.protocol === 'http:' && isLoopbackHost(url.hostname)) return undefined;
  return `must be https (plain http only to a loopback address), not ${quote(url.protocol.slice(0, -1))}: keys fetched in the clear could be replaced on the way`;
}

/** What the agents file is checked against: the gateway config's named rate-limit policies and their scopes. */
export interface AgentsCheckContext {
  readonly policies: ReadonlyMap<string, { scope: string; per: string }>;
}

const KEY_SHAPE = new RegExp(KEY_IN_TEXT_PATTERN);

/** The agents file's rules across entries: unique ids, each key hash belonging to one agent, overrides of known per-consumer policies. */
export function agentsFileProblems(file: Record<string, unknown>, context: AgentsCheckContext): CheckProblem[] {
  const problems: CheckProblem[] = [];
  const ids = new Map<string, number>();
  const subjects = new Map<string, number>();
  const hashes = new Map<string, string>();
  (Array.isArray(file.agents) ? file.agents : []).forEach((agent: unknown, i) => {
    if (!isRecord(agent)) return;
    if (typeof agent.token_subject === 'string') {
      const first = subjects.get(agent.token_subject);
      if (first !== undefined) problems.push({ keyPath: ['agents', i, 'token_subject'], message: `token subject ${quote(agent.token_subject)} is already agents[${first}]'s` });
      else subjects.set(agent.token_subject, i);
    }
    if (typeof agent.id === 'string' && KEY_SHAPE.test(agent.id)) {
      // It would be written into every log line as the agent's name.
      problems.push({ keyPath: ['agents', i, 'id'], message: 'this id is an agent key: put the key with its agent (keys, as its sha256 hash), never in the file' });
    } else if (typeof agent.id === 'string') {
      const first = ids.get(agent.id);
      if (first !== undefined) problems.push({ keyPath: ['agents', i, 'id'], message: `duplicate agent id ${quote(agent.id)} (first used by agents[${first}])` });
      else ids.set(agent.id, i);
    }
    (Array.isArray(agent.keys) ? agent.keys : []).forEach((hash: unknown, k) => {
      if (typeof hash !== 'string') return;
      const owner = hashes.get(hash);
      // The hash is no secret, but naming both owners is enough to find it.
      if (owner !== undefined) problems.push({ keyPath: ['agents', i, 'keys', k], message: `this key hash is already listed for agent ${quote(owner)}: a key belongs to one agent` });
      else hashes.set(hash, typeof agent.id === 'string' ? agent.id : `agents[${i}]`);
    });
    if (!isRecord(agent.rate_limits)) return;
    for (const name of Object.keys(agent.rate_limits)) {
      const policy = context.policies.get(name);
      if (!policy) {
        const known = [...context.policies.keys()];
        problems.push({ keyPath: ['agents', i, 'rate_limits', name], message: `unknown rate-limit policy ${quote(name)} (defined in the config: ${known.join(', ') || 'none'})` });
      } else if (policy.scope !== 'consumer') {
        problems.push({ keyPath: ['agents', i, 'rate_limits', name], message: `policy ${quote(name)} has scope ${policy.scope}: one budget shared by every agent, so no agent can have its own capacity` });
      } else {
        const override = agent.rate_limits[name];
        const capacity = isRecord(override) && typeof override.capacity === 'number' ? override.capacity : undefined;
        // The same bound as the policy's own capacity: the bucket arithmetic is exact only below it.
        if (capacity !== undefined && isDuration(policy.per) && capacity * parseDuration(policy.per) > 2 ** 52) {
          problems.push({ keyPath: ['agents', i, 'rate_limits', name, 'capacity'], message: `too large for policy ${quote(name)}'s period: capacity × per (in ms) may be at most 2^52` });
        }
      }
    }
  });
  return problems;
}

// Turns a validated Config into what the request path uses: compiled routes, upstream connection pools, the consumer identifier.
import { Agent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Config, RouteConfig } from './config/schema.ts';
import { parseDuration, parseSize } from './config/units.ts';
import type { LoadedConfig } from './config/load.ts';
import { compilePathTemplate, Router, type PathTemplate, type Routable } from './routing/router.ts';
import { createConsumerIdentifier } from './identity/consumer.ts';
import { Authenticator, Callers, JwtVerifiers, jwtSettings } from './agents/authenticate.ts';
import { AgentRegistry } from './agents/registry.ts';
import type { JwtConfig } from './agents/schema.ts';
import type { PolicyDeps } from './policies/deps.ts';
import type { CompileScope, Policy } from './policies/contract.ts';
import { POLICIES } from './policies/index.ts';
import { rateLimitsOf, type RateLimits } from './policies/rate-limit/policy.ts';
import { TrustedProxies } from './proxy/forwarded.ts';
import type { StatusOverride } from './errors/normalize.ts';
import { secretSet } from './errors/redact.ts';
import { buildOperationModel } from './agent-contract/operations.ts';
import { ApprovalStore } from './approvals/store.ts';
import type { OperationModel } from './agent-contract/model.ts';
import { OpenApiDocuments } from './agent-contract/openapi.ts';
import path from 'node:path';

export interface Upstream {
  readonly name: string;
  readonly target: URL;
  /** Keep-alive pool shared by every route to this upstream. */
  readonly agent: Agent;
  readonly timeoutMs: number;
  readonly connectTimeoutMs: number;
  /** Headers the gateway adds to (or replaces on) every request to this upstream, names in lower case. */
  readonly headers: Record<string, string> | undefined;
  /** The injected values (and their words, e.g. the token of 'Bearer <token>'), longest first: redacted wherever an upstream echoes them to an agent. */
  readonly secrets: readonly string[];
}

export interface Route extends Routable {
  readonly name: string;
  readonly methods: ReadonlySet<string> | undefined;
  readonly template: PathTemplate;
  readonly upstream: Upstream;
  readonly timeoutMs: number;
  readonly config: RouteConfig;
  /**
   * The policies that apply to the route, in the pipeline's order (src/policies/index.ts). Their state starts afresh on
   * a config reload (a breaker, an auth halt), except what lives in the store (budgets, idempotency records).
   */
  readonly policies: readonly Policy[];
  /** How this route reads the upstream's error statuses, where they mean something else than usual. */
  readonly upstreamErrors: ReadonlyMap<number, StatusOverride>;
}

function callersOf(loaded: LoadedConfig, deps: PolicyDeps, jwtVerifiers: JwtVerifiers): Callers {
  const { consumers } = loaded.config;
  const authenticate = consumers.authenticate;
  const authenticator = authenticate
    ? new Authenticator(
        authenticate.api_keys ? new AgentRegistry(loaded.agents?.agents ?? []) : undefined,
        authenticate.jwt ? jwtVerifierOf(authenticate.jwt, path.dirname(loaded.file), deps, jwtVerifiers) : undefined,
      )
    : undefined;
  return new Callers(createConsumerIdentifier(consumers.identify), authenticator, consumers.anonymous, deps.metrics);
}

function jwtVerifierOf(config: JwtConfig, configDir: string, deps: PolicyDeps, jwtVerifiers: JwtVerifiers) {
  const { settings, limits } = jwtSettings(config, configDir);
  return jwtVerifiers.get(settings, limits, deps.logger);
}

/** The route's policy of this class, if it has one (for what reads a policy from outside the pipeline: the budget endpoint, tests). */
export function policyOf<P extends Policy>(route: Route, kind: abstract new (...args: never[]) => P): P | undefined {
  for (const policy of route.policies) if (policy instanceof kind) return policy;
  return undefined;
}

export interface Runtime {
  readonly config: Config;
  readonly file: string;
  readonly router: Router<Route>;
  /** Who is calling: a verified agent, or a self-asserted identity (pipeline step 4). */
  readonly callers: Callers;
  readonly upstreams: ReadonlyMap<string, Upstream>;
  readonly maxUrlBytes: number;
  /** The named rate-limit policies, for GET /_agentgate/budget. */
  readonly rateLimits: RateLimits;
  /** routing.case_sensitive: how request paths are read for matching (src/routing/request-target.ts). */
  readonly caseSensitivePaths: boolean;
  /** server.trusted_proxies. */
  readonly trustedProxies: TrustedProxies;
  /** server.timeouts.request_body_idle: longest silence of a client sending its body. */
  readonly requestBodyIdleMs: number;
  /** Every operation agents may call, with what the gateway enforces on it (src/agent-contract/). */
  readonly operations: OperationModel;
  /** Approvals in the store, for the proxy port's status endpoint (the approval policy uses the same). */
  readonly approvals: ApprovalStore;
  /** GET /_agentgate/openapi.json, rendered from `operations` at load. */
  readonly openapi: OpenApiDocuments;
}

/**
 * Connection pools outlive config reloads when an upstream's connection settings are unchanged, so a reload
 * does not drop warm keep-alive connections. Pools no longer used are closed by releaseUnusedPools().
 */
export class UpstreamPools {
  private readonly agents = new Map<string, Agent>();

  agentFor(url: URL, maxSockets: number): Agent {
    const key = `${url.protocol}//${url.host}|${maxSockets}`;
    let agent = this.agents.get(key);
    if (!agent) {
      const options = { keepAlive: true, maxSockets, maxFreeSockets: Math.min(maxSockets, 64), scheduling: 'lifo' as const };
      agent = url.protocol === 'https:' ? new HttpsAgent(options) : new Agent(options);
      this.agents.set(key, agent);
    }
    return agent;
  }

  /** Closes pools that no upstream of `runtime` uses; in-flight requests on them have `graceMs` to finish. */
  releaseUnusedPools(runtime: Runtime, graceMs: number): void {
    const used = new Set([...runtime.upstreams.values()].map((u) => u.agent));
    for (const [key, agent] of this.agents) {
      if (used.has(agent)) continue;
      this.agents.delete(key);
      setTimeout(() => agent.destroy(), graceMs).unref();
    }
  }

  destroyAll(): void {
    for (const agent of this.agents.values()) agent.destroy();
    this.agents.clear();
  }
}

/**
 * Shorter values are not redacted: they could not be told apart from ordinary words. A longer word is redacted from
 * this many of its first characters on, so a secret cut off by a length limit leaks no more than that.
 */
const MIN_SECRET_CHARS = 8;

/**
 * The injected values and their words, compiled here, once per config, with every spelling an upstream may echo them
 * in (URL-encoded, JSON-escaped, as a JSON Pointer, base64 and base64url in any alignment): errors only look them up.
 */
function secretsOf(headers: Record<string, string> | undefined): readonly string[] {
  const candidates = Object.values(headers ?? {}).flatMap((value) => [value, ...value.split(/\s+/)]);
  return secretSet([...new Set(candidates.filter((c) => c.length >= MIN_SECRET_CHARS))].sort((a, b) => b.length - a.length), MIN_SECRET_CHARS);
}

/** `jwtVerifiers`: kept across reloads by the gateway, so a reload keeps the identity provider's keys it already has. */
export function buildRuntime(loaded: LoadedConfig, pools: UpstreamPools, deps: PolicyDeps, jwtVerifiers = new JwtVerifiers()): Runtime {
  const { config } = loaded;
  const upstreams = new Map<string, Upstream>();
  for (const [name, u] of Object.entries(config.upstreams)) {
    const target = new URL(u.url);
    // Lower case, because http-proxy-3 merges these over the request's (lower-case) headers: 'Authorization' would be sent twice.
    const headers = u.headers ? Object.fromEntries(Object.entries(u.headers).map(([k, v]) => [k.toLowerCase(), v])) : undefined;
    upstreams.set(name, {
      name,
      target,
      agent: pools.agentFor(target, u.max_sockets),
      timeoutMs: parseDuration(u.timeout),
      connectTimeoutMs: parseDuration(u.connect_timeout),
      headers,
      secrets: secretsOf(headers),
    });
  }
  // What policies share across the routes of this load (an upstream's breaker, the named budgets); a reload starts anew.
  const shared = new Map<string, unknown>();
  const share = <T>(key: string, make: () => T): T => {
    if (!shared.has(key)) shared.set(key, make());
    return shared.get(key) as T;
  };
  const routes = config.routes.map((r): Route => {
    const upstream = upstreams.get(r.upstream)!;
    const timeoutMs = r.timeout ? parseDuration(r.timeout) : upstream.timeoutMs;
    const scope: CompileScope = {
      config,
      route: r,
      upstream,
      timeoutMs,
      deps,
      configDir: path.dirname(loaded.file),
      responseSchemas: loaded.responseSchemas ?? new Map(),
      spec: loaded.openapi,
      shared: share,
    };
    return {
      name: r.name,
      methods: r.match.methods ? new Set(r.match.methods) : undefined,
      template: compilePathTemplate(r.match.path, config.routing.case_sensitive),
      upstream,
      timeoutMs,
      config: r,
      policies: POLICIES.map((p) => p.compile(scope)).filter((p) => p !== undefined),
      upstreamErrors: new Map(Object.entries(r.upstream_errors ?? {}).map(([status, o]) => [Number(status), o as StatusOverride])),
    };
  });
  const operations = buildOperationModel(config, routes, loaded.openapi);
  return {
    config,
    file: loaded.file,
    router: new Router(routes),
    callers: callersOf(loaded, deps, jwtVerifiers),
    upstreams,
    maxUrlBytes: parseSize(config.server.limits.max_url_bytes),
    rateLimits: rateLimitsOf({ config, deps, shared: share }),
    caseSensitivePaths: config.routing.case_sensitive,
    trustedProxies: new TrustedProxies(config.server.trusted_proxies),
    requestBodyIdleMs: parseDuration(config.server.timeouts.request_body_idle),
    operations,
    openapi: new OpenApiDocuments(operations),
    approvals: share('approvals', () => new ApprovalStore(deps.store, deps.keyPrefix)),
  };
}

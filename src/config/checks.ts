// The config's cross-field rules, in the order their problems are reported: those of the gateway's own sections here, each policy's in its schema.ts.
import { parseAddressOrRange } from '../proxy/forwarded.ts';
import { compilePathTemplate } from '../routing/router.ts';
import { check as rateLimitCheck } from '../policies/rate-limit/schema.ts';
import { check as silentFailureCheck } from '../policies/silent-failure/schema.ts';
import { check as idempotencyCheck } from '../policies/idempotency/schema.ts';
import { check as scopesCheck } from '../policies/scopes/schema.ts';
import { check as approvalCheck } from '../policies/approval/schema.ts';
import { authenticateCheck } from '../agents/schema.ts';
import { check as agentCheck } from '../agent-contract/schema.ts';
import { check as mcpCheck } from '../mcp/schema.ts';
import { closest, isRecord, quote, type CheckProblem, type ConfigCheck } from './schema-helpers.ts';

/** Routes: unique names, known upstreams, path templates that compile. */
const routesCheck: ConfigCheck = (config) => {
  const problems: CheckProblem[] = [];
  const upstreams = isRecord(config.upstreams) ? config.upstreams : {};
  const upstreamNames = Object.keys(upstreams);
  const routeNames = new Map<string, number>();
  (Array.isArray(config.routes) ? config.routes : []).forEach((route: unknown, i) => {
    if (!isRecord(route)) return;
    if (typeof route.name === 'string') {
      const first = routeNames.get(route.name);
      if (first !== undefined) problems.push({ keyPath: ['routes', i, 'name'], message: `duplicate route name ${quote(route.name)} (first used by routes[${first}])` });
      else routeNames.set(route.name, i);
    }
    if (typeof route.upstream === 'string' && !Object.hasOwn(upstreams, route.upstream)) {
      const near = closest(route.upstream, upstreamNames);
      problems.push({
        keyPath: ['routes', i, 'upstream'],
        message: `unknown upstream ${quote(route.upstream)}` + (near ? ` (did you mean '${near}'?)` : ` (defined: ${upstreamNames.join(', ') || 'none'})`),
      });
    }
    const path = isRecord(route.match) ? route.match.path : undefined;
    if (typeof path === 'string' && path.startsWith('/')) {
      try {
        compilePathTemplate(path);
      } catch (err) {
        problems.push({ keyPath: ['routes', i, 'match', 'path'], message: (err as Error).message });
      }
    }
  });
  return problems;
};

/**
 * Headers the gateway sets itself, per request or per connection: injected from the config they would contradict the
 * body's framing or the connection's state (request smuggling, hung connections) or send the request to another host.
 */
const GATEWAY_CONTROLLED_HEADERS = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'te', 'upgrade', 'trailer', 'expect', 'proxy-connection']);

const NOT_A_URL = 'is not a URL that can be parsed (check the host, and that a port is at most 65535); the value is not shown';

function isUrl(text: string): boolean {
  try {
    new URL(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * Why `value` cannot be sent as an HTTP header value, or undefined when it can. The test is Node's own (its http
 * module refuses anything but tab, space, visible ASCII and bytes 0x80-0xFF, so every request would fail), but the
 * answer never quotes the value: injected headers carry secrets.
 */
export function headerValueProblem(value: string): string | undefined {
  const bad = /[^\t\x20-\x7e\x80-\xff]/.exec(value);
  if (!bad) return undefined;
  const char = bad[0];
  if (char === '\n' || char === '\r') {
    return 'contains a line break, which a header value cannot carry; a secret read from a file often ends with one: strip it (the value is not shown)';
  }
  const code = char.codePointAt(0)!;
  if (code < 0x20 || code === 0x7f) {
    return `contains a control character (U+${code.toString(16).toUpperCase().padStart(4, '0')}), which a header value cannot carry (the value is not shown)`;
  }
  return 'contains a character beyond U+00FF, which a header value cannot carry: encode it as the upstream expects (the value is not shown)';
}

/** An upstream's URL must parse, and its injected headers must be sendable and must not be ones the gateway controls. */
const upstreamsCheck: ConfigCheck = (config) => {
  const problems: CheckProblem[] = [];
  const upstreams = isRecord(config.upstreams) ? config.upstreams : {};
  for (const [name, upstream] of Object.entries(upstreams)) {
    if (!isRecord(upstream)) continue;
    if (typeof upstream.url === 'string' && !isUrl(upstream.url)) problems.push({ keyPath: ['upstreams', name, 'url'], message: NOT_A_URL });
    if (!isRecord(upstream.headers)) continue;
    const seen = new Map<string, string>();
    for (const [header, value] of Object.entries(upstream.headers)) {
      const keyPath = ['upstreams', name, 'headers', header];
      const lower = header.toLowerCase();
      if (GATEWAY_CONTROLLED_HEADERS.has(lower)) {
        problems.push({
          keyPath,
          message: `${lower} cannot be injected: the gateway itself controls the host, the framing (content-length, transfer-encoding, trailer, te, expect) and the connection (connection, keep-alive, upgrade, proxy-connection) of each request`,
        });
      }
      const first = seen.get(lower);
      if (first !== undefined) problems.push({ keyPath, message: `the same header as '${first}' (header names are case-insensitive): give it once` });
      else seen.set(lower, header);
      const problem = typeof value === 'string' ? headerValueProblem(value) : undefined;
      if (problem) problems.push({ keyPath, message: problem });
    }
  }
  return problems;
};

/** server: trusted proxies that parse, and more than one worker only with a store the workers share. */
const serverCheck: ConfigCheck = (config) => {
  const problems: CheckProblem[] = [];
  const server = isRecord(config.server) ? config.server : undefined;
  const store = isRecord(config.store) ? config.store : undefined;
  (Array.isArray(server?.trusted_proxies) ? server.trusted_proxies : []).forEach((entry: unknown, i) => {
    if (typeof entry === 'string' && parseAddressOrRange(entry) === undefined) {
      problems.push({ keyPath: ['server', 'trusted_proxies', i], message: `${quote(entry)} is not an IP address or a CIDR range such as 10.0.0.0/8 or fd00::/8` });
    }
  });
  const workers = server?.workers;
  if (workers !== undefined && workers !== 1 && store?.type !== 'redis') {
    problems.push({
      keyPath: ['server', 'workers'],
      message: 'more than one worker needs store type redis: the memory store lives in one process, so workers would share neither budgets nor idempotency records',
    });
  }
  return problems;
};

/** store: redis needs exactly one of url and cluster, memory neither, and every URL must parse. */
const storeCheck: ConfigCheck = (config) => {
  const problems: CheckProblem[] = [];
  const store = isRecord(config.store) ? config.store : undefined;
  if (!store) return problems;
  if (store.type === 'redis' && !store.url && !store.cluster) {
    problems.push({ keyPath: ['store'], message: "type redis needs either 'url' (standalone) or 'cluster.nodes'" });
  }
  if (store.type === 'redis' && store.url && store.cluster) {
    problems.push({ keyPath: ['store', 'cluster'], message: "give either 'url' or 'cluster', not both" });
  }
  if (store.type === 'memory' && (store.url || store.cluster)) {
    problems.push({ keyPath: ['store', 'type'], message: "'url' and 'cluster' are for type redis; set type: redis or remove them" });
  }
  if (typeof store.url === 'string' && !isUrl(store.url)) problems.push({ keyPath: ['store', 'url'], message: NOT_A_URL });
  if (isRecord(store.cluster) && Array.isArray(store.cluster.nodes)) {
    store.cluster.nodes.forEach((node: unknown, i) => {
      if (typeof node === 'string' && !isUrl(node)) problems.push({ keyPath: ['store', 'cluster', 'nodes', i], message: NOT_A_URL });
    });
  }
  return problems;
};

/**
 * Every cross-field check config/load.ts runs, in the order their problems are reported. A policy with rules of its
 * own exports `check` from its schema.ts and gets one entry here; circuit_breaker and auth_halt have none (their
 * schema says all there is).
 */
export const CONFIG_CHECKS: readonly ConfigCheck[] = [
  routesCheck,
  rateLimitCheck, // rate_limits, and the policies routes and defaults name
  silentFailureCheck, // response_schema files: read and compiled once, kept for the runtime
  idempotencyCheck, // ttl and lease of every idempotency mapping
  scopesCheck, // routes[].scopes only with consumers.authenticate
  approvalCheck, // approval by: human off a loopback admin port needs server.admin_token
  authenticateCheck, // consumers.authenticate: one JWKS source, over https
  agentCheck, // routes[].agent.tool: unique names
  mcpCheck, // mcp.path: its own path, answered before routing
  upstreamsCheck,
  serverCheck,
  storeCheck,
];

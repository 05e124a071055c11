// The agentgate configs the scenarios run, written as YAML files (and the response schemas beside them) into a temp dir.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { BLOB_SCHEMA, CREATED_SCHEMA, ITEM_SCHEMA } from './payloads.ts';
import { keyHash, newKey } from '../../src/agents/keys.ts';

export type GatewayProfile =
  /** C: one route, no policies (request ids, metrics and info logs are always on). */
  | 'passthrough'
  /** D/E/F: every policy — cost limit, idempotency on writes, empty_body + response_schema. */
  | 'full'
  /** Issue 4: the passthrough route with a rate limit (a budget large enough never to refuse) and nothing else. */
  | 'rate-limit'
  /** Issue 5: the passthrough route with only silent_failure.empty_body. */
  | 'empty-body'
  /** Issue 5: /bench/blob/* with only silent_failure.response_schema. */
  | 'schema'
  /** Issue 20: the passthrough route behind consumers.authenticate, every request with an agent key. */
  | 'api-key'
  /** Issue 20: the passthrough route behind consumers.authenticate, every request with the same JWT (verified once, then remembered). */
  | 'jwt'
  /**
   * Issue 21: the passthrough route plus the MCP endpoint (mcp.path /mcp, open to anyone: no consumers.authenticate).
   * A GET-only route for /bench/item comes first so that it has a tool, `item`, that takes no arguments.
   */
  | 'mcp';

/** The bench's agent: one key, and one token signed by a key the gateway reads from a JWKS file. */
const BENCH_KEY = newKey();
const signing = await generateKeyPair('ES256', { extractable: true });
const BENCH_JWKS = { keys: [{ ...(await exportJWK(signing.publicKey)), kid: 'bench', alg: 'ES256', use: 'sig' }] };
const BENCH_TOKEN = await new SignJWT({ sub: 'bench-agent', scope: 'bench' })
  .setProtectedHeader({ alg: 'ES256', kid: 'bench' })
  .setIssuer('https://idp.bench/')
  .setAudience('agentgate')
  .setExpirationTime('6h')
  .sign(signing.privateKey);

/** The request headers that carry a profile's credential (none for the profiles without authentication). */
export function credentialHeaders(profile: GatewayProfile): Record<string, string> {
  if (profile === 'api-key') return { authorization: `Bearer ${BENCH_KEY}` };
  if (profile === 'jwt') return { authorization: `Bearer ${BENCH_TOKEN}` };
  return {};
}

export interface StoreChoice {
  type: 'memory' | 'redis';
  url?: string;
  keyPrefix?: string;
  /** Memory store: its default bounds rather than MEMORY_STORE's room for a million records (the open-loop run). */
  defaultBounds?: boolean;
}

/** A budget no benchmark can exhaust: 10^9 units a second (capacity × per stays far below the schema's 2^52 bound). */
const NEVER_REFUSING_BUDGET = 'bench: {capacity: 1000000000, per: 1s}';

/**
 * Room for a million idempotency records on the memory store. Every bench write has a fresh key whose record outlives
 * the run (ttl 24h), and the default room (100,000) is full after about 15 s of D-POST's load on one process: the
 * longer runs (--baseline, --interleave) would go on measuring 503s. Below the default bound nothing differs.
 */
const MEMORY_STORE = 'store: {type: memory, memory: {records: {max_entries: 1000000, max_bytes: 1gb}}}';

export interface GatewaySettings {
  profile: GatewayProfile;
  upstreamUrl: string;
  store: StoreChoice;
  proxyPort: number;
  adminPort: number;
  logLevel: string;
  /** server.workers: more than one needs the Redis store. */
  workers: number;
}

export function writeGatewayConfig(dir: string, name: string, settings: GatewaySettings): string {
  const { profile, upstreamUrl, store, proxyPort, adminPort, logLevel, workers } = settings;
  writeFileSync(path.join(dir, 'item.schema.json'), JSON.stringify(ITEM_SCHEMA));
  writeFileSync(path.join(dir, 'created.schema.json'), JSON.stringify(CREATED_SCHEMA));
  writeFileSync(path.join(dir, 'blob.schema.json'), JSON.stringify(BLOB_SCHEMA));
  writeFileSync(path.join(dir, 'agents.yaml'), `agents:\n  - {id: bench-agent, keys: ['${keyHash(BENCH_KEY)}']}\n`);
  writeFileSync(path.join(dir, 'jwks.json'), JSON.stringify(BENCH_JWKS));
  const storeYaml =
    store.type === 'memory'
      ? store.defaultBounds
        ? 'store: {type: memory}'
        : MEMORY_STORE
      : `store: {type: redis, url: '${store.url}', key_prefix: '${store.keyPrefix}'}`;
  const yaml = `version: 1
server:
  listen: 127.0.0.1:${proxyPort}
  admin_listen: 127.0.0.1:${adminPort}
${workers === 1 ? '' : `  workers: ${workers}\n`}${storeYaml}
logging: {level: ${logLevel}}
${consumers(profile)}${profile === 'mcp' ? 'mcp: {path: /mcp}\n' : ''}upstreams:
  bench: {url: '${upstreamUrl}'}
rate_limits:
  ${NEVER_REFUSING_BUDGET}
routes:
${routes(profile)}`;
  const file = path.join(dir, `${name}.yaml`);
  writeFileSync(file, yaml);
  return file;
}

function consumers(profile: GatewayProfile): string {
  if (profile === 'api-key') return 'consumers: {authenticate: {api_keys: {file: agents.yaml}}}\n';
  if (profile === 'jwt') return "consumers: {authenticate: {jwt: {jwks_file: jwks.json, issuer: 'https://idp.bench/', audience: agentgate}}}\n";
  return '';
}

function routes(profile: GatewayProfile): string {
  switch (profile) {
    case 'passthrough':
    case 'api-key':
    case 'jwt':
      return `  - {name: passthrough, match: {path: /bench/*}, upstream: bench}\n`;
    case 'mcp':
      return `  - {name: item, match: {methods: [GET], path: /bench/item}, upstream: bench}
  - {name: passthrough, match: {path: /bench/*}, upstream: bench}
`;
    case 'rate-limit':
      return `  - {name: limited, match: {path: /bench/*}, upstream: bench, rate_limit: bench}\n`;
    case 'empty-body':
      return `  - {name: empty-body, match: {path: /bench/*}, upstream: bench, silent_failure: {empty_body: true}}\n`;
    case 'schema':
      return `  - {name: schema, match: {path: /bench/blob/*}, upstream: bench, silent_failure: {response_schema: blob.schema.json}}\n`;
    case 'full':
      return `  - name: read
    match: {methods: [GET], path: /bench/item}
    upstream: bench
    rate_limit: bench
    cost: 1
    silent_failure: {empty_body: true, response_schema: item.schema.json}
  - name: write
    match: {methods: [POST], path: /bench/item}
    upstream: bench
    rate_limit: bench
    cost: 2
    idempotency: {required: true}
    silent_failure: {empty_body: true, response_schema: created.schema.json}
`;
  }
}

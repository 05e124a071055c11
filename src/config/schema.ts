// The one source of truth for the YAML config: validation (ajv), TypeScript types (Static) and defaults.
// schema/gateway.schema.json is generated from this file by `npm run build` and checked by a test.
import { Type, type Static } from '@sinclair/typebox';
import { idempotencySchema } from '../policies/idempotency/schema.ts';
import { costSchema, rateLimitDefaultsProperties, rateLimitRefSchema, rateLimitsSchema } from '../policies/rate-limit/schema.ts';
import { silentFailureSchema } from '../policies/silent-failure/schema.ts';
import { circuitBreakerSchema } from '../policies/circuit-breaker/schema.ts';
import { authHaltSchema } from '../policies/auth-halt/schema.ts';
import { scopesSchema } from '../policies/scopes/schema.ts';
import { adminApprovalProperties, approvalSchema } from '../policies/approval/schema.ts';
import { anonymousSchema, authenticateSchema } from '../agents/schema.ts';
import { agentSchema, openapiSchema } from '../agent-contract/schema.ts';
import { mcpSchema } from '../mcp/schema.ts';
import { ERROR_CATALOG } from '../errors/catalog.ts';
import { Duration, HEADER_NAME_PATTERN, HTTP_METHODS, Method, Name, NAME_PATTERN, Size } from './schema-helpers.ts';

export { HTTP_METHODS };

/** The most server.workers may ask for; `auto` is capped at it too. */
export const MAX_WORKERS = 64;

const ServerSchema = Type.Object(
  {
    listen: Type.String({ format: 'listen-address', default: '0.0.0.0:8080', description: 'host:port of the proxy port agents call' }),
    admin_listen: Type.String({
      format: 'listen-address',
      default: '127.0.0.1:9090',
      description: 'host:port of the admin port serving /metrics, /healthz and /readyz; keep it off the public network',
    }),
    trusted_proxies: Type.Array(Type.String({ pattern: '^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$', description: 'an IP address or CIDR range, e.g. 10.0.0.0/8' }), {
      default: [],
      description:
        "peers (load balancers, ingress proxies) whose Forwarded / X-Forwarded-* / X-Real-IP headers are believed: from them the headers are kept and extended, and {ip: true} identifies the client they name; from any other peer those headers are removed and replaced with the gateway's own",
    }),
    ...adminApprovalProperties(),
    shutdown_timeout: Duration('on SIGTERM/SIGINT, how long in-flight requests may take to finish before the process exits anyway', '10s'),
    workers: Type.Union([Type.Integer({ minimum: 1, maximum: MAX_WORKERS }), Type.Literal('auto')], {
      default: 1,
      description: 'gateway processes sharing the proxy port (node:cluster): a whole number from 1 to 64, or auto (one per core); more than one needs store type redis',
    }),
    limits: Type.Object(
      {
        max_header_bytes: Size('largest request head (request line and headers) accepted; larger ones get 431', '16kb'),
        max_url_bytes: Size('longest request target accepted; longer ones get 414', '8kb'),
        max_connections: Type.Integer({
          minimum: 1,
          default: 10000,
          description:
            'most client connections the proxy port holds open at once, per process (each of server.workers); more are closed on arrival. Lowered at start, with a warning, to fit the process file-descriptor limit (with room for upstream, Redis and admin sockets), so a flood of connections can never take the admin port or the upstream pool down with it',
        }),
      },
      { additionalProperties: false, default: {}, description: 'limits on what clients may send' },
    ),
    timeouts: Type.Object(
      {
        request_head: Duration(
          'longest a client may take to send a request line and headers, counted from its first byte or, on a new connection, from the connect; a client too slow gets 408 REQUEST_TIMEOUT and the connection is closed (a connection that sent nothing at all is closed without an answer)',
          '10s',
        ),
        request_body_idle: Duration(
          'longest a client may stay silent while sending a request body; a client too slow gets 408 REQUEST_TIMEOUT, and its request never counts against the upstream (circuit breaker)',
          '10s',
        ),
        keep_alive: Duration('how long an idle keep-alive connection is kept open between two requests', '5s'),
      },
      { additionalProperties: false, default: {}, description: "how long clients may take: the client's own time, measured apart from the upstream's" },
    ),
  },
  { additionalProperties: false, default: {}, description: 'the listening sockets and their limits' },
);

const StoreSchema = Type.Object(
  {
    type: Type.Union([Type.Literal('memory'), Type.Literal('redis')], {
      default: 'memory',
      description: 'memory: state lives in this process (one instance); redis: state is shared by every replica',
    }),
    url: Type.Optional(Type.String({ pattern: '^rediss?://', description: 'redis: URL of a standalone Redis, e.g. redis://redis:6379/0' })),
    cluster: Type.Optional(
      Type.Object(
        { nodes: Type.Array(Type.String({ pattern: '^rediss?://' }), { minItems: 1, description: 'seed nodes of the Redis Cluster' }) },
        { additionalProperties: false, description: 'redis: connect to a Redis Cluster instead of a standalone URL' },
      ),
    ),
    key_prefix: Type.String({
      pattern: '^[A-Za-z0-9:_.-]{1,64}$',
      default: 'agentgate',
      description: 'prefix of every key the gateway writes, so several deployments can share one Redis',
    }),
    command_timeout: Duration('redis: how long one store operation may take before it counts as a store error', '500ms'),
    memory: Type.Object(
      {
        max_entries: Type.Integer({
          minimum: 1,
          default: 100000,
          description: 'most rate-limit budgets kept; beyond it the least recently used budget is evicted, which only refills it early (idempotency records are bounded apart, by records)',
        }),
        max_bytes: Size(
          'most bytes of RSS the rate-limit budgets may take (each counts its key and value as V8 keeps them plus about 170 bytes of objects, times 1.1 for the room V8 keeps to collect in, as measured with the shipped node flags); beyond it the least recently used budget is evicted',
          '64mb',
        ),
        records: Type.Object(
          {
            max_entries: Type.Integer({
              minimum: 1,
              default: 100000,
              description: 'most idempotency records kept (in flight, stored answers, outcome unknown); when full, a request with a new key gets 503 STORE_UNAVAILABLE',
            }),
            max_bytes: Size(
              'most bytes of RSS the idempotency records may take, stored answers included (each counts its key and value as V8 keeps them plus about 140 bytes of objects, times 1.1 for the room V8 keeps to collect in, as measured with the shipped node flags); when full, a request with a new key gets 503 STORE_UNAVAILABLE, and an answer that does not fit in the room left is kept as not replayable (its retries get 409 IDEMPOTENCY_OUTCOME_UNKNOWN)',
              '64mb',
            ),
          },
          {
            additionalProperties: false,
            default: {},
            description: 'bounds of the idempotency records, kept apart from the budgets: a record is never evicted before its ttl, however much other traffic there is',
          },
        ),
      },
      {
        additionalProperties: false,
        default: {},
        description: 'bounds of the in-memory store (type: memory), in two parts: rate-limit budgets (max_entries, max_bytes; least recently used evicted) and idempotency records (records; never evicted)',
      },
    ),
  },
  { additionalProperties: false, default: {}, description: 'where shared state (idempotency records, budgets) lives' },
);

const IdentifySource = Type.Object(
  {
    header: Type.Optional(Type.String({ pattern: HEADER_NAME_PATTERN, description: 'request header whose value identifies the caller (hashed, never stored raw)' })),
    ip: Type.Optional(Type.Literal(true, { description: 'the address of the connecting peer' })),
  },
  { additionalProperties: false, minProperties: 1, maxProperties: 1, description: 'one source of caller identity: {header: NAME} or {ip: true}' },
);

const ConsumersSchema = Type.Object(
  {
    identify: Type.Array(IdentifySource, {
      minItems: 1,
      default: [{ header: 'x-agent-id' }, { header: 'authorization' }, { ip: true }],
      description: 'sources of caller identity, in order: the first one present in a request wins (self-asserted: any caller can send any header)',
    }),
    authenticate: Type.Optional(authenticateSchema()),
    anonymous: anonymousSchema(),
  },
  { additionalProperties: false, default: {}, description: 'how callers are told apart, or verified' },
);

const UpstreamSchema = Type.Object(
  {
    url: Type.String({ pattern: '^https?://[^\\s/?#]+(/[^\\s?#]*)?$', description: 'base URL of the legacy API; its path is prepended to every forwarded path' }),
    timeout: Duration('longest the upstream may stay silent: before its response headers, and between two chunks of its body', '10s'),
    connect_timeout: Duration('longest a TCP connect to the upstream may take', '5s'),
    max_sockets: Type.Integer({ minimum: 1, default: 256, description: 'size of the keep-alive connection pool to this upstream' }),
    headers: Type.Optional(
      Type.Record(Type.String({ pattern: HEADER_NAME_PATTERN }), Type.String({ writeOnly: true }), {
        description:
          "headers added to (or replacing) every request to this upstream, e.g. Authorization: 'Bearer ${LEGACY_TOKEN}', so agents never hold the legacy API's secret; never logged. A value must be a valid HTTP field value (no line break or other control character but tab; a secret read from a file must not end with a newline); names are case-insensitive and given once; host, content-length, transfer-encoding, connection, keep-alive, te, upgrade, trailer, expect and proxy-connection are the gateway's own and cannot be injected",
      }),
    ),
    circuit_breaker: Type.Optional(circuitBreakerSchema()),
    auth_halt: Type.Optional(authHaltSchema()),
  },
  { additionalProperties: false },
);

const UpstreamErrors = Type.Record(
  Type.String({ pattern: '^[1-5][0-9][0-9]$' }),
  Type.Object(
    {
      code: Type.Union(Object.keys(ERROR_CATALOG).map((c) => Type.Literal(c)), { description: 'the catalog code this status means here' }),
      retryable: Type.Optional(Type.Boolean({ description: 'overrides whether agents should retry' })),
      suggestion: Type.Optional(Type.String({ minLength: 1, description: 'what an agent should do instead' })),
    },
    { additionalProperties: false },
  ),
  { description: "how to read this upstream's error statuses when they mean something else, e.g. '400': {code: UPSTREAM_UNAVAILABLE, retryable: true}" },
);

const RouteSchema = Type.Object(
  {
    name: Name('unique name of the route; used in metrics and logs'),
    match: Type.Object(
      {
        methods: Type.Optional(
          Type.Array(Method(), {
            minItems: 1,
            uniqueItems: true,
            description: 'methods this route takes; all when left out',
          }),
        ),
        path: Type.String({
          pattern: '^/',
          description: 'path template: literal segments, {param} for one segment, and a trailing /* for any rest',
        }),
      },
      { additionalProperties: false, description: 'which requests the route takes: its methods and path template (see docs/routing.md for how a path is read)' },
    ),
    upstream: Type.String({ description: 'name of an entry under upstreams' }),
    timeout: Type.Optional(Duration("overrides the upstream's timeout for this route")),
    cost: Type.Optional(costSchema()),
    rate_limit: Type.Optional(rateLimitRefSchema()),
    idempotency: Type.Optional(idempotencySchema()),
    silent_failure: Type.Optional(silentFailureSchema()),
    upstream_errors: Type.Optional(UpstreamErrors),
    scopes: Type.Optional(scopesSchema()),
    approval: Type.Optional(approvalSchema()),
    agent: Type.Optional(agentSchema()),
  },
  { additionalProperties: false },
);

export const ConfigSchema = Type.Object(
  {
    version: Type.Literal(1, { description: 'config format version' }),
    server: ServerSchema,
    store: StoreSchema,
    logging: Type.Object(
      {
        level: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)), {
          default: 'info',
          description: 'the least severe level logged; info includes one access line per request',
        }),
      },
      { additionalProperties: false, default: {}, description: 'log output (JSON lines on stdout)' },
    ),
    consumers: ConsumersSchema,
    upstreams: Type.Record(Type.String({ pattern: NAME_PATTERN }), UpstreamSchema, {
      minProperties: 1,
      description: 'the legacy APIs behind the gateway, by name',
    }),
    rate_limits: rateLimitsSchema(),
    defaults: Type.Object(
      { ...rateLimitDefaultsProperties(), idempotency: Type.Optional(idempotencySchema()), silent_failure: Type.Optional(silentFailureSchema()) },
      { additionalProperties: false, default: {}, description: 'what every route inherits unless it sets its own' },
    ),
    routing: Type.Object(
      {
        case_sensitive: Type.Boolean({
          default: false,
          description:
            "false: a route's literal path segments match in any case (/Orders takes the /orders route), as Express, ASP.NET and IIS route, so no spelling reaches the upstream around the route's policies; true: exact case, for an upstream that itself routes by exact case and has paths differing only in case",
        }),
      },
      { additionalProperties: false, default: {}, description: 'how request paths are matched against routes (see docs on routing for what is normalised and refused)' },
    ),
    openapi: Type.Optional(openapiSchema()),
    mcp: Type.Optional(mcpSchema()),
    routes: Type.Array(RouteSchema, { minItems: 1, description: 'routes, tried in file order: the first match wins' }),
  },
  { additionalProperties: false, $id: 'https://agentgate.dev/schema/gateway.schema.json', title: 'agentgate gateway config' },
);

export type Config = Static<typeof ConfigSchema>;
export type RouteConfig = Config['routes'][number];
export type UpstreamConfig = Config['upstreams'][string];
export type IdentifySourceConfig = Static<typeof IdentifySource>;

// GET /_agentgate/openapi.json from the outside: a valid OpenAPI 3.1 document (checked by a real validator) for the demo,
// a config without a spec, a spec split across files and large real-world specs; what it says of each operation; and
// how openapi.spec is checked at load and by `agentgate validate`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { CLI, configYaml, startTestGateway, tempDir, type TestGateway } from './helpers/gateway.ts';
import { envelopeOf, send } from './helpers/http.ts';
import { until } from './helpers/wait.ts';
import { ConfigError, loadConfigFile } from '../src/config/load.ts';
import { keyHash, newKey } from '../src/agents/keys.ts';

const REPO = path.resolve(import.meta.dirname, '..');
const FIXTURE = path.join(REPO, 'test/fixtures/openapi/legacy.yaml');
const EXAMPLES = path.join(REPO, 'node_modules/@readme/oas-examples');

type Document = Record<string, any>;

/** The document as a caller gets it. */
async function openapi(tg: TestGateway, headers: Record<string, string> = {}): Promise<Document> {
  const reply = await send(`${tg.url}/_agentgate/openapi.json`, { headers });
  assert.equal(reply.status, 200, reply.text);
  assert.match(String(reply.headers['content-type']), /^application\/json/);
  return reply.json();
}

/**
 * Valid OpenAPI 3.1 by the validator; and, which it does not check, every $ref resolves and every schema in it compiles
 * as JSON Schema 2020-12 (the dialect of 3.1).
 */
async function assertValid31(document: Document): Promise<void> {
  const validator = new Validator();
  const result = await validator.validate(structuredClone(document));
  assert.equal(validator.version, '3.1');
  assert.ok(result.valid, `not valid OpenAPI 3.1: ${JSON.stringify(result.errors, null, 1)?.slice(0, 3000)}`);
  for (const ref of refsOf(document)) assert.notEqual(resolve(document, ref), undefined, `$ref ${ref} resolves to nothing`);
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats.default(ajv);
  ajv.addSchema({ ...document, $id: 'https://agentgate.test/openapi.json' });
  for (const pointer of schemaPointers(document)) {
    assert.doesNotThrow(() => ajv.compile({ $ref: `https://agentgate.test/openapi.json#${pointer}` }), `the schema at ${pointer} does not compile`);
  }
}

function refsOf(value: unknown, refs = new Set<string>()): Set<string> {
  if (Array.isArray(value)) value.forEach((v) => refsOf(v, refs));
  else if (value && typeof value === 'object') {
    for (const [key, child] of Object.entries(value)) {
      if (key === '$ref' && typeof child === 'string') refs.add(child);
      else refsOf(child, refs);
    }
  }
  return refs;
}

function resolve(document: Document, ref: string): unknown {
  assert.ok(ref.startsWith('#/'), `only local references: ${ref}`);
  return ref
    .slice(2)
    .split('/')
    .map((t) => decodeURIComponent(t).replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce<any>((node, token) => node?.[token], document);
}

const escape = (token: string) => token.replace(/~/g, '~0').replace(/\//g, '~1');

/** JSON Pointers of every schema the document holds at the places OpenAPI puts them. */
function schemaPointers(document: Document): string[] {
  const pointers = Object.keys(document.components?.schemas ?? {}).map((name) => `/components/schemas/${escape(name)}`);
  const content = (base: string, c: Record<string, any> | undefined) => {
    for (const type of Object.keys(c ?? {})) if (c![type].schema) pointers.push(`${base}/content/${escape(type)}/schema`);
  };
  for (const [p, item] of Object.entries<any>(document.paths)) {
    for (const [method, op] of Object.entries<any>(item)) {
      const at = `/paths/${escape(p)}/${method}`;
      (op.parameters ?? []).forEach((param: any, i: number) => param.schema && pointers.push(`${at}/parameters/${i}/schema`));
      content(`${at}/requestBody`, op.requestBody?.content);
      for (const [status, response] of Object.entries<any>(op.responses)) content(`${at}/responses/${status}`, response.content);
    }
  }
  return pointers;
}

/** Each operation as `METHOD path` → its Operation Object. */
function operationsOf(document: Document): Map<string, any> {
  const ops = new Map<string, any>();
  for (const [p, item] of Object.entries<any>(document.paths)) for (const [method, op] of Object.entries(item)) ops.set(`${method.toUpperCase()} ${p}`, op);
  return ops;
}

/** The codes an operation's answers name for one response key ('401', '4XX'). */
function codesAt(op: any, status: string): string[] {
  const schema = op.responses[status]?.content?.['application/problem+json']?.schema;
  return schema ? schema.allOf[1].properties.code.enum : [];
}

function allCodes(op: any): Set<string> {
  return new Set(Object.keys(op.responses).flatMap((status) => codesAt(op, status)));
}

function idempotencyKeyOf(op: any): any {
  return (op.parameters ?? []).find((p: any) => p.name === 'Idempotency-Key');
}

/** The demo's config (config/gateway.yaml), on free ports, with its agents file and response schema beside it. */
async function startDemo(): Promise<TestGateway> {
  const yaml = (await readFile(path.join(REPO, 'config/gateway.yaml'), 'utf8'))
    .replace('listen: 127.0.0.1:8080', 'listen: 127.0.0.1:0')
    .replace('admin_listen: 127.0.0.1:9090', 'admin_listen: 127.0.0.1:0')
    .replaceAll('schemas/order-list.schema.json', 'order-list.schema.json');
  return startTestGateway(yaml, {
    files: {
      'agents.yaml': await readFile(path.join(REPO, 'config/agents.yaml'), 'utf8'),
      'order-list.schema.json': await readFile(path.join(REPO, 'config/schemas/order-list.schema.json'), 'utf8'),
    },
  });
}

/** A demo key as docs/getting-started.md gives it. */
async function demoKey(variable: 'DEMO_KEY' | 'REPORTER_KEY'): Promise<string> {
  const doc = await readFile(path.join(REPO, 'docs/getting-started.md'), 'utf8');
  return new RegExp(`^${variable}=(agk_\\S+)`, 'm').exec(doc)![1]!;
}

test('the demo: a valid OpenAPI 3.1 document of what the agent may call, addressed to the gateway', async (t) => {
  const tg = await startDemo();
  t.after(() => tg.close());
  const refused = await send(`${tg.url}/_agentgate/openapi.json`);
  assert.equal(refused.status, 401, 'the demo lets no one in without a key, for the document too');
  assert.equal(envelopeOf(refused).code, 'UNAUTHENTICATED');

  const document = await openapi(tg, { authorization: `Bearer ${await demoKey('DEMO_KEY')}` });
  await assertValid31(document);
  assert.equal(document.openapi, '3.1.0');
  assert.deepEqual(document.servers.map((s: any) => s.url), [tg.url]);
  const ops = operationsOf(document);
  const create = ops.get('POST /orders');
  assert.equal(create['x-agentgate-route'], 'create-order');
  assert.equal(create['x-agentgate-cost'], 10);
  assert.equal(create['x-agentgate-effect'], 'write');
  assert.equal(idempotencyKeyOf(create).required, true);
  assert.deepEqual(create.security, [{ agentBearer: ['orders:write'] }, { agentKey: ['orders:write'] }]);
  assert.deepEqual(document.security, [{ agentBearer: [] }, { agentKey: [] }]);
  assert.ok(ops.get('GET /orders/{id}').parameters.some((p: any) => p.name === 'id' && p.in === 'path' && p.required));
  assert.ok(allCodes(ops.get('GET /orders')).has('SILENT_FAILURE'), 'list-orders checks its answers');
  assert.ok(allCodes(ops.get('GET /crash')).has('CIRCUIT_OPEN'), "crash's upstream has a breaker");
  assert.ok(!allCodes(ops.get('GET /orders/{id}')).has('CIRCUIT_OPEN'));
  // Every route, each method it takes (every method, for a route without match.methods).
  assert.ok(ops.has('GET /{rest}') && ops.has('DELETE /{rest}'), 'everything-else');
  // change-order (/orders/*) at the path get-order's template already names: OpenAPI holds one path per shape.
  assert.equal(ops.get('PUT /orders/{id}')['x-agentgate-route'], 'change-order');
  assert.equal(ops.get('DELETE /orders/{id}')['x-agentgate-route'], 'change-order');
  const names = [...ops.values()].map((op) => op.operationId);
  assert.equal(new Set(names).size, names.length, 'operationIds are unique');
  assert.ok(names.includes('create_order') && names.includes('list_orders'), names.join(' '));

  const reporter = await openapi(tg, { authorization: `Bearer ${await demoKey('REPORTER_KEY')}` });
  await assertValid31(reporter);
  const readable = operationsOf(reporter);
  assert.ok(readable.has('GET /orders') && readable.has('GET /orders/{id}'), 'orders:read');
  assert.ok(!readable.has('POST /orders') && !readable.has('PUT /orders/{id}'), 'the read-only agent is not shown what needs orders:write');
  assert.ok(readable.has('GET /{rest}'), 'routes without scopes');
});

const SPECLESS = configYaml(`upstreams:
  api: {url: 'http://127.0.0.1:9'}
rate_limits:
  agents: {capacity: 100, per: 1m}
  batch: {capacity: 50, per: 1m, on_store_error: fail_closed}
routes:
  - name: create-order
    match: {methods: [POST], path: /orders}
    upstream: api
    rate_limit: agents
    cost: 10
    idempotency: {required: true, ttl: 1h}
    agent: {summary: Create a draft order, hint: 'Confirm it with POST /orders/{id}/confirm.', tool: make_order}
  - name: import-orders
    match: {methods: [POST], path: /orders/import}
    upstream: api
    rate_limit: [agents, batch]
    cost: {base: 1, items: /orders, per_item: 2}
    idempotency: {}
  - name: get-order
    match: {methods: [GET, DELETE], path: '/orders/{id}'}
    upstream: api
    silent_failure: {empty_body: true}
    upstream_errors: {'400': {code: UPSTREAM_UNAVAILABLE, retryable: true}}
  - name: everything-else
    match: {path: /*}
    upstream: api
    idempotency: {methods: [PUT]}
`);

test('without a spec: an operation per route and method, with what the gateway enforces on each', async (t) => {
  const tg = await startTestGateway(SPECLESS);
  t.after(() => tg.close());
  const document = await openapi(tg);
  await assertValid31(document);
  assert.equal(document.security, undefined, 'no authentication, no security');
  const ops = operationsOf(document);
  assert.deepEqual([...ops.keys()], [
    'POST /orders',
    'POST /orders/import',
    'GET /orders/{id}',
    'DELETE /orders/{id}',
    'GET /{rest}',
    'POST /{rest}',
    'PUT /{rest}',
    'PATCH /{rest}',
    'DELETE /{rest}',
  ]);

  const create = ops.get('POST /orders');
  assert.equal(create.operationId, 'make_order');
  assert.equal(create.summary, 'Create a draft order');
  assert.equal(create['x-agent-hint'], 'Confirm it with POST /orders/{id}/confirm.');
  const key = idempotencyKeyOf(create);
  assert.equal(key.required, true);
  assert.equal(key.in, 'header');
  assert.match(key.description, /1 hour/);
  assert.match(key.description, /IDEMPOTENCY_KEY_REQUIRED/);
  assert.ok(codesAt(create, '400').includes('IDEMPOTENCY_KEY_REQUIRED'));
  assert.ok(create.requestBody && create.requestBody.required === false, 'a permissive body');
  assert.deepEqual(Object.keys(create.responses['2XX'].headers).slice(0, 3), ['X-Request-Id', 'Idempotent-Replayed', 'X-RateLimit-Limit']);
  assert.ok(codesAt(create, '429').includes('RATE_LIMITED'));
  assert.ok(codesAt(create, '429').length > 0 && create.responses['429'].headers['Retry-After']);

  const importing = ops.get('POST /orders/import');
  assert.equal(idempotencyKeyOf(importing).required, false, 'idempotency without required: an optional key');
  assert.doesNotMatch(codesAt(importing, '400').join(' '), /IDEMPOTENCY_KEY_REQUIRED/);
  assert.deepEqual(importing['x-agentgate-cost'], { base: 1, items: '/orders', per_item: 2 });
  assert.ok(allCodes(importing).has('STORE_UNAVAILABLE'), "the batch budget fails closed");
  assert.equal(importing.operationId, 'import_orders');

  const get = ops.get('GET /orders/{id}');
  assert.equal(get['x-agentgate-cost'], 0, 'not rate-limited');
  assert.equal(get['x-agentgate-effect'], 'read');
  assert.equal(ops.get('DELETE /orders/{id}')['x-agentgate-effect'], 'destructive');
  assert.deepEqual(get.parameters, [{ name: 'id', in: 'path', required: true, schema: { type: 'string', minLength: 1 } }]);
  assert.equal(get.requestBody, undefined);
  assert.ok(codesAt(get, '502').includes('SILENT_FAILURE'));
  assert.deepEqual(codesAt(get, '400').sort(), ['INVALID_REQUEST', 'UPSTREAM_UNAVAILABLE'], 'the route reads its upstream 400 as UPSTREAM_UNAVAILABLE');
  assert.equal(get.operationId, 'get_order_get');
  assert.equal(get.responses['2XX'].headers['X-RateLimit-Limit'], undefined, 'no budget headers where no budget applies');

  // Codes by the policies that apply: none of a policy the route does not have.
  for (const [name, op] of ops) {
    const codes = allCodes(op);
    const limited = name.startsWith('POST /orders');
    assert.equal(codes.has('RATE_LIMITED'), limited, `${name}: RATE_LIMITED`);
    assert.equal(codes.has('COST_EXCEEDS_BUDGET'), limited, `${name}: COST_EXCEEDS_BUDGET`);
    assert.equal(codes.has('SILENT_FAILURE'), name.includes('{id}'), `${name}: SILENT_FAILURE`);
    const keyed = name.startsWith('POST /orders') || name === 'PUT /{rest}';
    assert.equal(codes.has('IDEMPOTENCY_KEY_REUSED'), keyed, `${name}: idempotency codes where it applies`);
    assert.equal(idempotencyKeyOf(op) !== undefined, keyed, `${name}: Idempotency-Key where it applies`);
    assert.equal(op.responses['401'], undefined, `${name}: no 401 of the gateway's own without authentication`);
    assert.ok(codes.has('UPSTREAM_TIMEOUT') && codes.has('UPSTREAM_UNAVAILABLE') && codesAt(op, '5XX').includes('UPSTREAM_ERROR'), `${name}: upstream codes`);
    assert.ok(codesAt(op, '4XX').includes('NOT_FOUND'), `${name}: an upstream 404 keeps its status`);
  }
  const rest = ops.get('PUT /{rest}');
  assert.equal(rest.parameters.find((p: any) => p.in === 'path').name, 'rest');
  assert.match(rest.description, /any path under \//);
});

test('servers: the gateway as the caller reached it; X-Forwarded-Host and -Proto only from a trusted proxy', async (t) => {
  const body = SPECLESS.replace('  admin_listen: 127.0.0.1:0\n', '  admin_listen: 127.0.0.1:0\n  trusted_proxies: [10.0.0.0/8]\n');
  const tg = await startTestGateway(body);
  t.after(() => tg.close());
  const forwarded = { 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' };
  assert.deepEqual((await openapi(tg, { host: 'agents.example.com:8443', ...forwarded })).servers.map((s: any) => s.url), ['http://agents.example.com:8443']);

  const trusting = await startTestGateway(SPECLESS.replace('  admin_listen: 127.0.0.1:0\n', '  admin_listen: 127.0.0.1:0\n  trusted_proxies: [127.0.0.1]\n'));
  t.after(() => trusting.close());
  const viaProxy = await openapi(trusting, { host: 'gateway.internal:8080', 'x-forwarded-host': 'api.example.com, gateway.internal', 'x-forwarded-proto': 'https' });
  assert.deepEqual(viaProxy.servers.map((s: any) => s.url), ['https://api.example.com']);
  const odd = await openapi(trusting, { host: 'gateway.internal:8080', 'x-forwarded-host': 'a b/c', 'x-forwarded-proto': 'gopher' });
  assert.deepEqual(odd.servers.map((s: any) => s.url), ['http://gateway.internal:8080'], 'what is no host or scheme is not believed');
});

/** Agents with keys, for a config that authenticates: their ids and scopes, and the file listing them. */
function agentsFile(agents: Record<string, string[]>): { keys: Record<string, string>; file: string } {
  const keys = Object.fromEntries(Object.keys(agents).map((id) => [id, newKey()]));
  const entries = Object.entries(agents).map(([id, scopes]) => `  - {id: ${id}, keys: ['${keyHash(keys[id]!)}'], scopes: [${scopes.join(', ')}]}`);
  return { keys, file: `agents:\n${entries.join('\n')}\n` };
}

const WITH_SPEC = (spec: string) =>
  configYaml(`consumers:
  authenticate: {api_keys: {file: agents.yaml}}
  anonymous: identify
openapi: {spec: '${spec}'}
upstreams:
  api: {url: 'http://127.0.0.1:9'}
rate_limits:
  agents: {capacity: 100, per: 1m}
defaults: {rate_limit: agents}
routes:
  - name: create-order
    match: {methods: [POST], path: /orders}
    upstream: api
    idempotency: {required: true}
    scopes: [orders:write]
  - name: list-orders
    match: {methods: [GET], path: /orders}
    upstream: api
    scopes: [orders:read]
    agent: {hint: Newest first; page with limit.}
  - name: order
    match: {path: '/orders/{id}'}
    upstream: api
    scopes: [orders:read]
  - name: confirm
    match: {methods: [POST], path: '/orders/{id}/confirm'}
    upstream: api
    scopes: [orders:write]
    agent: {tool: confirm_it, effect: destructive}
  - name: categories
    match: {methods: [GET], path: /categories}
    upstream: api
  - name: crash
    match: {methods: [GET], path: /crash}
    upstream: api
`);

test('a spec split across files: its operations, schemas and descriptions, made OpenAPI 3.1, for the routes that serve them', async (t) => {
  const { keys, file } = agentsFile({ writer: ['orders:read', 'orders:write'], reader: ['orders:read'] });
  const tg = await startTestGateway(WITH_SPEC(FIXTURE), { files: { 'agents.yaml': file } });
  t.after(() => tg.close());
  const document = await openapi(tg, { authorization: `Bearer ${keys.writer}` });
  await assertValid31(document);
  assert.equal(document.info.title, 'Legacy Orders API');
  assert.equal(document.info.version, '2.4');
  const ops = operationsOf(document);
  assert.deepEqual([...ops.keys()].sort(), [
    'DELETE /orders/{orderId}',
    'GET /categories',
    'GET /crash',
    'GET /orders',
    'GET /orders/{orderId}',
    'PATCH /orders/{orderId}',
    'POST /orders',
    'POST /orders/{orderId}',
    'POST /orders/{orderId}/confirm',
    'PUT /orders/{orderId}',
  ]);

  // From the spec: operationIds, summaries, parameters ($refs into another file), bodies and answers.
  const list = ops.get('GET /orders');
  assert.equal(list.operationId, 'listOrders');
  assert.equal(list.summary, 'List orders');
  assert.equal(list.description, 'Every order, newest first.');
  assert.equal(list['x-agent-hint'], 'Newest first; page with limit.', "the route's hint");
  assert.deepEqual(list.responses['200'].content['application/json'].schema, { $ref: '#/components/schemas/OrderList' });
  const [limit, status] = list.parameters;
  assert.deepEqual(limit.schema, { type: 'integer', exclusiveMinimum: 0, maximum: 100, default: 20 }, 'exclusiveMinimum: true made numeric');
  assert.deepEqual(status.schema, { type: ['string', 'null'], enum: ['draft', 'confirmed', null] }, 'nullable made a type with null');
  const order = document.components.schemas.Order;
  assert.deepEqual(order.properties.note, { type: ['string', 'null'], description: 'Free text, or null' });
  assert.deepEqual(order.properties.id, { type: 'string', examples: ['ord_1'] }, 'example made examples');
  assert.deepEqual(order.properties.total.properties.amount, { type: 'integer', minimum: 0 }, 'a $ref from schemas/order.yaml to ./money.yaml, exclusiveMinimum: false dropped');
  const create = ops.get('POST /orders');
  assert.equal(create['x-agent-hint'], 'Orders start as drafts; confirm one with POST /orders/{orderId}/confirm.', "the spec's own x-agent-hint");
  assert.deepEqual(create.requestBody.content['application/json'].schema.required, ['item']);
  assert.equal(idempotencyKeyOf(create).required, true);
  assert.deepEqual(Object.keys(create.responses).filter((s) => s.startsWith('2')), ['201']);
  assert.match(create.responses['400'].description, /The API documents this status: Invalid order/);
  assert.equal(ops.get('GET /orders/{orderId}').parameters[0].description, "The order's id, e.g. ord_1");
  assert.match(ops.get('GET /orders/{orderId}').responses['404'].description, /^NOT_FOUND .*No such order/);
  // A recursive schema from its own file is written once and refers to itself.
  const categories = ops.get('GET /categories').responses['200'].content['application/json'].schema;
  assert.deepEqual(categories, { type: 'array', items: { $ref: '#/components/schemas/category' } });
  assert.deepEqual(document.components.schemas.category.properties.children.items, { $ref: '#/components/schemas/category' });
  const confirm = ops.get('POST /orders/{orderId}/confirm');
  assert.equal(confirm.operationId, 'confirm_it');
  assert.equal(confirm['x-agentgate-effect'], 'destructive');

  // What the spec does not describe is still listed, from the route.
  assert.match(ops.get('GET /crash').description, /route 'crash'/);
  assert.equal(ops.get('PUT /orders/{orderId}').operationId, 'order_put');
  assert.equal(ops.has('POST /admin/purge'), false, 'no route serves it');

  // Scopes filter: a reader sees what needs orders:read, and what needs no scope; an anonymous caller only the latter.
  const reader = operationsOf(await openapi(tg, { authorization: `Bearer ${keys.reader}` }));
  assert.ok(!reader.has('POST /orders') && !reader.has('POST /orders/{orderId}/confirm'), 'orders:write');
  assert.ok(reader.has('POST /orders/{orderId}'), "route 'order' takes every method and needs orders:read alone");
  assert.ok(reader.has('GET /orders') && reader.has('GET /crash'));
  const anonymous = await openapi(tg);
  await assertValid31(anonymous);
  assert.deepEqual([...operationsOf(anonymous).keys()].sort(), ['GET /categories', 'GET /crash']);
  assert.deepEqual(anonymous.security, [{ agentBearer: [] }, { agentKey: [] }, {}], 'anonymous: identify lets callers without a key in');
  assert.deepEqual(Object.keys(anonymous.components.schemas), ['agentgate.Problem', 'category'], 'only the schemas of the operations shown');
  assert.deepEqual(codesAt(ops.get('GET /orders'), '403'), ['FORBIDDEN'], 'the route needs a scope');
  assert.equal(ops.get('GET /categories').responses['403'], undefined, 'no scope, no 403 of the gateway (the API may still answer one: 4XX)');
  assert.deepEqual(codesAt(ops.get('GET /categories'), '401'), ['UNAUTHENTICATED'], 'authentication is on');
});

test('large real-world specs: every operation through one catch-all route, a valid 3.1 document (3.0 and 3.1 sources)', async (t) => {
  for (const [spec, operations] of [
    ['3.0/json/star-trek.json', 120],
    ['3.1/json/readme.json', 54],
  ] as const) {
    const tg = await startTestGateway(configYaml(`openapi: {spec: '${path.join(EXAMPLES, spec)}'}
upstreams:
  api: {url: 'http://127.0.0.1:9'}
routes:
  - {name: everything, match: {path: /*}, upstream: api}
`));
    t.after(() => tg.close());
    const document = await openapi(tg);
    await assertValid31(document);
    const ops = operationsOf(document);
    assert.equal([...ops.values()].filter((op) => op['x-agentgate-route'] === 'everything' && !op.description?.startsWith('Forwarded')).length, operations, spec);
    const names = [...ops.values()].map((op) => op.operationId);
    assert.equal(new Set(names).size, names.length, `${spec}: operationIds are unique`);
  }
});

test('openapi.spec is checked at load: a missing, malformed or invalid spec is a config error naming its file', async (t) => {
  const tmp = await tempDir();
  t.after(() => tmp.remove());
  const config = path.join(tmp.dir, 'gateway.yaml');
  const problem = async (spec: string | undefined, text?: string) => {
    if (spec && text !== undefined) await writeFile(path.join(tmp.dir, spec), text);
    await writeFile(config, WITH_SPEC(spec ?? 'missing.yaml').replace(/consumers:[\s\S]*?anonymous: identify\n/, '').replace(/ {4}scopes: \[[^\]]*\]\n/g, ''));
    const err = await loadConfigFile(config).then(
      () => assert.fail('the config was accepted'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ConfigError, String(err));
    return err.message;
  };
  assert.match(await problem(undefined), /missing\.yaml: cannot read|missing\.yaml.*(ENOENT|Error opening file)/);
  assert.match(await problem('broken.yaml', 'openapi: 3.0.3\npaths: {/a: [\n'), /broken\.yaml: .*(YAML|parsing)/i);
  const invalid = await problem('invalid.yaml', 'openapi: 3.0.3\ninfo: {title: t, version: "1"}\npaths:\n  /a:\n    get:\n      responses:\n        "200": {descripton: typo}\n');
  assert.match(invalid, /invalid\.yaml: \/paths\/~1a\/get\/responses\/200: must have required property 'description'/);
  assert.match(await problem('dangling.yaml', 'openapi: 3.1.0\ninfo: {title: t, version: "1"}\npaths:\n  /a:\n    get:\n      responses:\n        "200": {$ref: "./nowhere.yaml"}\n'), /dangling\.yaml: .*nowhere\.yaml/);
  assert.match(await problem('swagger.yaml', 'swagger: "2.0"\ninfo: {title: t, version: "1"}\npaths: {}\n'), /swagger\.yaml: is a Swagger 2\.0 document/);
  assert.match(await problem('remote.yaml', 'openapi: 3.1.0\ninfo: {title: t, version: "1"}\npaths:\n  /a:\n    get:\n      responses:\n        "200": {$ref: "http://127.0.0.1:9/x.yaml"}\n'), /remote\.yaml: /);
});

test('tool names: routes[].agent.tool must be unique and within MCP rules', async (t) => {
  const tmp = await tempDir();
  t.after(() => tmp.remove());
  const config = path.join(tmp.dir, 'gateway.yaml');
  const routes = (a: string, b: string) =>
    configYaml(`upstreams:\n  api: {url: 'http://127.0.0.1:9'}\nroutes:\n  - {name: a, match: {path: /a}, upstream: api, agent: {tool: ${a}}}\n  - {name: b, match: {path: /b}, upstream: api, agent: {tool: ${b}}}\n`);
  await writeFile(config, routes('same', 'same'));
  await assert.rejects(loadConfigFile(config), /gateway\.yaml:\d+:\d+: routes\[1\]\.agent\.tool: tool name 'same' is already routes\[0\]'s/);
  await writeFile(config, routes('ok', "'has space'"));
  await assert.rejects(loadConfigFile(config), /routes\[1\]\.agent\.tool: 'has space' is not allowed here/);
});

test('agentgate validate warns of routes the spec does not describe and operations no route serves, and passes', async (t) => {
  const tmp = await tempDir();
  t.after(() => tmp.remove());
  const config = path.join(tmp.dir, 'gateway.yaml');
  const { file } = agentsFile({ writer: ['orders:read', 'orders:write'] });
  await writeFile(path.join(tmp.dir, 'agents.yaml'), file);
  await writeFile(config, WITH_SPEC(FIXTURE));
  const { stdout, stderr } = await promisify(execFile)(process.execPath, [CLI, 'validate', '--config', config]);
  assert.equal(stdout, 'config OK\n');
  assert.deepEqual(stderr.trim().split('\n'), [
    "warning: route 'crash' (GET /crash): legacy.yaml describes no such operation",
    'warning: legacy.yaml: POST /admin/purge (purgeEverything) is served by no route',
  ]);
});

test('the same disagreements are logged when the gateway starts, where an operator who never ran validate sees them', async (t) => {
  const { file } = agentsFile({ writer: ['orders:read'] });
  const tg = await startTestGateway(WITH_SPEC(FIXTURE), { files: { 'agents.yaml': file } });
  t.after(() => tg.close());
  const lines = tg.logs.lines.filter((l) => l.msg === 'openapi.spec and the routes disagree');
  assert.deepEqual(new Set(lines.map((l) => l.level)), new Set(['warn']));
  assert.deepEqual(lines.map((l) => l.warning), [
    "route 'crash' (GET /crash): legacy.yaml describes no such operation",
    'legacy.yaml: POST /admin/purge (purgeEverything) is served by no route',
  ]);
});

test('an edit of the spec file reloads the config, as an edit of the config would; a broken spec keeps the last good one', async (t) => {
  const spec = (summary: string) =>
    `openapi: 3.0.3\ninfo: {title: Orders, version: '1'}\npaths:\n  /orders:\n    get:\n      summary: ${summary}\n      responses:\n        '200': {description: the orders}\n`;
  const tg = await startTestGateway(
    configYaml(`upstreams:\n  api: {url: 'http://127.0.0.1:9'}\nopenapi: {spec: legacy.yaml}\nroutes:\n  - {name: orders, match: {methods: [GET], path: /orders}, upstream: api}\n`),
    { files: { 'legacy.yaml': spec('List the orders') }, watchConfig: true },
  );
  t.after(() => tg.close());
  const summary = async () => (await openapi(tg)).paths['/orders'].get.summary;
  assert.equal(await summary(), 'List the orders');
  const file = path.join(path.dirname(tg.configFile), 'legacy.yaml');
  await writeFile(file, spec('List every order, newest first'));
  await until(async () => (await summary()) === 'List every order, newest first', 5000, () => 'the edited spec is served');
  await writeFile(file, 'openapi: 3.0.3\ninfo: {title: broken\n');
  await until(async () => tg.logs.lines.some((l) => l.msg === 'config reload failed; the previous config keeps serving' && l.trigger === 'openapi spec change'), 5000, () => 'the broken spec is refused and logged');
  assert.equal(await summary(), 'List every order, newest first', 'the last good spec keeps serving');
});

// The operation model: which operations a config lists, what each is called, and what the route enforces on each.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { compileRuntime } from '../../test/helpers/runtime.ts';
import { buildOperationModel } from './operations.ts';
import { readLegacySpec, type LegacySpec } from './spec.ts';
import type { Operation } from './model.ts';

function modelOf(t: TestContext, routes: string, spec?: LegacySpec) {
  const { runtime, pools } = compileRuntime(`version: 1
upstreams: {api: {url: 'http://127.0.0.1:9'}}
rate_limits: {agents: {capacity: 10, per: 1m}}
routes:
${routes}`);
  t.after(() => pools.destroyAll());
  return spec ? buildOperationModel(runtime.config, runtime.router.routes, spec) : runtime.operations;
}

const summary = (ops: readonly Operation[]) => ops.map((op) => `${op.name} ${op.method} ${op.path}`);

test('an operation per route and method; a route without methods has the five usual ones; an earlier route takes its path first', (t) => {
  const model = modelOf(
    t,
    `  - {name: get-order, match: {methods: [GET], path: '/orders/{id}'}, upstream: api}
  - {name: orders, match: {path: '/orders/*'}, upstream: api}
  - {name: head, match: {methods: [HEAD, OPTIONS], path: /ping/}, upstream: api}
`,
  );
  assert.deepEqual(summary(model.operations), [
    'get_order GET /orders/{id}',
    'orders_post POST /orders/{id}',
    'orders_put PUT /orders/{id}',
    'orders_patch PATCH /orders/{id}',
    'orders_delete DELETE /orders/{id}',
    'head_head HEAD /ping',
    'head_options OPTIONS /ping',
  ]);
  assert.deepEqual(model.operations.map((op) => op.effect), ['read', 'write', 'write', 'write', 'destructive', 'read', 'read']);
  assert.equal(model.info, undefined);
  assert.equal(model.authentication, undefined);
});

test('names: agent.tool kept, derived names made unique, a route of several operations names each apart', (t) => {
  const model = modelOf(
    t,
    `  - {name: a-b, match: {methods: [GET], path: /one}, upstream: api}
  - {name: a_b, match: {methods: [GET], path: /two}, upstream: api}
  - {name: c, match: {methods: [GET], path: /three}, upstream: api, agent: {tool: a_b}}
  - {name: d, match: {methods: [GET, POST], path: /four}, upstream: api, agent: {tool: four}}
`,
  );
  assert.deepEqual(summary(model.operations), ['a_b_2 GET /one', 'a_b_3 GET /two', 'a_b GET /three', 'four_get GET /four', 'four_post POST /four']);
  for (const op of model.operations) assert.match(op.name, /^[A-Za-z0-9_.-]{1,128}$/);
});

test('with a spec: its operationIds (made tool-safe), the idempotency of each method, the cost as units or rule', async (t) => {
  const reading = await readLegacySpec(path.join(import.meta.dirname, '../../test/fixtures/openapi/legacy.yaml'));
  assert.equal(reading.kind, 'loaded');
  const spec = reading.kind === 'loaded' ? reading.spec : assert.fail();
  const renamed: LegacySpec = { ...spec, operations: spec.operations.map((op) => (op.operationId === 'getOrder' ? { ...op, operationId: 'orders/get one!' } : op)) };
  const model = modelOf(
    t,
    `  - name: orders
    match: {path: '/orders/*'}
    upstream: api
    rate_limit: agents
    cost: {base: 2, items: /items, per_item: 3, settle: {header: X-Cost}}
    idempotency: {methods: [POST, DELETE], required: true}
  - {name: orders-root, match: {path: /orders}, upstream: api}
  - {name: categories, match: {methods: [GET], path: /categories}, upstream: api}
`,
    renamed,
  );
  const byName = new Map(model.operations.map((op) => [op.name, op]));
  assert.deepEqual([...byName.keys()], ['listOrders', 'createOrder', 'orders_get_one', 'deleteOrder', 'confirmOrder', 'orders_put', 'orders_patch', 'listCategories']);
  assert.ok(!model.operations.some((op) => op.route === 'orders-root'), "'orders' (/orders/*) takes /orders first");
  assert.equal(model.info?.title, 'Legacy Orders API');
  assert.deepEqual(byName.get('createOrder')!.idempotency, { required: true, ttlSeconds: 86_400 });
  assert.deepEqual(byName.get('deleteOrder')!.idempotency, { required: true, ttlSeconds: 86_400 });
  assert.equal(byName.get('listOrders')!.idempotency, undefined, 'GET is not among its methods');
  assert.deepEqual(byName.get('listOrders')!.cost, { base: 2, items: '/items', per_item: 3, settle: { header: 'x-cost' } });
  assert.deepEqual(byName.get('listOrders')!.rateLimits, ['agents']);
  assert.equal(byName.get('orders_get_one')!.operationId, 'orders/get one!');
  assert.ok(byName.get('orders_get_one')!.described);
  assert.ok(!byName.get('orders_put')!.described);
  assert.ok(model.schemaNames.size >= 3, 'the components, and the recursive category');
  assert.ok([...model.schemaNames.values()].includes('category'));
});

test("routes[].approval: every operation of the route takes an approval, by the route's 'by' and ttl, and lists its APPROVAL_* codes", (t) => {
  const model = modelOf(
    t,
    `  - {name: wipe, match: {methods: [DELETE, POST], path: '/things/{id}'}, upstream: api, approval: {by: human, ttl: 20m}}
  - {name: confirm, match: {methods: [POST], path: /confirm}, upstream: api, approval: {by: agent, ttl: 90s}}
  - {name: plain, match: {methods: [DELETE], path: /plain}, upstream: api}
`,
  );
  const byName = new Map(model.operations.map((op) => [op.name, op]));
  const codes = (name: string) => byName.get(name)!.errors.map((e) => e.code).filter((code) => code.startsWith('APPROVAL_'));
  assert.deepEqual(byName.get('wipe_delete')!.approval, { by: 'human', ttlSeconds: 1200 });
  assert.deepEqual(byName.get('wipe_post')!.approval, { by: 'human', ttlSeconds: 1200 });
  assert.deepEqual(codes('wipe_delete').sort(), ['APPROVAL_DENIED', 'APPROVAL_MISMATCH', 'APPROVAL_PENDING', 'APPROVAL_REQUIRED']);
  assert.deepEqual(byName.get('confirm')!.approval, { by: 'agent', ttlSeconds: 90 });
  assert.deepEqual(codes('confirm').sort(), ['APPROVAL_MISMATCH', 'APPROVAL_REQUIRED']);
  assert.equal(byName.get('plain')!.approval, undefined);
  assert.deepEqual(codes('plain'), []);
});

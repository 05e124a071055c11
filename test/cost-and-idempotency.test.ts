// A route that prices requests by their body and also replays them: the body is read once and serves both policies.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startUpstream, json, type TestUpstream } from './helpers/upstream.ts';
import { startTestGateway, configYaml, type TestGateway } from './helpers/gateway.ts';
import { send } from './helpers/http.ts';

let upstream: TestUpstream;
let gw: TestGateway;

before(async () => {
  upstream = await startUpstream({ 'POST /bulk': (_req, res, body) => json(res, 201, { imported: (JSON.parse(body.toString()) as { orders: unknown[] }).orders.length }) });
  gw = await startTestGateway(
    configYaml(`upstreams: {api: {url: '${upstream.url}'}}
rate_limits: {bulk: {capacity: 100, per: 1h}}
routes:
  - name: bulk
    match: {methods: [POST], path: /bulk}
    upstream: api
    rate_limit: bulk
    cost: {base: 1, items: /orders, per_item: 2}
    idempotency: {required: true, ttl: 1h}
`),
  );
});

after(async () => {
  await gw.close();
  await upstream.close();
});

test('the body counted for the cost is the body forwarded, fingerprinted and replayed', async () => {
  const body = JSON.stringify({ orders: [{ sku: 'a' }, { sku: 'b' }, { sku: 'c' }] });
  const post = () => send(`${gw.url}/bulk`, { method: 'POST', body, headers: { 'content-type': 'application/json', 'idempotency-key': 'import-1', 'x-agent-id': 'a1' } });
  const first = await post();
  assert.equal(first.status, 201);
  assert.deepEqual(first.json(), { imported: 3 });
  assert.equal(first.headers['x-ratelimit-cost'], '7');
  assert.equal(upstream.received.at(-1)!.body.toString(), body, 'the upstream got the whole body');

  const retry = await post();
  assert.equal(retry.status, 201);
  assert.equal(retry.headers['idempotent-replayed'], 'true');
  assert.equal(retry.text, first.text);
  assert.equal(upstream.received.length, 1, 'executed once');

  const changed = await send(`${gw.url}/bulk`, {
    method: 'POST',
    body: JSON.stringify({ orders: [{ sku: 'a' }] }),
    headers: { 'content-type': 'application/json', 'idempotency-key': 'import-1', 'x-agent-id': 'a1' },
  });
  assert.equal(changed.status, 422, 'the fingerprint covers the body the cost rule read');
});

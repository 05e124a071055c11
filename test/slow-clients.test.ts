// A client too slow to send its request is the client's fault: 408 REQUEST_TIMEOUT, and never a failure of the upstream
// (one slow agent must not open the circuit breaker for everyone).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { startUpstream, json, type TestUpstream } from './helpers/upstream.ts';
import { startTestGateway, configYaml, type TestGateway } from './helpers/gateway.ts';
import { send, parseRawResponse, envelopeOf } from './helpers/http.ts';

let upstream: TestUpstream;
let gw: TestGateway;

before(async () => {
  upstream = await startUpstream({ '*': (req, res, body) => json(res, 201, { url: req.url, bytes: body.length }) });
  gw = await startTestGateway(
    configYaml(`  timeouts: {request_body_idle: 300ms}
upstreams:
  api: {url: '${upstream.url}', timeout: 5s, circuit_breaker: {failures: 3, window: 1m, open_for: 1m}}
rate_limits: {agents: {capacity: 1000, per: 1m}}
routes:
  - {name: quick-upstream, match: {path: /quick-upload}, upstream: api, timeout: 100ms}
  - {name: orders, match: {methods: [POST], path: /orders}, upstream: api, idempotency: {required: true, ttl: 1h}}
  - {name: bulk, match: {methods: [POST], path: /bulk}, upstream: api, rate_limit: agents, cost: {base: 1, per_item: 1, items: /items}}
  - {name: upload, match: {path: /*}, upstream: api}
`),
  );
});

after(async () => {
  await gw.close();
  await upstream.close();
});

/** Sends a head and part of a body, then stalls; resolves with the answer and how long it took. */
function stall(head: string, partialBody: string): Promise<{ reply: ReturnType<typeof parseRawResponse>; ms: number }> {
  const { hostname, port } = new URL(gw.url);
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = connect(Number(port), hostname);
    let data = '';
    socket.on('data', (chunk) => (data += chunk.toString()));
    socket.on('error', reject);
    socket.on('close', () => resolve({ reply: parseRawResponse(data), ms: Date.now() - started }));
    socket.write(head + partialBody);
    setTimeout(() => socket.destroy(), 10_000).unref();
  });
}

const upstreamErrors = async () => (await send(`${gw.adminUrl}/metrics`)).text.split('\n').filter((l) => l.startsWith('agentgate_upstream_errors_total{'));

test('three clients whose streamed bodies stall get 408, and the breaker stays closed for everyone else', async () => {
  for (let i = 0; i < 3; i++) {
    const { reply } = await stall('POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n', 'x'.repeat(10));
    assert.equal(reply.status, 408);
    const body = envelopeOf(reply);
    assert.equal(body.code, 'REQUEST_TIMEOUT');
    assert.equal(body.upstream_status, null);
  }
  const other = await send(`${gw.url}/someone-else`);
  assert.equal(other.status, 201, `an unrelated agent got ${other.status}: ${other.text}`);
  assert.deepEqual(await upstreamErrors(), [], 'a slow client counted as an upstream error');
});

test('a stalled body is the client\'s fault even when the upstream timeout is shorter than the body timeout', async () => {
  const { reply } = await stall('POST /quick-upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n', '5\r\nhello\r\n');
  assert.equal(reply.status, 408);
  assert.equal(envelopeOf(reply).code, 'REQUEST_TIMEOUT');
  assert.deepEqual(await upstreamErrors(), []);
});

test('a body a policy reads (idempotency) that stalls gets 408, claims nothing, and the full retry executes', async () => {
  const before = upstream.received.length;
  const { reply } = await stall('POST /orders HTTP/1.1\r\nHost: a\r\nIdempotency-Key: slow-1\r\nContent-Length: 20\r\n\r\n', '{"a":');
  assert.equal(reply.status, 408);
  assert.equal(envelopeOf(reply).code, 'REQUEST_TIMEOUT');
  assert.equal(upstream.received.length, before, 'nothing was forwarded');
  const retry = await send(`${gw.url}/orders`, { method: 'POST', headers: { 'idempotency-key': 'slow-1', 'content-type': 'application/json' }, body: '{"a":1}' });
  assert.equal(retry.status, 201, 'the key was not left claimed');
});

test('a body a cost rule reads that stalls gets 408 and is not charged', async () => {
  const { reply } = await stall('POST /bulk HTTP/1.1\r\nHost: a\r\nX-Agent-Id: slow-bulk\r\nContent-Length: 40\r\n\r\n', '{"items":[1,');
  assert.equal(reply.status, 408);
  assert.equal(envelopeOf(reply).code, 'REQUEST_TIMEOUT');
  const budget = await send(`${gw.url}/_agentgate/budget`, { headers: { 'x-agent-id': 'slow-bulk' } });
  assert.equal(budget.json().budgets[0].remaining, 1000);
});

test('a slow but steady body is not cut: silence, not duration, is what counts', async () => {
  const { hostname, port } = new URL(gw.url);
  const socket = connect(Number(port), hostname);
  let data = '';
  socket.on('data', (chunk) => (data += chunk.toString()));
  const closed = new Promise((resolve) => socket.on('close', resolve));
  socket.write('POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 8\r\nConnection: close\r\n\r\n');
  for (let i = 0; i < 8; i++) {
    await new Promise((resolve) => setTimeout(resolve, 150));
    socket.write('x');
  }
  await closed;
  assert.equal(parseRawResponse(data).status, 201, data);
});

// Forwarding through the gateway: routing, headers both ways, streaming both ways, connection reuse, and cancellation.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { once } from 'node:events';
import { startUpstream, json, type TestUpstream } from './helpers/upstream.ts';
import { startTestGateway, configYaml, type TestGateway } from './helpers/gateway.ts';
import { send, envelopeOf } from './helpers/http.ts';

let orders: TestUpstream;
let admin: TestUpstream;
let gw: TestGateway;
let releaseFirstChunk: () => void = () => {};
let requestBodyProgress: (chunk: string) => void = () => {};
let upstreamSawClose: () => void = () => {};

before(async () => {
  orders = await startUpstream({
    '/api/orders/7': (req, res) => json(res, 200, { id: 7, url: req.url }),
    'POST /api/orders': (_req, res, body) => json(res, 201, { created: JSON.parse(body.toString()) }, { location: '/orders/8' }),
    '/api/hop': (_req, res) => {
      res.setHeader('connection', 'x-internal-token');
      res.setHeader('x-internal-token', 'should-not-leave');
      res.setHeader('keep-alive', 'timeout=99');
      res.setHeader('set-cookie', ['a=1', 'b=2']);
      res.setHeader('x-request-id', 'upstream-made-this-up');
      json(res, 200, { ok: true });
    },
    '/api/stream': (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first\n');
      // The rest is only sent once the client has seen the first chunk: a gateway that buffered would deadlock here.
      new Promise<void>((resolve) => (releaseFirstChunk = resolve)).then(() => res.end('second\n'));
    },
    'stream:/api/upload': (req, res) => {
      req.on('data', (c: Buffer) => requestBodyProgress(c.toString()));
      req.on('end', () => json(res, 200, { done: true }));
    },
    '/api/hold': (req) => {
      req.socket.once('close', () => upstreamSawClose());
    },
  });
  admin = await startUpstream({ '*': (req, res) => json(res, 200, { upstream: 'admin', url: req.url }) });
  gw = await startTestGateway(
    configYaml(`upstreams:
  orders: {url: '${orders.url}/api', timeout: 5s}
  admin: {url: '${admin.url}'}
routes:
  - {name: get-order, match: {methods: [GET], path: '/orders/{id}'}, upstream: orders}
  - {name: create-order, match: {methods: [POST], path: /orders}, upstream: orders}
  - {name: admin-area, match: {path: /admin/*}, upstream: admin}
  - {name: orders-rest, match: {path: /*}, upstream: orders}
`),
  );
});

after(async () => {
  await gw.close();
  await orders.close();
  await admin.close();
});

test('a {param} route forwards to its upstream, with the upstream base path and query kept', async () => {
  const reply = await send(`${gw.url}/orders/7?expand=items`);
  assert.equal(reply.status, 200);
  assert.deepEqual(reply.json(), { id: 7, url: '/api/orders/7?expand=items' });
});

test('a write streams its body upstream and the upstream answer comes back unchanged', async () => {
  const reply = await send(`${gw.url}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"item":"x"}' });
  assert.equal(reply.status, 201);
  assert.equal(reply.headers.location, '/orders/8');
  assert.deepEqual(reply.json(), { created: { item: 'x' } });
});

test('a prefix route takes the prefix itself and everything under it, but not look-alikes', async () => {
  assert.equal((await send(`${gw.url}/admin`)).json().upstream, 'admin');
  assert.equal((await send(`${gw.url}/admin/users/3`)).json().url, '/admin/users/3');
  const lookAlike = await send(`${gw.url}/administrator`);
  assert.equal(lookAlike.status, 404);
  assert.equal(orders.received.at(-1)!.url, '/api/administrator', 'the look-alike went to the catch-all route');
});

test('no matching route is a ROUTE_NOT_FOUND envelope, not a forwarded request', async () => {
  const only = await startTestGateway(configYaml(`upstreams: {a: {url: '${orders.url}'}}\nroutes: [{name: one, match: {methods: [GET], path: /one}, upstream: a}]\n`));
  try {
    const before = orders.received.length;
    const reply = await send(`${only.url}/two`, { method: 'DELETE' });
    assert.equal(reply.status, 404);
    const body = envelopeOf(reply);
    assert.equal(body.code, 'ROUTE_NOT_FOUND');
    assert.equal(body.retryable, false);
    assert.match(body.detail, /DELETE \/two/);
    assert.equal(orders.received.length, before);
  } finally {
    await only.close();
  }
});

test('the upstream gets X-Forwarded-* (the client\'s own replaced: no trusted proxies), its own Host, no hop-by-hop headers, and end-to-end headers intact', async () => {
  await send(`${gw.url}/orders/7`, {
    headers: {
      host: 'agents.example.com',
      connection: 'keep-alive, x-hop-secret',
      'x-hop-secret': 'gateway-only',
      'keep-alive': 'timeout=5',
      te: 'trailers',
      'x-forwarded-for': '203.0.113.9',
      'x-custom': 'kept',
    },
  });
  const seen = orders.received.at(-1)!.headers;
  assert.equal(seen.host, new URL(orders.url).host);
  assert.equal(seen['x-forwarded-host'], 'agents.example.com');
  assert.equal(seen['x-forwarded-for'], '127.0.0.1');
  assert.equal(seen['x-real-ip'], '127.0.0.1');
  assert.equal(seen.forwarded, 'for=127.0.0.1;proto=http;host="agents.example.com"');
  assert.equal(seen['x-forwarded-proto'], 'http');
  assert.equal(seen['x-custom'], 'kept');
  assert.equal(seen['x-hop-secret'], undefined);
  assert.equal(seen['keep-alive'], undefined);
  assert.equal(seen.te, undefined);
});

test('hop-by-hop response headers stay behind, repeated headers survive, and the gateway request id wins', async () => {
  const reply = await send(`${gw.url}/hop`);
  assert.equal(reply.status, 200);
  assert.equal(reply.headers['x-internal-token'], undefined);
  assert.notEqual(reply.headers['keep-alive'], 'timeout=99');
  assert.deepEqual(reply.headers['set-cookie'], ['a=1', 'b=2']);
  assert.notEqual(reply.headers['x-request-id'], 'upstream-made-this-up');
  assert.equal(reply.headers['x-request-id'], orders.received.at(-1)!.headers['x-request-id']);
});

test('a response streams: the client reads the first chunk while the upstream is still writing', async () => {
  const req = request(`${gw.url}/stream`);
  req.end();
  const [res] = (await once(req, 'response')) as [import('node:http').IncomingMessage];
  res.setEncoding('utf8');
  const [first] = (await once(res, 'data')) as [string];
  assert.equal(first, 'first\n');
  releaseFirstChunk();
  let rest = '';
  for await (const chunk of res) rest += chunk;
  assert.equal(rest, 'second\n');
});

test('a request body streams: the upstream reads the first chunk before the client has sent the rest', async () => {
  const firstArrived = new Promise<string>((resolve) => (requestBodyProgress = resolve));
  const req = request(`${gw.url}/upload`, { method: 'POST', headers: { 'transfer-encoding': 'chunked' } });
  req.write('part-one;');
  assert.equal(await firstArrived, 'part-one;');
  requestBodyProgress = () => {};
  req.end('part-two');
  const [res] = (await once(req, 'response')) as [import('node:http').IncomingMessage];
  assert.equal(res.statusCode, 200);
  res.resume();
});

test('upstream connections are pooled and reused across requests', async () => {
  const socketsBefore = orders.sockets.size;
  for (let i = 0; i < 20; i++) assert.equal((await send(`${gw.url}/orders/7`)).status, 200);
  assert.ok(orders.sockets.size - socketsBefore <= 1, `20 sequential requests opened ${orders.sockets.size - socketsBefore} upstream connections`);
});

test('a client that disconnects cancels its upstream request', async () => {
  const upstreamClosed = new Promise<void>((resolve) => (upstreamSawClose = resolve));
  const req = request(`${gw.url}/hold`);
  req.on('error', () => {});
  req.end();
  await new Promise((r) => setTimeout(r, 200)); // let the request reach the upstream
  req.destroy();
  const outcome = await Promise.race([upstreamClosed.then(() => 'cancelled'), new Promise((r) => setTimeout(() => r('still open'), 3000))]);
  assert.equal(outcome, 'cancelled');
  const line = await waitFor(() => gw.logs.requestLines().find((l) => l.path === '/hold'));
  assert.equal(line.outcome, 'client_closed');
  assert.equal(line.status, 499);
});

async function waitFor<T>(probe: () => T | undefined, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('every kind of answer carries the caller\'s X-Request-Id, and a limited route\'s budget headers, exactly once', async () => {
  // Proxied answers get the gateway's headers in one writeHead; answers the gateway makes itself set them one by one:
  // each way of answering is checked here.
  const api = await startUpstream({
    '/stream': (_req, res) => json(res, 200, { ok: true }, { 'x-request-id': 'upstream-own', 'x-ratelimit-remaining': '12345' }),
    '/checked': (_req, res) => json(res, 200, { ok: true }),
    '/missing': (_req, res) => json(res, 404, { message: 'no such thing' }),
    'POST /write': (_req, res) => json(res, 201, { created: true }),
  });
  const gateway = await startTestGateway(
    configYaml(`upstreams:
  api: {url: '${api.url}'}
rate_limits:
  agents: {capacity: 1000, per: 1h}
defaults: {rate_limit: agents}
routes:
  - {name: checked, match: {path: /checked}, upstream: api, silent_failure: {error_fields: [/error]}}
  - {name: write, match: {methods: [POST], path: /write}, upstream: api, idempotency: {required: true}}
  - {name: open, match: {path: /*}, upstream: api}
`),
  );
  try {
    const cases: [string, string, { method?: string; headers?: Record<string, string>; body?: string }][] = [
      ['streamed', '/stream', {}],
      ['checked and buffered', '/checked', {}],
      ['HEAD', '/stream', { method: 'HEAD' }],
      ['normalized upstream 404', '/missing', {}],
      ['first write', '/write', { method: 'POST', headers: { 'idempotency-key': 'key-1' }, body: '{}' }],
      ['replay', '/write', { method: 'POST', headers: { 'idempotency-key': 'key-1' }, body: '{}' }],
      ['refused write (no key)', '/write', { method: 'POST', body: '{}' }],
    ];
    for (const [what, urlPath, options] of cases) {
      const id = `answer-${what.replaceAll(/\W+/g, '-')}`;
      const reply = await send(`${gateway.url}${urlPath}`, { ...options, headers: { ...options.headers, 'x-request-id': id } });
      assert.equal(reply.headers['x-request-id'], id, `${what}: exactly the caller's id, once (a repeated header would read 'a, b')`);
      assert.match(String(reply.headers['x-ratelimit-remaining']), /^\d+$/, `${what}: the gateway's budget header, not the upstream's`);
      assert.notEqual(reply.headers['x-ratelimit-remaining'], '12345', what);
    }
    for (const urlPath of ['/_agentgate/errors', '/_agentgate/budget', '/_agentgate/nothing-here']) {
      const reply = await send(`${gateway.url}${urlPath}`, { headers: { 'x-request-id': 'gateway-endpoint' } });
      assert.equal(reply.headers['x-request-id'], 'gateway-endpoint', urlPath);
    }
  } finally {
    await gateway.close();
    await api.close();
  }
});

// Requests built to break a proxy: oversized heads and URLs, smuggling-shaped framing, dot segments, garbage. Each gets a 4xx envelope.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startUpstream, json, type TestUpstream } from './helpers/upstream.ts';
import { startTestGateway, configYaml, type TestGateway } from './helpers/gateway.ts';
import { send, rawExchange, parseRawResponse, envelopeOf } from './helpers/http.ts';

let upstream: TestUpstream;
let gw: TestGateway;

before(async () => {
  upstream = await startUpstream({ '*': (req, res, body) => json(res, 200, { url: req.url, bytes: body.length }) });
  gw = await startTestGateway(configYaml(`upstreams: {api: {url: '${upstream.url}'}}\nroutes: [{name: all, match: {path: /*}, upstream: api}]\n`));
});

after(async () => {
  await gw.close();
  await upstream.close();
});

async function stillServing(): Promise<void> {
  assert.equal((await send(`${gw.url}/healthy`)).status, 200, 'the gateway must keep serving');
}

test('headers larger than max_header_bytes get a 431 envelope and never reach the upstream', async () => {
  const before = upstream.received.length;
  const raw = await rawExchange(gw.url, `GET /x HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
  const reply = parseRawResponse(raw);
  assert.equal(reply.status, 431);
  const body = envelopeOf(reply);
  assert.equal(body.code, 'INVALID_REQUEST');
  assert.equal(upstream.received.length, before);
  await stillServing();
});

test('a URL longer than max_url_bytes gets a 414 envelope', async () => {
  const reply = await send(`${gw.url}/${'p'.repeat(9000)}`);
  assert.equal(reply.status, 414);
  assert.equal(envelopeOf(reply).code, 'INVALID_REQUEST');
  await stillServing();
});

test('Content-Length together with Transfer-Encoding (request smuggling) is refused with a 400 envelope', async () => {
  const before = upstream.received.length;
  const raw = await rawExchange(
    gw.url,
    'POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n',
  );
  const reply = parseRawResponse(raw);
  assert.equal(reply.status, 400);
  assert.match(envelopeOf(reply).detail, /Content-Length and Transfer-Encoding/);
  assert.ok(!upstream.received.slice(before).some((r) => r.url === '/smuggled'), 'a smuggled request reached the upstream');
  await stillServing();
});

test('two different Content-Length headers are refused with a 400 envelope', async () => {
  const raw = await rawExchange(gw.url, 'POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde');
  const reply = parseRawResponse(raw);
  assert.equal(reply.status, 400);
  envelopeOf(reply);
  await stillServing();
});

test('garbage instead of HTTP gets a 400 envelope', async () => {
  const reply = parseRawResponse(await rawExchange(gw.url, 'HELLO THERE\r\n\r\n'));
  assert.equal(reply.status, 400);
  envelopeOf(reply);
  await stillServing();
});

test('dot segments, raw or percent-encoded, are refused before routing', async () => {
  for (const path of ['/a/../admin', '/a/%2e%2e/admin', '/a/./b', '/a/%2E/b']) {
    const reply = parseRawResponse(await rawExchange(gw.url, `GET ${path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`));
    assert.equal(reply.status, 400, path);
    assert.match(envelopeOf(reply).detail, /\. or \.\. segments/);
  }
  await stillServing();
});

test('an absolute-form request target is refused', async () => {
  const reply = parseRawResponse(await rawExchange(gw.url, 'GET http://internal.example/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'));
  assert.equal(reply.status, 400);
  assert.match(envelopeOf(reply).detail, /must be a path/);
});

test('gateway endpoints answer unknown paths and wrong methods with envelopes', async () => {
  const missing = await send(`${gw.url}/_agentgate/nope`);
  assert.equal(missing.status, 404);
  assert.equal(envelopeOf(missing).code, 'ROUTE_NOT_FOUND');
  const wrongMethod = await send(`${gw.url}/_agentgate/errors`, { method: 'POST' });
  assert.equal(wrongMethod.status, 405);
  assert.equal(wrongMethod.headers.allow, 'GET, HEAD');
  envelopeOf(wrongMethod);
});

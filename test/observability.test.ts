// Observability over real sockets: one log line per request, no secrets in logs or metrics, request ids and trace context, /metrics, /healthz, /readyz.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { configYaml, startTestGateway, type TestGateway } from './helpers/gateway.ts';
import { json, startUpstream, type ReceivedRequest, type TestUpstream } from './helpers/upstream.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

let upstream: TestUpstream;
/** A port where nothing listens: the "refused" upstream and the unreachable Redis. */
let deadPort: number;

before(async () => {
  upstream = await startUpstream({
    'GET /orders/missing': (_req, res) => json(res, 404, { message: 'no such order' }),
    'POST /orders': (_req, res) => json(res, 201, { id: 'new' }),
    '*': (req, res) => json(res, 200, { path: req.url }),
  });
  deadPort = await freePort();
});

after(async () => {
  await upstream.close();
});

async function freePort(): Promise<number> {
  const server = createNetServer();
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function gatewayYaml(extra = ''): string {
  return configYaml(`${extra}upstreams:
  orders:
    url: ${upstream.url}
  dead:
    url: http://127.0.0.1:${deadPort}
    connect_timeout: 2s
routes:
  - name: get-order
    match: {methods: [GET], path: '/orders/{id}'}
    upstream: orders
  - name: create-order
    match: {methods: [POST], path: /orders}
    upstream: orders
  - name: dead-route
    match: {path: /dead/*}
    upstream: dead
`);
}

async function gatewayFor(t: { after: (fn: () => Promise<void>) => void }, yaml: string): Promise<TestGateway> {
  const tg = await startTestGateway(yaml);
  t.after(() => tg.close());
  return tg;
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** node:http rather than fetch: fetch may refuse headers such as Proxy-Authorization, and keep-alive would blur "one request". */
function send(url: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/**
 * Writes raw bytes to the server and parses the answer (send Connection: close; Content-Length bodies only): for what node:http
 * refuses to send, such as a repeated X-Request-Id or a made-up method.
 */
function sendRaw(baseUrl: string, head: string): Promise<Reply> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end === -1) return reject(new Error(`no complete response head: ${JSON.stringify(text)}`));
      const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
      const headers: IncomingHttpHeaders = {};
      for (const line of lines) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({ status: Number(statusLine!.split(' ')[1]), headers, body: text.slice(end + 4) });
    });
    // write, not end: Node aborts a request whose client half-closes before the answer, so the socket stays open until the server closes it.
    socket.write(Buffer.from(head, 'latin1'));
  });
}

function problem(reply: Reply): Record<string, unknown> {
  assert.match(String(reply.headers['content-type']), /^application\/problem\+json/);
  return JSON.parse(reply.body) as Record<string, unknown>;
}

function receivedWithId(id: string): ReceivedRequest {
  const found = upstream.received.filter((r) => r.headers['x-request-id'] === id);
  assert.equal(found.length, 1, `the upstream should have received exactly one request with id ${id}`);
  return found[0]!;
}

function traceIdOf(traceparent: unknown): string {
  const m = TRACEPARENT.exec(String(traceparent));
  assert.ok(m, `not a valid traceparent: ${String(traceparent)}`);
  return m[1]!;
}

/** Stops the gateway so every response has closed and been recorded; then its log is complete. */
async function finish(tg: TestGateway): Promise<Record<string, unknown>[]> {
  await tg.gateway.shutdown();
  return tg.logs.requestLines();
}

function lineFor(lines: Record<string, unknown>[], requestId: string): Record<string, unknown> {
  const found = lines.filter((l) => l.request_id === requestId);
  assert.equal(found.length, 1, `expected exactly one log line for ${requestId}, got ${found.length}`);
  return found[0]!;
}

// ---------------------------------------------------------------------------------------------------------------
// Prometheus text format, parsed just enough to compare samples exactly.

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Exposition {
  types: Map<string, string>;
  samples: Sample[];
}

function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (line.startsWith('#')) {
      const m = /^# TYPE (\S+) (\S+)$/.exec(line);
      if (m) types.set(m[1]!, m[2]!);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$/.exec(line);
    assert.ok(m, `not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    if (m[2]) {
      const labelPattern = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/gy;
      let lm: RegExpExecArray | null;
      let consumed = 0;
      while ((lm = labelPattern.exec(m[2])) !== null) {
        labels[lm[1]!] = lm[2]!.replace(/\\(.)/g, (_s, c: string) => (c === 'n' ? '\n' : c));
        consumed = labelPattern.lastIndex;
      }
      assert.equal(consumed, m[2].length, `unparsable labels in: ${line}`);
    }
    // Prometheus reads values with Go's ParseFloat, which takes NaN and Inf in any case (prom-client writes "Nan").
    const raw = m[3]!.toLowerCase();
    const value = raw === '+inf' || raw === 'inf' ? Infinity : raw === '-inf' ? -Infinity : raw === 'nan' ? NaN : Number(raw);
    assert.ok(!Number.isNaN(value) || raw === 'nan', `not a sample value in: ${line}`);
    samples.push({ name: m[1]!, labels, value });
  }
  return { types, samples };
}

function matching(exp: Exposition, name: string, labels: Record<string, string>): Sample[] {
  return exp.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

/** The value of the one sample with exactly these labels; undefined when there is none. */
function valueOf(exp: Exposition, name: string, labels: Record<string, string>): number | undefined {
  const found = exp.samples.filter(
    (s) => s.name === name && Object.keys(s.labels).length === Object.keys(labels).length && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  assert.ok(found.length <= 1, `more than one ${name} sample with ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

async function scrape(tg: TestGateway): Promise<{ text: string; exp: Exposition; contentType: string }> {
  const reply = await send(`${tg.adminUrl}/metrics`);
  assert.equal(reply.status, 200);
  return { text: reply.body, exp: parseExposition(reply.body), contentType: String(reply.headers['content-type']) };
}

/** Requests are recorded when their response closes, which may be just after the client has read it: poll until all are counted. */
async function scrapeAfter(tg: TestGateway, requests: number): Promise<{ text: string; exp: Exposition; contentType: string }> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const result = await scrape(tg);
    const counted = matching(result.exp, 'agentgate_requests_total', {}).reduce((sum, s) => sum + s.value, 0);
    if (counted >= requests || Date.now() > deadline) {
      assert.equal(counted, requests, 'agentgate_requests_total should count every request exactly once');
      return result;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

// ---------------------------------------------------------------------------------------------------------------

describe('request log', () => {
  test('exactly one line per request, with ids, route name, hashed consumer, statuses, durations and outcome', async (t) => {
    const tg = await gatewayFor(t, gatewayYaml());

    const ok1 = await send(`${tg.url}/orders/42`, { headers: { 'x-agent-id': 'agent-alpha', 'x-request-id': 'log-ok-1' } });
    const ok2 = await send(`${tg.url}/orders/43`, { headers: { 'x-agent-id': 'agent-alpha', 'x-request-id': 'log-ok-2' } });
    const ok3 = await send(`${tg.url}/orders/44`, { headers: { 'x-agent-id': 'agent-beta', 'x-request-id': 'log-ok-3' } });
    const missing = await send(`${tg.url}/orders/missing`, { headers: { 'x-agent-id': 'agent-alpha', 'x-request-id': 'log-upstream-404' } });
    const notFound = await send(`${tg.url}/nowhere`, { headers: { 'x-agent-id': 'agent-alpha', 'x-request-id': 'log-no-route' } });
    const refused = await send(`${tg.url}/dead/thing`, { headers: { 'x-agent-id': 'agent-alpha', 'x-request-id': 'log-refused' } });

    assert.deepEqual([ok1.status, ok2.status, ok3.status, missing.status, notFound.status, refused.status], [200, 200, 200, 404, 404, 503]);
    assert.equal(ok1.headers['x-request-id'], 'log-ok-1');
    assert.equal(problem(notFound).code, 'ROUTE_NOT_FOUND');
    assert.equal(problem(refused).code, 'UPSTREAM_UNAVAILABLE');

    const lines = await finish(tg);
    assert.equal(lines.length, 6, `one request line per request:\n${tg.logs.text}`);

    const first = lineFor(lines, 'log-ok-1');
    const sent = receivedWithId('log-ok-1');
    assert.equal(sent.url, '/orders/42');
    assert.equal(first.trace_id, traceIdOf(sent.headers.traceparent));
    assert.equal(first.route, 'get-order');
    assert.equal(first.method, 'GET');
    assert.equal(first.path, '/orders/42');
    assert.equal(first.status, 200);
    assert.equal(first.upstream_status, 200);
    assert.equal(first.outcome, 'ok');
    assert.equal(first.code, undefined);
    assert.equal(typeof first.duration_ms, 'number');
    assert.equal(typeof first.upstream_duration_ms, 'number');
    assert.ok((first.duration_ms as number) >= 0);
    assert.ok((first.upstream_duration_ms as number) >= 0);
    assert.ok((first.upstream_duration_ms as number) <= (first.duration_ms as number), 'the upstream call is part of the request');

    // The consumer is a stable pseudonym: the same caller maps to the same id, another caller to another, and the raw value never shows.
    assert.equal(typeof first.consumer, 'string');
    assert.ok(!String(first.consumer).includes('agent-alpha'));
    assert.equal(lineFor(lines, 'log-ok-2').consumer, first.consumer);
    assert.notEqual(lineFor(lines, 'log-ok-3').consumer, first.consumer);
    assert.ok(!tg.logs.text.includes('agent-alpha') && !tg.logs.text.includes('agent-beta'), 'raw consumer ids must not be logged');

    const upstream404 = lineFor(lines, 'log-upstream-404');
    assert.equal(upstream404.status, 404);
    assert.equal(upstream404.upstream_status, 404);
    assert.equal(upstream404.outcome, 'not_found', "an upstream 404 is normalized: the outcome is its code");
    assert.equal(upstream404.code, 'NOT_FOUND');

    const noRoute = lineFor(lines, 'log-no-route');
    assert.equal(noRoute.status, 404);
    assert.equal(noRoute.outcome, 'route_not_found');
    assert.equal(noRoute.code, 'ROUTE_NOT_FOUND');
    assert.equal(noRoute.path, '/nowhere');
    assert.equal(noRoute.upstream_status, undefined);
    assert.equal(typeof noRoute.trace_id, 'string');
    assert.equal(typeof noRoute.duration_ms, 'number');

    const unavailable = lineFor(lines, 'log-refused');
    assert.equal(unavailable.status, 503);
    assert.equal(unavailable.route, 'dead-route');
    assert.equal(unavailable.outcome, 'upstream_unavailable');
    assert.equal(unavailable.code, 'UPSTREAM_UNAVAILABLE');
    assert.equal(unavailable.upstream_status, undefined);
    assert.equal(unavailable.consumer, first.consumer);
  });
});

describe('secrets', () => {
  const SECRETS = ['sk-live-SECRET123', 'SECRETCOOKIE', 'SECRETAPIKEY', 'SECRETIDEMKEY', 'SECRETPROXY', 'SECRETQUERY'];
  const secretHeaders = {
    authorization: 'Bearer sk-live-SECRET123',
    cookie: 'session=SECRETCOOKIE',
    'x-api-key': 'SECRETAPIKEY',
    'idempotency-key': 'SECRETIDEMKEY',
    'proxy-authorization': 'Basic SECRETPROXY',
  };

  test('never appear in logs or metrics; end-to-end credentials still reach the upstream, Proxy-Authorization does not', async (t) => {
    const tg = await gatewayFor(t, gatewayYaml('consumers:\n  identify: [{header: authorization}]\n'));

    const get = await send(`${tg.url}/orders/7?api_key=SECRETQUERY`, { headers: { ...secretHeaders, 'x-request-id': 'secret-get' } });
    const post = await send(`${tg.url}/orders?api_key=SECRETQUERY`, {
      method: 'POST',
      headers: { ...secretHeaders, 'x-request-id': 'secret-post', 'content-type': 'application/json' },
      body: '{"item":"x"}',
    });
    const noRoute = await send(`${tg.url}/nowhere?api_key=SECRETQUERY`, { headers: { ...secretHeaders, 'x-request-id': 'secret-no-route' } });
    const refused = await send(`${tg.url}/dead/x?api_key=SECRETQUERY`, { headers: { ...secretHeaders, 'x-request-id': 'secret-refused' } });
    assert.deepEqual([get.status, post.status, noRoute.status, refused.status], [200, 201, 404, 503]);
    for (const reply of [noRoute, refused]) for (const secret of SECRETS) assert.ok(!reply.body.includes(secret), `error body leaks ${secret}`);

    for (const id of ['secret-get', 'secret-post']) {
      const got = receivedWithId(id);
      assert.equal(got.headers.authorization, 'Bearer sk-live-SECRET123');
      assert.equal(got.headers.cookie, 'session=SECRETCOOKIE');
      assert.equal(got.headers['x-api-key'], 'SECRETAPIKEY');
      assert.equal(got.headers['idempotency-key'], 'SECRETIDEMKEY');
      assert.equal(got.headers['proxy-authorization'], undefined, 'Proxy-Authorization is meant for the gateway, not the upstream');
      assert.ok(got.url.endsWith('?api_key=SECRETQUERY'), 'the query string is passed on unchanged');
    }

    const { text: metricsText } = await scrapeAfter(tg, 4);
    for (const secret of SECRETS) assert.ok(!metricsText.includes(secret), `/metrics contains ${secret}`);

    // Redaction is the backstop should a header bag ever reach a log call, directly or one level down.
    tg.gateway.logger.warn({ headers: secretHeaders, req: { headers: secretHeaders } }, 'header bag');

    const lines = await finish(tg);
    assert.equal(lines.length, 4);
    assert.ok(tg.logs.lines.some((l) => l.msg === 'header bag'), 'the backstop line was written');
    // The consumer was identified from the Authorization header (the only source configured), hashed.
    const consumer = lineFor(lines, 'secret-get').consumer;
    assert.equal(typeof consumer, 'string');
    assert.equal(lineFor(lines, 'secret-post').consumer, consumer);
    assert.equal(lineFor(lines, 'secret-refused').consumer, consumer);
    assert.ok(tg.logs.text.length > 0);
    for (const secret of SECRETS) assert.ok(!tg.logs.text.includes(secret), `the log contains ${secret}:\n${tg.logs.text}`);
    assert.ok(!tg.logs.text.includes('api_key'), 'the query string is never logged');
  });
});

describe('X-Request-Id and traceparent', () => {
  const VALID_ID = 'abc-123:x.y_z';

  test('a valid incoming id is kept on the response, upstream, log and error body', async (t) => {
    const tg = await gatewayFor(t, gatewayYaml());
    const longest = 'L'.repeat(128);

    const ok = await send(`${tg.url}/orders/1`, { headers: { 'x-request-id': VALID_ID } });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['x-request-id'], VALID_ID);
    assert.equal(receivedWithId(VALID_ID).url, '/orders/1');

    const atLimit = await send(`${tg.url}/orders/2`, { headers: { 'x-request-id': longest } });
    assert.equal(atLimit.headers['x-request-id'], longest, '128 characters is still valid');
    assert.equal(receivedWithId(longest).url, '/orders/2');

    const err = await send(`${tg.url}/nowhere`, { headers: { 'x-request-id': `${VALID_ID}.err` } });
    assert.equal(err.status, 404);
    assert.equal(err.headers['x-request-id'], `${VALID_ID}.err`);
    assert.equal(problem(err).request_id, `${VALID_ID}.err`);

    const lines = await finish(tg);
    assert.equal(lines.length, 3);
    assert.equal(lineFor(lines, VALID_ID).path, '/orders/1');
    assert.equal(lineFor(lines, longest).path, '/orders/2');
    assert.equal(lineFor(lines, `${VALID_ID}.err`).outcome, 'route_not_found');
  });

  test('invalid or repeated ids are replaced by a fresh UUID, never echoed', async (t) => {
    const tg = await gatewayFor(t, gatewayYaml());
    const head = (path: string, idLines: string) => `GET ${path} HTTP/1.1\r\nHost: gw\r\n${idLines}Connection: close\r\n\r\n`;
    const cases: { name: string; sent: string; reply: Reply; path: string }[] = [];
    const attempt = async (name: string, sent: string, idLines: string, path: string) => {
      cases.push({ name, sent, reply: await sendRaw(tg.url, head(path, idLines)), path });
    };
    await attempt('spaces', 'has spaces in it', 'X-Request-Id: has spaces in it\r\n', '/orders/10');
    await attempt('129 chars', 'x'.repeat(129), `X-Request-Id: ${'x'.repeat(129)}\r\n`, '/orders/11');
    await attempt('empty', '', 'X-Request-Id: \r\n', '/orders/12');
    await attempt('non-ASCII', 'caf\u00e9-id', 'X-Request-Id: caf\u00e9-id\r\n', '/orders/13');
    await attempt('duplicated', 'first-id', 'X-Request-Id: first-id\r\nX-Request-Id: second-id\r\n', '/orders/14');
    await attempt('invalid, on an error', 'bad id', 'X-Request-Id: bad id\r\n', '/nowhere');

    const fresh = new Set<string>();
    for (const c of cases) {
      const id = String(c.reply.headers['x-request-id']);
      assert.match(id, UUID, `${c.name}: the response carries a fresh UUID`);
      assert.notEqual(id, c.sent, `${c.name}: the id is not echoed`);
      assert.ok(!id.includes('first-id') && !id.includes('second-id'));
      fresh.add(id);
      if (c.path === '/nowhere') {
        assert.equal(c.reply.status, 404);
        assert.equal(problem(c.reply).request_id, id, `${c.name}: the error body names the same id`);
      } else {
        assert.equal(c.reply.status, 200, c.name);
        assert.equal(receivedWithId(id).url, c.path, `${c.name}: the upstream received the fresh id`);
      }
    }
    assert.equal(fresh.size, cases.length, 'every fresh id is unique');

    const lines = await finish(tg);
    assert.equal(lines.length, cases.length);
    for (const c of cases) assert.equal(lineFor(lines, String(c.reply.headers['x-request-id'])).path, c.path);
    for (const rejected of ['has spaces in it', 'x'.repeat(129), 'first-id', 'second-id', 'bad id']) {
      assert.ok(!tg.logs.text.includes(rejected), `the rejected id ${rejected} is never logged`);
    }
  });

  test('a valid traceparent keeps its trace id with a new parent id; an invalid or missing one starts a new trace', async (t) => {
    const tg = await gatewayFor(t, gatewayYaml());
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const parentId = '00f067aa0ba902b7';

    await send(`${tg.url}/orders/20`, { headers: { 'x-request-id': 'trace-valid', traceparent: `00-${traceId}-${parentId}-01` } });
    const continued = String(receivedWithId('trace-valid').headers.traceparent);
    const m = TRACEPARENT.exec(continued);
    assert.ok(m, continued);
    assert.equal(m[1], traceId, 'the trace id is kept');
    assert.notEqual(m[2], parentId, 'the gateway is a hop of its own: a new parent id');
    assert.equal(m[3], '01', 'the sampled flag is kept');

    const invalid: Record<string, string | undefined> = {
      'trace-garbage': 'garbage',
      'trace-uppercase': `00-${traceId.toUpperCase()}-${parentId}-01`,
      'trace-zero-trace': `00-${'0'.repeat(32)}-${parentId}-01`,
      'trace-zero-parent': `00-${traceId}-${'0'.repeat(16)}-01`,
      'trace-version-ff': `ff-${traceId}-${parentId}-01`,
      'trace-missing': undefined,
    };
    const started = new Set<string>();
    for (const [id, header] of Object.entries(invalid)) {
      const headers: Record<string, string> = { 'x-request-id': id };
      if (header !== undefined) headers.traceparent = header;
      const reply = await send(`${tg.url}/orders/21`, { headers });
      assert.equal(reply.status, 200);
      const fresh = traceIdOf(receivedWithId(id).headers.traceparent);
      assert.notEqual(fresh, traceId, `${id}: a new trace, not the invalid one's`);
      assert.notEqual(fresh, '0'.repeat(32));
      started.add(fresh);
    }
    assert.equal(started.size, Object.keys(invalid).length, 'each new trace has its own id');

    const lines = await finish(tg);
    assert.equal(lines.length, 1 + Object.keys(invalid).length);
    for (const id of ['trace-valid', ...Object.keys(invalid)]) {
      assert.equal(lineFor(lines, id).trace_id, traceIdOf(receivedWithId(id).headers.traceparent), `${id}: log and upstream share the trace id`);
    }
    assert.equal(lineFor(lines, 'trace-valid').trace_id, traceId);
  });
});

describe('/metrics', () => {
  test('Prometheus text with the contract names, route-name labels, OTHER for unknown methods and exact counts', async (t) => {
    const yaml = gatewayYaml() + '  - name: everything-else\n    match: {path: /*}\n    upstream: orders\n';
    const tg = await gatewayFor(t, yaml);

    // Before any request: every metric the contract (section 6) fixes is exposed, with its type, so dashboards and
    // alerts can be written against a fresh gateway.
    const initial = await scrape(tg);
    const contractMetrics: Record<string, string> = {
      agentgate_requests_total: 'counter',
      agentgate_request_duration_seconds: 'histogram',
      agentgate_upstream_request_duration_seconds: 'histogram',
      agentgate_idempotency_events_total: 'counter',
      agentgate_rate_limit_decisions_total: 'counter',
      agentgate_rate_limit_cost_units_total: 'counter',
      agentgate_silent_failures_total: 'counter',
      agentgate_upstream_errors_total: 'counter',
      agentgate_circuit_breaker_state: 'gauge',
      agentgate_store_errors_total: 'counter',
      agentgate_config_reloads_total: 'counter',
    };
    for (const [name, type] of Object.entries(contractMetrics)) assert.equal(initial.exp.types.get(name), type, name);
    // Reloads start at zero for both results, so increase() sees the first one.

    assert.equal(valueOf(initial.exp, 'agentgate_config_reloads_total', { result: 'success' }), 0);
    assert.equal(valueOf(initial.exp, 'agentgate_config_reloads_total', { result: 'error' }), 0);

    assert.equal((await send(`${tg.url}/orders/123`)).status, 200);
    assert.equal((await send(`${tg.url}/orders/456`)).status, 200);
    assert.equal((await send(`${tg.url}/dead/1`)).status, 503);
    // llhttp refuses a method it does not know before the pipeline sees it; a method it knows but the gateway does not is forwarded.
    assert.equal((await sendRaw(tg.url, 'FOOBAR /orders/789 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n')).status, 400);
    assert.equal((await sendRaw(tg.url, 'PURGE /cache/789 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n')).status, 200);
    assert.ok(upstream.received.some((r) => r.method === 'PURGE' && r.url === '/cache/789'));

    assert.equal(await tg.gateway.reload('test'), true);
    await writeFile(tg.configFile, 'version: 1\nnot_a_key: true\n');
    assert.equal(await tg.gateway.reload('test'), false);

    const { text, exp, contentType } = await scrapeAfter(tg, 5);
    assert.match(contentType, /^text\/plain; version=0\.0\.4/);

    assert.equal(exp.types.get('agentgate_requests_total'), 'counter');
    assert.equal(exp.types.get('agentgate_request_duration_seconds'), 'histogram');
    assert.equal(exp.types.get('agentgate_upstream_request_duration_seconds'), 'histogram');
    assert.equal(exp.types.get('agentgate_upstream_errors_total'), 'counter');
    assert.equal(exp.types.get('agentgate_config_reloads_total'), 'counter');

    assert.equal(valueOf(exp, 'agentgate_requests_total', { route: 'get-order', method: 'GET', status_code: '200', outcome: 'ok' }), 2);
    assert.equal(valueOf(exp, 'agentgate_requests_total', { route: 'dead-route', method: 'GET', status_code: '503', outcome: 'upstream_unavailable' }), 1);
    assert.equal(valueOf(exp, 'agentgate_requests_total', { route: 'everything-else', method: 'OTHER', status_code: '200', outcome: 'ok' }), 1);
    assert.equal(valueOf(exp, 'agentgate_requests_total', { route: 'none', method: 'OTHER', status_code: '400', outcome: 'invalid_request' }), 1);
    const methods = new Set(matching(exp, 'agentgate_requests_total', {}).map((s) => s.labels.method));
    assert.deepEqual([...methods].sort(), ['GET', 'OTHER']);

    // Histogram: cumulative buckets ending in +Inf, which equals _count.
    const okLabels = { route: 'get-order', outcome: 'ok' };
    const buckets = matching(exp, 'agentgate_request_duration_seconds_bucket', okLabels);
    assert.ok(buckets.length > 2);
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i]!.value >= buckets[i - 1]!.value, 'buckets are cumulative');
    assert.equal(valueOf(exp, 'agentgate_request_duration_seconds_bucket', { ...okLabels, le: '+Inf' }), 2);
    assert.equal(valueOf(exp, 'agentgate_request_duration_seconds_count', okLabels), 2);
    assert.ok(valueOf(exp, 'agentgate_request_duration_seconds_sum', okLabels)! > 0);
    assert.equal(valueOf(exp, 'agentgate_request_duration_seconds_count', { route: 'dead-route', outcome: 'upstream_unavailable' }), 1);

    const upstreamLabels = { upstream: 'orders', route: 'get-order' };
    assert.equal(valueOf(exp, 'agentgate_upstream_request_duration_seconds_count', upstreamLabels), 2);
    assert.equal(valueOf(exp, 'agentgate_upstream_request_duration_seconds_bucket', { ...upstreamLabels, le: '+Inf' }), 2);
    assert.ok(valueOf(exp, 'agentgate_upstream_request_duration_seconds_sum', upstreamLabels)! > 0);

    assert.equal(valueOf(exp, 'agentgate_upstream_errors_total', { upstream: 'dead', code: 'UPSTREAM_UNAVAILABLE' }), 1);
    assert.equal(matching(exp, 'agentgate_upstream_errors_total', { upstream: 'orders' }).length, 0, 'answered upstream calls are not errors');

    assert.equal(valueOf(exp, 'agentgate_config_reloads_total', { result: 'success' }), 1);
    assert.equal(valueOf(exp, 'agentgate_config_reloads_total', { result: 'error' }), 1);

    // prom-client's default process metrics.
    for (const name of ['process_cpu_user_seconds_total', 'nodejs_heap_size_used_bytes']) {
      const v = valueOf(exp, name, {});
      assert.ok(v !== undefined && Number.isFinite(v) && v > 0, `${name} is exported`);
    }

    // Labels carry route names, never raw paths, ids or made-up methods.
    for (const s of exp.samples) {
      for (const [label, value] of Object.entries(s.labels)) {
        assert.ok(!value.includes('123') && !value.includes('456') && !value.includes('789'), `${s.name}{${label}="${value}"} carries a raw id`);
      }
    }
    for (const raw of ['/orders', '/dead', '/cache', 'FOOBAR', 'PURGE']) assert.ok(!text.includes(raw), `/metrics contains ${raw}`);

    // The request Node's parser refused is logged once too, under the id its error answer carried.
    const refusedLines = tg.logs.requestLines().filter((l) => l.outcome === 'invalid_request');
    assert.equal(refusedLines.length, 1);
    assert.match(String(refusedLines[0]!.request_id), UUID);
  });
});

describe('/healthz and /readyz', () => {
  test('memory store: live and ready; unknown admin paths are 404', async (t) => {
    const tg = await gatewayFor(t, gatewayYaml());
    const healthz = await send(`${tg.adminUrl}/healthz`);
    assert.equal(healthz.status, 200);
    assert.deepEqual(JSON.parse(healthz.body), { status: 'ok' });
    const readyz = await send(`${tg.adminUrl}/readyz`);
    assert.equal(readyz.status, 200);
    assert.equal((JSON.parse(readyz.body) as { status: string }).status, 'ready');
    assert.equal((await send(`${tg.adminUrl}/nope`)).status, 404);
    assert.equal((await send(`${tg.adminUrl}/metrics/extra`)).status, 404);
    assert.equal((await send(`${tg.adminUrl}/healthz`, { method: 'POST' })).status, 405);
    // The admin endpoints are not on the proxy port.
    assert.equal((await send(`${tg.url}/metrics`)).status, 404);
  });

  test('unreachable Redis: the gateway starts and serves, /readyz is 503 naming the store, /healthz stays 200', async (t) => {
    const tg = await gatewayFor(t, gatewayYaml(`store:\n  type: redis\n  url: redis://127.0.0.1:${deadPort}\n  command_timeout: 200ms\n`));

    const passthrough = await send(`${tg.url}/orders/5`, { headers: { 'x-request-id': 'redis-down-pass' } });
    assert.equal(passthrough.status, 200);
    assert.equal(receivedWithId('redis-down-pass').url, '/orders/5');

    const readyz = await send(`${tg.adminUrl}/readyz`);
    assert.equal(readyz.status, 503);
    const body = JSON.parse(readyz.body) as { status: string; reason: string };
    assert.match(body.reason, /store/);
    assert.match(body.reason, /redis/);
    assert.equal((await send(`${tg.adminUrl}/healthz`)).status, 200);
  });
});

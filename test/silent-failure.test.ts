// Silent failures made loud: a 2xx that is empty, carries an error field, fails the route's schema, is an HTML page, or is
// cut short becomes 502 SILENT_FAILURE naming its rule; only routes with body rules buffer, and empty_body never does.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request, type IncomingMessage, type ServerResponse } from 'node:http';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { configYaml, startTestGateway, tempDir, type TestGateway } from './helpers/gateway.ts';
import { json, startUpstream, type TestUpstream } from './helpers/upstream.ts';
import { envelopeOf, send, type Reply } from './helpers/http.ts';

const LOGIN_PAGE = '<!DOCTYPE html><html><body><h1>Please sign in</h1><form action="/sso/login"><input name="user"></form></body></html>';
const BIG_BODY = JSON.stringify({ items: Array.from({ length: 100 }, (_, i) => ({ sku: `sku-${i}`, name: 'a widget of some length' })), error: 'boom' });

/** One failure shape per last path segment, so the same shape can be reached through routes with different rules. */
const SHAPES: Record<string, (req: IncomingMessage, res: ServerResponse) => void> = {
  'ok-false': (_req, res) => json(res, 200, { ok: false, error: 'upstream ledger unavailable' }),
  'ok-true': (_req, res) => json(res, 200, { ok: true, error: null, channel: 'C1' }),
  graphql: (_req, res) => json(res, 200, { data: null, errors: [{ message: 'Cannot query field "total" on type "Order".', path: ['order', 'total'] }] }),
  'graphql-ok': (_req, res) => json(res, 200, { data: { order: { id: '1' } }, errors: [] }),
  cl0: (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '0' });
    res.end();
  },
  'chunked-empty': (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.flushHeaders(); // without it Node would send Content-Length: 0 itself
    res.end();
  },
  'no-content': (_req, res) => {
    res.writeHead(204);
    res.end();
  },
  lying: (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
    res.write('{"orders":[{"id":"ord_1"},{"id":"ord_2","ite', () => setTimeout(() => req.socket.destroy(), 20));
  },
  stall: (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
    res.write('{"partial":');
  },
  login: (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(LOGIN_PAGE) });
    res.end(LOGIN_PAGE);
  },
  'schema-good': (_req, res) => json(res, 200, { id: 'ord_1', status: 'open' }),
  'schema-bad': (_req, res) => json(res, 200, { id: 7, status: 'lost' }),
  'schema-missing': (_req, res) => json(res, 200, { id: 'ord_1' }),
  big: (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(BIG_BODY) });
    res.end(BIG_BODY);
  },
  plain: (_req, res) => json(res, 200, { fine: true }, { etag: '"v1"' }),
};

/** Streams a JSON body in two parts; the second waits until the test saw the first (or `waitMs` passed). */
const gates = new Map<string, { release: () => void; endedAt?: number; releasedByClient?: boolean }>();
function twoPartStream(name: string, waitMs: number) {
  return (_req: IncomingMessage, res: ServerResponse) => {
    const gate: { release: () => void; endedAt?: number; releasedByClient?: boolean } = { release: () => {} };
    gates.set(name, gate);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"part":1');
    const timer = setTimeout(() => finish(false), waitMs);
    const finish = (byClient: boolean) => {
      if (gate.endedAt !== undefined) return;
      clearTimeout(timer);
      gate.releasedByClient = byClient;
      res.end(',"done":true}', () => (gate.endedAt = performance.now()));
      gate.endedAt = performance.now();
    };
    gate.release = () => finish(true);
  };
}

let upstream: TestUpstream;
let tg: TestGateway;
let schemaDir: { dir: string; remove: () => Promise<void> };
const creates = { n: 0 };

before(async () => {
  schemaDir = await tempDir('agentgate-response-schema');
  const schemaFile = path.join(schemaDir.dir, 'order.schema.json');
  await writeFile(
    schemaFile,
    JSON.stringify({ type: 'object', required: ['id', 'status'], properties: { id: { type: 'string' }, status: { enum: ['open', 'paid', 'shipped'] } } }),
  );
  upstream = await startUpstream({
    'stream:/empty/slow-stream': twoPartStream('empty', 3000),
    'stream:/plain/slow-stream': twoPartStream('plain', 3000),
    'stream:/ct/slow-stream': twoPartStream('ct', 3000),
    'stream:/slack/slow-stream': twoPartStream('slack', 300),
    'POST /idem/create': (_req, res) => {
      // The first execution "succeeds" with nothing; the next one really creates the order.
      if (++creates.n === 1) {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '0' });
        return void res.end();
      }
      json(res, 201, { id: `ord_${creates.n}` }, { location: `/orders/ord_${creates.n}` });
    },
    'POST /idem-checked/create': (_req, res) => json(res, 201, { id: `ord_${++creates.n}`, error: null }),
    '*': (req, res) => {
      const shape = SHAPES[(req.url ?? '').split('?')[0]!.split('/').at(-1)!];
      if (shape) shape(req, res);
      else json(res, 404, { message: 'no such shape' });
    },
  });
  tg = await startTestGateway(
    configYaml(`upstreams:
  api: {url: '${upstream.url}', timeout: 2s}
rate_limits:
  agents: {capacity: 100, per: 1h}
defaults:
  silent_failure: {empty_body: true}
routes:
  - name: slack
    match: {path: /slack/*}
    upstream: api
    timeout: 500ms
    silent_failure: {error_fields: [{pointer: /ok, equals: false}, /error]}
  - {name: graphql, match: {path: /graphql/*}, upstream: api, silent_failure: {error_fields: [/errors]}}
  - {name: empty, match: {path: /empty/*}, upstream: api, silent_failure: {empty_body: true}}
  - {name: ct, match: {path: /ct/*}, upstream: api, silent_failure: {content_type: [application/json, application/problem+json]}}
  - {name: schema, match: {path: /schema/*}, upstream: api, silent_failure: {response_schema: '${schemaFile}'}}
  - {name: bounded, match: {path: /bounded/*}, upstream: api, silent_failure: {error_fields: [/error], max_body_bytes: 1kb}}
  - {name: limited, match: {path: /limited/*}, upstream: api, rate_limit: agents, silent_failure: {error_fields: [/error]}}
  - name: idem
    match: {methods: [POST], path: /idem/create}
    upstream: api
    idempotency: {required: true, ttl: 1h}
  - name: idem-checked
    match: {methods: [POST], path: /idem-checked/create}
    upstream: api
    idempotency: {required: true, ttl: 1h}
    silent_failure: {error_fields: [/error], empty_body: true}
  - {name: plain, match: {path: /plain/*}, upstream: api, silent_failure: false}
  - {name: inherited, match: {path: /*}, upstream: api}
`),
  );
});

after(async () => {
  await tg.close();
  await upstream.close();
  await schemaDir.remove();
});

const get = (p: string, options: { method?: string; headers?: Record<string, string> } = {}) => send(`${tg.url}${p}`, options);
const calls = (p: string) => upstream.received.filter((r) => r.url.split('?')[0] === p).length;
const metricsText = async () => (await send(`${tg.adminUrl}/metrics`)).text;
const metric = (text: string, series: string) => Number(text.split('\n').find((l) => l.startsWith(`${series} `))?.split(' ')[1] ?? 'NaN');

/** Asserts a SILENT_FAILURE envelope: 502, retryable, no Retry-After, the upstream's 2xx status, and the rule. */
function silentFailure(reply: Reply, rule: string, detail: string | RegExp): Record<string, any> {
  const body = envelopeOf(reply);
  assert.equal(reply.status, 502, reply.text);
  assert.equal(body.code, 'SILENT_FAILURE');
  assert.equal(body.title, 'Upstream reported success but the response shows a failure');
  assert.equal(body.retryable, true);
  assert.equal(reply.headers['x-should-retry'], 'true');
  assert.equal(body.retry_after_seconds, null);
  assert.equal(reply.headers['retry-after'], undefined);
  assert.equal(body.suggestion, 'The API answered success without doing the work: back off, then retry; escalate if it persists.');
  assert.equal(body.upstream_status, 200);
  assert.equal(body.rule, rule);
  if (typeof detail === 'string') assert.equal(body.detail, detail);
  else assert.match(body.detail, detail);
  return body;
}

/** Reads a response and notes when its first body byte and its end arrived; calls `onFirstByte` on the first. */
function timedGet(url: string, onFirstByte: () => void = () => {}): Promise<{ status: number; body: string; firstByteAt: number; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false }, (res) => {
      let body = '';
      let firstByteAt = 0;
      res.on('data', (c: Buffer) => {
        if (firstByteAt === 0) {
          firstByteAt = performance.now();
          onFirstByte();
        }
        body += c.toString();
      });
      res.on('error', () => {});
      res.on('close', () => resolve({ status: res.statusCode!, body, firstByteAt, complete: res.complete }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('error_fields', () => {
  test('Slack-style 200 {"ok": false, "error": "..."} is SILENT_FAILURE naming the field', async () => {
    const body = silentFailure(await get('/slack/ok-false'), 'error_fields', 'The upstream answered success, but /ok is false.');
    assert.equal(body.field, '/ok');
    // {"ok": true, "error": null} is a success, delivered byte-exact from the checked buffer.
    const ok = await get('/slack/ok-true');
    assert.equal(ok.status, 200);
    assert.equal(ok.text, JSON.stringify({ ok: true, error: null, channel: 'C1' }));
    assert.equal(ok.headers['content-length'], String(ok.body.length));
    assert.equal(ok.headers['content-type'], 'application/json');
  });

  test('GraphQL-style 200 {"errors": [...]} is SILENT_FAILURE with the error in detail; "errors": [] passes', async () => {
    const body = silentFailure(
      await get('/graphql/graphql'),
      'error_fields',
      'The upstream answered success, but /errors reports an error: [{"message":"Cannot query field \\"total\\" on type \\"Order\\".","path":["order","total"]}].',
    );
    assert.equal(body.field, '/errors');
    const ok = await get('/graphql/graphql-ok');
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.json(), { data: { order: { id: '1' } }, errors: [] });
  });
});

describe('empty_body', () => {
  test('200 with Content-Length: 0 and a chunked 200 that ends empty are SILENT_FAILURE empty_body', async () => {
    const detail = 'The upstream answered success with an empty body: nothing was returned, so nothing can be assumed to have happened.';
    silentFailure(await get('/empty/cl0'), 'empty_body', detail);
    silentFailure(await get('/empty/chunked-empty'), 'empty_body', detail);
    // Inherited from defaults.silent_failure by a route without its own setting.
    silentFailure(await get('/anything/cl0'), 'empty_body', detail);
  });

  test('204, HEAD, and routes with silent_failure: false are not failures', async () => {
    assert.equal((await get('/empty/no-content')).status, 204);
    const head = await get('/empty/cl0', { method: 'HEAD' });
    assert.equal(head.status, 200);
    const off = await get('/plain/cl0');
    assert.deepEqual([off.status, off.text, off.headers['content-length']], [200, '', '0']);
  });

  test('empty_body does not buffer: the first chunk of a slow 2xx reaches the client before the upstream has finished', async () => {
    const result = await timedGet(`${tg.url}/empty/slow-stream`, () => gates.get('empty')!.release());
    const gate = gates.get('empty')!;
    assert.equal(result.status, 200);
    assert.equal(result.body, '{"part":1,"done":true}');
    assert.equal(gate.releasedByClient, true, 'the upstream only finished because the client already had its first chunk');
    assert.ok(result.firstByteAt < gate.endedAt!, 'the first byte arrived before the upstream ended');
  });
});

describe('content_type', () => {
  test('a 2xx HTML login page on a JSON route is SILENT_FAILURE content_type, and the page is not shown', async () => {
    const reply = await get('/ct/login');
    silentFailure(reply, 'content_type', "The upstream answered success with content type 'text/html'; this route expects application/json or application/problem+json.");
    assert.ok(!reply.text.includes('Please sign in') && !reply.text.includes('/sso/login'));
    assert.equal((await get('/ct/ok-true')).status, 200);
  });
});

describe('response_schema', () => {
  test('a body failing the schema file is SILENT_FAILURE with the failing paths; a matching one passes', async () => {
    const body = silentFailure(
      await get('/schema/schema-bad'),
      'response_schema',
      "The upstream answered success with a body that does not match the route's response schema: /id must be string; /status must be equal to one of the allowed values.",
    );
    assert.deepEqual(body.schema_errors, [
      { path: '/id', message: 'must be string' },
      { path: '/status', message: 'must be equal to one of the allowed values' },
    ]);
    const missing = silentFailure(await get('/schema/schema-missing'), 'response_schema', /must have required property 'status'/);
    assert.deepEqual(missing.schema_errors, [{ path: '/', message: "must have required property 'status'" }]);
    silentFailure(await get('/schema/login'), 'response_schema', 'The upstream answered success with a body that is not valid JSON.');
    const good = await get('/schema/schema-good');
    assert.equal(good.status, 200);
    assert.deepEqual(good.json(), { id: 'ord_1', status: 'open' });
  });
});

describe('truncation', () => {
  test('a lying Content-Length is never forwarded as success: SILENT_FAILURE where the body is checked, a broken response where it streams', async () => {
    silentFailure(
      await get('/slack/lying'),
      'truncated',
      'The upstream answered success, then closed the connection before its body was complete (fewer bytes than it announced).',
    );
    for (const p of ['/empty/lying', '/plain/lying']) {
      const streamed = await timedGet(`${tg.url}${p}`);
      assert.equal(streamed.complete, false, `${p} was delivered as complete`);
    }
  });

  test('a 2xx that goes silent mid-body on a checked route is SILENT_FAILURE truncated after the route timeout', async () => {
    silentFailure(await get('/slack/stall'), 'truncated', 'The upstream answered success, then went silent before its body was complete.');
  });
});

describe('buffering and streaming', () => {
  test('routes without body rules (none, or content_type only) stream: the first chunk arrives before the upstream ends', async () => {
    for (const name of ['plain', 'ct']) {
      const result = await timedGet(`${tg.url}/${name}/slow-stream`, () => gates.get(name)!.release());
      assert.equal(result.body, '{"part":1,"done":true}');
      assert.equal(gates.get(name)!.releasedByClient, true, `${name}: the client did not get the first chunk while the upstream waited`);
      assert.ok(result.firstByteAt < gates.get(name)!.endedAt!);
    }
    const plain = await get('/plain/plain');
    assert.deepEqual([plain.status, plain.headers.etag, plain.text], [200, '"v1"', '{"fine":true}']);
  });

  test('a route with error_fields buffers (bounded): nothing reaches the client before the upstream has finished', async () => {
    const result = await timedGet(`${tg.url}/slack/slow-stream`, () => gates.get('slack')!.release());
    assert.equal(result.status, 200);
    assert.equal(result.body, '{"part":1,"done":true}');
    assert.equal(gates.get('slack')!.releasedByClient, false);
    assert.ok(result.firstByteAt >= gates.get('slack')!.endedAt!);
  });

  test('a body over max_body_bytes is delivered whole and unchecked, and that is logged', async () => {
    const reply = await get('/bounded/big');
    assert.equal(reply.status, 200);
    assert.equal(reply.text, BIG_BODY, 'delivered byte-exact although it carries an error field');
    assert.ok(tg.logs.lines.some((l) => l.route === 'bounded' && l.msg === 'response larger than silent_failure.max_body_bytes: delivered unchecked'));
    // A small one on the same route is checked.
    silentFailure(await get('/bounded/ok-false'), 'error_fields', 'The upstream answered success, but /error reports an error: "upstream ledger unavailable".');
  });
});

describe('interplay', () => {
  test('a silent failure is never stored as an idempotent success: the retry with the same key executes again', async () => {
    const headers = { 'idempotency-key': 'silent-1', 'content-type': 'application/json' };
    const first = await get('/idem/create', { method: 'POST', headers });
    silentFailure(first, 'empty_body', /empty body/);
    assert.equal(calls('/idem/create'), 1);
    const second = await get('/idem/create', { method: 'POST', headers });
    assert.equal(second.status, 201);
    assert.equal(second.headers['idempotent-replayed'], undefined);
    assert.equal(calls('/idem/create'), 2, 'the retry executed again');
    const third = await get('/idem/create', { method: 'POST', headers });
    assert.deepEqual([third.status, third.headers['idempotent-replayed'], third.text], [201, 'true', second.text]);
    assert.equal(calls('/idem/create'), 2);
  });

  test('a checked success is stored and replayed byte for byte', async () => {
    const headers = { 'idempotency-key': 'checked-1', 'content-type': 'application/json' };
    const first = await get('/idem-checked/create', { method: 'POST', headers });
    assert.equal(first.status, 201);
    const again = await get('/idem-checked/create', { method: 'POST', headers });
    assert.deepEqual([again.status, again.headers['idempotent-replayed'], again.text], [201, 'true', first.text]);
    assert.equal(calls('/idem-checked/create'), 1);
  });

  test('a SILENT_FAILURE on a rate-limited route carries the budget headers', async () => {
    const reply = await get('/limited/ok-false', { headers: { 'x-agent-id': 'silent-agent' } });
    silentFailure(reply, 'error_fields', /\/error reports an error/);
    assert.deepEqual([reply.headers['x-ratelimit-limit'], reply.headers['x-ratelimit-remaining'], reply.headers['x-ratelimit-cost']], ['100', '99', '1']);
    assert.match(String(reply.headers.ratelimit), /^"agents";r=99;/);
  });
});

describe('observability', () => {
  test('each silent failure is counted by route and rule, and logged at warn with its rule', async () => {
    const text = await metricsText();
    const count = (route: string, rule: string) => metric(text, `agentgate_silent_failures_total{route="${route}",rule="${rule}"}`);
    assert.equal(count('slack', 'error_fields'), 1);
    assert.equal(count('slack', 'truncated'), 2);
    assert.equal(count('graphql', 'error_fields'), 1);
    assert.equal(count('empty', 'empty_body'), 2);
    assert.equal(count('inherited', 'empty_body'), 1);
    assert.equal(count('ct', 'content_type'), 1);
    assert.equal(count('schema', 'response_schema'), 3);
    assert.equal(count('idem', 'empty_body'), 1);
    const warning = tg.logs.lines.find((l) => l.level === 'warn' && l.route === 'ct' && l.rule === 'content_type');
    assert.ok(warning, 'a warn line names route and rule');
    assert.equal(warning.upstream_status, 200);
    assert.match(String(warning.msg), /^silent failure/);
    const requestLine = tg.logs.requestLines().find((l) => l.route === 'ct' && l.status === 502);
    assert.deepEqual([requestLine?.outcome, requestLine?.code, requestLine?.upstream_status], ['silent_failure', 'SILENT_FAILURE', 200]);
    assert.equal(warning.request_id, requestLine?.request_id);
  });
});

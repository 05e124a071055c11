// Idempotency replay end to end, against a real upstream that counts executions: once on the memory store, once on Redis.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { startTestGateway, configYaml, type TestGateway } from './helpers/gateway.ts';
import { json, startUpstream, type TestUpstream } from './helpers/upstream.ts';
import { send, rawExchange, parseRawResponse } from './helpers/http.ts';
import { cleanupPrefix, REDIS_URL, skipWithoutRedis, uniquePrefix } from './helpers/redis.ts';
import { freePort } from './helpers/redis-cluster.ts';
import { createHandler, eventsOf, expectError, expectFresh, expectReplayOf, freshKey, post, until } from './helpers/idempotency.ts';
import { storeKey } from '../src/store/keys.ts';
import { hashIdentity } from '../src/identity/consumer.ts';
import { fingerprint } from '../src/policies/fingerprint.ts';
import { recordId } from '../src/policies/idempotency/key.ts';
import { encodeRecord } from '../src/policies/idempotency/record.ts';

const skipRedis = await skipWithoutRedis();

/** Executions per upstream path. */
const counters: Record<string, { n: number }> = {};
const counter = (name: string) => (counters[name] ??= { n: 0 });

let upstream: TestUpstream;
let deadPort: number;

before(async () => {
  deadPort = await freePort();
  upstream = await startUpstream({
    'POST /orders': createHandler(150, counter('orders')),
    'PATCH /orders/ord_1': createHandler(0, counter('patch')),
    'PUT /items/a': createHandler(0, counter('put')),
    'GET /items/a': createHandler(0, counter('get')),
    '/optional': createHandler(0, counter('optional')),
    '/renewed': createHandler(1200, counter('renewed')),
    '/waited': createHandler(400, counter('waited')),
    '/lapsed-block': createHandler(0, counter('lapsed-block')),
    '/lapsed-release': createHandler(0, counter('lapsed-release')),
    '/slow': (_req, res) => {
      counter('slow').n++;
      setTimeout(() => json(res, 201, { late: true }), 700);
    },
    '/slow-release': (_req, res) => {
      counter('slow-release').n++;
      setTimeout(() => json(res, 201, { late: true }), 700);
    },
    '/reset': (req) => {
      counter('reset').n++;
      req.socket.destroy();
    },
    '/abort-mid-body': (req, res) => {
      counter('abort').n++;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' });
      res.write('the first bytes');
      setTimeout(() => req.socket.destroy(), 50);
    },
    '/status': (req, res, body) => answerWith(req, res, body, 'status'),
    '/status-store': (req, res, body) => answerWith(req, res, body, 'store'),
    '/big': (_req, res) => {
      counter('big').n++;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 8192 });
      res.end(Buffer.alloc(8192, 'b'));
    },
    '/stream': (_req, res) => {
      counter('stream').n++;
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.write('{"part":1}\n');
      // The second part waits for the test's signal, so the test can see the first part arrive before it exists.
      const second = () => res.end('{"part":2}\n');
      if (releaseStream) second();
      else pendingStream = second;
    },
  });
});

after(() => upstream.close());

/** Answers with the status the query asks for, counting executions per status. */
function answerWith(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse, body: Buffer, name: string): void {
  const status = Number(new URL(req.url!, 'http://x').searchParams.get('code'));
  const c = counter(`${name}-${status}`);
  c.n++;
  json(res, status, { status, execution: c.n, body: body.toString() });
}

let releaseStream = false;
let pendingStream: (() => void) | undefined;

function gatewayConfig(storeYaml: string): string {
  const u = upstream.url;
  return configYaml(`${storeYaml}upstreams:
  u: {url: '${u}', timeout: 2s}
  dead: {url: 'http://127.0.0.1:${deadPort}', connect_timeout: 500ms}
routes:
  - {name: create, match: {methods: [POST], path: /orders}, upstream: u, idempotency: {required: true, ttl: 1h, lease: 1s}}
  - {name: patch, match: {path: /orders/ord_1}, upstream: u, idempotency: {required: true, ttl: 1h}}
  - {name: put, match: {path: /items/a}, upstream: u, idempotency: {required: true, ttl: 1h, methods: [PUT]}}
  - {name: optional, match: {path: /optional}, upstream: u, idempotency: {required: false, ttl: 1h}}
  - {name: off, match: {path: /off}, upstream: u, idempotency: false}
  - {name: renewed, match: {path: /renewed}, upstream: u, idempotency: {required: true, ttl: 1h, lease: 300ms}}
  - {name: waited, match: {path: /waited}, upstream: u, idempotency: {required: true, ttl: 1h, in_flight: wait, in_flight_wait: 3s}}
  - {name: slow, match: {path: /slow}, upstream: u, timeout: 250ms, idempotency: {required: true, ttl: 1h}}
  - {name: slow-release, match: {path: /slow-release}, upstream: u, timeout: 250ms, idempotency: {required: true, ttl: 1h, on_outcome_unknown: release}}
  - {name: reset, match: {path: /reset}, upstream: u, idempotency: {required: true, ttl: 1h}}
  - {name: abort, match: {path: /abort-mid-body}, upstream: u, idempotency: {required: true, ttl: 1h}}
  - {name: status, match: {path: /status}, upstream: u, idempotency: {required: true, ttl: 1h}}
  - {name: status-store, match: {path: /status-store}, upstream: u, idempotency: {required: true, ttl: 1h, on_5xx: store}}
  - {name: big, match: {path: /big}, upstream: u, idempotency: {required: true, ttl: 1h, max_body_bytes: 1kb, max_response_bytes: 4kb}}
  - {name: stream, match: {path: /stream}, upstream: u, idempotency: {required: true, ttl: 1h}}
  - {name: dead, match: {path: /dead}, upstream: dead, idempotency: {required: true, ttl: 1h}}
  - {name: lapsed-block, match: {path: /lapsed-block}, upstream: u, idempotency: {required: true, ttl: 1h}}
  - {name: lapsed-release, match: {path: /lapsed-release}, upstream: u, idempotency: {required: true, ttl: 1h, on_outcome_unknown: release}}
`);
}

function suite(name: string, storeYaml: () => string, prefix: () => string, cleanup: () => Promise<void>, skip: string | false): void {
  describe(`idempotency on the ${name} store`, { skip, timeout: 60_000 }, () => {
    let gw: TestGateway;
    before(async () => {
      for (const c of Object.values(counters)) c.n = 0;
      gw = await startTestGateway(gatewayConfig(storeYaml()));
      await until('the store to be ready', 5_000, () => gw.gateway.store.ready());
    });
    after(async () => {
      await gw?.close();
      await cleanup();
    });

    test('50 concurrent identical POSTs execute once; each gets the original or 409 in progress; a retry replays it byte for byte', async () => {
      const orders = counter('orders');
      const before = orders.n;
      const key = freshKey();
      const replies = await Promise.all(Array.from({ length: 50 }, () => post(`${gw.url}/orders`, key)));
      assert.equal(orders.n - before, 1, 'the upstream executed exactly once');
      // On a loaded machine a duplicate may arrive after the first has finished: it then gets the replay, which is the original.
      const originals = replies.filter((r) => r.status === 201 && r.headers['idempotent-replayed'] === undefined);
      assert.equal(originals.length, 1, `statuses: ${replies.map((r) => r.status).join(',')}`);
      const original = originals[0]!;
      expectFresh(original);
      assert.ok(original.headers['set-cookie'], 'the first answer passes its cookies through');
      for (const reply of replies.filter((r) => r !== original)) {
        if (reply.status === 201) {
          expectReplayOf(reply, original);
          continue;
        }
        const envelope = expectError(reply, 409, 'IDEMPOTENCY_IN_PROGRESS', true);
        assert.ok(Number(reply.headers['retry-after']) >= 1, 'Retry-After on in-progress');
        assert.equal(envelope.retry_after_seconds, Number(reply.headers['retry-after']));
      }
      const replay = await post(`${gw.url}/orders`, key);
      expectReplayOf(replay, original);
      const again = await post(`${gw.url}/orders`, key, '{"item":"widget"}', { 'x-request-id': 'retry-2' });
      expectReplayOf(again, original);
      assert.equal(again.headers['x-request-id'], 'retry-2');
      assert.equal(orders.n - before, 1, 'replays never reach the upstream');
    });

    test('the same key with a different body or query is refused as reused, not retryable', async () => {
      const key = freshKey();
      assert.equal((await post(`${gw.url}/orders`, key, '{"item":"widget"}')).status, 201);
      expectError(await post(`${gw.url}/orders`, key, '{"item":"gadget"}'), 422, 'IDEMPOTENCY_KEY_REUSED', false);
      expectError(await post(`${gw.url}/orders?dry_run=1`, key, '{"item":"widget"}'), 422, 'IDEMPOTENCY_KEY_REUSED', false);
      // The same body with a different key is simply a new request.
      assert.equal((await post(`${gw.url}/orders`, freshKey(), '{"item":"widget"}')).status, 201);
    });

    test('two consumers using the same key never see each other’s answers', async () => {
      const key = freshKey();
      const orders = counter('orders');
      const before = orders.n;
      const [a, b] = await Promise.all([
        post(`${gw.url}/orders`, key, '{"item":"a"}', { 'x-agent-id': 'agent-a' }),
        post(`${gw.url}/orders`, key, '{"item":"b"}', { 'x-agent-id': 'agent-b' }),
      ]);
      assert.equal(a.status, 201);
      assert.equal(b.status, 201);
      assert.equal(orders.n - before, 2, 'each consumer executes its own request');
      assert.equal(a.json().agent, 'agent-a');
      assert.equal(b.json().agent, 'agent-b');
      const replayA = await post(`${gw.url}/orders`, key, '{"item":"a"}', { 'x-agent-id': 'agent-a' });
      const replayB = await post(`${gw.url}/orders`, key, '{"item":"b"}', { 'x-agent-id': 'agent-b' });
      expectReplayOf(replayA, a);
      expectReplayOf(replayB, b);
      // Consumer B reusing the key with A's body is B's own new-request conflict, never A's answer.
      expectError(await post(`${gw.url}/orders`, key, '{"item":"a"}', { 'x-agent-id': 'agent-b' }), 422, 'IDEMPOTENCY_KEY_REUSED', false);
      assert.equal(orders.n - before, 2);
    });

    test('a missing key is refused where required, and passes unprotected where not', async () => {
      expectError(await post(`${gw.url}/orders`, undefined), 400, 'IDEMPOTENCY_KEY_REQUIRED', false);
      const optional = counter('optional');
      const before = optional.n;
      assert.equal((await post(`${gw.url}/optional`, undefined)).status, 201);
      assert.equal((await post(`${gw.url}/optional`, undefined)).status, 201);
      assert.equal(optional.n - before, 2, 'without a key nothing is deduplicated');
      const key = freshKey();
      const first = await post(`${gw.url}/optional`, key);
      expectReplayOf(await post(`${gw.url}/optional`, key), first);
      assert.equal(optional.n - before, 3, 'with a key it is');
      const events = await eventsOf(gw.adminUrl, 'optional');
      assert.equal(events.missing_key, 2);
      assert.equal(events.stored, 1);
      assert.equal(events.replayed, 1);
    });

    test('malformed keys are refused: empty, too long, not printable ASCII, malformed quoting, sent twice', async () => {
      for (const bad of ['', 'k'.repeat(256), '"unterminated', '"a"b"', '"bad \\x escape"', 'tab\there', 'caf\u00e9']) {
        const reply = await post(`${gw.url}/orders`, bad);
        expectError(reply, 400, 'IDEMPOTENCY_KEY_INVALID', false);
      }
      const raw = (headers: string) =>
        rawExchange(gw.url, `POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n${headers}Connection: close\r\n\r\n{}`);
      const twice = parseRawResponse(await raw('Idempotency-Key: a\r\nIdempotency-Key: a\r\n'));
      assert.equal(twice.status, 400);
      assert.equal(JSON.parse(twice.body).code, 'IDEMPOTENCY_KEY_INVALID');
      assert.match(JSON.parse(twice.body).detail, /sent 2 times/);
      const control = parseRawResponse(await raw('Idempotency-Key: a\x7fb\r\n'));
      assert.equal(control.status, 400);
      const events = await eventsOf(gw.adminUrl, 'create');
      assert.ok((events.invalid_key ?? 0) >= 8);
    });

    test('a bare key and the same key as a structured-field string are one key; 255 characters are allowed', async () => {
      const key = freshKey();
      const first = await post(`${gw.url}/orders`, key);
      assert.equal(first.status, 201);
      expectReplayOf(await post(`${gw.url}/orders`, `"${key}"`), first);
      const long = 'L'.repeat(215) + freshKey();
      assert.equal(long.length, 255);
      const longFirst = await post(`${gw.url}/orders`, long);
      assert.equal(longFirst.status, 201);
      expectReplayOf(await post(`${gw.url}/orders`, long), longFirst);
      const quoted = await post(`${gw.url}/orders`, '"with \\"quotes\\" and spaces"');
      assert.equal(quoted.status, 201);
      expectReplayOf(await post(`${gw.url}/orders`, '"with \\"quotes\\" and spaces"'), quoted);
    });

    test('PATCH is protected by default; methods is configurable; other methods pass through untouched', async () => {
      const key = freshKey();
      const patch = await send(`${gw.url}/orders/ord_1`, { method: 'PATCH', headers: { 'idempotency-key': key }, body: '{}' });
      assert.equal(patch.status, 201);
      expectReplayOf(await send(`${gw.url}/orders/ord_1`, { method: 'PATCH', headers: { 'idempotency-key': key }, body: '{}' }), patch);
      assert.equal(counter('patch').n, 1);

      const put = await send(`${gw.url}/items/a`, { method: 'PUT', headers: { 'idempotency-key': key }, body: '{}' });
      expectReplayOf(await send(`${gw.url}/items/a`, { method: 'PUT', headers: { 'idempotency-key': key }, body: '{}' }), put);
      assert.equal(counter('put').n, 1);
      const get1 = await send(`${gw.url}/items/a`, { headers: { 'idempotency-key': key } });
      const get2 = await send(`${gw.url}/items/a`, { headers: { 'idempotency-key': key } });
      expectFresh(get1);
      expectFresh(get2);
      assert.equal(counter('get').n, 2, 'GET is not in methods: executed every time');
    });

    test('upstream timeout, then a retry: no second execution under block (409 outcome unknown, not retryable)', async () => {
      const slow = counter('slow');
      const before = slow.n;
      const key = freshKey();
      expectError(await post(`${gw.url}/slow`, key), 504, 'UPSTREAM_TIMEOUT', true);
      const retry = expectError(await post(`${gw.url}/slow`, key), 409, 'IDEMPOTENCY_OUTCOME_UNKNOWN', false);
      assert.equal(retry.reason, 'upstream_timeout');
      assert.match(retry.suggestion, /new Idempotency-Key/);
      await sleep(800); // the upstream finishes the first execution meanwhile
      expectError(await post(`${gw.url}/slow`, key), 409, 'IDEMPOTENCY_OUTCOME_UNKNOWN', false);
      assert.equal(slow.n - before, 1, 'the retry never reached the upstream');
      const events = await eventsOf(gw.adminUrl, 'slow');
      assert.equal(events.unknown_outcome, 1);
      assert.equal(events.blocked, 2);
    });

    test('upstream timeout under on_outcome_unknown: release: a retry executes again', async () => {
      const slow = counter('slow-release');
      const before = slow.n;
      const key = freshKey();
      expectError(await post(`${gw.url}/slow-release`, key), 504, 'UPSTREAM_TIMEOUT', true);
      expectError(await post(`${gw.url}/slow-release`, key), 504, 'UPSTREAM_TIMEOUT', true);
      assert.equal(slow.n - before, 2);
    });

    test('a reset before the answer, or mid-body, leaves the outcome unknown', async () => {
      const key = freshKey();
      expectError(await post(`${gw.url}/reset`, key), 502, 'UPSTREAM_ERROR', true);
      assert.equal(expectError(await post(`${gw.url}/reset`, key), 409, 'IDEMPOTENCY_OUTCOME_UNKNOWN', false).reason, 'upstream_error');
      assert.equal(counter('reset').n, 1);

      const abortKey = freshKey();
      await assert.rejects(post(`${gw.url}/abort-mid-body`, abortKey), 'the client sees a broken response');
      await until('the abort to be recorded', 2_000, async () => (await post(`${gw.url}/abort-mid-body`, abortKey)).json().code === 'IDEMPOTENCY_OUTCOME_UNKNOWN');
      assert.equal(expectError(await post(`${gw.url}/abort-mid-body`, abortKey), 409, 'IDEMPOTENCY_OUTCOME_UNKNOWN', false).reason, 'upstream_aborted');
      assert.equal(counter('abort').n, 1);
    });

    test('a refused connection releases the key: nothing reached the upstream, so a retry may go through', async () => {
      const key = freshKey();
      expectError(await post(`${gw.url}/dead`, key), 503, 'UPSTREAM_UNAVAILABLE', true);
      // Not in progress, not unknown: the same answer again, because the key was released.
      expectError(await post(`${gw.url}/dead`, key), 503, 'UPSTREAM_UNAVAILABLE', true);
      assert.equal((await eventsOf(gw.adminUrl, 'dead')).released, 2);
    });

    test('2xx and deterministic 4xx are stored; 408/409/425/429 and 5xx release the key; on_5xx: store keeps 5xx', async () => {
      for (const code of [200, 400, 404, 422]) {
        const key = freshKey();
        const first = await post(`${gw.url}/status?code=${code}`, key);
        assert.equal(first.status, code);
        expectFresh(first);
        expectReplayOf(await post(`${gw.url}/status?code=${code}`, key), first);
        assert.equal(counter(`status-${code}`).n, 1, `${code} executed once`);
      }
      for (const code of [408, 409, 425, 429, 500, 503]) {
        const key = freshKey();
        const before = counter(`status-${code}`).n;
        assert.equal((await post(`${gw.url}/status?code=${code}`, key)).status, code);
        const retry = await post(`${gw.url}/status?code=${code}`, key);
        assert.equal(retry.status, code);
        expectFresh(retry);
        assert.equal(counter(`status-${code}`).n - before, 2, `${code} released: the retry executed again`);
      }
      const key = freshKey();
      const first = await post(`${gw.url}/status-store?code=500`, key);
      assert.equal(first.status, 500);
      expectReplayOf(await post(`${gw.url}/status-store?code=500`, key), first);
      assert.equal(counter('store-500').n, 1);
    });

    test('the body read to fingerprint it reaches the upstream byte for byte, whether its length is declared or chunked', async () => {
      // Multi-byte characters split across chunks: a body re-encoded or cut at a chunk boundary would differ.
      const text = JSON.stringify({ note: 'ünïcødé ✓ '.repeat(50), n: 1 });
      const declared = await post(`${gw.url}/status?code=201`, freshKey(), text);
      assert.equal(declared.json().body, text);
      const chunked = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(`${gw.url}/status?code=201`, { method: 'POST', agent: false, headers: { 'idempotency-key': freshKey(), 'transfer-encoding': 'chunked' } }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode!, body }));
        });
        req.on('error', reject);
        const bytes = Buffer.from(text);
        for (let i = 0; i < bytes.length; i += 7) req.write(bytes.subarray(i, i + 7));
        req.end();
      });
      assert.equal(chunked.status, 201);
      assert.equal(JSON.parse(chunked.body).body, text);
    });

    test('a body above max_body_bytes gets 413 before anything is forwarded, whether its length is declared or not', async () => {
      const before = counter('big').n;
      expectError(await post(`${gw.url}/big`, freshKey(), 'x'.repeat(2000)), 413, 'PAYLOAD_TOO_LARGE', false);
      const chunked = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(`${gw.url}/big`, { method: 'POST', agent: false, headers: { 'idempotency-key': freshKey(), 'transfer-encoding': 'chunked' } }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, body }));
        });
        req.on('error', reject);
        for (let i = 0; i < 20; i++) req.write('y'.repeat(100));
        req.end();
      });
      assert.equal(chunked.status, 413);
      assert.equal(JSON.parse(chunked.body).code, 'PAYLOAD_TOO_LARGE');
      assert.equal(counter('big').n, before);
    });

    test('a response above max_response_bytes is delivered whole, then retries get a clear refusal, never an empty replay', async () => {
      const key = freshKey();
      const first = await post(`${gw.url}/big`, key, '{}');
      assert.equal(first.status, 200);
      assert.equal(first.body.length, 8192);
      expectFresh(first);
      const retry = expectError(await post(`${gw.url}/big`, key, '{}'), 409, 'IDEMPOTENCY_OUTCOME_UNKNOWN', false);
      assert.equal(retry.reason, 'response_too_large');
      assert.equal(retry.original_status, 200);
      assert.match(retry.detail, /completed with status 200/);
      assert.equal((await eventsOf(gw.adminUrl, 'big')).not_replayable, 1);
    });

    test('the answer streams to the client while it is being captured', async () => {
      releaseStream = false;
      const key = freshKey();
      const firstPart = await new Promise<{ text: string; rest: Promise<string> }>((resolve, reject) => {
        const req = request(`${gw.url}/stream`, { method: 'POST', agent: false, headers: { 'idempotency-key': key, 'content-length': 2 } }, (res) => {
          let text = '';
          let done: (t: string) => void;
          const rest = new Promise<string>((r) => (done = r));
          res.on('data', (c: Buffer) => {
            text += c.toString();
            if (text === '{"part":1}\n') resolve({ text, rest });
          });
          res.on('end', () => done(text));
        });
        req.on('error', reject);
        req.end('{}');
      });
      assert.equal(firstPart.text, '{"part":1}\n', 'the first part arrived while the upstream had not finished');
      releaseStream = true;
      pendingStream?.();
      const whole = await firstPart.rest;
      assert.equal(whole, '{"part":1}\n{"part":2}\n');
      const replay = await send(`${gw.url}/stream`, { method: 'POST', headers: { 'idempotency-key': key, 'content-length': 2 }, body: '{}' });
      assert.equal(replay.text, whole);
      assert.equal(replay.headers['idempotent-replayed'], 'true');
      assert.equal(counter('stream').n, 1);
    });

    test('the lease is renewed while the upstream call is open: a duplicate sees "in progress", never a lapsed claim', async () => {
      const key = freshKey();
      const first = post(`${gw.url}/renewed`, key);
      await sleep(800); // well past the 300 ms lease
      expectError(await post(`${gw.url}/renewed`, key), 409, 'IDEMPOTENCY_IN_PROGRESS', true);
      const original = await first;
      assert.equal(original.status, 201);
      expectReplayOf(await post(`${gw.url}/renewed`, key), original);
      assert.equal(counter('renewed').n, 1);
    });

    test('in_flight: wait: duplicates wait for the first and get its answer', async () => {
      const key = freshKey();
      const replies = await Promise.all(Array.from({ length: 10 }, () => post(`${gw.url}/waited`, key)));
      assert.equal(counter('waited').n, 1);
      const originals = replies.filter((r) => r.headers['idempotent-replayed'] === undefined);
      assert.equal(originals.length, 1);
      for (const reply of replies) if (reply !== originals[0]) expectReplayOf(reply, originals[0]!);
    });

    test('a claim whose gateway died resolves after its lease: outcome unknown under block, executed again under release', async () => {
      // What a gateway that was killed mid-request leaves behind: a pending record whose lease has lapsed.
      const plant = async (route: string, path: string, key: string) => {
        const store = gw.gateway.store;
        const now = await store.now();
        const id = recordId(hashIdentity('header:x-agent-id\u0000planter'), route, key);
        const record = { state: 'pending', fingerprint: fingerprint('POST', path, Buffer.from('{}')), owner: 'dead-gateway', lease: now - 1, started: now - 5_000 };
        assert.equal(await store.claim(storeKey(prefix(), 'idem', id), encodeRecord(record as never), 60_000), null);
      };
      const blockKey = freshKey();
      await plant('lapsed-block', '/lapsed-block', blockKey);
      const blocked = expectError(await post(`${gw.url}/lapsed-block`, blockKey, '{}', { 'x-agent-id': 'planter' }), 409, 'IDEMPOTENCY_OUTCOME_UNKNOWN', false);
      assert.equal(blocked.reason, 'gateway_lost');
      expectError(await post(`${gw.url}/lapsed-block`, blockKey, '{}', { 'x-agent-id': 'planter' }), 409, 'IDEMPOTENCY_OUTCOME_UNKNOWN', false);
      assert.equal(counter('lapsed-block').n, 0);

      const releaseKey = freshKey();
      await plant('lapsed-release', '/lapsed-release', releaseKey);
      const executed = await post(`${gw.url}/lapsed-release`, releaseKey, '{}', { 'x-agent-id': 'planter' });
      assert.equal(executed.status, 201);
      expectReplayOf(await post(`${gw.url}/lapsed-release`, releaseKey, '{}', { 'x-agent-id': 'planter' }), executed);
      assert.equal(counter('lapsed-release').n, 1);
    });

    test('idempotency: false and routes without it forward as before', async () => {
      const off = await post(`${gw.url}/off`, freshKey());
      assert.equal(off.status, 404); // the test upstream has no /off handler: it was forwarded
      expectFresh(off);
    });

    test('logs carry the hashed key, never the key itself; metrics count every decision', async () => {
      const key = `secret-key-${freshKey()}`;
      const first = await post(`${gw.url}/orders`, key);
      await post(`${gw.url}/orders`, key);
      await sleep(50);
      assert.ok(!gw.logs.text.includes(key), 'the raw key appears in no log line');
      const lines = gw.logs.requestLines().filter((l) => l.request_id === first.headers['x-request-id']);
      assert.equal(lines.length, 1);
      assert.match(String(lines[0]!.idempotency_key_hash), /^[A-Za-z0-9_-]{43}$/);
      const replayLine = gw.logs.requestLines().at(-1)!;
      assert.equal(replayLine.outcome, 'replayed');
      assert.equal(replayLine.idempotency_key_hash, lines[0]!.idempotency_key_hash);
      const events = await eventsOf(gw.adminUrl, 'create');
      for (const event of ['stored', 'replayed', 'in_progress', 'reused', 'missing_key', 'invalid_key']) assert.ok((events[event] ?? 0) >= 1, `${event}: ${JSON.stringify(events)}`);
      const metrics = (await send(`${gw.adminUrl}/metrics`)).text;
      assert.ok(!metrics.includes(key));
    });
  });
}

suite('memory', () => 'store: {type: memory}\n', () => 'agentgate', async () => {}, false);

const redisPrefix = uniquePrefix('idem');
suite(
  'standalone Redis',
  () => `store: {type: redis, url: '${REDIS_URL}', key_prefix: ${redisPrefix}}\n`,
  () => redisPrefix,
  () => cleanupPrefix(REDIS_URL, redisPrefix),
  skipRedis,
);

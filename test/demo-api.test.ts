// Checks that the bundled demo legacy API misbehaves exactly as the walk-through (docs/getting-started.md) relies on, over real sockets.
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { get } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import { startLegacyApi } from '../src/demo/legacy-api.ts';
import type { LegacyApi } from '../src/demo/legacy-api.ts';

let api: LegacyApi;

before(async () => {
  api = await startLegacyApi({ port: 0 });
});

after(async () => {
  await api.close();
});

// Counters (quota, rate limit, every-third-call) are shared per instance; each test starts from zero.
beforeEach(async () => {
  const res = await fetch(`${api.url}/_demo/reset`, { method: 'POST' });
  assert.equal(res.status, 204);
});

interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  complete: boolean;
  error: Error | undefined;
}

/** node:http rather than fetch, to see framing details fetch hides (chunked vs Content-Length, incomplete bodies). */
function rawGet(path: string): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = get(`${api.url}${path}`, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let error: Error | undefined;
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', (err) => {
        error = err;
      });
      res.on('close', () => {
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8'),
          complete: res.complete,
          error,
        });
      });
    });
    req.on('error', reject);
  });
}

async function postOrder(body: unknown): Promise<Response> {
  return fetch(`${api.url}/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

test('POST /orders is not idempotent: two identical calls create two orders', async () => {
  const [a, b] = await Promise.all([postOrder({ item: 'widget', quantity: 1 }), postOrder({ item: 'widget', quantity: 1 })]);
  assert.equal(a.status, 201);
  assert.equal(b.status, 201);
  const first = (await a.json()) as { id: string; item: string; quantity: number; created_at: string };
  const second = (await b.json()) as { id: string };
  assert.match(first.id, /^ord_\d+$/);
  assert.notEqual(first.id, second.id);
  assert.equal(first.item, 'widget');
  assert.equal(first.quantity, 1);
  assert.equal(typeof first.created_at, 'string');
  assert.equal(a.headers.get('location'), `/orders/${first.id}`);

  const stats = (await (await fetch(`${api.url}/_demo/stats`)).json()) as { executions: Record<string, number> };
  assert.equal(stats.executions['POST /orders'], 2);

  const fetched = await fetch(`${api.url}/orders/${first.id}`);
  assert.equal(fetched.status, 200);
  assert.equal(((await fetched.json()) as { id: string }).id, first.id);

  const list = (await (await fetch(`${api.url}/orders`)).json()) as { orders: unknown[]; count: number };
  assert.equal(list.count, 2);
  assert.equal(list.orders.length, 2);
});

test('POST /orders without item or with a non-JSON body is a 400 that says what is wrong', async () => {
  const missing = await postOrder({ quantity: 1 });
  assert.equal(missing.status, 400);
  const body = (await missing.json()) as { message: string; errors: { field: string; message: string }[] };
  assert.equal(typeof body.message, 'string');
  assert.deepEqual(body.errors, [{ field: 'item', message: 'is required' }]);

  const garbage = await fetch(`${api.url}/orders`, { method: 'POST', body: 'not json' });
  assert.equal(garbage.status, 400);
  assert.equal(((await garbage.json()) as { errors: { field: string }[] }).errors[0]?.field, 'item');
});

test('GET /orders/{id} is a JSON 404 for an unknown id', async () => {
  const res = await fetch(`${api.url}/orders/ord_9`);
  assert.equal(res.status, 404);
  assert.deepEqual(await res.json(), { message: 'order ord_9 not found' });
});

test('unknown paths are a JSON 404', async () => {
  const res = await fetch(`${api.url}/nope`);
  assert.equal(res.status, 404);
  assert.deepEqual(await res.json(), { message: 'not found' });
});

test('GET /reports/daily: the 4th call within a minute is a 200 with an empty body', async () => {
  for (let i = 1; i <= 3; i++) {
    const res = await fetch(`${api.url}/reports/daily`);
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { report: string }).report, 'daily');
  }
  const fourth = await rawGet('/reports/daily');
  assert.equal(fourth.status, 200);
  assert.equal(fourth.headers['content-length'], '0');
  assert.equal(fourth.body, '');
});

test('GET /reports/weekly: once the quota is used up, a chunked 200 with no body', async () => {
  for (let i = 1; i <= 3; i++) {
    const res = await rawGet('/reports/weekly');
    assert.equal(res.status, 200);
    assert.notEqual(res.body, '');
  }
  const fourth = await rawGet('/reports/weekly');
  assert.equal(fourth.status, 200);
  assert.equal(fourth.headers['transfer-encoding'], 'chunked');
  assert.equal(fourth.headers['content-length'], undefined);
  assert.equal(fourth.body, '');
});

test('GET /crash is an HTML 500 with a stack trace', async () => {
  const res = await fetch(`${api.url}/crash`);
  assert.equal(res.status, 500);
  assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
  const html = await res.text();
  assert.match(html, /<pre>Error: NullPointerException/);
  assert.match(html, /at com\.legacy\.OrderService/);
});

test('GET /inventory: the 6th quick call is a plain-text 429 without Retry-After', async () => {
  const statuses: number[] = [];
  let last: Response | undefined;
  for (let i = 0; i < 6; i++) {
    last = await fetch(`${api.url}/inventory`);
    statuses.push(last.status);
    if (i < 5) await last.body?.cancel();
  }
  assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429]);
  assert.ok(last);
  assert.equal(last.headers.get('retry-after'), null);
  assert.match(last.headers.get('content-type') ?? '', /^text\/plain/);
  assert.equal(await last.text(), 'Too Many Requests');
});

test('GET /profile: every third call is a 401 invalid_token', async () => {
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++) {
    const res = await fetch(`${api.url}/profile`);
    statuses.push(res.status);
    if (res.status === 401) {
      assert.equal(res.headers.get('www-authenticate'), 'Bearer');
      assert.deepEqual(await res.json(), { error: 'invalid_token' });
    } else {
      assert.deepEqual(await res.json(), { user: 'demo' });
    }
  }
  assert.deepEqual(statuses, [200, 200, 401, 200, 200, 401]);
});

test('GET /profile with a revoked token: a 401 on every call, without moving the every-third-call count', async () => {
  for (let i = 0; i < 4; i++) {
    const res = await fetch(`${api.url}/profile`, { headers: { authorization: 'Bearer revoked' } });
    assert.equal(res.status, 401);
    assert.deepEqual(await res.json(), { error: 'token_revoked', error_description: 'This token was revoked.' });
  }
  const statuses: number[] = [];
  for (let i = 0; i < 3; i++) statuses.push((await fetch(`${api.url}/profile`)).status);
  assert.deepEqual(statuses, [200, 200, 401]);
});

test("GET /profile with Basic credentials of the user 'revoked' (what an agent sends beside X-Agent-Key): a 401 on every call", async () => {
  const basic = (user: string) => ({ authorization: `Basic ${Buffer.from(`${user}:secret`).toString('base64')}` });
  for (let i = 0; i < 4; i++) {
    const res = await fetch(`${api.url}/profile`, { headers: basic('revoked') });
    assert.equal(res.status, 401);
    assert.deepEqual(await res.json(), { error: 'token_revoked', error_description: 'This token was revoked.' });
  }
  const other = await fetch(`${api.url}/profile`, { headers: basic('demo') });
  assert.equal(other.status, 200, 'another user is not revoked');
  assert.deepEqual(await other.json(), { user: 'demo' });
});

test('GET /status hides an error in a 200', async () => {
  const res = await fetch(`${api.url}/status`);
  assert.equal(res.status, 200);
  const body = (await res.json()) as { ok: boolean; error: string };
  assert.equal(body.ok, false);
  assert.equal(body.error, 'upstream ledger unavailable');
});

test('GET /truncated: the client sees an incomplete body', async () => {
  const res = await rawGet('/truncated');
  assert.equal(res.status, 200);
  assert.equal(res.headers['content-length'], '1000');
  assert.equal(res.complete, false);
  assert.ok(Buffer.byteLength(res.body) < 1000);

  await assert.rejects(async () => (await fetch(`${api.url}/truncated`)).text());
});

test('GET /headers echoes the request headers', async () => {
  const res = await fetch(`${api.url}/headers`, { headers: { 'x-demo-probe': 'hello' } });
  assert.equal(res.status, 200);
  const body = (await res.json()) as { headers: Record<string, string> };
  assert.equal(body.headers['x-demo-probe'], 'hello');
});

test('GET /stream sends N JSON lines, chunked', async () => {
  const res = await rawGet('/stream?chunks=3');
  assert.equal(res.status, 200);
  assert.equal(res.headers['transfer-encoding'], 'chunked');
  const lines = res.body.trim().split('\n').map((line) => JSON.parse(line) as { chunk: number });
  assert.deepEqual(lines.map((l) => l.chunk), [1, 2, 3]);
});

test('GET /slow?ms=N answers after about N ms', async () => {
  const started = Date.now();
  const res = await fetch(`${api.url}/slow?ms=150`);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { waited_ms: 150 });
  assert.ok(Date.now() - started >= 140);
});

test('a client that aborts mid-request does not take the server down', async () => {
  await assert.rejects(fetch(`${api.url}/slow?ms=5000`, { signal: AbortSignal.timeout(50) }));
  await assert.rejects(postOrderAborted());
  const res = await fetch(`${api.url}/status`);
  assert.equal(res.status, 200);
  await res.body?.cancel();
});

function postOrderAborted(): Promise<Response> {
  return fetch(`${api.url}/orders`, {
    method: 'POST',
    body: JSON.stringify({ item: 'widget' }),
    signal: AbortSignal.timeout(50),
  });
}

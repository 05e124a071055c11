// Redis stopped mid-run under idempotency: fail_closed refuses writes, fail_open forwards them unprotected, nothing crashes, and all recovers.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { configYaml, startTestGateway, tempDir, type TestGateway } from './helpers/gateway.ts';
import { startUpstream, type TestUpstream } from './helpers/upstream.ts';
import { send } from './helpers/http.ts';
import { freePort, skipWithoutRedisServer, startRedisServer, type RedisServer } from './helpers/redis-cluster.ts';
import { createHandler, eventsOf, expectError, expectFresh, expectReplayOf, freshKey, post, until } from './helpers/idempotency.ts';

const skip = skipWithoutRedisServer();

const closed = { n: 0 };
const open = { n: 0 };
const slow = { n: 0 };
let upstream: TestUpstream;
let redis: RedisServer | undefined;
let gw: TestGateway;
let port: number;
let dir: { dir: string; remove: () => Promise<void> };

before(async () => {
  if (skip) return;
  upstream = await startUpstream({
    '/closed': createHandler(0, closed),
    '/open': createHandler(0, open),
    '/slow': createHandler(600, slow),
  });
  dir = await tempDir('agentgate-outage');
  port = await freePort();
  redis = await startRedisServer(port, dir.dir);
  gw = await startTestGateway(
    configYaml(`store: {type: redis, url: 'redis://127.0.0.1:${port}', command_timeout: 200ms}
upstreams:
  u: {url: '${upstream.url}'}
routes:
  - {name: closed, match: {path: /closed}, upstream: u, idempotency: {required: true, ttl: 1h}}
  - {name: open, match: {path: /open}, upstream: u, idempotency: {required: true, ttl: 1h, on_store_error: fail_open}}
  - {name: slow, match: {path: /slow}, upstream: u, idempotency: {required: true, ttl: 1h}}
`),
  );
  await until('redis to be ready', 5_000, () => gw.gateway.store.ready());
});

after(async () => {
  if (skip) return;
  await gw.close();
  await redis?.kill();
  await upstream.close();
  await dir.remove();
});

test('Redis stopped mid-run: fail_closed answers 503, fail_open forwards unprotected, no crash; all recovers when Redis returns', { skip, timeout: 30_000 }, async () => {
  // Up: both routes protect.
  const key = freshKey();
  const first = await post(`${gw.url}/closed`, key);
  assert.equal(first.status, 201);
  expectReplayOf(await post(`${gw.url}/closed`, key), first);

  // A request in flight when Redis goes away still gets its answer; only recording it fails.
  const inFlight = post(`${gw.url}/slow`, freshKey());
  await until('the slow request to reach the upstream', 2_000, () => slow.n === 1);
  await redis!.kill();
  const answered = await inFlight;
  assert.equal(answered.status, 201);
  expectFresh(answered);

  // Down, fail_closed: refused before the upstream, retryable with Retry-After.
  const closedBefore = closed.n;
  const started = performance.now();
  const refused = expectError(await post(`${gw.url}/closed`, freshKey()), 503, 'STORE_UNAVAILABLE', true);
  assert.ok(performance.now() - started < 1_500, 'fails fast');
  assert.ok(refused.retry_after_seconds >= 1);
  assert.equal(closed.n, closedBefore, 'nothing was forwarded');
  // Even a key whose answer was stored cannot be replayed now: refused too, never executed again.
  expectError(await post(`${gw.url}/closed`, key), 503, 'STORE_UNAVAILABLE', true);
  assert.equal(closed.n, closedBefore);

  // Down, fail_open: forwarded without protection, counted and logged.
  const openKey = freshKey();
  assert.equal((await post(`${gw.url}/open`, openKey)).status, 201);
  assert.equal((await post(`${gw.url}/open`, openKey)).status, 201);
  assert.equal(open.n, 2, 'unprotected: the retry executed again');
  assert.equal((await eventsOf(gw.adminUrl, 'open')).fail_open, 2);
  assert.equal((await eventsOf(gw.adminUrl, 'closed')).fail_closed, 2);
  await sleep(20);
  const warnings = gw.logs.lines.filter((l) => l.policy === 'idempotency' && l.level === 'warn' && /fail_open/.test(String(l.msg)));
  assert.equal(warnings.length, 2);
  assert.ok(!gw.logs.text.includes(openKey), 'the raw key is never logged');
  assert.equal((await send(`${gw.adminUrl}/readyz`)).status, 503, 'not ready while the store is away');
  assert.equal((await send(`${gw.adminUrl}/healthz`)).status, 200, 'alive');

  // Back: protection resumes (this Redis keeps nothing on disk, so it starts empty).
  redis = await startRedisServer(port, dir.dir);
  await until('the gateway to reconnect', 10_000, async () => (await post(`${gw.url}/closed`, freshKey())).status === 201);
  const afterKey = freshKey();
  const again = await post(`${gw.url}/open`, afterKey);
  assert.equal(again.status, 201);
  expectReplayOf(await post(`${gw.url}/open`, afterKey), again);
  const closedAgain = await post(`${gw.url}/closed`, afterKey);
  expectReplayOf(await post(`${gw.url}/closed`, afterKey), closedAgain);
  assert.equal((await send(`${gw.adminUrl}/readyz`)).status, 200);
});

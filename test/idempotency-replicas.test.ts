// Idempotency across replicas: three built gateway processes sharing one Redis (one of them SIGKILLed mid-request), and a Redis Cluster.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { configYaml, startCliGateway, startTestGateway, tempDir, type CliGateway, type TestGateway } from './helpers/gateway.ts';
import { startUpstream, type TestUpstream } from './helpers/upstream.ts';
import { cleanupPrefix, keysUnder, REDIS_URL, skipWithoutRedis, uniquePrefix } from './helpers/redis.ts';
import { skipWithoutRedisServer, startRedisCluster } from './helpers/redis-cluster.ts';
import { createHandler, eventsOf, expectError, expectFresh, expectReplayOf, freshKey, post, until } from './helpers/idempotency.ts';
import type { Reply } from './helpers/http.ts';

const skipRedis = await skipWithoutRedis();
const skipServer = skipWithoutRedisServer();

/** Executions per upstream path. */
const counters: Record<string, { n: number }> = {};
const counter = (name: string) => (counters[name] ??= { n: 0 });

let upstream: TestUpstream;
before(async () => {
  upstream = await startUpstream({
    '/orders': createHandler(300, counter('orders')),
    '/victim-block': createHandler(2_000, counter('victim-block')),
    '/victim-release': createHandler(2_000, counter('victim-release')),
  });
});
after(() => upstream.close());

/** 50 concurrent identical POSTs, spread round-robin over `urls`: one execution; the original or 409 in progress; then byte-identical replays everywhere. */
async function fiftyConcurrent(urls: string[]): Promise<void> {
  const orders = counter('orders');
  const before = orders.n;
  const key = freshKey();
  const replies = await Promise.all(Array.from({ length: 50 }, (_, i) => post(`${urls[i % urls.length]}/orders`, key)));
  assert.equal(orders.n - before, 1, 'the upstream executed exactly once');
  // A duplicate arriving after the first finished gets the replay, which is the original.
  const originals = replies.filter((r) => r.status === 201 && r.headers['idempotent-replayed'] === undefined);
  assert.equal(originals.length, 1, `statuses: ${replies.map((r) => r.status).join(',')}`);
  const original = originals[0]!;
  expectFresh(original);
  for (const reply of replies) {
    if (reply === original) continue;
    if (reply.status === 201) expectReplayOf(reply, original);
    else expectError(reply, 409, 'IDEMPOTENCY_IN_PROGRESS', true);
  }
  for (const url of urls) expectReplayOf(await post(`${url}/orders`, key), original);
  assert.equal(orders.n - before, 1, 'replays never reach the upstream');
}

describe('three gateway processes sharing one Redis', { skip: skipRedis, timeout: 60_000 }, () => {
  const prefix = uniquePrefix('idem-replicas');
  let gateways: CliGateway[] = [];
  let removeDir: () => Promise<void> = async () => {};

  before(async () => {
    const tmp = await tempDir('agentgate-replicas');
    removeDir = tmp.remove;
    const file = path.join(tmp.dir, 'gateway.yaml');
    await writeFile(
      file,
      configYaml(`store: {type: redis, url: '${REDIS_URL}', key_prefix: ${prefix}}
upstreams:
  u: {url: '${upstream.url}', timeout: 10s}
routes:
  - {name: create, match: {path: /orders}, upstream: u, idempotency: {required: true, ttl: 1h}}
  - {name: victim-block, match: {path: /victim-block}, upstream: u, idempotency: {required: true, ttl: 1h, lease: 1500ms}}
  - {name: victim-release, match: {path: /victim-release}, upstream: u, idempotency: {required: true, ttl: 1h, lease: 1500ms, on_outcome_unknown: release}}
`),
    );
    gateways = await Promise.all([0, 1, 2].map(() => startCliGateway(file)));
    // 'listening' comes before the Redis connection is up; the race below is about idempotency, not start-up.
    const ready = async (g: CliGateway) => (await fetch(`${g.adminUrl}/readyz`)).status === 200;
    await Promise.all(gateways.map((g) => until('the replica to be ready', 10_000, () => ready(g))));
  });

  after(async () => {
    for (const g of gateways) if (g.child.exitCode === null && g.child.signalCode === null) g.child.kill('SIGTERM');
    await Promise.all(gateways.map((g) => g.exited));
    await removeDir();
    await cleanupPrefix(REDIS_URL, prefix);
  });

  test('50 concurrent identical POSTs spread over all three execute once and replay identically on each', async () => {
    await fiftyConcurrent(gateways.map((g) => g.url));
    const stored = await Promise.all(gateways.map((g) => eventsOf(g.adminUrl, 'create')));
    assert.equal(stored.reduce((sum, e) => sum + (e.stored ?? 0), 0), 1, 'stored once, by one replica');
    assert.equal(stored.reduce((sum, e) => sum + (e.in_progress ?? 0), 0), 49);
    assert.equal(stored.reduce((sum, e) => sum + (e.replayed ?? 0), 0), 3);
  });

  /** Sends a POST to `victim` that the upstream holds, SIGKILLs the victim once the upstream has it, and returns the key. */
  async function killMidRequest(victim: CliGateway, route: string): Promise<string> {
    const key = freshKey();
    const before = counter(route).n;
    const pending = post(`${victim.url}/${route}`, key).catch((err: Error) => err);
    await until('the upstream to receive the request', 5_000, () => counter(route).n > before);
    victim.child.kill('SIGKILL');
    await victim.exited;
    assert.ok((await pending) instanceof Error, 'the client of the killed gateway lost its connection');
    return key;
  }

  test('a gateway SIGKILLed mid-request: in progress while its lease runs, then outcome unknown (block) on the other replicas', async () => {
    const [victim, a, b] = gateways as [CliGateway, CliGateway, CliGateway];
    const key = await killMidRequest(victim, 'victim-block');
    expectError(await post(`${a.url}/victim-block`, key), 409, 'IDEMPOTENCY_IN_PROGRESS', true);
    await sleep(1_800); // past the 1.5 s lease, which nobody renews any more
    const unknown = expectError(await post(`${a.url}/victim-block`, key), 409, 'IDEMPOTENCY_OUTCOME_UNKNOWN', false);
    assert.equal(unknown.reason, 'gateway_lost');
    expectError(await post(`${b.url}/victim-block`, key), 409, 'IDEMPOTENCY_OUTCOME_UNKNOWN', false);
    assert.equal(counter('victim-block').n, 1, 'never executed again');
  });

  test('a gateway SIGKILLed mid-request under on_outcome_unknown: release: after the lease a retry on another replica executes again', async () => {
    const [, victim, survivor] = gateways as [CliGateway, CliGateway, CliGateway];
    const key = await killMidRequest(victim, 'victim-release');
    expectError(await post(`${survivor.url}/victim-release`, key), 409, 'IDEMPOTENCY_IN_PROGRESS', true);
    await sleep(1_800);
    const retry: Promise<Reply> = post(`${survivor.url}/victim-release`, key);
    await until('the retry to reach the upstream', 5_000, () => counter('victim-release').n === 2);
    // While the retry runs (the upstream holds it 2 s), its own claim is live and renewed: duplicates are in progress.
    expectError(await post(`${survivor.url}/victim-release`, key), 409, 'IDEMPOTENCY_IN_PROGRESS', true);
    const executed = await retry;
    assert.equal(executed.status, 201);
    expectReplayOf(await post(`${survivor.url}/victim-release`, key), executed);
    assert.equal(counter('victim-release').n, 2);
  });
});

describe('a Redis Cluster of three masters', { skip: skipServer, timeout: 60_000 }, () => {
  let cluster: { nodes: string[]; stop(): Promise<void> } | undefined;
  let gw: TestGateway | undefined;

  before(async () => {
    cluster = await startRedisCluster();
    gw = await startTestGateway(
      configYaml(`store: {type: redis, cluster: {nodes: [${cluster.nodes.map((n) => `'${n}'`).join(', ')}]}, command_timeout: 1s}
upstreams:
  u: {url: '${upstream.url}', timeout: 10s}
routes:
  - {name: create, match: {path: /orders}, upstream: u, idempotency: {required: true, ttl: 1h}}
`),
    );
    await until('the cluster store to be ready', 10_000, () => gw!.gateway.store.ready());
  });

  after(async () => {
    await gw?.close();
    await cluster?.stop();
  });

  test('50 concurrent identical POSTs execute once and replay identically', async () => {
    await fiftyConcurrent([gw!.url]);
  });

  test('records of many keys, spread over the slots of all masters, each execute once', async () => {
    const orders = counter('orders');
    const before = orders.n;
    const keys = Array.from({ length: 12 }, () => freshKey());
    const firsts = await Promise.all(keys.map((key) => post(`${gw!.url}/orders`, key)));
    assert.deepEqual(firsts.map((r) => r.status), keys.map(() => 201));
    const replays = await Promise.all(keys.map((key) => post(`${gw!.url}/orders`, key)));
    replays.forEach((replay, i) => expectReplayOf(replay, firsts[i]!));
    assert.equal(orders.n - before, keys.length);
    const perNode = await Promise.all(cluster!.nodes.map(async (node) => (await keysUnder(node, 'agentgate')).length));
    assert.ok(perNode.filter((n) => n > 0).length >= 2, `records spread over the masters: ${perNode.join(', ')}`);
  });
});

// Rate limits across replicas: three built gateway processes sharing one Redis, the same on a Redis Cluster, key TTLs, and store outages (fail_open / fail_closed).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { configYaml, startCliGateway, startTestGateway, tempDir, type CliGateway, type TestGateway } from './helpers/gateway.ts';
import { json, startUpstream, type TestUpstream } from './helpers/upstream.ts';
import { envelopeOf, send } from './helpers/http.ts';
import { cleanupPrefix, keysUnder, REDIS_URL, skipWithoutRedis, uniquePrefix, withRedis } from './helpers/redis.ts';
import { freePort, skipWithoutRedisServer, startRedisCluster } from './helpers/redis-cluster.ts';

const skipRedis = await skipWithoutRedis();
const skipServer = skipWithoutRedisServer();

let upstream: TestUpstream;
before(async () => {
  upstream = await startUpstream({ '*': (req, res) => json(res, 200, { path: req.url }) });
});
after(() => upstream.close());

const received = (p: string) => upstream.received.filter((r) => r.url === p).length;

/** Capacity 20 per hour (no refill worth a unit while the test runs), cost 3; a global pool of 1000 makes Cluster charge two slots. */
const routesYaml = () => `upstreams:
  u: {url: '${upstream.url}'}
rate_limits:
  agents: {capacity: 20, per: 1h}
  pool: {capacity: 1000, per: 1h, scope: global}
routes:
  - {name: exact, match: {path: /exact}, upstream: u, rate_limit: agents, cost: 3}
  - {name: pooled, match: {path: /pooled}, upstream: u, rate_limit: [agents, pool], cost: 3}
`;

async function startThree(store: string): Promise<{ gateways: CliGateway[]; stop: () => Promise<void> }> {
  const tmp = await tempDir('agentgate-rl-replicas');
  const file = path.join(tmp.dir, 'gateway.yaml');
  await writeFile(file, configYaml(`${store}\n${routesYaml()}`));
  const started = await Promise.allSettled([0, 1, 2].map(() => startCliGateway(file)));
  const gateways = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) {
    for (const g of gateways) g.child.kill('SIGKILL');
    await tmp.remove();
    throw failed.reason;
  }
  return {
    gateways,
    async stop() {
      for (const g of gateways) if (g.child.exitCode === null && g.child.signalCode === null) g.child.kill('SIGTERM');
      await Promise.all(gateways.map((g) => g.exited));
      await tmp.remove();
    },
  };
}

/** 60 concurrent requests from one consumer, round-robin over the gateways: exactly floor(20 / 3) = 6 pass, exactly 6 reach the upstream. */
async function exactlyFloor(urls: string[], agent: string, route: string): Promise<void> {
  const before = received(route);
  const replies = await Promise.all(Array.from({ length: 60 }, (_, i) => send(`${urls[i % urls.length]}${route}`, { headers: { 'x-agent-id': agent } })));
  const statuses = replies.map((r) => r.status);
  assert.equal(statuses.filter((s) => s === 200).length, 6, `statuses: ${statuses.join(',')}`);
  assert.equal(statuses.filter((s) => s === 429).length, 54);
  assert.equal(received(route) - before, 6);
  for (const url of urls) {
    const { budgets } = (await send(`${url}/_agentgate/budget`, { headers: { 'x-agent-id': agent } })).json();
    assert.equal(budgets.find((b: { policy: string }) => b.policy === 'agents').remaining, 2, 'every replica sees the same budget');
  }
}

describe('three gateway processes sharing one Redis', { skip: skipRedis, timeout: 60_000 }, () => {
  const prefix = uniquePrefix('rl-replicas');
  let three: Awaited<ReturnType<typeof startThree>> | undefined;
  before(async () => {
    three = await startThree(`store: {type: redis, url: '${REDIS_URL}', key_prefix: ${prefix}}`);
  });
  after(async () => {
    await three?.stop();
    await cleanupPrefix(REDIS_URL, prefix);
  });

  test('exactly floor(C/k) of 60 concurrent requests pass', async () => {
    await exactlyFloor(three!.gateways.map((g) => g.url), 'replica-agent', '/exact');
  });

  test('with a global pool as well: still exact, and the pool is charged once per passing request', async () => {
    await exactlyFloor(three!.gateways.map((g) => g.url), 'pool-agent', '/pooled');
    const { budgets } = (await send(`${three!.gateways[0]!.url}/_agentgate/budget`, { headers: { 'x-agent-id': 'pool-agent' } })).json();
    assert.equal(budgets.find((b: { policy: string }) => b.policy === 'pool').remaining, 1000 - 18);
  });

  test('every budget key carries a TTL of about the time until it is full again', async () => {
    const keys = await keysUnder(REDIS_URL, prefix);
    assert.ok(keys.length >= 3, `keys: ${keys.join(', ')}`);
    for (const key of keys) {
      assert.match(key, new RegExp(`^${prefix}:\\{[^}]+\\}:rl:`));
      const ttl = await withRedis(REDIS_URL, (client) => client.pttl(key));
      // 18 units of 20 per hour spent: full again in 54 minutes (pool: 18 of 1000, 65 s).
      const fullInMs = key.includes(':pool:') ? 64_800 : 3_240_000;
      assert.ok(ttl > fullInMs - 60_000 && ttl <= fullInMs, `${key}: pttl ${ttl}, expected about ${fullInMs}`);
    }
  });
});

describe('three gateway processes on a Redis Cluster', { skip: skipServer, timeout: 60_000 }, () => {
  let cluster: Awaited<ReturnType<typeof startRedisCluster>> | undefined;
  let three: Awaited<ReturnType<typeof startThree>> | undefined;
  before(async () => {
    cluster = await startRedisCluster();
    three = await startThree(`store: {type: redis, cluster: {nodes: [${cluster.nodes.map((n) => `'${n}'`).join(', ')}]}, key_prefix: ${uniquePrefix('rl-cluster')}}`);
  });
  after(async () => {
    await three?.stop();
    await cluster?.stop();
  });

  test("exactly floor(C/k) pass: one consumer's budgets in one slot", async () => {
    await exactlyFloor(three!.gateways.map((g) => g.url), 'cluster-agent', '/exact');
  });

  test('exactly floor(C/k) pass with a global pool in another slot: charged slot by slot, refunded on refusal', async () => {
    await exactlyFloor(three!.gateways.map((g) => g.url), 'cluster-pool-agent', '/pooled');
    const { budgets } = (await send(`${three!.gateways[1]!.url}/_agentgate/budget`, { headers: { 'x-agent-id': 'cluster-pool-agent' } })).json();
    assert.equal(budgets.find((b: { policy: string }) => b.policy === 'pool').remaining, 1000 - 18, 'refused requests left nothing charged on the pool');
  });
});

describe('the store is unreachable', () => {
  let tg: TestGateway;
  before(async () => {
    tg = await startTestGateway(
      configYaml(`store: {type: redis, url: 'redis://127.0.0.1:${await freePort()}', command_timeout: 200ms}
upstreams:
  u: {url: '${upstream.url}'}
rate_limits:
  lenient: {capacity: 10, per: 1m}
  strict: {capacity: 10, per: 1m, on_store_error: fail_closed}
routes:
  - {name: open, match: {path: /open}, upstream: u, rate_limit: lenient}
  - {name: closed, match: {path: /closed}, upstream: u, rate_limit: strict}
  - {name: mixed, match: {path: /mixed}, upstream: u, rate_limit: [lenient, strict]}
`),
    );
  });
  after(() => tg.close());

  test('fail_open forwards without a limit (counted and logged); fail_closed answers 503 STORE_UNAVAILABLE; either way fast', async () => {
    const started = performance.now();
    const open = await send(`${tg.url}/open`, { headers: { 'x-agent-id': 'outage' } });
    assert.equal(open.status, 200);
    assert.equal(open.headers['x-ratelimit-limit'], undefined, 'no budget figures the gateway could not read');
    assert.equal(received('/open'), 1);

    for (const route of ['/closed', '/mixed']) {
      const closed = await send(`${tg.url}${route}`, { headers: { 'x-agent-id': 'outage' } });
      const body = envelopeOf(closed);
      assert.deepEqual([closed.status, body.code, body.retryable, closed.headers['retry-after']], [503, 'STORE_UNAVAILABLE', true, '2'], route);
      assert.equal(received(route), 0, `${route} never reached the upstream`);
    }
    assert.ok(performance.now() - started < 3_000, 'an unreachable store fails fast');

    const budget = await send(`${tg.url}/_agentgate/budget`, { headers: { 'x-agent-id': 'outage' } });
    assert.deepEqual([budget.status, envelopeOf(budget).code], [503, 'STORE_UNAVAILABLE']);

    const metrics = (await send(`${tg.adminUrl}/metrics`)).text;
    assert.match(metrics, /agentgate_rate_limit_decisions_total\{route="open",policy="lenient",decision="fail_open"\} 1/);
    assert.match(metrics, /agentgate_rate_limit_decisions_total\{route="closed",policy="strict",decision="fail_closed"\} 1/);
    assert.match(metrics, /agentgate_rate_limit_decisions_total\{route="mixed",policy="lenient",decision="fail_closed"\} 1/);
    assert.match(metrics, /agentgate_store_errors_total\{store="redis",operation="consume"\} [1-9]/);
    const logged = tg.logs.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('store unreachable'));
    assert.deepEqual(logged.map((l) => l.route), ['open', 'closed', 'mixed']);
    assert.equal(logged[0]!.msg, 'store unreachable: forwarding without a rate limit (fail_open)');
  });
});

// A route with a budget and idempotency: the charge and the claim go to the store together, and a refused charge claims nothing.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { configYaml, startTestGateway, tempDir, type TestGateway } from './helpers/gateway.ts';
import { startUpstream, type TestUpstream } from './helpers/upstream.ts';
import { cleanupPrefix, keysUnder, REDIS_URL, skipWithoutRedis, uniquePrefix } from './helpers/redis.ts';
import { freePort, skipWithoutRedisServer, startRedisServer, type RedisServer } from './helpers/redis-cluster.ts';
import { createHandler, expectError, expectFresh, expectReplayOf, freshKey, post, until } from './helpers/idempotency.ts';
import { send } from './helpers/http.ts';
import { MemoryStore } from '../src/store/memory.ts';

const skipRedis = await skipWithoutRedis();
const skipServer = skipWithoutRedisServer();

const executions = { n: 0 };
let upstream: TestUpstream;
before(async () => {
  const create = createHandler(300, executions);
  upstream = await startUpstream({ 'POST /orders': create, 'POST /quick/orders': create });
});
after(() => upstream.close());

const stores = [
  { name: 'memory store', skip: false as const, prefix: undefined },
  { name: 'Redis', skip: skipRedis, prefix: uniquePrefix('rl-idem') },
];

for (const store of stores) {
  describe(`a rate-limited idempotent route, ${store.name}`, { skip: store.skip, timeout: 30_000 }, () => {
    let gw: TestGateway;
    const agent = (id: string) => ({ 'x-agent-id': `${id}-${store.name}` });

    before(async () => {
      const storeYaml = store.prefix ? `store: {type: redis, url: '${REDIS_URL}', key_prefix: ${store.prefix}}\n` : '';
      gw = await startTestGateway(
        configYaml(`${storeYaml}upstreams: {u: {url: '${upstream.url}', timeout: 10s}}
rate_limits:
  thirty: {capacity: 30, per: 1h}
  quick: {capacity: 2, per: 2s}
routes:
  - {name: create, match: {methods: [POST], path: /orders}, upstream: u, rate_limit: thirty, idempotency: {required: true, ttl: 1h}}
  - {name: quick, match: {methods: [POST], path: /quick/orders}, upstream: u, rate_limit: quick, idempotency: {required: true, ttl: 1h}}
`),
      );
    });
    after(async () => {
      await gw.close();
      if (store.prefix) await cleanupPrefix(REDIS_URL, store.prefix);
    });

    test('a fresh write goes to the store once before it is forwarded: the charge and the claim together', async () => {
      const store = gw.gateway.store;
      const calls: string[] = [];
      const spied = ['consume', 'claim', 'chargeAndClaim'] as const;
      const originals = spied.map((name) => store[name]);
      for (const name of spied) {
        const original = store[name] as (...args: unknown[]) => Promise<unknown>;
        (store as unknown as Record<string, unknown>)[name] = (...args: unknown[]) => (calls.push(name), original.apply(store, args));
      }
      try {
        assert.equal((await post(`${gw.url}/orders`, freshKey(), undefined, agent('spy'))).status, 201);
      } finally {
        spied.forEach((name, i) => ((store as unknown as Record<string, unknown>)[name] = originals[i]));
      }
      assert.deepEqual(calls, ['chargeAndClaim']);
    });

    test('50 concurrent duplicates against a budget of 30: 30 charged, executed once, 20 refused with 429', async () => {
      const before = executions.n;
      const key = freshKey();
      const replies = await Promise.all(Array.from({ length: 50 }, () => post(`${gw.url}/orders`, key, undefined, agent('fifty'))));
      assert.equal(executions.n - before, 1, 'the upstream executed exactly once');
      const statuses = replies.map((r) => r.status);
      assert.equal(statuses.filter((s) => s === 429).length, 20, `statuses: ${statuses.join(',')}`);
      const originals = replies.filter((r) => r.status === 201);
      assert.equal(originals.length, 1, 'the others within the budget found the key in progress');
      expectFresh(originals[0]!);
      for (const reply of replies) {
        if (reply.status === 409) expectError(reply, 409, 'IDEMPOTENCY_IN_PROGRESS', true);
        else if (reply.status === 429) expectError(reply, 429, 'RATE_LIMITED', true);
      }
      const remaining = replies.map((r) => Number(r.headers['x-ratelimit-remaining'])).sort((a, b) => a - b);
      assert.deepEqual(remaining.slice(0, 21), Array(21).fill(0), 'the budget is spent exactly: the last charge and every refusal see 0');
      assert.deepEqual(remaining.slice(20), Array.from({ length: 30 }, (_, i) => i), 'each charge took one unit');
      const replay = await post(`${gw.url}/orders`, key, undefined, agent('fifty'));
      expectError(replay, 429, 'RATE_LIMITED', true);
    });

    test('a write refused for its budget leaves no claim behind: retried once the budget refills, it executes', async () => {
      // Every entry of the memory store; the records on Redis (the budget's own key is there already either way).
      const records = async () =>
        store.prefix ? (await keysUnder(REDIS_URL, store.prefix)).filter((k) => k.endsWith(':idem')).length : (gw.gateway.store as MemoryStore).size;
      for (let i = 0; i < 2; i++) assert.equal((await post(`${gw.url}/quick/orders`, freshKey(), undefined, agent('refill'))).status, 201);
      const key = freshKey();
      const before = executions.n;
      const recordsBefore = await records();
      const refused = expectError(await post(`${gw.url}/quick/orders`, key, undefined, agent('refill')), 429, 'RATE_LIMITED', true);
      assert.equal(await records(), recordsBefore, 'the refused write wrote no record');
      await sleep(refused.retry_after_seconds * 1000);
      const retried = await post(`${gw.url}/quick/orders`, key, undefined, agent('refill'));
      assert.equal(retried.status, 201, `a claim left by the refusal would answer 409: ${retried.text.slice(0, 200)}`);
      expectFresh(retried);
      assert.equal(executions.n - before, 1);
      expectReplayOf(await sleep(1_000).then(() => post(`${gw.url}/quick/orders`, key, undefined, agent('refill'))), retried);
    });

    test('a write without its key is refused before it is charged, and still says where the budget stands', async () => {
      const first = await post(`${gw.url}/orders`, freshKey(), undefined, agent('nokey'));
      assert.equal(first.headers['x-ratelimit-remaining'], '29');
      const missing = await post(`${gw.url}/orders`, undefined, undefined, agent('nokey'));
      expectError(missing, 400, 'IDEMPOTENCY_KEY_REQUIRED', false);
      assert.equal(missing.headers['x-ratelimit-remaining'], '29');
      assert.equal(missing.headers['x-ratelimit-cost'], '0');
      const next = await post(`${gw.url}/orders`, freshKey(), undefined, agent('nokey'));
      assert.equal(next.headers['x-ratelimit-remaining'], '28', 'the refused write cost nothing');
    });
  });
}

describe('a charge and claim that times out on a Redis that stalls', { skip: skipServer, timeout: 30_000 }, () => {
  let redis: RedisServer;
  let gw: TestGateway;
  let dir: { dir: string; remove: () => Promise<void> };

  before(async () => {
    dir = await tempDir('agentgate-stall');
    const port = await freePort();
    redis = await startRedisServer(port, dir.dir);
    gw = await startTestGateway(
      configYaml(`store: {type: redis, url: 'redis://127.0.0.1:${port}', command_timeout: 200ms}
upstreams: {u: {url: '${upstream.url}', timeout: 10s}}
rate_limits:
  strict: {capacity: 100, per: 1h, on_store_error: fail_closed}
  lenient: {capacity: 100, per: 1h, on_store_error: fail_open}
routes:
  - {name: strict, match: {methods: [POST], path: /orders}, upstream: u, rate_limit: strict, idempotency: {required: true, ttl: 1h}}
  - {name: lenient, match: {methods: [POST], path: /quick/orders}, upstream: u, rate_limit: lenient, idempotency: {required: true, ttl: 1h}}
`),
    );
    await until('redis to be ready', 5_000, () => gw.gateway.store.ready());
  });
  after(async () => {
    process.kill(redis.pid, 'SIGCONT');
    await gw.close();
    await redis.kill();
    await dir.remove();
  });

  const scriptTimeouts = async () => {
    const text = (await send(`${gw.adminUrl}/metrics`)).text;
    return Number(/agentgate_store_errors_total\{store="redis",operation="chargeAndClaim"\} (\d+)/.exec(text)?.[1] ?? 0);
  };

  /** Sends a write while Redis is stopped (it still takes the commands into its socket buffer and runs them on SIGCONT). */
  async function stalled(path: string, key: string) {
    // The store's clock, read at most once a second, is fresh: the request gets as far as the charge-and-claim script.
    await gw.gateway.store.now();
    process.kill(redis.pid, 'SIGSTOP');
    try {
      return await post(`${gw.url}${path}`, key);
    } finally {
      process.kill(redis.pid, 'SIGCONT');
      await until('the store to answer again', 5_000, () => gw.gateway.store.ready());
    }
  }

  for (const [route, path, refusedBy] of [
    ['strict', '/orders', 'the rate limit (fail_closed)'],
    ['lenient', '/quick/orders', 'idempotency (its own fail_closed), after the rate limit failed open and it claimed again'],
  ] as const) {
    test(`${route}: refused with 503 by ${refusedBy}, and no claim is left once Redis runs what it was sent`, async () => {
      const key = freshKey();
      const before = executions.n;
      const timeoutsBefore = await scriptTimeouts();
      expectError(await stalled(path, key), 503, 'STORE_UNAVAILABLE', true);
      assert.equal(await scriptTimeouts(), timeoutsBefore + 1, 'it was the charge-and-claim script that timed out');
      const retried = await post(`${gw.url}${path}`, key);
      assert.equal(retried.status, 201, `a claim left by the timed-out script would answer 409: ${retried.text.slice(0, 200)}`);
      expectFresh(retried);
      assert.equal(executions.n - before, 1);
    });
  }
});

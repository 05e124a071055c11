// Runs the store contract against memory, standalone Redis and Redis Cluster, plus what is particular to each backend.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createStore } from '../src/store/index.ts';
import { storeKey } from '../src/store/keys.ts';
import { budgetBytes, MemoryStore, recordBytes } from '../src/store/memory.ts';
import { RedisStore } from '../src/store/redis.ts';
import { StoreError, StoreFullError, type Bucket } from '../src/store/store.ts';
import { consumeBuckets } from '../src/store/token-bucket.ts';
import { GatewayMetrics } from '../src/observability/metrics.ts';
import { cleanupPrefix, keysUnder, REDIS_URL, skipWithoutRedis, uniquePrefix, withRedis } from './helpers/redis.ts';
import { cli, freePort, skipWithoutRedisServer, startRedisCluster, startRedisServer } from './helpers/redis-cluster.ts';
import type { RedisServer } from './helpers/redis-cluster.ts';
import { storeContract } from './helpers/store-contract.ts';
import { until } from './helpers/wait.ts';

const skipRedis = await skipWithoutRedis();
const skipServer = skipWithoutRedisServer();

/** Resolves once check passes, retrying for up to timeoutMs: reconnection takes a backoff interval or two. */
async function eventually<T>(what: string, timeoutMs: number, check: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`${what}: still failing after ${timeoutMs}ms`, { cause: error });
      await sleep(100);
    }
  }
}

storeContract('MemoryStore', async () => {
  const store = new MemoryStore({ maxEntries: 10_000, maxBytes: 64 * 1024 * 1024 });
  return { store, prefix: 'memory', close: () => store.close() };
});

storeContract(
  'RedisStore (standalone)',
  async () => {
    const prefix = uniquePrefix('contract');
    const store = new RedisStore({ url: REDIS_URL, commandTimeoutMs: 1_000 });
    return {
      store,
      prefix,
      async close() {
        await store.close();
        await cleanupPrefix(REDIS_URL, prefix);
      },
    };
  },
  skipRedis,
);

storeContract(
  'RedisStore (cluster)',
  async () => {
    const cluster = await startRedisCluster();
    const store = new RedisStore({ clusterNodes: cluster.nodes, commandTimeoutMs: 1_000 });
    return {
      store,
      prefix: uniquePrefix('cluster'),
      async serversHolding(prefix) {
        const counts = await Promise.all(cluster.nodes.map(async (node) => (await keysUnder(node, prefix)).length));
        return counts.filter((count) => count > 0).length;
      },
      async close() {
        await store.close();
        await cluster.stop();
      },
    };
  },
  skipServer,
);

describe('MemoryStore', () => {
  const HOUR = 3_600_000;
  /** A budget of its own: charging it writes one entry to the budgets part. */
  const budget = (key: string, capacity = 10, perMs = HOUR): Bucket => ({ key, capacity, perMs });

  it('refuses a record larger than the records bound with StoreFullError instead of claiming and silently dropping it', async () => {
    const store = new MemoryStore({ maxEntries: 10, maxBytes: 500, records: { maxEntries: 10, maxBytes: 500 } });
    await assert.rejects(store.claim('big', 'x'.repeat(1000), 10_000), (err) => err instanceof StoreFullError && err instanceof StoreError && /records are full/.test(err.message));
    assert.equal(await store.claim('big', 'small', 10_000), null, 'nothing was stored under the key');
    await assert.rejects(store.replaceIf('big', 'small', 'x'.repeat(1000), 10_000), StoreFullError);
    assert.equal(await store.get('big'), 'small', 'a refused replace leaves the old value');
    assert.equal(store.stats().records.refusals, 2);
    await store.close();
  });

  it('refuses a budget larger than max bytes rather than storing it and evicting it at once', async () => {
    const store = new MemoryStore({ maxEntries: 10, maxBytes: 200 });
    await assert.rejects(store.consume([budget('b'.repeat(100))], 1), (err) => err instanceof StoreError && !(err instanceof StoreFullError) && /exceeds/.test(err.message));
    assert.equal(store.size, 0);
    await store.close();
  });

  it('evicts the least recently used budget beyond max entries', async () => {
    const store = new MemoryStore({ maxEntries: 3, maxBytes: 1_000_000 });
    for (const key of ['a', 'b', 'c']) await store.consume([budget(key)], 1);
    await store.consume([budget('a')], 0, 'dry_run');
    await store.consume([budget('d')], 1);
    assert.equal(await store.get('b'), null, 'b was least recently used');
    for (const key of ['a', 'c', 'd']) assert.notEqual(await store.get(key), null, key);
    assert.equal((await store.consume([budget('b')], 0, 'dry_run')).buckets[0]!.remaining, 10, 'an evicted budget comes back full');
    assert.deepEqual([store.size, store.stats().budgets.evictions], [3, 1]);
    await store.close();
  });

  it('evicts the least recently used budget beyond max bytes', async () => {
    const time = 1_000_000;
    // Each budget is "1000:1000000" under a 2-character key: (2 + 12 + 170) * 1.1 = 203 bytes (rounded up), so 450 hold two.
    assert.equal(budgetBytes('k1', '1000:1000000'), 203);
    const store = new MemoryStore({ maxEntries: 1_000, maxBytes: 450, clock: () => time });
    const b = (key: string) => budget(key, 10, 1_000);
    await store.consume([b('k1')], 1);
    await store.consume([b('k2')], 1);
    await store.get('k1');
    await store.consume([b('k3')], 1);
    assert.equal(await store.get('k2'), null, 'k2 was least recently used');
    assert.equal(await store.get('k1'), '1000:1000000');
    assert.equal(await store.get('k3'), '1000:1000000');
    assert.equal(store.usedBytes, 2 * budgetBytes('k1', '1000:1000000'));
    await store.close();
  });

  it('filling the budgets part never evicts a record, pending or completed', async () => {
    const store = new MemoryStore({ maxEntries: 50, maxBytes: 8_000, records: { maxEntries: 10, maxBytes: 100_000 } });
    assert.equal(await store.claim('done', 'pending', HOUR), null);
    assert.equal(await store.replaceIf('done', 'pending', 'completed:' + 'x'.repeat(2_000), HOUR), true);
    assert.equal(await store.claim('running', 'pending', HOUR), null);
    for (let i = 0; i < 10_000; i++) await store.consume([budget(`budget-${i}`)], 1);
    assert.equal(await store.get('done'), 'completed:' + 'x'.repeat(2_000));
    assert.equal(await store.get('running'), 'pending');
    const { budgets, records } = store.stats();
    assert.ok(budgets.entries <= 50 && budgets.bytes <= 8_000, `budgets: ${budgets.entries} entries, ${budgets.bytes} bytes`);
    assert.ok(budgets.evictions >= 9_950, `${budgets.evictions} budgets evicted`);
    assert.deepEqual([records.entries, records.evictions], [2, 0]);
    await store.close();
  });

  it('a full records part refuses new claims with StoreFullError; the records there stay readable, replaceable and deletable', async () => {
    const store = new MemoryStore({ maxEntries: 100, maxBytes: 1_000_000, records: { maxEntries: 3, maxBytes: 1_000_000 } });
    for (const key of ['a', 'b', 'c']) assert.equal(await store.claim(key, `${key}-pending`, HOUR), null);
    await assert.rejects(store.claim('d', 'd-pending', HOUR), (err) => err instanceof StoreFullError && err.operation === 'claim');
    assert.equal(await store.get('d'), null, 'the refused claim wrote nothing');
    for (const key of ['a', 'b', 'c']) assert.equal(await store.get(key), `${key}-pending`);
    assert.equal(await store.claim('a', 'other', HOUR), 'a-pending', 'a claim of a key already there answers its value: nothing to refuse');
    assert.equal(await store.replaceIf('a', 'a-pending', 'a-completed', HOUR), true, 'replacing in place needs no new entry');
    assert.equal(await store.deleteIf('c', 'c-pending'), true);
    assert.equal(await store.claim('d', 'd-pending', HOUR), null, 'a deleted record made room');
    await assert.rejects(store.claim('e', 'e-pending', HOUR), StoreFullError);
    assert.equal(store.stats().records.refusals, 2);

    // By bytes: a replacement that needs more room than is left is refused and leaves the record as it was.
    // 'pending' counts 163, 600 characters 816, 300 characters 486: 1,320 bytes hold the first two, not two of 600.
    const bytes = new MemoryStore({ maxEntries: 100, maxBytes: 1_000_000, records: { maxEntries: 100, maxBytes: 1_320 } });
    assert.equal(await bytes.claim('r', 'pending', HOUR), null);
    assert.equal(await bytes.claim('s', 'x'.repeat(600), HOUR), null);
    await assert.rejects(bytes.replaceIf('r', 'pending', 'y'.repeat(600), HOUR), (err) => err instanceof StoreFullError && err.operation === 'replaceIf');
    assert.equal(await bytes.get('r'), 'pending');
    assert.equal(await bytes.replaceIf('r', 'pending', 'y'.repeat(300), HOUR), true, 'a replacement that fits is made');
    assert.ok(bytes.usedBytes <= 1_320, `${bytes.usedBytes} bytes`);
    await Promise.all([store.close(), bytes.close()]);
  });

  it('expired records free room at once, without waiting for the sweep', async () => {
    let time = 1_000_000;
    const store = new MemoryStore({ maxEntries: 100, maxBytes: 1_000_000, records: { maxEntries: 2, maxBytes: 1_000_000 }, clock: () => time, sweepIntervalMs: 3_600_000 });
    assert.equal(await store.claim('short', 'v', 1_000), null);
    assert.equal(await store.claim('long', 'v', 5_000), null);
    await assert.rejects(store.claim('new', 'v', 1_000), StoreFullError);
    time += 999;
    await assert.rejects(store.claim('new', 'v', 1_000), StoreFullError, 'nothing has expired yet');
    time += 1;
    assert.equal(await store.claim('new', 'v', 1_000), null, 'the expired record made room');
    assert.equal(await store.get('short'), null);
    assert.equal(await store.get('long'), 'v');
    // A record whose TTL a replace extended is no longer the first to expire.
    assert.equal(await store.replaceIf('new', 'v', 'w', 10_000), true);
    time += 1_000;
    await assert.rejects(store.claim('newer', 'v', 1_000), StoreFullError);
    time += 3_000;
    assert.equal(await store.claim('newer', 'v', 1_000), null, 'long expired');
    assert.deepEqual([await store.get('new'), store.size], ['w', 2]);
    await store.close();
  });

  it('chargeAndClaim with the records part full: the charge stays, no claim is made, and claim() then says why', async () => {
    const store = new MemoryStore({ maxEntries: 100, maxBytes: 1_000_000, records: { maxEntries: 1, maxBytes: 1_000_000 } });
    assert.equal(await store.claim('taken', 'v', HOUR), null);
    const b = budget('b');
    const result = await store.chargeAndClaim([b], 3, { key: 'new', value: 'v', ttlMs: HOUR });
    assert.deepEqual([result.consumed.allowed, result.consumed.buckets[0]!.remaining, result.claim], [true, 7, undefined]);
    await assert.rejects(store.claim('new', 'v', HOUR), StoreFullError);
    const onTaken = await store.chargeAndClaim([b], 1, { key: 'taken', value: 'other', ttlMs: HOUR });
    assert.equal(onTaken.claim, 'v', 'a key already there is answered, full or not');
    await store.close();
  });

  it('stays within its bounds under 200k distinct keys: budgets by evicting, records by refusing', async () => {
    const byEntries = new MemoryStore({ maxEntries: 1_000, maxBytes: 64 * 1024 * 1024, records: { maxEntries: 1_000, maxBytes: 64 * 1024 * 1024 } });
    const byBytes = new MemoryStore({ maxEntries: 1_000_000, maxBytes: 100 * 1024, records: { maxEntries: 1_000_000, maxBytes: 100 * 1024 } });
    for (let i = 0; i < 200_000; i++) {
      const key = storeKey('bounds', 'rl', `tag${i}`, String(i));
      await byEntries.consume([budget(key)], 1);
      await byBytes.consume([budget(key)], 1);
      if (i % 10_000 === 0) {
        assert.ok(byEntries.stats().budgets.entries <= 1_000, `${byEntries.size} entries`);
        assert.ok(byBytes.stats().budgets.bytes <= 100 * 1024, `${byBytes.usedBytes} bytes`);
      }
    }
    assert.equal(byEntries.stats().budgets.entries, 1_000);
    assert.ok(byBytes.stats().budgets.bytes > 90 * 1024, `${byBytes.stats().budgets.bytes} bytes`);
    const newest = storeKey('bounds', 'rl', 'tag199999', '199999');
    assert.notEqual(await byEntries.get(newest), null, 'the newest budget is kept');
    assert.equal(await byEntries.get(storeKey('bounds', 'rl', 'tag0', '0')), null, 'the oldest budget is gone');

    for (const store of [byEntries, byBytes]) {
      let kept = 0;
      let refused = 0;
      for (let i = 0; i < 5_000; i++) {
        try {
          assert.equal(await store.claim(storeKey('bounds', 'idem', `tag${i}`), `value-${i}`, 60_000), null);
          kept++;
        } catch (err) {
          assert.ok(err instanceof StoreFullError, String(err));
          refused++;
        }
      }
      const { records } = store.stats();
      assert.ok(records.entries <= records.maxEntries && records.bytes <= records.maxBytes, JSON.stringify(records));
      assert.deepEqual([records.entries, records.refusals, kept + refused], [kept, refused, 5_000]);
      assert.ok(refused > 0, 'the records part filled up');
      for (const i of [0, kept - 1]) assert.equal(await store.get(storeKey('bounds', 'idem', `tag${i}`)), `value-${i}`, 'every kept record is still there');
    }
    await Promise.all([byEntries.close(), byBytes.close()]);
  });

  it('expires by its injected clock, and now() reads that clock', async () => {
    let time = 1_000_000;
    const store = new MemoryStore({ maxEntries: 100, maxBytes: 1_000_000, clock: () => time });
    assert.equal(await store.now(), 1_000_000);
    await store.claim('k', 'a', 1_000);
    time += 999;
    assert.equal(await store.get('k'), 'a');
    time += 1;
    assert.equal(await store.get('k'), null, 'expired at exactly its TTL');
    await store.claim('k', 'b', 1_000);
    time += 900;
    assert.equal(await store.replaceIf('k', 'b', 'c', 1_000), true);
    time += 900;
    assert.equal(await store.get('k'), 'c', 'replaceIf restarted the TTL');
    await store.close();
  });

  it('sweeps expired entries nobody touches, in both parts', async () => {
    let time = 0;
    const store = new MemoryStore({ maxEntries: 100, maxBytes: 1_000_000, clock: () => time, sweepIntervalMs: 10 });
    for (let i = 0; i < 50; i++) await store.claim(`k${i}`, 'v', 100);
    for (let i = 0; i < 20; i++) await store.consume([budget(`b${i}`, 1, 100)], 1);
    time += 100;
    await sleep(50);
    assert.equal(store.size, 0);
    assert.equal(store.usedBytes, 0);
    await store.close();
  });

  it('records: agree with a plain reference model over 5,000 random claims, replaces, deletes, reads and expiries', async () => {
    // The reference: a list of records, never evicted; a write that does not fit drops the expired ones, then is refused
    // if it still does not fit. Obviously right, slow.
    type Model = { key: string; value: string; expiresAt: number; bytes: number };
    let model: Model[] = [];
    let refusals = 0;
    const maxEntries = 6;
    const maxBytes = 4_000;
    let time = 0;
    const store = new MemoryStore({ maxEntries: 1, maxBytes: 1, records: { maxEntries, maxBytes }, clock: () => time, sweepIntervalMs: 3_600_000 });
    const total = () => model.reduce((sum, e) => sum + e.bytes, 0);
    const live = (key: string): Model | undefined => {
      const entry = model.find((e) => e.key === key);
      if (entry && entry.expiresAt <= time) model = model.filter((e) => e !== entry);
      return entry && entry.expiresAt > time ? entry : undefined;
    };
    /** False when refused. */
    const put = (key: string, value: string, ttl: number, existing: Model | undefined): boolean => {
      const bytes = recordBytes(key, value);
      const over = () => model.length + (existing ? 0 : 1) > maxEntries || total() + bytes - (existing?.bytes ?? 0) > maxBytes;
      if (over()) model = model.filter((e) => e.expiresAt > time);
      if (over()) {
        refusals++;
        return false;
      }
      if (existing) Object.assign(existing, { value, expiresAt: time + ttl, bytes });
      else model.push({ key, value, expiresAt: time + ttl, bytes });
      return true;
    };
    // xorshift32: repeatable, and every residue is reached (an LCG's low bits are not).
    let seed = 7;
    const random = (n: number) => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const full = (err: unknown) => err instanceof StoreFullError;
    for (let step = 0; step < 5_000; step++) {
      const key = `k${random(12)}`;
      const value = 'v'.repeat(1 + random(120));
      const ttl = 1 + random(400);
      const context = `step ${step}`;
      switch (random(5)) {
        case 0: {
          const current = live(key);
          if (current) assert.equal(await store.claim(key, value, ttl), current.value, context);
          else if (put(key, value, ttl, undefined)) assert.equal(await store.claim(key, value, ttl), null, context);
          else await assert.rejects(store.claim(key, value, ttl), full, context);
          break;
        }
        case 1: {
          const current = live(key);
          const expected = current && random(2) === 0 ? current.value : 'other';
          if (current?.value !== expected) assert.equal(await store.replaceIf(key, expected, value, ttl), false, context);
          else if (put(key, value, ttl, current)) assert.equal(await store.replaceIf(key, expected, value, ttl), true, context);
          else await assert.rejects(store.replaceIf(key, expected, value, ttl), full, context);
          break;
        }
        case 2: {
          const current = live(key);
          const expected = current && random(2) === 0 ? current.value : 'other';
          const deleted = current?.value === expected;
          if (deleted) model = model.filter((e) => e.key !== key);
          assert.equal(await store.deleteIf(key, expected), deleted, context);
          break;
        }
        case 3:
          assert.equal(await store.get(key), live(key)?.value ?? null, context);
          break;
        default:
          time += random(10);
      }
      // Expired records still count until touched, swept, or dropped to make room; the bounds hold regardless.
      assert.equal(store.size, model.length, context);
      assert.equal(store.usedBytes, total(), context);
      assert.equal(store.stats().records.refusals, refusals, context);
    }
    assert.ok(refusals > 100, `the bounds were reached (${refusals} refusals)`);
    await store.close();
  });

  it('budgets: agree with a plain reference LRU over 5,000 random charges, refunds, dry runs, reads and expiries', async () => {
    // The reference: an array in recency order (oldest first); the bucket arithmetic is consumeBuckets' own, run
    // against the model, so what is compared is what the store keeps, evicts and expires.
    type Model = { key: string; value: string; expiresAt: number; bytes: number };
    let model: Model[] = [];
    let evictions = 0;
    const maxEntries = 8;
    const maxBytes = 1_320;
    let time = 0;
    const store = new MemoryStore({ maxEntries, maxBytes, clock: () => time, sweepIntervalMs: 3_600_000 });
    const live = (key: string): Model | undefined => {
      const at = model.findIndex((e) => e.key === key);
      if (at === -1) return undefined;
      const [entry] = model.splice(at, 1);
      if (entry!.expiresAt <= time) return undefined;
      model.push(entry!);
      return entry;
    };
    const io = {
      read: (key: string) => live(key)?.value ?? null,
      write: (key: string, value: string | null, ttl: number) => {
        model = model.filter((e) => e.key !== key);
        if (value === null) return;
        model.push({ key, value, expiresAt: time + Math.max(1, ttl), bytes: budgetBytes(key, value) });
        const total = () => model.reduce((sum, e) => sum + e.bytes, 0);
        while (model.length > maxEntries || total() > maxBytes) {
          model.shift();
          evictions++;
        }
      },
    };
    let seed = 11;
    const random = (n: number) => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const modes = ['charge', 'charge', 'dry_run', 'force'] as const;
    const bucketOf = (i: number) => budget(`k${i}`, 1 + (i % 5), 20 + 10 * i);
    for (let step = 0; step < 5_000; step++) {
      const context = `step ${step}`;
      const first = random(12);
      switch (random(4)) {
        case 0:
        case 1: {
          const buckets = random(3) === 0 ? [bucketOf(first), bucketOf((first + 1 + random(11)) % 12)] : [bucketOf(first)];
          const cost = random(7) - 2;
          const mode = modes[random(4)]!;
          const expected = consumeBuckets(buckets, cost, mode, time, io);
          assert.deepEqual(await store.consume(buckets, cost, mode), expected, context);
          break;
        }
        case 2:
          assert.equal(await store.get(`k${first}`), live(`k${first}`)?.value ?? null, context);
          break;
        default:
          time += random(10);
      }
      assert.equal(store.size, model.length, context);
      assert.equal(store.usedBytes, model.reduce((sum, e) => sum + e.bytes, 0), context);
      assert.equal(store.stats().budgets.evictions, evictions, context);
    }
    assert.ok(evictions > 100, `the bounds were reached (${evictions} evictions)`);
    await store.close();
  });
});

describe('createStore', () => {
  const memory = { max_entries: 5, max_bytes: '4kb', records: { max_entries: 3, max_bytes: '64kb' } };
  const base = { key_prefix: 'agentgate', command_timeout: '250ms', memory };

  it('builds a memory store with the configured bounds of each part', async () => {
    const store = await createStore({ ...base, type: 'memory' });
    assert.equal(store.kind, 'memory');
    for (let i = 0; i < 10; i++) await store.consume([{ key: `b${i}`, capacity: 10, perMs: 60_000 }], 1);
    for (let i = 0; i < 3; i++) assert.equal(await store.claim(`k${i}`, 'v', 10_000), null);
    await assert.rejects(store.claim('k3', 'v', 10_000), StoreFullError);
    const { budgets, records } = (store as MemoryStore).stats();
    assert.deepEqual(
      [budgets.entries, budgets.maxEntries, budgets.maxBytes, records.entries, records.maxEntries, records.maxBytes],
      [5, 5, 4096, 3, 3, 64 * 1024],
    );
    await store.close();
  });

  it('shows a memory store\'s parts in the metrics, read when they are scraped', async () => {
    const metrics = new GatewayMetrics();
    const store = await createStore({ ...base, type: 'memory' }, undefined, metrics);
    for (let i = 0; i < 7; i++) await store.consume([{ key: `b${i}`, capacity: 10, perMs: 60_000 }], 1);
    for (let i = 0; i < 4; i++) await store.claim(`k${i}`, 'v', 10_000).catch(() => undefined);
    const text = await metrics.registry.metrics();
    const sample = (name: string, part: string) => Number(new RegExp(`^${name}\\{part="${part}"\\} (\\S+)$`, 'm').exec(text)?.[1]);
    assert.equal(sample('agentgate_memory_store_entries', 'budgets'), 5);
    assert.equal(sample('agentgate_memory_store_entries', 'records'), 3);
    assert.equal(sample('agentgate_memory_store_bytes', 'records'), (store as MemoryStore).stats().records.bytes);
    assert.equal(sample('agentgate_memory_store_max_bytes', 'records'), 64 * 1024);
    assert.equal(sample('agentgate_memory_store_max_entries', 'budgets'), 5);
    assert.equal(sample('agentgate_memory_store_evictions_total', 'budgets'), 2);
    assert.equal(sample('agentgate_memory_store_evictions_total', 'records'), 0);
    assert.equal(sample('agentgate_memory_store_refusals_total', 'records'), 1);
    await store.claim('k9', 'v', 10_000).catch(() => undefined);
    assert.equal(Number(/^agentgate_memory_store_refusals_total\{part="records"\} (\S+)$/m.exec(await metrics.registry.metrics())?.[1]), 2, 'a counter that keeps counting');
    await store.close();
  });

  it('builds a Redis store that reports its failures to the listener, and adds no memory-store metrics', async () => {
    const errors: StoreError[] = [];
    const metrics = new GatewayMetrics();
    const store = await createStore({ ...base, type: 'redis', url: `redis://127.0.0.1:${await freePort()}` }, (error) => errors.push(error), metrics);
    assert.equal(store.kind, 'redis');
    await assert.rejects(store.get('k'), StoreError);
    assert.equal(errors.length, 1);
    assert.doesNotMatch(await metrics.registry.metrics(), /agentgate_memory_store_/);
    await store.close();
  });
});

describe('RedisStore', () => {
  it('writes every key with a TTL', { skip: skipRedis }, async () => {
    const prefix = uniquePrefix('ttl');
    const store = new RedisStore({ url: REDIS_URL, commandTimeoutMs: 1_000 });
    try {
      const key = storeKey(prefix, 'ttl', 'tag', 'k');
      await store.claim(key, 'a', 5_000);
      const afterClaim = await withRedis(REDIS_URL, (client) => client.pttl(key));
      assert.ok(afterClaim > 4_000 && afterClaim <= 5_000, `pttl ${afterClaim}`);
      await store.replaceIf(key, 'a', 'b', 60_000);
      const afterReplace = await withRedis(REDIS_URL, (client) => client.pttl(key));
      assert.ok(afterReplace > 59_000 && afterReplace <= 60_000, `pttl ${afterReplace}`);
      const fractional = storeKey(prefix, 'ttl', 'tag', 'fractional');
      assert.equal(await store.claim(fractional, 'a', 0.5), null, 'a sub-millisecond TTL is rounded up, not rejected');
    } finally {
      await store.close();
      await cleanupPrefix(REDIS_URL, prefix);
    }
  });

  it('does not crash where no Redis listens: not ready, fast StoreErrors, one onError each (and one for a failed claim\'s cleanup)', async () => {
    const errors: StoreError[] = [];
    const store = new RedisStore({ url: `redis://127.0.0.1:${await freePort()}`, commandTimeoutMs: 300, onError: (error) => errors.push(error) });
    try {
      assert.equal(await store.ready(), false);
      const operations: Record<string, () => Promise<unknown>> = {
        get: () => store.get('k'),
        claim: () => store.claim('k', 'v', 1_000),
        replaceIf: () => store.replaceIf('k', 'v', 'w', 1_000),
        deleteIf: () => store.deleteIf('k', 'v'),
        now: () => store.now(),
      };
      for (const [name, operation] of Object.entries(operations)) {
        const started = performance.now();
        await assert.rejects(operation(), (error) => error instanceof StoreError && error.operation === name);
        const elapsed = performance.now() - started;
        assert.ok(elapsed < 1_000, `${name} took ${Math.round(elapsed)}ms to fail`);
      }
      // The failed claim also sends its cleanup (a deleteIf, in case Redis applied it), which fails the same way.
      assert.deepEqual(errors.map((error) => error.operation).sort(), [...Object.keys(operations), 'deleteIf'].sort());
      assert.equal(await store.ready(), false);
      await sleep(500); // past the command timeout: late timers or rejections of the failed operations would surface here
    } finally {
      await store.close();
    }
  });

  it('fails within the command timeout on a connection whose set-up never completes, and drops that connection to retry', async () => {
    // Accepts the connection and never answers ioredis' handshake, so the client stays 'connect'.
    let connections = 0;
    const silent = createNetServer(() => connections++);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const store = new RedisStore({ url: `redis://127.0.0.1:${(silent.address() as AddressInfo).port}`, commandTimeoutMs: 300 });
    try {
      await sleep(50);
      const started = performance.now();
      await assert.rejects(store.claim('k', 'v', 1_000), StoreError);
      const elapsed = performance.now() - started;
      assert.ok(elapsed >= 250 && elapsed < 1_000, `failed ${Math.round(elapsed)}ms after the claim`);
      // Left 'connect', the client would wait on that connection for good. Given up (three command timeouts: 900 ms),
      // closed (ioredis ends it and destroys it after its disconnectTimeout, 300 ms more) and after 100 ms of backoff,
      // it connects again.
      await until(async () => connections >= 2, 3_000, () => `${connections} connection(s); the stalled set-up was never given up`);
    } finally {
      store.close().catch(() => {});
      silent.close();
    }
  });

  it('connects over a link whose every reply takes most of the command timeout: the set-up is bounded per round trip', async () => {
    // Handshake and ready check are two round trips of 200 ms each: more than one 300 ms timeout, less than one each.
    let connections = 0;
    const slow = createNetServer((socket) => {
      connections++;
      socket.on('error', () => {});
      answerResp(socket, (command) => {
        const name = command[0]!.toLowerCase();
        const reply = name === 'info' ? bulk('# Server\r\nloading:0\r\n') : name === 'get' ? '$-1\r\n' : '+OK\r\n';
        // As Redis does, QUIT is answered and the connection closed; left open, it would hold the test process.
        setTimeout(() => socket.writable && (name === 'quit' ? socket.end(reply) : socket.write(reply)), 200);
      });
    });
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    const store = new RedisStore({ url: `redis://127.0.0.1:${(slow.address() as AddressInfo).port}`, commandTimeoutMs: 300 });
    try {
      assert.equal(await eventually('the first answer', 3_000, () => store.get('k')), null);
      assert.equal(connections, 1, 'the set-up was given up while its replies were still arriving');
    } finally {
      store.close().catch(() => {});
      slow.close();
    }
  });

  it('fails every operation within the command timeout while Redis stops answering, and recovers', { skip: skipServer, timeout: 30_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'agentgate-stall-'));
    const server = await startRedisServer(await freePort(), dir);
    const store = new RedisStore({ url: server.url, commandTimeoutMs: 300 });
    const key = (id: string) => storeKey('stall', 'k', id);
    try {
      assert.equal(await store.claim(key('before'), 'v', 10_000), null);
      process.kill(server.pid, 'SIGSTOP');
      const operations: Record<string, () => Promise<unknown>> = {
        now: () => store.now(),
        claim: () => store.claim(key('during'), 'v', 10_000),
        get: () => store.get(key('before')),
      };
      for (const [name, operation] of Object.entries(operations)) {
        const started = performance.now();
        await assert.rejects(operation(), (error) => error instanceof StoreError && error.operation === name);
        const elapsed = performance.now() - started;
        assert.ok(elapsed >= 250 && elapsed < 1_000, `${name} failed after ${Math.round(elapsed)}ms`);
      }
      assert.equal(await store.ready(), false);
      process.kill(server.pid, 'SIGCONT');
      assert.equal(await eventually('use after SIGCONT', 5_000, () => store.claim(key('after'), 'v', 10_000)), null);
      assert.equal(await store.get(key('before')), 'v');
    } finally {
      process.kill(server.pid, 'SIGCONT');
      await store.close();
      await server.kill();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('on Cluster, a claim that fails after the charge keeps the charge, answers no claim, and is removed once its node runs it', { skip: skipServer, timeout: 60_000 }, async () => {
    const cluster = await startRedisCluster();
    const ports = cluster.nodes.map((node) => Number(new URL(node).port));
    const store = new RedisStore({ clusterNodes: cluster.nodes, commandTimeoutMs: 300 });
    try {
      await eventually('the cluster store to be ready', 10_000, async () => assert.equal(await store.ready(), true));
      /** The port of the master serving key's slot, from the node's own view of its slot ranges. */
      const slotRanges = await Promise.all(
        ports.map(async (port) => {
          const myself = (await cli(port, 'CLUSTER', 'NODES')).split('\n').find((line) => line.includes('myself'))!;
          return { port, ranges: myself.split(' ').slice(8).map((range) => range.split('-').map(Number)) };
        }),
      );
      const masterOf = async (key: string) => {
        const slot = Number(await cli(ports[0]!, 'CLUSTER', 'KEYSLOT', key));
        return slotRanges.find(({ ranges }) => ranges.some(([from, to]) => slot >= from! && slot <= (to ?? from)!))!.port;
      };
      const bucket = { key: storeKey('cc-cluster', 'rl', 'consumer', 'b'), capacity: 10, perMs: 3_600_000 };
      const bucketMaster = await masterOf(bucket.key);
      let claimKey = storeKey('cc-cluster', 'idem', 'r0');
      for (let i = 1; (await masterOf(claimKey)) === bucketMaster; i++) claimKey = storeKey('cc-cluster', 'idem', `r${i}`);
      // The claim's master holds every write (scripts included) for 1.5 s: the claim times out after the charge went through.
      assert.equal(await cli(await masterOf(claimKey), 'CLIENT', 'PAUSE', '1500', 'WRITE'), 'OK');
      const paused = performance.now();
      const result = await store.chargeAndClaim([bucket], 3, { key: claimKey, value: 'mine', ttlMs: 60_000 });
      assert.deepEqual([result.consumed.allowed, result.consumed.buckets[0]!.remaining, result.claim], [true, 7, undefined]);
      await sleep(Math.max(0, 1_500 - (performance.now() - paused)) + 300);
      assert.equal(await store.get(claimKey), null, 'the claim its master ran after the pause was removed again');
      assert.equal((await store.consume([bucket], 0, 'dry_run')).buckets[0]!.remaining, 7, 'the charge stands');
    } finally {
      await store.close();
      await cluster.stop();
    }
  });

  it('comes up with a Redis that starts late, and recovers when it restarts', { skip: skipServer, timeout: 30_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'agentgate-recovery-'));
    const port = await freePort();
    const store = new RedisStore({ url: `redis://127.0.0.1:${port}`, commandTimeoutMs: 300 });
    let server: RedisServer | undefined;
    const key = (id: string) => storeKey('recovery', 'k', id);
    try {
      await assert.rejects(store.claim(key('early'), 'v', 10_000), StoreError);
      assert.equal(await store.ready(), false);

      server = await startRedisServer(port, dir);
      assert.equal(await eventually('first use', 5_000, () => store.claim(key('up'), 'v', 10_000)), null);
      assert.equal(await store.ready(), true);

      // Scripts run by SHA; after SCRIPT FLUSH the server must be sent their source again.
      assert.equal(await cli(port, 'SCRIPT', 'FLUSH'), 'OK');
      assert.equal(await store.claim(key('up'), 'w', 10_000), 'v');

      await server.kill();
      const started = performance.now();
      await assert.rejects(store.claim(key('down'), 'v', 10_000), StoreError);
      await assert.rejects(store.get(key('up')), StoreError);
      assert.ok(performance.now() - started < 1_000, 'fails fast while Redis is down');
      assert.equal(await store.ready(), false);

      server = await startRedisServer(port, dir);
      assert.equal(await eventually('use after restart', 5_000, () => store.claim(key('back'), 'v', 10_000)), null);
      assert.equal(await store.ready(), true);
    } finally {
      await store.close();
      await server?.kill();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

function bulk(text: string): string {
  return `$${Buffer.byteLength(text)}\r\n${text}\r\n`;
}

/** Calls `onCommand` with each RESP command (an array of bulk strings, as clients send them) the socket receives. */
function answerResp(socket: import('node:net').Socket, onCommand: (command: string[]) => void): void {
  let pending = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    for (;;) {
      const parsed = parseRespCommand(pending);
      if (!parsed) return;
      pending = pending.subarray(parsed.used);
      onCommand(parsed.command);
    }
  });
}

function parseRespCommand(data: Buffer): { command: string[]; used: number } | undefined {
  const line = (from: number) => {
    const end = data.indexOf('\r\n', from);
    return end === -1 ? undefined : { text: data.toString('latin1', from, end), next: end + 2 };
  };
  const head = line(0);
  if (!head || !head.text.startsWith('*')) return undefined;
  const command: string[] = [];
  let at = head.next;
  for (let i = 0; i < Number(head.text.slice(1)); i++) {
    const size = line(at);
    if (!size) return undefined;
    const length = Number(size.text.slice(1));
    if (data.length < size.next + length + 2) return undefined;
    command.push(data.toString('utf8', size.next, size.next + length));
    at = size.next + length + 2;
  }
  return { command, used: at };
}

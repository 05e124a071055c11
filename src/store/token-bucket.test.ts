// The exact integer arithmetic of the token bucket: division that never rounds across an integer, and hash tags as Redis reads them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ceilDiv, floorDiv, hashTagOf, usedNow } from './token-bucket.ts';
import { MemoryStore } from './memory.ts';
import { storeKey } from './keys.ts';

test('floorDiv and ceilDiv are exact integer division up to 2^53', () => {
  const b = 86_400_000; // one day in ms
  const k = 50_000_000;
  assert.equal(floorDiv(k * b - 1, b), k - 1);
  assert.equal(ceilDiv(k * b - 1, b), k);
  assert.equal(ceilDiv(k * b + 1, b), k + 1);
  assert.equal(floorDiv(k * b, b), k);
  assert.equal(ceilDiv(k * b, b), k);
  assert.equal(ceilDiv(0, 7), 0);
  const top = 2 ** 53 - 1;
  for (const d of [3, 5, 7, 1_000, 86_400_000]) {
    const q = floorDiv(top, d);
    assert.ok(q * d <= top && (q + 1) * d > top, `floor(${top}/${d})`);
    const c = ceilDiv(top, d);
    assert.ok(c * d >= top && (c - 1) * d < top, `ceil(${top}/${d})`);
  }
  for (let i = 0; i < 1000; i++) {
    const x = Math.floor(Math.random() * 1e6);
    const y = 1 + Math.floor(Math.random() * 1e3);
    assert.equal(floorDiv(x, y), Math.floor(x / y));
    assert.equal(ceilDiv(x, y), Math.ceil(x / y));
  }
});

test('usedNow refills continuously and never charges for a clock that went back', () => {
  assert.equal(usedNow(null, 10, 1_000), 0);
  assert.equal(usedNow('5000:1000', 10, 1_200), 3_000);
  assert.equal(usedNow('5000:1000', 10, 2_000), 0);
  assert.equal(usedNow('5000:1000', 10, 900), 5_000);
});

test('hashTagOf follows the Redis Cluster rule', () => {
  assert.equal(hashTagOf('agentgate:{abc}:rl:x'), 'abc');
  assert.equal(hashTagOf('a:{}:b'), 'a:{}:b');
  assert.equal(hashTagOf('a:{b'), 'a:{b');
  assert.equal(hashTagOf('plain'), 'plain');
  assert.equal(hashTagOf('x{a}{b}'), 'a');
});

test('budgets in the memory store stay within its bounds under 200k distinct consumers, and an idle one costs no entry', async () => {
  const store = new MemoryStore({ maxEntries: 1_000, maxBytes: 64 * 1024 * 1024 });
  for (let i = 0; i < 200_000; i++) {
    await store.consume([{ key: storeKey('bounds', 'rl', `consumer-${i}`, 'agents:60000'), capacity: 100, perMs: 60_000 }], 1);
    if (i % 20_000 === 0) assert.ok(store.size <= 1_000, `${store.size} entries`);
  }
  assert.equal(store.size, 1_000);
  const refunded = storeKey('bounds', 'rl', 'refunded', 'agents:60000');
  await store.consume([{ key: refunded, capacity: 100, perMs: 60_000 }], 5);
  await store.consume([{ key: refunded, capacity: 100, perMs: 60_000 }], -5);
  assert.equal(await store.get(refunded), null, 'a full bucket is no entry at all');
  await store.close();
});

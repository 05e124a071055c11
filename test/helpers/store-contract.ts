// The behaviour every Store must show, as node:test tests, so memory, Redis and Redis Cluster are held to the same checks.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { storeKey } from '../../src/store/keys.ts';
import type { Bucket, Store } from '../../src/store/store.ts';

export interface ContractSubject {
  store: Store;
  /** Key prefix of this run; every key the suite writes starts with it. */
  prefix: string;
  /** How many servers hold keys under prefix; given for stores that spread keys over several (Cluster). */
  serversHolding?: (prefix: string) => Promise<number>;
  /** Closes the store and removes what the suite wrote. */
  close(): Promise<void>;
}

export function storeContract(name: string, open: () => Promise<ContractSubject>, skip: string | false = false): void {
  describe(`${name} meets the store contract`, { skip, timeout: 60_000 }, () => {
    let subject: ContractSubject | undefined;
    let store: Store;
    let serial = 0;
    /** A key no other test touches, under its own hash tag so that on Cluster the tests spread over the nodes. */
    const freshKey = () => storeKey(subject!.prefix, 'contract', `t${++serial}`, 'k');

    before(async () => {
      subject = await open();
      store = subject.store;
      // Redis stores connect in the background; no test should race the first connect.
      const deadline = Date.now() + 5_000;
      while (!(await store.ready())) {
        if (Date.now() > deadline) throw new Error(`${name} not ready after 5 s`);
        await sleep(50);
      }
    });
    after(() => subject?.close());

    it('claim on an absent key stores the value and returns null', async () => {
      const key = freshKey();
      assert.equal(await store.get(key), null);
      assert.equal(await store.claim(key, 'first', 10_000), null);
      assert.equal(await store.get(key), 'first');
    });

    it('claim on a present key returns the value there and does not overwrite it', async () => {
      const key = freshKey();
      await store.claim(key, 'first', 10_000);
      assert.equal(await store.claim(key, 'second', 10_000), 'first');
      assert.equal(await store.get(key), 'first');
    });

    it('of 50 concurrent claims of one key exactly one wins, and the others all see its value', async () => {
      const key = freshKey();
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => store.claim(key, `claimant-${i}`, 10_000)));
      const winners = results.flatMap((result, i) => (result === null ? [i] : []));
      assert.equal(winners.length, 1, `winners: ${winners.join(', ')}`);
      const value = `claimant-${winners[0]}`;
      for (const result of results) if (result !== null) assert.equal(result, value);
      assert.equal(await store.get(key), value);
    });

    it('values round-trip exactly, the empty string included', async () => {
      for (const value of ['', 'ünïcødé ✓ 🙂', '{"a":"b\\n","c":[1,2]}\r\n', 'x'.repeat(20_000)]) {
        const key = freshKey();
        assert.equal(await store.claim(key, value, 10_000), null);
        assert.equal(await store.claim(key, 'other', 10_000), value);
        assert.equal(await store.get(key), value);
        assert.equal(await store.deleteIf(key, value), true);
      }
    });

    it('replaceIf replaces only when the current value matches exactly', async () => {
      const key = freshKey();
      assert.equal(await store.replaceIf(key, 'a', 'b', 10_000), false, 'absent key');
      assert.equal(await store.get(key), null, 'replaceIf must not create the key');
      await store.claim(key, 'a', 10_000);
      assert.equal(await store.replaceIf(key, 'A', 'b', 10_000), false);
      assert.equal(await store.replaceIf(key, 'a ', 'b', 10_000), false);
      assert.equal(await store.replaceIf(key, '', 'b', 10_000), false);
      assert.equal(await store.get(key), 'a');
      assert.equal(await store.replaceIf(key, 'a', 'b', 10_000), true);
      assert.equal(await store.get(key), 'b');
      assert.equal(await store.replaceIf(key, 'a', 'c', 10_000), false, 'the old value no longer matches');
      assert.equal(await store.get(key), 'b');
    });

    it('deleteIf deletes only when the current value matches exactly', async () => {
      const key = freshKey();
      assert.equal(await store.deleteIf(key, 'a'), false, 'absent key');
      await store.claim(key, 'a', 10_000);
      assert.equal(await store.deleteIf(key, 'b'), false);
      assert.equal(await store.deleteIf(key, 'a '), false);
      assert.equal(await store.get(key), 'a');
      assert.equal(await store.deleteIf(key, 'a'), true);
      assert.equal(await store.get(key), null);
      assert.equal(await store.deleteIf(key, 'a'), false, 'already deleted');
      assert.equal(await store.claim(key, 'again', 10_000), null, 'a deleted key can be claimed afresh');
    });

    it('keys expire after their TTL', async () => {
      const key = freshKey();
      assert.equal(await store.claim(key, 'a', 100), null);
      assert.equal(await store.get(key), 'a');
      await sleep(250);
      assert.equal(await store.get(key), null);
      assert.equal(await store.replaceIf(key, 'a', 'b', 10_000), false, 'an expired key does not match');
      assert.equal(await store.deleteIf(key, 'a'), false, 'an expired key does not match');
      assert.equal(await store.claim(key, 'b', 10_000), null, 'an expired key can be claimed afresh');
    });

    it('replaceIf sets a new TTL, longer or shorter', async () => {
      const key = freshKey();
      await store.claim(key, 'a', 200);
      await sleep(100);
      assert.equal(await store.replaceIf(key, 'a', 'b', 2_000), true);
      await sleep(250);
      assert.equal(await store.get(key), 'b', 'outlived the first TTL');
      assert.equal(await store.replaceIf(key, 'b', 'c', 100), true);
      await sleep(250);
      assert.equal(await store.get(key), null, 'the shorter TTL applied');
    });

    it('keys under many different hash tags are kept apart', async () => {
      const keys = Array.from({ length: 100 }, (_, i) => storeKey(subject!.prefix, 'contract', `tag-${i}`, 'many'));
      assert.deepEqual(await Promise.all(keys.map((key, i) => store.claim(key, `v${i}`, 10_000))), keys.map(() => null));
      assert.deepEqual(await Promise.all(keys.map((key) => store.get(key))), keys.map((_, i) => `v${i}`));
      if (subject!.serversHolding) assert.ok((await subject!.serversHolding(subject!.prefix)) >= 2, 'keys should spread over several nodes');
      assert.deepEqual(await Promise.all(keys.map((key, i) => store.deleteIf(key, `v${i}`))), keys.map(() => true));
      assert.deepEqual(await Promise.all(keys.map((key) => store.get(key))), keys.map(() => null));
    });

    it('now() is in milliseconds near the local clock, and never goes back', async () => {
      const first = await store.now();
      assert.ok(Number.isInteger(first));
      assert.ok(Math.abs(first - Date.now()) < 5_000, `store clock ${first} vs local ${Date.now()}`);
      let previous = first;
      for (let i = 0; i < 20; i++) {
        const next = await store.now();
        assert.ok(next >= previous, `${next} after ${previous}`);
        previous = next;
      }
      await sleep(20);
      assert.ok((await store.now()) >= first + 15, 'the clock advances');
    });

    describe('consume: token buckets, all or nothing', () => {
      /** A bucket no other test touches, under its own hash tag unless one is given (same tag = same Cluster slot). */
      const bucket = (capacity: number, perMs: number, tag = `b${++serial}`): Bucket => ({
        key: storeKey(subject!.prefix, 'contract-rl', tag, `cap${capacity}-${serial}`),
        capacity,
        perMs,
      });
      const HOUR = 3_600_000;

      it('a fresh bucket is full; a charge takes its cost off and reports the time to full', async () => {
        const b = bucket(10, 10_000);
        const peek = await store.consume([b], 0, 'dry_run');
        assert.deepEqual(peek.buckets, [{ remaining: 10, resetMs: 0, waitMs: 0 }]);
        assert.ok(Math.abs(peek.now - Date.now()) < 5_000, 'now is the store clock in ms');
        const charged = await store.consume([b], 4);
        assert.equal(charged.allowed, true);
        assert.equal(charged.buckets[0]!.remaining, 6);
        assert.equal(charged.buckets[0]!.waitMs, 0);
        // 4 units at 1 unit per 1000 ms: full again in 4000 ms (less what refilled since).
        assert.ok(charged.buckets[0]!.resetMs > 3_900 && charged.buckets[0]!.resetMs <= 4_000, `resetMs ${charged.buckets[0]!.resetMs}`);
      });

      it('a refused charge takes nothing, and says exactly how long until the cost fits', async () => {
        const b = bucket(10, 10_000);
        await store.consume([b], 8);
        const refused = await store.consume([b], 5);
        assert.equal(refused.allowed, false);
        assert.equal(refused.buckets[0]!.remaining, 2);
        // 3 units short at 1 unit per 1000 ms.
        const wait = refused.buckets[0]!.waitMs;
        assert.ok(wait > 2_900 && wait <= 3_000, `waitMs ${wait}`);
        for (let i = 0; i < 5; i++) assert.equal((await store.consume([b], 5)).allowed, false);
        assert.equal((await store.consume([b], 2)).buckets[0]!.remaining, 0, 'the refusals cost nothing: 2 units were still there');
      });

      it('a cost larger than the capacity can never fit: waitMs -1, nothing charged', async () => {
        const b = bucket(10, HOUR);
        const result = await store.consume([b], 11);
        assert.equal(result.allowed, false);
        assert.equal(result.buckets[0]!.waitMs, -1);
        assert.equal(result.buckets[0]!.remaining, 10);
        assert.equal((await store.consume([b], 10)).allowed, true, 'exactly the capacity fits');
      });

      it('a dry run reports whether the cost would fit without charging it', async () => {
        const b = bucket(10, HOUR);
        await store.consume([b], 7);
        const fits = await store.consume([b], 3, 'dry_run');
        assert.deepEqual([fits.allowed, fits.buckets[0]!.remaining, fits.buckets[0]!.waitMs], [true, 3, 0]);
        const wouldNot = await store.consume([b], 4, 'dry_run');
        assert.equal(wouldNot.allowed, false);
        assert.ok(wouldNot.buckets[0]!.waitMs > 0);
        assert.equal((await store.consume([b], 0, 'dry_run')).buckets[0]!.remaining, 3);
      });

      for (const [label, sameTag] of [['under one hash tag', true], ['under different hash tags', false]] as const) {
        it(`several buckets ${label}: charged only when all have room, refused by any one`, async () => {
          const tag = `multi${++serial}`;
          const big = bucket(100, HOUR, sameTag ? tag : undefined);
          const small = bucket(3, HOUR, sameTag ? tag : undefined);
          for (const order of [[big, small], [small, big]]) {
            const refused = await store.consume(order, 5);
            assert.equal(refused.allowed, false);
            const [bigState, smallState] = order[0] === big ? refused.buckets : [...refused.buckets].reverse();
            assert.deepEqual([bigState!.remaining, bigState!.waitMs], [100, 0], 'the bucket with room is not charged (or is refunded)');
            assert.deepEqual([smallState!.remaining, smallState!.waitMs], [3, -1]);
          }
          const allowed = await store.consume([big, small], 2);
          assert.equal(allowed.allowed, true);
          assert.deepEqual(allowed.buckets.map((b) => b.remaining), [98, 1]);
          const refused = await store.consume([small, big], 2);
          assert.equal(refused.allowed, false);
          assert.deepEqual(refused.buckets.map((b) => b.remaining), [1, 98]);
          assert.ok(refused.buckets[0]!.waitMs > 0 && refused.buckets[1]!.waitMs === 0);
        });
      }

      it('a negative cost refunds, up to a full bucket; force charges past empty, into a bounded debt', async () => {
        const b = bucket(10, HOUR);
        await store.consume([b], 6);
        assert.equal((await store.consume([b], -4)).buckets[0]!.remaining, 8);
        assert.equal((await store.consume([b], -50)).buckets[0]!.remaining, 10, 'never above capacity');
        assert.equal((await store.consume([b], 0, 'dry_run')).buckets[0]!.resetMs, 0);
        const forced = await store.consume([b], 15, 'force');
        assert.equal(forced.buckets[0]!.remaining, 0);
        // 5 units of debt on top of an empty bucket: a 1-unit request waits for 6 units of refill.
        const wait = (await store.consume([b], 1)).buckets[0]!.waitMs;
        assert.ok(wait > 6 * 360_000 - 1_000 && wait <= 6 * 360_000, `waitMs ${wait}`);
        await store.consume([b], 1_000, 'force');
        const capped = (await store.consume([b], 1)).buckets[0]!;
        assert.ok(capped.resetMs <= 2 * HOUR, `the debt is capped at one more full bucket: resetMs ${capped.resetMs}`);
      });

      it('refills continuously by the store clock, within one unit', async () => {
        const b = bucket(20, 1_000);
        const emptied = await store.consume([b], 20);
        assert.equal(emptied.buckets[0]!.remaining, 0);
        await sleep(300);
        const later = await store.consume([b], 0, 'dry_run');
        const expected = ((later.now - emptied.now) * 20) / 1_000;
        const remaining = later.buckets[0]!.remaining;
        assert.ok(remaining >= Math.floor(expected) - 1 && remaining <= Math.floor(expected), `remaining ${remaining}, expected about ${expected}`);
        await sleep(800);
        assert.equal((await store.consume([b], 0, 'dry_run')).buckets[0]!.remaining, 20, 'full again after one period');
      });

      it('of 60 concurrent consumes exactly floor(capacity / cost) pass, and the rest charge nothing', async () => {
        const b = bucket(20, HOUR);
        const results = await Promise.all(Array.from({ length: 60 }, () => store.consume([b], 3)));
        assert.equal(results.filter((r) => r.allowed).length, 6);
        assert.equal((await store.consume([b], 0, 'dry_run')).buckets[0]!.remaining, 2);
      });

      it('the same across two hash tags: the shared bucket is charged exactly once per passing request', async () => {
        const own = bucket(20, HOUR);
        const shared = bucket(1_000, HOUR);
        const results = await Promise.all(Array.from({ length: 60 }, (_, i) => store.consume(i % 2 ? [own, shared] : [shared, own], 3)));
        assert.equal(results.filter((r) => r.allowed).length, 6);
        const after = await store.consume([own, shared], 0, 'dry_run');
        assert.deepEqual(after.buckets.map((s) => s.remaining), [2, 1_000 - 18]);
      });
    });

    describe('chargeAndClaim: the charge, then the claim only when the charge is allowed', () => {
      const bucket = (capacity: number): Bucket => ({ key: storeKey(subject!.prefix, 'contract-rl', `cc${++serial}`, 'b'), capacity, perMs: 3_600_000 });
      const remaining = async (b: Bucket) => (await store.consume([b], 0, 'dry_run')).buckets[0]!.remaining;

      it('an allowed charge claims an absent key, and answers a taken one with its value without overwriting it', async () => {
        const b = bucket(10);
        const key = freshKey();
        const first = await store.chargeAndClaim([b], 3, { key, value: 'first', ttlMs: 10_000 });
        assert.deepEqual([first.consumed.allowed, first.consumed.buckets[0]!.remaining, first.claim], [true, 7, null]);
        assert.equal(await store.get(key), 'first');
        const second = await store.chargeAndClaim([b], 3, { key, value: 'second', ttlMs: 10_000 });
        assert.deepEqual([second.consumed.allowed, second.consumed.buckets[0]!.remaining, second.claim], [true, 4, 'first']);
        assert.equal(await store.get(key), 'first');
        assert.equal(await remaining(b), 4);
      });

      it('a refused charge claims nothing and charges nothing', async () => {
        const b = bucket(10);
        await store.consume([b], 8);
        const key = freshKey();
        const refused = await store.chargeAndClaim([b], 5, { key, value: 'v', ttlMs: 10_000 });
        assert.deepEqual([refused.consumed.allowed, refused.consumed.buckets[0]!.remaining, refused.claim], [false, 2, undefined]);
        assert.ok(refused.consumed.buckets[0]!.waitMs > 0);
        assert.equal(await store.get(key), null);
        assert.equal(await remaining(b), 2);
      });

      it('the claim gets its TTL', async () => {
        const key = freshKey();
        assert.equal((await store.chargeAndClaim([bucket(10)], 1, { key, value: 'v', ttlMs: 150 })).claim, null);
        await sleep(300);
        assert.equal(await store.get(key), null);
      });

      it('of 50 concurrent calls on one key and one bucket, exactly the budget passes and exactly one of those claims', async () => {
        const b = bucket(30);
        const key = freshKey();
        const results = await Promise.all(Array.from({ length: 50 }, (_, i) => store.chargeAndClaim([b], 1, { key, value: `claimant-${i}`, ttlMs: 10_000 })));
        const allowed = results.filter((r) => r.consumed.allowed);
        assert.equal(allowed.length, 30);
        assert.ok(results.every((r) => r.consumed.allowed === (r.claim !== undefined)), 'a claim answer exactly for each allowed charge');
        const winners = results.flatMap((r, i) => (r.claim === null ? [i] : []));
        assert.equal(winners.length, 1, `winners: ${winners.join(', ')}`);
        const value = `claimant-${winners[0]}`;
        assert.equal(allowed.filter((r) => r.claim === value).length, 29);
        assert.equal(await store.get(key), value);
        assert.equal(await remaining(b), 0);
      });
    });

    it('ready() is true while the store serves operations', async () => {
      assert.equal(await store.ready(), true);
    });
  });
}

// The behaviour every Store must show, as node:test tests, so memory, Redis and Redis Cluster are held to the same checks.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { storeKey } from '../../src/store/keys.ts';
import type { Store } from '../../src/store/store.ts';

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

    it('ready() is true while the store serves operations', async () => {
      assert.equal(await store.ready(), true);
    });
  });
}

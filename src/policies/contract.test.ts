// The contract between the pipeline and the policies: the hooks' lifecycle as Exchange holds to it, and the store
// batch's order (charges first; a refused charge claims nothing; one round trip for a charge and a claim).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { MemoryStore } from '../store/memory.ts';
import type { Store } from '../store/store.ts';
import type { UpstreamResult } from '../upstream-result.ts';
import { exchange, rethrow } from '../../test/helpers/exchange.ts';
import { CONTINUE, refuse, type ClaimReply, type RequestHooks } from './contract.ts';
import { GatewayError } from '../errors/problem.ts';

const answered: UpstreamResult = { kind: 'response', response: { statusCode: 200 } as IncomingMessage };

/** Hooks that write down every call they get, in order, into `log`. */
function recorder(name: string, log: string[]): RequestHooks {
  return {
    onUpstreamResult: (r) => void log.push(`${name}.onUpstreamResult(${r.kind})`),
    onAnswer: (a) => void log.push(`${name}.onAnswer(${a.kind})`),
    recorded: async () => void log.push(`${name}.recorded`),
    close: (forwarded) => void log.push(`${name}.close(${forwarded})`),
  };
}

test('hooks run in the order they were registered, each phase once, and close last', async () => {
  const log: string[] = [];
  const ex = exchange();
  ex.use(recorder('a', log));
  ex.use(recorder('b', log));
  ex.ctx.upstreamStartedAt = 1n;
  await ex.upstreamResult(answered);
  ex.answer({ kind: 'discarded', why: 'test' });
  await ex.recorded();
  await ex.close(rethrow);
  assert.deepEqual(log, [
    'a.onUpstreamResult(response)',
    'b.onUpstreamResult(response)',
    'a.onAnswer(discarded)',
    'b.onAnswer(discarded)',
    'a.recorded',
    'b.recorded',
    'a.close(true)',
    'b.close(true)',
  ]);
});

test('close runs every hook exactly once, however often the pipeline calls it (an error path and the response closing)', async () => {
  const log: string[] = [];
  const ex = exchange();
  ex.use(recorder('a', log));
  await Promise.all([ex.close(rethrow), ex.close(rethrow)]);
  await ex.close(rethrow);
  assert.deepEqual(log, ['a.close(false)'], 'never forwarded: close(false), once');
});

test('close is last: a result that arrives after the client left (and the request closed) reaches no hook', async () => {
  const log: string[] = [];
  const ex = exchange();
  ex.use(recorder('a', log));
  ex.ctx.upstreamStartedAt = 1n;
  await ex.close(rethrow);
  await ex.upstreamResult({ kind: 'client_closed', reachedUpstream: true });
  ex.answer({ kind: 'discarded', why: 'late' });
  await ex.recorded();
  assert.deepEqual(log, ['a.close(true)']);
});

test('a hook whose close throws is reported and keeps no other hook from closing', async () => {
  const log: string[] = [];
  const ex = exchange();
  ex.use({ close: () => Promise.reject(new Error('store down')) });
  ex.use(recorder('b', log));
  const reported: unknown[] = [];
  await ex.close((err) => reported.push(err));
  assert.deepEqual(log, ['b.close(false)']);
  assert.equal((reported[0] as Error).message, 'store down');
});

test('the lifecycle is asserted: an answer before the upstream result, a second result, hooks after close', async () => {
  const early = exchange();
  assert.throws(() => early.answer({ kind: 'discarded', why: 'x' }), /after onUpstreamResult/);
  const twice = exchange();
  await twice.upstreamResult(answered);
  await assert.rejects(twice.upstreamResult(answered), /runs once/);
  const closed = exchange();
  await closed.close(rethrow);
  assert.throws(() => closed.use({}), /closed exchange/);
});

/** A memory store that writes down which of its operations each commit used. */
function countingStore(calls: string[]): Store {
  const store = new MemoryStore({ maxEntries: 100, maxBytes: 1 << 20 });
  for (const op of ['consume', 'claim', 'chargeAndClaim'] as const) {
    const original = store[op].bind(store) as (...args: unknown[]) => Promise<unknown>;
    (store as unknown as Record<string, unknown>)[op] = (...args: unknown[]) => {
      calls.push(op);
      return original(...args);
    };
  }
  return store;
}

const bucket = (capacity: number) => ({ key: `t:{c}:rl:${capacity}:${Math.random()}`, capacity, perMs: 60_000 });

test('a charge and a claim are one store call; the charge decides first, and the claim sees what the store answered', async () => {
  const calls: string[] = [];
  const store = countingStore(calls);
  const order: string[] = [];
  const ex = exchange();
  let claimed: ClaimReply = 'not decided';
  ex.batch.addClaim({ key: 'k1', value: 'mine', ttlMs: 60_000 }, async (reply) => {
    order.push('claim');
    claimed = reply;
    return CONTINUE;
  });
  ex.batch.addCharge([bucket(5)], 1, () => {
    order.push('charge');
    return CONTINUE;
  });
  assert.equal((await ex.batch.commit(store)).kind, 'continue');
  assert.deepEqual(calls, ['chargeAndClaim']);
  assert.deepEqual(order, ['charge', 'claim'], 'charges decide first, whatever order the policies added them in');
  assert.equal(claimed, null, 'the key was claimed with the charge');
  assert.equal(ex.batch.waitedOnStore, true);
});

test('a refused charge ends the batch: its refusal is the answer, and no claim is made or decided', async () => {
  const calls: string[] = [];
  const store = countingStore(calls);
  const ex = exchange();
  let claimDecided = false;
  ex.batch.addClaim({ key: 'k2', value: 'mine', ttlMs: 60_000 }, async () => {
    claimDecided = true;
    return CONTINUE;
  });
  ex.batch.addCharge([bucket(5)], 6, (reply) => (reply.kind === 'charged' && !reply.result.allowed ? refuse(new GatewayError('RATE_LIMITED', 'over')) : CONTINUE));
  const verdict = await ex.batch.commit(store);
  assert.ok(verdict.kind === 'refuse' && verdict.error.code === 'RATE_LIMITED');
  assert.equal(claimDecided, false);
  assert.equal(await store.claim('k2', 'other', 60_000), null, 'the key is free: the refused charge claimed nothing');
});

test('a failed round trip reaches the charge as failed and the claim as not made, so each applies its own on_store_error', async () => {
  const store = new MemoryStore({ maxEntries: 100, maxBytes: 1 << 20 });
  store.chargeAndClaim = () => Promise.reject(new (class extends Error {})('not a store error'));
  const ex = exchange();
  ex.batch.addCharge([bucket(5)], 1, () => CONTINUE);
  ex.batch.addClaim({ key: 'k3', value: 'v', ttlMs: 1000 }, async () => CONTINUE);
  await assert.rejects(ex.batch.commit(store), /not a store error/, 'anything but a StoreError is a bug, not an outage');

  const { StoreError } = await import('../store/store.ts');
  store.chargeAndClaim = () => Promise.reject(new StoreError('chargeAndClaim', new Error('connection lost')));
  const failing = exchange();
  const seen: string[] = [];
  failing.batch.addCharge([bucket(5)], 1, (reply) => {
    seen.push(`charge:${reply.kind}`);
    return CONTINUE;
  });
  failing.batch.addClaim({ key: 'k4', value: 'v', ttlMs: 1000 }, async (reply) => {
    seen.push(`claim:${String(reply)}`);
    return CONTINUE;
  });
  await failing.batch.commit(store);
  assert.deepEqual(seen, ['charge:failed', 'claim:undefined']);
});

test('a claim alone is left to its claimant (it may wait and claim again): the batch makes no store call for it', async () => {
  const calls: string[] = [];
  const store = countingStore(calls);
  const ex = exchange();
  let reply: ClaimReply = 'not decided';
  ex.batch.addClaim({ key: 'k5', value: 'v', ttlMs: 1000 }, async (r) => {
    reply = r;
    return CONTINUE;
  });
  await ex.batch.commit(store);
  assert.deepEqual(calls, []);
  assert.equal(reply, undefined);
  const empty = exchange();
  assert.equal((await empty.batch.commit(store)).kind, 'continue');
  assert.equal(empty.batch.waitedOnStore, false);
});

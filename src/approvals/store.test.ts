// The approval store's rules on a clock the test controls: asking twice is asking once, a person decides only a
// pending by: human approval, a grant lasts ttl from the decision, an execution is taken once and can be given back,
// and a reload that changed the route's `by` voids what was asked before it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../store/memory.ts';
import { ApprovalStore, type NewApproval } from './store.ts';

const MINUTE = 60_000;

function setup() {
  let time = 1_800_000_000_000;
  const store = new MemoryStore({ maxEntries: 1000, maxBytes: 1 << 20, clock: () => time });
  const approvals = new ApprovalStore(store, 'test');
  const request = (overrides: Partial<NewApproval>): NewApproval => ({
    route: 'delete-customer',
    by: 'human',
    agent: 'agent:alice',
    fingerprint: 'print-1',
    preview: { method: 'DELETE', path: '/customers/1', body_bytes: 0 },
    requestId: 'req-1',
    ttlMs: 15 * MINUTE,
    maxPending: 100,
    ...overrides,
  });
  const ask = async (overrides: Partial<NewApproval> = {}) => {
    const asked = await approvals.ask(request(overrides));
    assert.equal(asked.kind, 'asked');
    return asked as Extract<typeof asked, { kind: 'asked' }>;
  };
  const executing = { agent: 'agent:alice', fingerprint: 'print-1', by: 'human' as const, requestId: 'req-2', idempotency: undefined };
  return { approvals, ask, request, executing, advance: (ms: number) => (time += ms), close: () => store.close() };
}

test('asking again for the same pending request is the same approval; another request or agent asks anew', async () => {
  const { ask, close } = setup();
  const first = await ask();
  assert.equal(first.reused, false);
  assert.equal((await ask()).approval.id, first.approval.id);
  assert.equal((await ask()).reused, true);
  assert.notEqual((await ask({ fingerprint: 'print-2' })).approval.id, first.approval.id);
  assert.notEqual((await ask({ agent: 'agent:mallory' })).approval.id, first.approval.id);
  await close();
});

test('an agent may ask for max_pending approvals of a route within ttl; the same request again does not count', async () => {
  const { approvals, ask, request, advance, close } = setup();
  for (const print of ['p1', 'p2']) await ask({ fingerprint: print, maxPending: 2 });
  await ask({ fingerprint: 'p1', maxPending: 2 });
  const third = await approvals.ask(request({ fingerprint: 'p3', maxPending: 2 }));
  assert.equal(third.kind, 'too_many');
  assert.ok(third.kind === 'too_many' && third.waitMs > 0 && third.waitMs <= 15 * MINUTE);
  assert.equal((await approvals.ask(request({ fingerprint: 'p3', maxPending: 2, agent: 'agent:bob' }))).kind, 'asked', "another agent's asks are its own");
  advance(8 * MINUTE);
  assert.equal((await approvals.ask(request({ fingerprint: 'p3', maxPending: 2 }))).kind, 'asked', 'room comes back over ttl');
  await close();
});

test('a person decides a pending by: human approval once; a grant lasts ttl from the decision', async () => {
  const { approvals, ask, advance, close } = setup();
  const { approval } = await ask();
  advance(14 * MINUTE);
  const decided = await approvals.decide(approval.id, 'approve', 'dana', 'ok', 15 * MINUTE);
  assert.equal(decided.kind, 'decided');
  assert.equal(decided.kind === 'decided' && decided.approval.expires_at, approval.created_at + 29 * MINUTE);
  const again = await approvals.decide(approval.id, 'deny', 'eve', undefined, 15 * MINUTE);
  assert.deepEqual([again.kind, again.kind === 'not_pending' && again.status], ['not_pending', 'approved']);
  const agents = await ask({ by: 'agent', fingerprint: 'print-agent' });
  assert.equal((await approvals.decide(agents.approval.id, 'approve', 'dana', undefined, MINUTE)).kind, 'not_pending', "an agent's confirmation is no person's to decide");
  await close();
});

test('an approval is taken for one execution, given back if that request was never sent, and expires', async () => {
  const { approvals, ask, executing, advance, close } = setup();
  const { approval } = await ask({ by: 'agent' });
  const request = { ...executing, by: 'agent' as const };
  const taken = await approvals.execute(approval.id, request);
  assert.equal(taken.kind, 'executing');
  const second = await approvals.execute(approval.id, request);
  assert.deepEqual([second.kind, second.kind === 'refused' && second.status], ['refused', 'executed']);
  assert.equal(taken.kind === 'executing' && (await approvals.restore(taken)), true);
  assert.equal((await approvals.execute(approval.id, request)).kind, 'executing', 'given back, it can be taken again');

  const late = await ask({ by: 'agent', fingerprint: 'print-late' });
  advance(16 * MINUTE);
  const expired = await approvals.execute(late.approval.id, { ...request, fingerprint: 'print-late' });
  assert.deepEqual([expired.kind, expired.kind === 'refused' && expired.status], ['refused', 'expired']);
  await close();
});

test('another agent or another request with the id is a mismatch, and leaves the approval as it was', async () => {
  const { approvals, ask, executing, close } = setup();
  const { approval } = await ask({ by: 'agent' });
  for (const other of [{ agent: 'agent:mallory' }, { fingerprint: 'print-2' }]) {
    assert.equal((await approvals.execute(approval.id, { ...executing, by: 'agent', ...other })).kind, 'mismatch');
  }
  assert.equal((await approvals.execute(approval.id, { ...executing, by: 'agent' })).kind, 'executing');
  await close();
});

test("a reload that changed the route's `by` voids what was asked before it: answered as expired", async () => {
  const { approvals, ask, executing, close } = setup();
  const asked = await ask({ by: 'agent' });
  const now = await approvals.execute(asked.approval.id, { ...executing, by: 'human' });
  assert.deepEqual([now.kind, now.kind === 'refused' && now.status], ['refused', 'expired'], 'an agent may no longer confirm what a person must now approve');
  const human = await ask({ fingerprint: 'print-h' });
  await approvals.decide(human.approval.id, 'approve', 'dana', undefined, MINUTE);
  const after = await approvals.execute(human.approval.id, { ...executing, fingerprint: 'print-h', by: 'agent' });
  assert.deepEqual([after.kind, after.kind === 'refused' && after.status], ['refused', 'expired']);
  await close();
});

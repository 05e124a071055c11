// The route rate limiter on the memory store, table-driven: what its steps (onRequest, then the store batch) decide for a sequence of costs, with which
// code, and what the budget headers and the dry-run quote say along the way.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { compileRuntime } from '../../../test/helpers/runtime.ts';
import type { Consumer } from '../../identity/consumer.ts';
import type { RequestContext } from '../../context.ts';
import type { GatewayError } from '../../errors/problem.ts';
import { policyOf, type Runtime } from '../../runtime.ts';
import { Exchange } from '../contract.ts';
import { RouteRateLimiter } from './policy.ts';

const { runtime, pools, store } = compileRuntime(`version: 1
upstreams: {api: {url: 'http://127.0.0.1:1'}}
rate_limits:
  small: {capacity: 10, per: 1h}
  wide: {capacity: 100, per: 1h, scope: global}
routes:
  - {name: cheap, match: {path: /cheap}, upstream: api, rate_limit: small, cost: 3}
  - {name: pricey, match: {path: /pricey}, upstream: api, rate_limit: small, cost: 11}
  - {name: both, match: {path: /both}, upstream: api, rate_limit: [small, wide], cost: 4}
`);
after(() => pools.destroyAll());

const limiterOf = (rt: Runtime, name: string) => policyOf(rt.router.routes.find((r) => r.name === name)!, RouteRateLimiter)!;
const limiter = (name: string) => limiterOf(runtime, name);
const req = { headers: {} } as IncomingMessage;

/** One request through the limiter's steps as the pipeline takes it: onRequest, then the store batch; the headers it answers with. */
async function admit(
  rateLimiter: RouteRateLimiter,
  consumer: Consumer,
  requestId: string,
  batchStore = store,
): Promise<{ kind: 'continue'; headers: Record<string, string> } | { kind: 'reject'; error: GatewayError } | { kind: 'client_closed' }> {
  const ctx = { requestId, consumer, responseHeaders: {} } as unknown as RequestContext;
  const ex = new Exchange(req, {} as ServerResponse, ctx);
  let verdict = await rateLimiter.onRequest(ex);
  if (verdict.kind === 'continue') verdict = await ex.batch.commit(batchStore);
  if (verdict.kind === 'continue') return { kind: 'continue', headers: ctx.responseHeaders };
  if (verdict.kind === 'refuse') return { kind: 'reject', error: verdict.error };
  return { kind: 'client_closed' };
}
let consumers = 0;
const fresh = (): Consumer => ({ id: `consumer-${++consumers}`, source: 'test' });

/** Admits `times` requests on one route for one consumer; returns each outcome as 'ok:<remaining>' or the error code. */
async function run(route: string, times: number, consumer = fresh()): Promise<string[]> {
  const outcomes: string[] = [];
  for (let i = 0; i < times; i++) {
    const admission = await admit(limiter(route), consumer, `r${i}`);
    if (admission.kind === 'continue') outcomes.push(`ok:${admission.headers['x-ratelimit-remaining']}`);
    else if (admission.kind === 'reject') outcomes.push(admission.error.code);
    else outcomes.push(admission.kind);
  }
  return outcomes;
}

const cases: [string, string, number, string[]][] = [
  ['a cost of 3 fits three times in 10, then waits', 'cheap', 4, ['ok:7', 'ok:4', 'ok:1', 'RATE_LIMITED']],
  ['a cost above the whole capacity can never pass (422, not 429)', 'pricey', 2, ['COST_EXCEEDS_BUDGET', 'COST_EXCEEDS_BUDGET']],
  ['two policies are charged all or nothing; the closest to exhaustion is reported', 'both', 3, ['ok:6', 'ok:2', 'RATE_LIMITED']],
];
for (const [what, route, times, expected] of cases) {
  test(what, async () => {
    assert.deepEqual(await run(route, times), expected);
  });
}

test('a refused request is not charged: the budget is where the last allowed one left it', async () => {
  const consumer = fresh();
  await run('cheap', 4, consumer);
  const headers = await limiter('cheap').unchargedHeaders(consumer);
  assert.equal(headers['x-ratelimit-remaining'], '1');
  assert.equal(headers['x-ratelimit-cost'], '0');
});

test('RATE_LIMITED says when the cost fits (Retry-After, retryable); COST_EXCEEDS_BUDGET says never', async () => {
  const consumer = fresh();
  await run('cheap', 3, consumer);
  const limited = await admit(limiter('cheap'), consumer, 'r');
  assert.equal(limited.kind, 'reject');
  if (limited.kind !== 'reject') return;
  assert.equal(limited.error.status, 429);
  assert.equal(limited.error.retryable, true);
  // 2 more units at 10 per hour: 720 s.
  assert.equal(limited.error.retryAfterSeconds, 720);
  const never = await admit(limiter('pricey'), fresh(), 'r');
  assert.ok(never.kind === 'reject' && never.error.status === 422 && !never.error.retryable && never.error.retryAfterSeconds === undefined);
});

test('the dry-run quote agrees with what the charge then decides', async () => {
  const consumer = fresh();
  await run('cheap', 3, consumer);
  const quote = await limiter('cheap').quote(consumer, 3);
  assert.deepEqual({ allowed: quote.allowed, exceeds: quote.exceeds_capacity, wait: quote.retry_after_seconds }, { allowed: false, exceeds: false, wait: 720 });
  const admission = await admit(limiter('cheap'), consumer, 'r');
  assert.ok(admission.kind === 'reject' && admission.error.retryAfterSeconds === quote.retry_after_seconds);
  assert.equal((await limiter('pricey').quote(fresh(), 11)).exceeds_capacity, true);
});

test('a global policy is one budget for every consumer; a per-consumer one is not', async () => {
  // A runtime of its own, so that the global budget starts full.
  const own = compileRuntime(`version: 1
upstreams: {api: {url: 'http://127.0.0.1:1'}}
rate_limits:
  small: {capacity: 10, per: 1h}
  wide: {capacity: 100, per: 1h, scope: global}
routes: [{name: both, match: {path: /both}, upstream: api, rate_limit: [small, wide], cost: 4}]
`);
  try {
    const both = limiterOf(own.runtime, 'both');
    for (const id of ['a', 'b']) assert.equal((await admit(both, { id, source: 'test' }, 'r', own.store)).kind, 'continue');
    const seenByC = Object.fromEntries((await own.runtime.rateLimits.budgets({ id: 'c', source: 'test' })).map((b) => [b.policy, b.remaining]));
    assert.deepEqual(seenByC, { small: 10, wide: 92 });
  } finally {
    own.pools.destroyAll();
  }
});

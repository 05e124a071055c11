// The circuit breaker as a policy: which forwarding results count against the upstream, table-driven over the kinds of
// result a call can end with, and the half-open probe's slot given back however its request ends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import pino from 'pino';
import { GatewayError } from '../../errors/problem.ts';
import { GatewayMetrics } from '../../observability/metrics.ts';
import type { UpstreamResult } from '../../upstream-result.ts';
import type { Verdict } from '../contract.ts';
import { exchange, rethrow } from '../../../test/helpers/exchange.ts';
import { compileCircuitBreaker, type UpstreamCircuit } from './policy.ts';

const response = (statusCode: number): UpstreamResult => ({ kind: 'response', response: { statusCode } as IncomingMessage });
const failed = (code: 'UPSTREAM_TIMEOUT' | 'UPSTREAM_ERROR' | 'UPSTREAM_UNAVAILABLE' | 'REQUEST_TIMEOUT', clientFault = false): UpstreamResult => ({
  kind: 'failed',
  error: new GatewayError(code, 'x'),
  reachedUpstream: code !== 'UPSTREAM_UNAVAILABLE',
  ...(clientFault ? { clientFault } : {}),
});

function circuit(clock?: () => number): UpstreamCircuit {
  return compileCircuitBreaker('legacy', { failures: 3, window: '1m', open_for: '1m' }, { metrics: new GatewayMetrics(), logger: pino({ level: 'silent' }), clock })!;
}

/** One call as the pipeline makes it: asked before forwarding, then told the result (when it was let through). */
async function call(c: UpstreamCircuit, result: UpstreamResult, id = 'r'): Promise<Verdict> {
  const ex = exchange({}, id);
  const verdict = c.beforeForward(ex);
  if (verdict.kind === 'continue') await ex.upstreamResult(result);
  await ex.close(rethrow);
  return verdict;
}

/** Feeds three results of one kind through the breaker and says whether a fourth call is refused. */
async function opensAfterThree(result: UpstreamResult): Promise<boolean> {
  const c = circuit();
  for (let i = 0; i < 3; i++) await call(c, result, `r${i}`);
  const fourth = c.beforeForward(exchange());
  return fourth.kind === 'refuse' && fourth.error.code === 'CIRCUIT_OPEN';
}

const breakerCases: [string, UpstreamResult, boolean][] = [
  ['5xx answers', response(502), true],
  ['500 answers', response(500), true],
  ['timeouts', failed('UPSTREAM_TIMEOUT'), true],
  ['resets before an answer', failed('UPSTREAM_ERROR'), true],
  ['refused connections', failed('UPSTREAM_UNAVAILABLE'), true],
  ['4xx answers', response(404), false],
  ['429 answers', response(429), false],
  ['2xx answers', response(200), false],
  ['clients that left', { kind: 'client_closed', reachedUpstream: true }, false],
  ['clients too slow to send their body (408)', failed('REQUEST_TIMEOUT', true), false],
];
for (const [what, result, opens] of breakerCases) {
  test(`three ${what} ${opens ? 'open' : 'do not open'} the circuit`, async () => {
    assert.equal(await opensAfterThree(result), opens);
  });
}

test('a refused call (open circuit) records nothing and is answered with Retry-After', async () => {
  const c = circuit();
  for (let i = 0; i < 3; i++) await call(c, response(503), `r${i}`);
  const refused = await call(c, response(200), 'r4');
  assert.ok(refused.kind === 'refuse' && refused.error.code === 'CIRCUIT_OPEN');
  assert.ok((refused.error.retryAfterSeconds ?? 0) > 0);
  const again = c.beforeForward(exchange());
  assert.ok(again.kind === 'refuse' && again.error.code === 'CIRCUIT_OPEN');
});

test('a half-open probe whose request ends without a result (an exception) gives its slot back when the request closes', async () => {
  let now = 0;
  const c = circuit(() => now);
  for (let i = 0; i < 3; i++) await call(c, response(503), `r${i}`);
  now += 60_001;
  const probe = exchange({}, 'probe');
  assert.equal(c.beforeForward(probe).kind, 'continue', 'the one probe is let through');
  assert.equal(c.beforeForward(exchange()).kind, 'refuse', 'a second request while the probe is out is refused');
  // The pipeline closes the exchange on every path; this request never got to onUpstreamResult.
  await probe.close(rethrow);
  assert.equal(c.beforeForward(exchange()).kind, 'continue', 'the slot is free again: the next request probes');
});

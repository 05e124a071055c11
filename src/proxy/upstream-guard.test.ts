// The upstream guard: which forwarding results count against the upstream's circuit breaker and which credential's
// 401 streak halts it, table-driven over the kinds of result a call can end with.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import pino from 'pino';
import { GatewayError } from '../errors/problem.ts';
import { GatewayMetrics } from '../observability/metrics.ts';
import { UpstreamGuard } from './upstream-guard.ts';
import type { UpstreamResult } from '../upstream-result.ts';

const request = (headers: Record<string, string> = {}) => ({ headers }) as unknown as IncomingMessage;
const response = (statusCode: number): UpstreamResult => ({ kind: 'response', response: { statusCode } as IncomingMessage });
const failed = (code: 'UPSTREAM_TIMEOUT' | 'UPSTREAM_ERROR' | 'UPSTREAM_UNAVAILABLE' | 'REQUEST_TIMEOUT', clientFault = false): UpstreamResult => ({
  kind: 'failed',
  error: new GatewayError(code, 'x'),
  reachedUpstream: code !== 'UPSTREAM_UNAVAILABLE',
  ...(clientFault ? { clientFault } : {}),
});

function guard(settings: { breaker?: boolean; halt?: boolean; injected?: Record<string, string> } = {}) {
  return new UpstreamGuard(
    'legacy',
    {
      circuitBreaker: settings.breaker === false ? false : { failures: 3, window: '1m', open_for: '1m' },
      authHalt: settings.halt ? { after: 3, cooldown: '1m' } : false,
      injectedHeaders: settings.injected ?? {},
    },
    { metrics: new GatewayMetrics(), logger: pino({ level: 'silent' }) },
  );
}

/** Feeds three results of one kind through admit/record and says whether a fourth call is refused. */
function opensAfterThree(result: UpstreamResult): boolean {
  const g = guard();
  for (let i = 0; i < 3; i++) g.record(g.admit(request(), `r${i}`), result);
  return g.admit(request(), 'r4').refusal?.code === 'CIRCUIT_OPEN';
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
  test(`three ${what} ${opens ? 'open' : 'do not open'} the circuit`, () => {
    assert.equal(opensAfterThree(result), opens);
  });
}

test('a refused call (open circuit) records nothing and is answered with Retry-After', () => {
  const g = guard();
  for (let i = 0; i < 3; i++) g.record(g.admit(request(), `r${i}`), response(503));
  const ticket = g.admit(request(), 'r4');
  assert.equal(ticket.refusal?.code, 'CIRCUIT_OPEN');
  assert.ok((ticket.refusal?.retryAfterSeconds ?? 0) > 0);
  g.record(ticket, { kind: 'failed', error: ticket.refusal!, reachedUpstream: false });
  assert.equal(g.admit(request(), 'r5').refusal?.code, 'CIRCUIT_OPEN');
});

test('three 401s in a row for one credential halt it; another credential, and a 401 streak broken by a success, are not halted', () => {
  const g = guard({ breaker: false, halt: true });
  const alice = request({ authorization: 'Bearer alice-token' });
  const bob = request({ authorization: 'Bearer bob-token' });
  for (let i = 0; i < 2; i++) g.record(g.admit(alice, `a${i}`), response(401));
  g.record(g.admit(alice, 'a-ok'), response(200));
  g.record(g.admit(alice, 'a2'), response(401));
  assert.equal(g.admit(alice, 'a3').refusal, undefined, 'a success in between resets the streak');
  for (let i = 0; i < 3; i++) g.record(g.admit(bob, `b${i}`), response(401));
  const halted = g.admit(bob, 'b3').refusal;
  assert.equal(halted?.code, 'UNAUTHENTICATED');
  assert.equal(halted?.retryable, false);
  assert.equal(g.admit(alice, 'a4').refusal, undefined, "bob's halt is not alice's");
});

test('a credential the gateway injects is part of every call: its 401 streak halts every call, whatever the agent sends', () => {
  const g = guard({ breaker: false, halt: true, injected: { authorization: 'Bearer fleet-token' } });
  for (let i = 0; i < 3; i++) g.record(g.admit(request({ 'x-agent-id': `agent-${i}` }), `r${i}`), response(401));
  assert.equal(g.admit(request({ 'x-agent-id': 'someone-else' }), 'r3').refusal?.code, 'UNAUTHENTICATED');
});

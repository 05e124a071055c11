// The auth-failure halt as a policy: which credential's 401 streak halts it, and what the agent is told.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import pino from 'pino';
import { GatewayMetrics } from '../../observability/metrics.ts';
import type { UpstreamResult } from '../../upstream-result.ts';
import type { Verdict } from '../contract.ts';
import { exchange, rethrow } from '../../../test/helpers/exchange.ts';
import { CredentialHalt } from './policy.ts';

const response = (statusCode: number): UpstreamResult => ({ kind: 'response', response: { statusCode } as IncomingMessage });

function halt(injected: Record<string, string> = {}): CredentialHalt {
  return new CredentialHalt('legacy', { after: 3, cooldown: '1m' }, injected, { metrics: new GatewayMetrics(), logger: pino({ level: 'silent' }) });
}

async function call(h: CredentialHalt, headers: Record<string, string>, result: UpstreamResult): Promise<Verdict> {
  const ex = exchange(headers);
  const verdict = h.beforeForward(ex);
  if (verdict.kind === 'continue') await ex.upstreamResult(result);
  await ex.close(rethrow);
  return verdict;
}

const refusal = (v: Verdict) => (v.kind === 'refuse' ? v.error : undefined);

test('three 401s in a row for one credential halt it; another credential, and a 401 streak broken by a success, are not halted', async () => {
  const h = halt();
  const alice = { authorization: 'Bearer alice-token' };
  const bob = { authorization: 'Bearer bob-token' };
  for (let i = 0; i < 2; i++) await call(h, alice, response(401));
  await call(h, alice, response(200));
  await call(h, alice, response(401));
  assert.equal(refusal(h.beforeForward(exchange(alice))), undefined, 'a success in between resets the streak');
  for (let i = 0; i < 3; i++) await call(h, bob, response(401));
  const halted = refusal(h.beforeForward(exchange(bob)));
  assert.equal(halted?.code, 'UNAUTHENTICATED');
  assert.equal(halted?.retryable, false);
  assert.equal(refusal(h.beforeForward(exchange(alice))), undefined, "bob's halt is not alice's");
});

test('a credential the gateway injects is part of every call: its 401 streak halts every call, whatever the agent sends', async () => {
  const h = halt({ authorization: 'Bearer fleet-token' });
  for (let i = 0; i < 3; i++) await call(h, { 'x-agent-id': `agent-${i}` }, response(401));
  assert.equal(refusal(h.beforeForward(exchange({ 'x-agent-id': 'someone-else' })))?.code, 'UNAUTHENTICATED');
});

// Consumer identification: the first configured source present wins, values are hashed, and the fallbacks behave.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { createConsumerIdentifier } from './consumer.ts';

function request(headers: Record<string, string>, remoteAddress = '10.1.2.3'): [IncomingMessage, string] {
  return [{ headers, socket: { remoteAddress } } as unknown as IncomingMessage, remoteAddress];
}

const identifyWith = createConsumerIdentifier([{ header: 'X-Agent-Id' }, { header: 'authorization' }, { ip: true }]);
const identify = (args: [IncomingMessage, string]) => identifyWith(...args);

test('the first configured source present wins, and its value is hashed, never kept', () => {
  const byAgent = identify(request({ 'x-agent-id': 'agent-7', authorization: 'Bearer secret-token' }));
  assert.equal(byAgent.source, 'header:x-agent-id');
  assert.doesNotMatch(byAgent.id, /agent-7|secret/);
  const byToken = identify(request({ authorization: 'Bearer secret-token' }));
  assert.equal(byToken.source, 'header:authorization');
  assert.doesNotMatch(byToken.id, /secret/);
  assert.equal(identify(request({})).source, 'ip');
});

test('the same value gives the same id, different values and different sources give different ids', () => {
  const a1 = identify(request({ 'x-agent-id': 'a' }));
  const a2 = identify(request({ 'x-agent-id': 'a' }, '192.0.2.1'));
  const b = identify(request({ 'x-agent-id': 'b' }));
  const sameValueOtherSource = identify(request({ authorization: 'a' }));
  assert.equal(a1.id, a2.id);
  assert.notEqual(a1.id, b.id);
  assert.notEqual(a1.id, sameValueOtherSource.id);
  assert.notEqual(identify(request({}, '10.0.0.1')).id, identify(request({}, '10.0.0.2')).id);
});

test('with no ip fallback, callers without any configured header share the anonymous identity', () => {
  const headerOnly = createConsumerIdentifier([{ header: 'x-agent-id' }]);
  assert.deepEqual(headerOnly(...request({})), { id: 'anonymous', source: 'anonymous' });
  assert.deepEqual(headerOnly(...request({}, '10.9.9.9')), { id: 'anonymous', source: 'anonymous' });
});

test('ids stay the same when the cache of recent identities fills up and starts afresh', () => {
  const first = identify(request({ 'x-agent-id': 'agent-first' })).id;
  for (let i = 0; i < 25_000; i++) identify(request({ 'x-agent-id': `agent-${i}` }));
  assert.equal(identify(request({ 'x-agent-id': 'agent-first' })).id, first);
  assert.equal(identify(request({ 'x-agent-id': 'agent-24999' })).id, createConsumerIdentifier([{ header: 'x-agent-id' }])(...request({ 'x-agent-id': 'agent-24999' })).id);
});

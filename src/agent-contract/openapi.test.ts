// The OpenAPI document's own parts: the envelope schema agrees with the envelope, and a document per visible set of operations.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayError, problemDocument } from '../errors/problem.ts';
import { compileRuntime } from '../../test/helpers/runtime.ts';
import { ENVELOPE_MEMBERS } from './openapi.ts';

test('the envelope schema lists exactly the members every envelope has', () => {
  const envelope = problemDocument(new GatewayError('RATE_LIMITED', 'over', { retryAfterSeconds: 3, upstreamStatus: 429 }), 'req-1');
  assert.deepEqual(Object.keys(ENVELOPE_MEMBERS), Object.keys(envelope));
});

test('one document per set of operations shown, addressed to the URL of each request', (t) => {
  const { runtime, pools } = compileRuntime(`version: 1
upstreams: {api: {url: 'http://127.0.0.1:9'}}
routes:
  - {name: a, match: {methods: [GET], path: /a}, upstream: api}
  - {name: b, match: {methods: [POST], path: /b}, upstream: api}
`);
  t.after(() => pools.destroyAll());
  const all = JSON.parse(runtime.openapi.json(() => true, 'http://one.example'));
  assert.deepEqual(all.servers, [{ url: 'http://one.example', description: 'agentgate, as this request reached it' }]);
  assert.deepEqual(Object.keys(all.paths), ['/a', '/b']);
  const some = JSON.parse(runtime.openapi.json((op) => op.route === 'b', 'https://two.example:8443'));
  assert.deepEqual(Object.keys(some.paths), ['/b']);
  assert.equal(some.servers[0].url, 'https://two.example:8443');
  assert.deepEqual(JSON.parse(runtime.openapi.json(() => true, 'http://one.example')), all, 'the same set, the same document');
  assert.deepEqual(JSON.parse(runtime.openapi.json(() => false, 'http://x')).paths, {});
});

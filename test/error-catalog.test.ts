// GET /_agentgate/errors serves the catalog the contract fixes, and every entry can be looked up on its own.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestGateway, configYaml, type TestGateway } from './helpers/gateway.ts';
import { send, envelopeOf } from './helpers/http.ts';

const CONTRACT_CODES = [
  'INVALID_REQUEST', 'UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND', 'ROUTE_NOT_FOUND', 'CONFLICT', 'VALIDATION_FAILED',
  'PAYLOAD_TOO_LARGE', 'IDEMPOTENCY_KEY_REQUIRED', 'IDEMPOTENCY_KEY_INVALID', 'IDEMPOTENCY_IN_PROGRESS', 'IDEMPOTENCY_KEY_REUSED',
  'IDEMPOTENCY_OUTCOME_UNKNOWN', 'RATE_LIMITED', 'COST_EXCEEDS_BUDGET', 'UPSTREAM_RATE_LIMITED', 'UPSTREAM_ERROR',
  'UPSTREAM_UNAVAILABLE', 'UPSTREAM_TIMEOUT', 'SILENT_FAILURE', 'CIRCUIT_OPEN', 'STORE_UNAVAILABLE', 'GATEWAY_ERROR',
  'REQUEST_TIMEOUT', 'APPROVAL_REQUIRED', 'APPROVAL_PENDING', 'APPROVAL_DENIED', 'APPROVAL_MISMATCH',
];

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway(configYaml(`upstreams: {a: {url: 'http://127.0.0.1:9'}}\nroutes: [{name: a, match: {path: /a}, upstream: a}]\n`));
});
after(() => gw.close());

test('the catalog holds every code of the contract, each fully described', async () => {
  const reply = await send(`${gw.url}/_agentgate/errors`);
  assert.equal(reply.status, 200);
  assert.match(String(reply.headers['content-type']), /^application\/json/);
  const { errors } = reply.json() as { errors: Record<string, unknown>[] };
  assert.deepEqual(errors.map((e) => e.code).sort(), [...CONTRACT_CODES].sort());
  for (const e of errors) {
    assert.equal(e.type, `/_agentgate/errors/${String(e.code)}`);
    assert.equal(typeof e.status, 'number');
    assert.equal(typeof e.retryable, 'boolean');
    assert.ok(typeof e.title === 'string' && e.title.length > 0);
    assert.ok(typeof e.suggestion === 'string' && e.suggestion.length > 10);
  }
  const notRetryable = errors.filter((e) => !e.retryable).map((e) => e.code);
  for (const code of ['COST_EXCEEDS_BUDGET', 'IDEMPOTENCY_KEY_REUSED', 'IDEMPOTENCY_OUTCOME_UNKNOWN', 'FORBIDDEN']) assert.ok(notRetryable.includes(code), code);
});

test('one entry is served at its type URI, and an unknown code is a NOT_FOUND envelope', async () => {
  const one = await send(`${gw.url}/_agentgate/errors/RATE_LIMITED`);
  assert.equal(one.status, 200);
  assert.equal(one.json().code, 'RATE_LIMITED');
  assert.equal(one.json().status, 429);
  // 422, not 429: status-based retry (got, ky, axios-retry, urllib3) would retry a 429 that can never pass.
  const cost = (await send(`${gw.url}/_agentgate/errors/COST_EXCEEDS_BUDGET`)).json();
  assert.deepEqual([cost.status, cost.retryable], [422, false]);
  const unknown = await send(`${gw.url}/_agentgate/errors/NOPE`);
  assert.equal(unknown.status, 404);
  assert.equal(envelopeOf(unknown).code, 'NOT_FOUND');
});

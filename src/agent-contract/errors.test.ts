// The errors an operation can answer with: by the policies that apply to it, and no code a policy raises left out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ERROR_CATALOG, type ErrorCode } from '../errors/catalog.ts';
import { errorsOf, type ErrorFacts } from './errors.ts';

const NONE: ErrorFacts = {
  authenticate: false,
  scopes: false,
  idempotency: undefined,
  approval: undefined,
  rateLimit: undefined,
  silentFailure: false,
  circuitBreaker: false,
  authHalt: false,
  overrides: new Map(),
  documented: {},
};

const gatewayCodes = (facts: Partial<ErrorFacts>) => new Set(errorsOf({ ...NONE, ...facts }).filter((e) => e.from === 'gateway').map((e) => e.code));

test('a route without policies: the gateway refusing a request, failing to reach the upstream, and the upstream normalized', () => {
  const errors = errorsOf(NONE);
  assert.deepEqual([...gatewayCodes({})].sort(), ['GATEWAY_ERROR', 'INVALID_REQUEST', 'REQUEST_TIMEOUT', 'UPSTREAM_ERROR', 'UPSTREAM_TIMEOUT', 'UPSTREAM_UNAVAILABLE']);
  const byRange = (range: string) => errors.filter((e) => e.status === range).map((e) => e.code).sort();
  assert.deepEqual(byRange('4XX'), ['CONFLICT', 'FORBIDDEN', 'INVALID_REQUEST', 'NOT_FOUND', 'PAYLOAD_TOO_LARGE', 'UNAUTHENTICATED', 'UPSTREAM_RATE_LIMITED', 'UPSTREAM_TIMEOUT', 'VALIDATION_FAILED']);
  assert.deepEqual(byRange('5XX'), ['UPSTREAM_ERROR', 'UPSTREAM_TIMEOUT', 'UPSTREAM_UNAVAILABLE']);
  for (const e of errors.filter((e) => e.from === 'gateway')) assert.equal(e.status, ERROR_CATALOG[e.code].status, `${e.code} at its catalog status`);
});

test('each policy adds its codes, only where it applies', () => {
  assert.ok(gatewayCodes({ idempotency: { required: true, failClosed: false } }).has('IDEMPOTENCY_KEY_REQUIRED'));
  assert.ok(!gatewayCodes({ idempotency: { required: false, failClosed: false } }).has('IDEMPOTENCY_KEY_REQUIRED'), 'an optional key is never required');
  assert.ok(!gatewayCodes({ idempotency: { required: false, failClosed: false } }).has('STORE_UNAVAILABLE'), 'fail_open forwards without the store');
  assert.ok(gatewayCodes({ rateLimit: { readsBody: false, failClosed: false } }).has('COST_EXCEEDS_BUDGET'));
  assert.ok(!gatewayCodes({ rateLimit: { readsBody: false, failClosed: false } }).has('PAYLOAD_TOO_LARGE'));
  assert.ok(gatewayCodes({ rateLimit: { readsBody: true, failClosed: true } }).has('STORE_UNAVAILABLE'));
  assert.ok(gatewayCodes({ scopes: true }).has('FORBIDDEN'));
  assert.ok(!gatewayCodes({ authenticate: true }).has('FORBIDDEN'));
  const human = gatewayCodes({ approval: { by: 'human' } });
  for (const code of ['APPROVAL_REQUIRED', 'APPROVAL_PENDING', 'APPROVAL_DENIED', 'APPROVAL_MISMATCH', 'PAYLOAD_TOO_LARGE', 'STORE_UNAVAILABLE'] as const) assert.ok(human.has(code), code);
  const agent = gatewayCodes({ approval: { by: 'agent' } });
  assert.ok(agent.has('APPROVAL_REQUIRED') && agent.has('APPROVAL_MISMATCH'));
  assert.ok(!agent.has('APPROVAL_PENDING') && !agent.has('APPROVAL_DENIED'), "an agent's own confirmation is never pending or denied");
  assert.ok(![...gatewayCodes({})].some((code) => code.startsWith('APPROVAL_')), 'no approval, no APPROVAL_* code');
});

test("the upstream's statuses: a route's reinterpretation and the spec's descriptions at their own statuses", () => {
  const errors = errorsOf({ ...NONE, overrides: new Map([[400, 'UPSTREAM_UNAVAILABLE' as ErrorCode]]), documented: { '400': { description: 'Bad order' }, '410': { description: 'Gone for good' }, '200': { description: 'ok' } } });
  assert.deepEqual(errors.filter((e) => e.status === 400).map((e) => [e.code, e.from, e.upstreamDescription]), [
    ['INVALID_REQUEST', 'gateway', undefined],
    ['UPSTREAM_UNAVAILABLE', 'upstream', 'Bad order'],
  ]);
  assert.deepEqual(errors.filter((e) => e.status === 410).map((e) => [e.code, e.upstreamDescription]), [['INVALID_REQUEST', 'Gone for good']]);
});

/** Each place that raises errors, and the facts under which the table above says it applies. */
const RAISERS: [string, Partial<ErrorFacts>][] = [
  ['policies/scopes', { scopes: true }],
  ['policies/idempotency', { idempotency: { required: true, failClosed: true } }],
  ['policies/rate-limit', { rateLimit: { readsBody: true, failClosed: true } }],
  ['policies/approval', { approval: { by: 'human' } }],
  ['policies/silent-failure', { silentFailure: true }],
  ['policies/circuit-breaker', { circuitBreaker: true }],
  ['policies/auth-halt', { authHalt: true }],
  ['agents', { authenticate: true }],
  ['proxy', {}],
];

test('no code a policy (or the forwarder, or authentication) can raise is missing from its operations', () => {
  const codes = Object.keys(ERROR_CATALOG);
  for (const [folder, facts] of RAISERS) {
    const dir = path.join(import.meta.dirname, '..', folder);
    const source = readdirSync(dir)
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
      .map((f) => readFileSync(path.join(dir, f), 'utf8'))
      .join('\n');
    const raised = codes.filter((code) => source.includes(`'${code}'`));
    assert.ok(raised.length > 0, `${folder}: codes were found`);
    const listed = new Set(errorsOf({ ...NONE, ...facts }).map((e) => e.code));
    assert.deepEqual(raised.filter((code) => !listed.has(code as ErrorCode)), [], `${folder} raises codes its operations do not list`);
  }
});

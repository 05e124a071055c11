// The idempotency policy on its own: key parsing, fingerprints, records, config defaults, and claim decisions on a clock the test controls.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pino } from 'pino';
import { parseConfig, ConfigError } from '../../config/load.ts';
import { MemoryStore } from '../../store/memory.ts';
import { GatewayMetrics } from '../../observability/metrics.ts';
import { GatewayError } from '../../errors/problem.ts';
import type { RequestContext } from '../../context.ts';
import { fingerprint } from '../fingerprint.ts';
import { headerValues, parseIdempotencyKey, recordId } from './key.ts';
import { decodeRecord, encodeRecord } from './record.ts';
import { compileIdempotency, IdempotencyPolicy } from './policy.ts';
import { Claim } from './claim.ts';
import type { IdempotencySettings } from './schema.ts';
import { compileRuntime } from '../../../test/helpers/runtime.ts';
import { policyOf } from '../../runtime.ts';
import { CONTINUE, Exchange, refuse, type RequestHooks } from '../contract.ts';

test('keys: bare tokens and structured-field strings are accepted and name the same key', () => {
  assert.deepEqual(parseIdempotencyKey(['8e03978e-40d5-43e8-bc93-6894a57f9324']), { kind: 'valid', key: '8e03978e-40d5-43e8-bc93-6894a57f9324' });
  assert.deepEqual(parseIdempotencyKey(['"8e03978e-40d5"']), { kind: 'valid', key: '8e03978e-40d5' });
  assert.deepEqual(parseIdempotencyKey(['"a \\"b\\" \\\\ c"']), { kind: 'valid', key: 'a "b" \\ c' });
  assert.deepEqual(parseIdempotencyKey(['with inner spaces']), { kind: 'valid', key: 'with inner spaces' });
  assert.deepEqual(parseIdempotencyKey(['k'.repeat(255)]), { kind: 'valid', key: 'k'.repeat(255) });
  assert.deepEqual(parseIdempotencyKey([`"${'k'.repeat(255)}"`]), { kind: 'valid', key: 'k'.repeat(255) });
});

test('keys: absent, empty, too long, not printable ASCII, badly quoted or repeated', () => {
  assert.equal(parseIdempotencyKey(undefined).kind, 'absent');
  assert.equal(parseIdempotencyKey([]).kind, 'absent');
  const invalid = (values: string[], reason: RegExp) => {
    const parsed = parseIdempotencyKey(values);
    assert.equal(parsed.kind, 'invalid', JSON.stringify(values));
    assert.match((parsed as { reason: string }).reason, reason);
  };
  invalid([''], /empty/);
  invalid(['""'], /empty/);
  invalid(['k'.repeat(256)], /256 characters/);
  invalid([`"${'k'.repeat(256)}"`], /256 characters/);
  invalid(['a\tb'], /printable/);
  invalid(['caf\u00e9'], /printable/);
  invalid(['a\u007fb'], /printable/);
  invalid(['"open'], /structured-field string/);
  invalid(['"a"b'], /structured-field string/);
  invalid(['"a\\nb"'], /structured-field string/);
  invalid(['a', 'a'], /sent 2 times/);
});

test('header values are read from the raw lines as node\'s headersDistinct has them: any case, every occurrence, in order', () => {
  const raw = ['Host', 'h', 'IDEMPOTENCY-KEY', 'a', 'Idempotency-Keys', 'not it', 'idempotency-key', 'b', 'X-Idempotency-Key', 'c'];
  assert.deepEqual(headerValues(raw, 'idempotency-key'), ['a', 'b']);
  assert.equal(headerValues(raw, 'authorization'), undefined);
  assert.deepEqual(headerValues(['Idempotency-Key', ''], 'idempotency-key'), ['']);
});

test('fingerprints differ for any difference in method, target or body, and are unambiguous', () => {
  const base = fingerprint('POST', '/orders?x=1', Buffer.from('{"a":1}'));
  assert.equal(fingerprint('POST', '/orders?x=1', Buffer.from('{"a":1}')), base);
  assert.notEqual(fingerprint('PATCH', '/orders?x=1', Buffer.from('{"a":1}')), base);
  assert.notEqual(fingerprint('POST', '/orders?x=2', Buffer.from('{"a":1}')), base);
  assert.notEqual(fingerprint('POST', '/orders/?x=1', Buffer.from('{"a":1}')), base);
  assert.notEqual(fingerprint('POST', '/orders?x=1', Buffer.from('{"a":2}')), base);
  // Moving bytes between parts changes the fingerprint (length prefixes).
  assert.notEqual(fingerprint('POST', '/a', Buffer.from('b')), fingerprint('POST', '/ab', Buffer.from('')));
});

test('record ids are scoped by consumer, route and key (not method: that belongs to the fingerprint), and carry no raw value', () => {
  const id = recordId('consumer-a', 'create', 'my-key');
  assert.match(id, /^[A-Za-z0-9_-]{43}$/);
  assert.ok(!id.includes('my-key'));
  for (const other of [recordId('consumer-b', 'create', 'my-key'), recordId('consumer-a', 'other', 'my-key'), recordId('consumer-a', 'create', 'my-key2')])
    assert.notEqual(other, id);
  // One id for the key however it is sent: a POST and a PATCH with it meet the same record, and the fingerprint tells them apart.
  assert.notEqual(fingerprint('POST', '/orders', Buffer.alloc(0)), fingerprint('PATCH', '/orders', Buffer.alloc(0)));
});

test('records round-trip; anything else decodes to undefined', () => {
  const completed = { state: 'completed', fingerprint: 'f', status: 201, headers: [['location', '/x'], ['link', ['<a>', '<b>']]], body: 'e30=' } as const;
  assert.deepEqual(decodeRecord(encodeRecord(completed)), completed);
  const pending = { state: 'pending', fingerprint: 'f', owner: 'o', lease: 5, started: 1 } as const;
  assert.deepEqual(decodeRecord(encodeRecord(pending)), pending);
  for (const junk of ['', 'x', 'null', '[]', '{"state":"pending","fingerprint":"f"}', '{"state":"other","fingerprint":"f"}', '{"state":"completed"}']) {
    assert.equal(decodeRecord(junk), undefined, junk);
  }
});

const CONFIG = (idempotency: string) => `version: 1
upstreams: {u: {url: 'http://127.0.0.1:1'}}
routes:
  - {name: r, match: {path: /r}, upstream: u, idempotency: ${idempotency}}
`;

test('config: every default comes from the schema; false turns it off; true and typos are refused precisely', () => {
  const route = parseConfig(CONFIG('{required: true, ttl: 24h}'), 'f.yaml', {}).routes[0]!;
  assert.deepEqual(route.idempotency, {
    required: true,
    ttl: '24h',
    methods: ['POST', 'PATCH'],
    lease: '10s',
    in_flight: 'reject',
    in_flight_wait: '5s',
    on_outcome_unknown: 'block',
    on_5xx: 'release',
    on_store_error: 'fail_closed',
    max_body_bytes: '1mb',
    max_response_bytes: '1mb',
  });
  assert.equal(parseConfig(CONFIG('{}'), 'f.yaml', {}).routes[0]!.idempotency && true, true);
  assert.equal(parseConfig(CONFIG('false'), 'f.yaml', {}).routes[0]!.idempotency, false);
  const problem = (idempotency: string) => {
    try {
      parseConfig(CONFIG(idempotency), 'f.yaml', {});
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.problems.length, 1, err.message);
      return `${err.problems[0]!.keyPath}: ${err.problems[0]!.message}`;
    }
    assert.fail(`accepted: ${idempotency}`);
  };
  assert.match(problem('true'), /^routes\[0\]\.idempotency: false to turn it off, or a mapping/);
  assert.match(problem('{tll: 1h}'), /^routes\[0\]\.idempotency\.tll: unknown key 'tll' \(did you mean 'ttl'\?\)/);
  assert.match(problem('{ttl: forever}'), /^routes\[0\]\.idempotency\.ttl: must be a duration/);
  assert.match(problem('{on_outcome_unknown: retry}'), /^routes\[0\]\.idempotency\.on_outcome_unknown: must be one of block, release/);
});

test('defaults: idempotency is inherited by every route; a route\'s own setting, false included, replaces it whole', () => {
  const { runtime, pools } = compileRuntime(`version: 1
upstreams: {u: {url: 'http://127.0.0.1:1'}}
defaults:
  idempotency: {required: true, ttl: 1h}
routes:
  - {name: inherits, match: {path: /a}, upstream: u}
  - {name: off, match: {path: /b}, upstream: u, idempotency: false}
  - {name: own, match: {path: /c}, upstream: u, idempotency: {ttl: 5m}}
`);
  const route = (name: string) => ({ idempotency: policyOf(runtime.router.routes.find((r) => r.name === name)!, IdempotencyPolicy) });
  assert.equal(route('inherits').idempotency?.settings.required, true);
  assert.equal(route('inherits').idempotency?.settings.ttlMs, 3_600_000);
  assert.equal(route('off').idempotency, undefined);
  assert.equal(route('own').idempotency?.settings.required, false, 'not merged: the route\'s own mapping gets the schema defaults');
  assert.equal(route('own').idempotency?.settings.ttlMs, 300_000);
  pools.destroyAll();
});

// ---------- claim decisions, on a memory store whose clock the test moves ----------

/** `budget`: the route is rate limited, with this many units, and the first claim is made with the charge, as the pipeline does. */
type Decision = { kind: 'proceed'; claim: Claim } | { kind: 'replay'; record: { body: string } } | { kind: 'refused' };

function harness(overrides: Partial<IdempotencySettings> = {}, budget?: number) {
  let time = 1_000_000;
  const store = new MemoryStore({ maxEntries: 1000, maxBytes: 1024 * 1024, clock: () => time });
  const metrics = new GatewayMetrics();
  const settings = parseConfig(CONFIG('{required: true, ttl: 1h, lease: 1s}'), 'f.yaml', {}).routes[0]!.idempotency as IdempotencySettings;
  const policy = compileIdempotency({ ...settings, ...overrides }, 'r', { store, keyPrefix: 'unit', metrics, logger: pino({ level: 'silent' }), requestBodyIdleMs: 10_000 })!;
  const bucket = { key: 'unit:{c}:rl:b', capacity: budget ?? 0, perMs: 3_600_000 };
  /** One request through the policy's steps as the pipeline takes it: onRequest, then the store batch (with a charge on a rate-limited route). */
  const begin = async (key: string, body = '{}'): Promise<Decision> => {
    const req = Object.assign(new PassThrough(), {
      method: 'POST',
      url: '/r',
      headers: { 'content-length': String(Buffer.byteLength(body)) },
      rawHeaders: ['Content-Length', String(Buffer.byteLength(body)), 'Idempotency-Key', key],
    });
    req.end(body);
    const ctx = { requestId: 'req', consumer: { id: 'c', source: 'test' }, outcome: 'ok', responseHeaders: {} } as unknown as RequestContext;
    const ex = new Exchange(req as unknown as IncomingMessage, { destroyed: false } as ServerResponse, ctx);
    let claim: Claim | undefined;
    const use = ex.use.bind(ex);
    ex.use = (hooks: RequestHooks) => {
      if (hooks instanceof Claim) claim = hooks;
      use(hooks);
    };
    const opened = await policy.onRequest(ex);
    if (opened.kind === 'refuse') throw opened.error;
    assert.equal(opened.kind, 'continue');
    let overBudget = false;
    if (budget !== undefined) {
      ex.batch.addCharge([bucket], 1, (reply) => {
        overBudget = reply.kind === 'charged' && !reply.result.allowed;
        return overBudget ? refuse(new GatewayError('RATE_LIMITED', 'over budget')) : CONTINUE;
      });
    }
    const verdict = await ex.batch.commit(store);
    if (overBudget) return { kind: 'refused' };
    if (verdict.kind === 'refuse') throw verdict.error;
    if (verdict.kind === 'respond') {
      let sent: Buffer | undefined;
      verdict.write({ req: { method: 'POST' }, setHeader() {}, end: (b: Buffer) => (sent = b) } as unknown as ServerResponse);
      return { kind: 'replay', record: { body: sent!.toString('base64') } };
    }
    assert.equal(verdict.kind, 'continue');
    assert.ok(claim, 'a request that proceeds holds a claim');
    return { kind: 'proceed', claim };
  };
  const code = async (decision: Promise<Decision>) => {
    try {
      return (await decision).kind;
    } catch (err) {
      assert.ok(err instanceof GatewayError, String(err));
      return err.code;
    }
  };
  const events = async () => Object.fromEntries((await metrics.idempotencyEvents.get()).values.map((v) => [v.labels.event, v.value]));
  return { store, begin, code, events, advance: (ms: number) => (time += ms) };
}

test('a claim is exclusive while its lease runs, and a lapsed one resolves by on_outcome_unknown: block', async () => {
  const h = harness();
  const first = await h.begin('k');
  assert.equal(first.kind, 'proceed');
  const claim = (first as { claim: Claim }).claim;
  assert.equal(await h.code(h.begin('k')), 'IDEMPOTENCY_IN_PROGRESS');
  assert.equal(await h.code(h.begin('k', '{"other":1}')), 'IDEMPOTENCY_KEY_REUSED', 'the fingerprint is checked first');
  // The claim's gateway goes silent (no renewal reaches the store) and the lease lapses.
  claim['stop']();
  h.advance(1_001);
  assert.equal(await h.code(h.begin('k')), 'IDEMPOTENCY_OUTCOME_UNKNOWN');
  h.advance(60_000);
  assert.equal(await h.code(h.begin('k')), 'IDEMPOTENCY_OUTCOME_UNKNOWN', 'blocked until the record expires');
  h.advance(3_600_000);
  assert.equal(await h.code(h.begin('k')), 'proceed', 'the record expired with its ttl');
  const events = await h.events();
  assert.equal(events.unknown_outcome, 1);
  assert.equal(events.blocked, 2);
});

test('a lapsed claim under on_outcome_unknown: release is taken over by exactly one retry', async () => {
  const h = harness({ on_outcome_unknown: 'release' });
  const first = (await h.begin('k')) as { claim: Claim };
  first.claim['stop']();
  h.advance(1_001);
  const retries = await Promise.all([h.begin('k'), h.begin('k'), h.begin('k')].map((d) => h.code(d)));
  assert.deepEqual(retries.sort(), ['IDEMPOTENCY_IN_PROGRESS', 'IDEMPOTENCY_IN_PROGRESS', 'proceed']);
});

test('renewal keeps a long call in progress past its lease', async () => {
  const h = harness({ lease: '60ms' });
  const first = (await h.begin('k')) as { claim: Claim };
  for (let i = 0; i < 5; i++) {
    // Real time passes for the renewal timer while the store's clock moves on with it.
    await new Promise((resolve) => setTimeout(resolve, 30));
    h.advance(30);
  }
  assert.equal(await h.code(h.begin('k')), 'IDEMPOTENCY_IN_PROGRESS', '150 ms after a 60 ms lease, still in progress');
  first.claim.settle({ kind: 'failed', reachedUpstream: false, error: new GatewayError('UPSTREAM_UNAVAILABLE', 'refused') });
  await first.claim.recorded();
  assert.equal(await h.code(h.begin('k')), 'proceed', 'released: nothing reached the upstream');
});

test('a client that leaves releases its key only when nothing had been sent upstream', async () => {
  const h = harness();
  const unsent = (await h.begin('k1')) as { claim: Claim };
  unsent.claim.settle({ kind: 'client_closed', reachedUpstream: false });
  await unsent.claim.recorded();
  assert.equal(await h.code(h.begin('k1')), 'proceed', 'released: the request was never sent');
  const sent = (await h.begin('k2')) as { claim: Claim };
  sent.claim.settle({ kind: 'client_closed', reachedUpstream: true });
  await sent.claim.recorded();
  assert.equal(await h.code(h.begin('k2')), 'IDEMPOTENCY_OUTCOME_UNKNOWN', 'sent, then abandoned: it may have run');
});

test('claimed with the charge: the same decisions from the store\'s one answer, and a refused charge claims nothing', async () => {
  const h = harness({}, 5);
  const first = (await h.begin('k')) as { kind: string; claim: Claim };
  assert.equal(first.kind, 'proceed');
  assert.equal(await h.code(h.begin('k')), 'IDEMPOTENCY_IN_PROGRESS');
  assert.equal(await h.code(h.begin('k', '{"other":1}')), 'IDEMPOTENCY_KEY_REUSED');
  first.claim.settleAnswer(201, { status: 201, headers: { 'content-type': 'application/json' }, body: Buffer.from('{"id":1}') });
  await first.claim.recorded();
  const replay = await h.begin('k');
  assert.equal(replay.kind, 'replay');
  assert.equal(Buffer.from((replay as { record: { body: string } }).record.body, 'base64').toString(), '{"id":1}');
  assert.equal(await h.code(h.begin('fresh')), 'proceed', 'the fifth unit');
  const entries = h.store.size;
  assert.equal(await h.code(h.begin('over-budget')), 'refused');
  assert.equal(h.store.size, entries, 'the refused request left no claim behind');
});

test('claimed with the charge: a lapsed lease is met with the prepared record, and resolves by on_outcome_unknown', async () => {
  for (const onOutcomeUnknown of ['block', 'release'] as const) {
    const h = harness({ on_outcome_unknown: onOutcomeUnknown }, 100);
    const first = (await h.begin('k')) as { claim: Claim };
    first.claim['stop']();
    h.advance(1_001);
    if (onOutcomeUnknown === 'block') {
      assert.equal(await h.code(h.begin('k')), 'IDEMPOTENCY_OUTCOME_UNKNOWN');
    } else {
      const retries = await Promise.all([h.begin('k'), h.begin('k'), h.begin('k')].map((d) => h.code(d)));
      assert.deepEqual(retries.sort(), ['IDEMPOTENCY_IN_PROGRESS', 'IDEMPOTENCY_IN_PROGRESS', 'proceed'], 'exactly one takes the claim over');
    }
  }
});

test('a body over max_body_bytes is refused before any claim', async () => {
  const h = harness({ max_body_bytes: '10b' });
  assert.equal(await h.code(h.begin('k', 'x'.repeat(11))), 'PAYLOAD_TOO_LARGE');
  assert.equal(h.store.size, 0);
});

// The memory store's bounds through the real gateway: other agents' traffic never evicts a record, and a full records part says so (503, or not replayable), never a second execution.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { startTestGateway, configYaml, type TestGateway } from './helpers/gateway.ts';
import { startUpstream, type TestUpstream } from './helpers/upstream.ts';
import { send, type Reply } from './helpers/http.ts';
import { eventsOf, expectError, expectFresh, expectReplayOf, freshKey, post } from './helpers/idempotency.ts';
import type { MemoryStore } from '../src/store/memory.ts';

/** Executions per request body: every test request sends a body of its own, so this counts each request's executions. */
const executions = new Map<string, number>();

/** A create endpoint that is not idempotent, answering `size` bytes (plus a small JSON head) with a new id each time. */
function answering(size: number) {
  let serial = 0;
  return (_req: IncomingMessage, res: ServerResponse, body: Buffer): void => {
    executions.set(body.toString(), (executions.get(body.toString()) ?? 0) + 1);
    const text = JSON.stringify({ id: `ord_${++serial}`, padding: 'p'.repeat(size) });
    res.writeHead(201, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), location: `/orders/ord_${serial}` });
    res.end(text);
  };
}

let upstream: TestUpstream;

before(async () => {
  upstream = await startUpstream({
    'POST /small': answering(100),
    'POST /large': answering(700 * 1024),
    'POST /limited': answering(100),
    'GET /plain': answering(100),
    'POST /too-large': answering(200 * 1024),
  });
});

after(() => upstream.close());

function gatewayConfig(memory: string): string {
  return configYaml(`store:
  type: memory
${memory}upstreams:
  u: {url: '${upstream.url}', timeout: 5s}
rate_limits:
  agents: {capacity: 1000, per: 60s}
routes:
  - {name: small, match: {methods: [POST], path: /small}, upstream: u, idempotency: {required: true, ttl: 1h, on_store_error: fail_open}}
  - {name: large, match: {methods: [POST], path: /large}, upstream: u, idempotency: {required: true, ttl: 1h}}
  - {name: too-large, match: {methods: [POST], path: /too-large}, upstream: u, idempotency: {required: true, ttl: 1h}}
  - {name: limited, match: {methods: [POST], path: /limited}, upstream: u, rate_limit: agents, idempotency: {required: true, ttl: 1h, on_store_error: fail_open}}
  - {name: plain, match: {methods: [GET], path: /plain}, upstream: u, rate_limit: agents}
`);
}

const agent = (id: string) => ({ 'x-agent-id': id });
let serial = 0;
/** A request body no other request sends. */
const body = (label: string) => JSON.stringify({ request: `${label}-${++serial}` });

describe('idempotency records on the memory store, with the default bounds', { timeout: 120_000 }, () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startTestGateway(gatewayConfig(''));
  });
  after(() => gw?.close());

  test('80 writes with 700 KB answers from other agents never evict an earlier completed record: its retry is replayed, not run again', async () => {
    const earlierKey = freshKey();
    const earlierBody = body('earlier');
    const original = await post(`${gw.url}/small`, earlierKey, earlierBody, agent('first-agent'));
    assert.equal(original.status, 201);
    expectFresh(original);

    // The scenario: large answers, together more than the records part holds (64 MB by default). Each counts
    // about 1 MB (base64 in JSON, times the heap-to-RSS factor), so 80 of them overflow it.
    const writes = 80;
    const others: { key: string; body: string; agent: Record<string, string>; reply: Reply }[] = [];
    for (let i = 0; i < writes; i++) {
      const key = freshKey();
      const sent = body('large');
      const reply = await post(`${gw.url}/large`, key, sent, agent(`other-agent-${i % 8}`));
      assert.equal(reply.status, 201, `write ${i}: ${reply.text.slice(0, 300)}`);
      assert.equal(reply.body.length > 700 * 1024, true, 'the first caller always gets the whole answer');
      others.push({ key, body: sent, agent: agent(`other-agent-${i % 8}`), reply });
    }

    const retry = await post(`${gw.url}/small`, earlierKey, earlierBody, agent('first-agent'));
    expectReplayOf(retry, original);
    assert.equal(executions.get(earlierBody), 1, 'the earlier write ran once');

    // Nor did any of the others disappear: each retry is a replay or, for the answers that no longer fitted, a refusal
    // saying the first request completed. None runs again.
    let notReplayable = 0;
    for (const other of others) {
      const again = await post(`${gw.url}/large`, other.key, other.body, other.agent);
      if (again.status === 409) {
        const envelope = expectError(again, 409, 'IDEMPOTENCY_OUTCOME_UNKNOWN', false);
        assert.deepEqual([envelope.reason, envelope.original_status], ['response_too_large', 201]);
        assert.match(envelope.detail, /completed with status 201/);
        notReplayable++;
      } else {
        expectReplayOf(again, other.reply);
      }
      assert.equal(executions.get(other.body), 1, 'every write ran exactly once');
    }
    assert.ok(notReplayable > 0 && notReplayable < writes, `${notReplayable} of ${writes} answers were too large for the room left`);
    assert.equal((await eventsOf(gw.adminUrl, 'large')).not_replayable, notReplayable, 'each one counted');
    const { records } = (gw.gateway.store as MemoryStore).stats();
    assert.ok(records.bytes <= records.maxBytes && records.evictions === 0, JSON.stringify(records));
  });
});

describe('idempotency records on the memory store, with a small budgets bound', { timeout: 60_000 }, () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startTestGateway(gatewayConfig('  memory: {max_entries: 20}\n'));
  });
  after(() => gw?.close());

  test('the budgets of 100 agents evict one another, never a record', async () => {
    const key = freshKey();
    const sent = body('limited');
    const original = await post(`${gw.url}/limited`, key, sent, agent('keeper'));
    assert.equal(original.status, 201);
    for (let i = 0; i < 100; i++) assert.equal((await send(`${gw.url}/plain`, { headers: agent(`budget-agent-${i}`) })).status, 201);
    const store = gw.gateway.store as MemoryStore;
    const { budgets, records } = store.stats();
    assert.ok(budgets.entries <= 20 && budgets.evictions >= 80, JSON.stringify(budgets));
    expectReplayOf(await post(`${gw.url}/limited`, key, sent, agent('keeper')), original);
    assert.equal(executions.get(sent), 1, 'the write ran once');
    assert.deepEqual([records.entries, records.evictions], [1, 0]);
  });
});

describe('idempotency records on the memory store, with a small records bound', { timeout: 60_000 }, () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startTestGateway(gatewayConfig('  memory:\n    records: {max_entries: 3, max_bytes: 256kb}\n'));
  });
  after(() => gw?.close());

  test('an answer too large for the room left is kept as not replayable: its retry gets 409 IDEMPOTENCY_OUTCOME_UNKNOWN, never a second execution', async () => {
    const key = freshKey();
    const sent = body('too-large');
    const first = await post(`${gw.url}/too-large`, key, sent, agent('a'));
    assert.equal(first.status, 201);
    assert.ok(first.body.length > 200 * 1024, 'the first caller gets the whole answer');
    const retry = await post(`${gw.url}/too-large`, key, sent, agent('a'));
    const envelope = expectError(retry, 409, 'IDEMPOTENCY_OUTCOME_UNKNOWN', false);
    assert.deepEqual([envelope.reason, envelope.original_status], ['response_too_large', 201]);
    assert.match(envelope.detail, /completed with status 201, but its response was too large to keep/);
    assert.equal(executions.get(sent), 1);
    assert.equal((await eventsOf(gw.adminUrl, 'too-large')).not_replayable, 1);
    const warning = gw.logs.lines.find((l) => l.level === 'warn' && /idempotency store full/.test(String(l.msg)) && l.idempotency_key_hash);
    assert.ok(warning, 'the lost answer is logged');
  });

  test('with the records part full, a new key gets 503 STORE_UNAVAILABLE (fail_open or not) and is not forwarded; the records there are still replayed', async () => {
    const store = gw.gateway.store as MemoryStore;
    const kept: { key: string; body: string; reply: Reply }[] = [];
    while (store.stats().records.entries < 3) {
      const key = freshKey();
      const sent = body('fill');
      const reply = await post(`${gw.url}/small`, key, sent, agent('filler'));
      assert.equal(reply.status, 201);
      kept.push({ key, body: sent, reply });
    }
    const refusalsBefore = store.stats().records.refusals;
    for (const path of ['/small', '/limited']) {
      const sent = body('refused');
      const refused = await post(`${gw.url}${path}`, freshKey(), sent, agent('newcomer'));
      const envelope = expectError(refused, 503, 'STORE_UNAVAILABLE', true);
      assert.match(envelope.detail, /idempotency store is full/);
      assert.match(envelope.suggestion, /Nothing was executed/);
      assert.ok(Number(refused.headers['retry-after']) >= 1, 'Retry-After');
      assert.equal(executions.get(sent), undefined, `${path}: not forwarded, although the route fails open on an outage`);
    }
    for (const record of kept) {
      expectReplayOf(await post(`${gw.url}/small`, record.key, record.body, agent('filler')), record.reply);
      assert.equal(executions.get(record.body), 1);
    }
    assert.equal(store.stats().records.refusals - refusalsBefore, 2, 'one refusal counted per refused request');
    const events = await eventsOf(gw.adminUrl, 'small');
    assert.equal(events.fail_open, undefined, 'a full store is no outage: nothing was forwarded unprotected');
  });
});

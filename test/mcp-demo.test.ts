// The demo (config/gateway.yaml in front of the bundled demo legacy API) driven end to end by the official MCP SDK client
// with the demo's public keys: tools per agent, a read, a write run once under one idempotency_key and replayed, a budget
// spent to its RATE_LIMITED refusal, and a 200 {ok: false} caught as SILENT_FAILURE; the demo API's own counts as witness.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { startLegacyApi, type LegacyApi } from '../src/demo/legacy-api.ts';
import type { TestGateway } from './helpers/gateway.ts';
import { demoKey, startDemo } from './helpers/demo.ts';

/** The tools only an agent holding orders:write may call: the demo's create-order and change-order routes. */
const WRITE_TOOLS = ['create_order', 'delete_customer', 'change_order_post', 'change_order_put', 'change_order_patch', 'change_order_delete'];

/** reporter's budget for the policy 'agents' (config/agents.yaml), refilled continuously over a minute; a read costs 1. */
const REPORTER_CAPACITY = 20;
const REFILL_MS_PER_UNIT = 60_000 / REPORTER_CAPACITY;

interface Order {
  id: string;
  item: string;
  quantity?: number;
  created_at: string;
}

describe('the official MCP SDK client against the demo', () => {
  let api: LegacyApi;
  let gw: TestGateway;
  let demoKeyValue: string;
  let reporterKeyValue: string;
  let demo: Client;
  let reporter: Client;
  const clients: Client[] = [];

  before(async () => {
    api = await startLegacyApi({ port: 0 });
    gw = await startDemo(api.url);
    demoKeyValue = await demoKey('DEMO_KEY');
    reporterKeyValue = await demoKey('REPORTER_KEY');
    demo = await connect(demoKeyValue);
    reporter = await connect(reporterKeyValue);
  });
  after(async () => {
    for (const client of clients) await client.close();
    await gw?.close();
    await api?.close();
  });

  async function connect(key: string): Promise<Client> {
    const client = new Client({ name: 'agentgate-demo-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${key}` } } }));
    clients.push(client);
    return client;
  }

  const call = async (client: Client, name: string, args: Record<string, unknown> = {}) => (await client.callTool({ name, arguments: args })) as CallToolResult;
  const text = (result: CallToolResult, i = 0) => {
    const content = result.content[i];
    assert.equal(content?.type, 'text', `content[${i}] is text: ${JSON.stringify(result)}`);
    return (content as { text: string }).text;
  };

  /** What the demo legacy API has run, by route: only what reaches it is counted. */
  async function executions(): Promise<Record<string, number>> {
    const res = await fetch(`${api.url}/_demo/stats`);
    return ((await res.json()) as { executions: Record<string, number> }).executions;
  }

  /** The orders the demo legacy API holds, asked straight (not through the gateway). */
  async function ordersUpstream(): Promise<Order[]> {
    const res = await fetch(`${api.url}/orders`);
    assert.equal(res.status, 200);
    return ((await res.json()) as { orders: Order[] }).orders;
  }

  /** An order made straight at the demo legacy API (not through the gateway). */
  async function createOrderUpstream(body: Record<string, unknown>): Promise<Order> {
    const res = await fetch(`${api.url}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    assert.equal(res.status, 201);
    return (await res.json()) as Order;
  }

  test('tools/list: demo-agent sees the reads and the writes; reporter, without orders:write, the same less the writes', async () => {
    const demoTools = (await demo.listTools()).tools;
    const names = demoTools.map((t) => t.name);
    for (const name of ['list_orders', 'get_order', 'ledger_status', ...WRITE_TOOLS]) assert.ok(names.includes(name), `${name} in ${names.join(' ')}`);
    assert.equal(new Set(names).size, names.length, 'each tool once');
    const create = demoTools.find((t) => t.name === 'create_order')!;
    assert.ok(create.inputSchema.required?.includes('idempotency_key'), 'the demo route requires an idempotency key');
    assert.ok(create.description?.includes('The body is {"item": "...", "quantity": N}'), "the route's agent.hint");

    const reporterNames = (await reporter.listTools()).tools.map((t) => t.name);
    assert.ok(!reporterNames.includes('create_order'));
    assert.ok(reporterNames.includes('get_order') && reporterNames.includes('list_orders'));
    assert.deepEqual(reporterNames, names.filter((n) => !WRITE_TOOLS.includes(n)), 'the same tools in the same order, less the writes');
  });

  test('a read (get_order) returns the order the demo API holds, read upstream once', async () => {
    const order = await createOrderUpstream({ item: 'sdk-read widget', quantity: 4 });
    const before = (await executions())['GET /orders/{id}'] ?? 0;

    const result = await call(demo, 'get_order', { id: order.id });
    assert.equal(result.isError, undefined, JSON.stringify(result));
    assert.equal(result.content.length, 1);
    assert.deepEqual(JSON.parse(text(result)), order, "the demo API's order, as it gave it");
    assert.equal(result._meta?.['agentgate/status'], 200);
    assert.equal((await executions())['GET /orders/{id}'], before + 1, 'the call reached the demo API once');
  });

  test('create_order twice with one idempotency_key: the demo API creates one order; the second result is a replay of the first', async () => {
    const ordersBefore = await ordersUpstream();
    const postsBefore = (await executions())['POST /orders'] ?? 0;
    const args = { body: { item: 'sdk-idempotent widget', quantity: 2 }, idempotency_key: 'mcp-demo-create-1' };

    const first = await call(demo, 'create_order', args);
    assert.equal(first.isError, undefined, JSON.stringify(first));
    assert.equal(first._meta?.['agentgate/status'], 201);
    assert.equal(first._meta?.['agentgate/replayed'], undefined, 'the first call is not a replay');
    const created = JSON.parse(text(first)) as Order;
    assert.match(created.id, /^ord_\d+$/);
    assert.deepEqual([created.item, created.quantity], ['sdk-idempotent widget', 2]);

    const second = await call(demo, 'create_order', args);
    assert.equal(second.isError, undefined, JSON.stringify(second));
    assert.equal(second._meta?.['agentgate/replayed'], true, JSON.stringify(second._meta));
    assert.equal(second._meta?.['agentgate/status'], 201);
    assert.equal((JSON.parse(text(second)) as Order).id, created.id, 'the same order id');
    assert.deepEqual(second.content, first.content, 'the first answer, as it was');

    assert.equal((await executions())['POST /orders'], postsBefore + 1, 'the demo API ran POST /orders once');
    const ordersAfter = await ordersUpstream();
    assert.equal(ordersAfter.length, ordersBefore.length + 1, 'one order more at the demo API');
    assert.deepEqual(ordersAfter.filter((o) => o.item === 'sdk-idempotent widget'), [created], 'exactly the order the first call returned');
  });

  test('reporter spends its budget of 20 reads; the next call is an isError RATE_LIMITED result saying when to retry, not a thrown error', async () => {
    const order = await createOrderUpstream({ item: 'sdk-budget widget' });
    // Listing tools and the calls of other agents charged reporter nothing: its budget is whole (GET /_agentgate/budget spends none).
    const budget = await fetch(`${gw.url}/_agentgate/budget`, { headers: { authorization: `Bearer ${reporterKeyValue}` } });
    assert.equal(budget.status, 200);
    const agents = ((await budget.json()) as { budgets: { policy: string; capacity: number; remaining: number }[] }).budgets.find((b) => b.policy === 'agents');
    assert.deepEqual([agents?.capacity, agents?.remaining], [REPORTER_CAPACITY, REPORTER_CAPACITY], 'reporter starts with its whole budget');
    const readsBefore = (await executions())['GET /orders/{id}'] ?? 0;

    let successes = 0;
    let refusal: CallToolResult | undefined;
    const started = Date.now();
    // Bounded, so a budget that never runs out fails the test instead of hanging it.
    for (let i = 0; i < REPORTER_CAPACITY * 2 && refusal === undefined; i++) {
      const result = await call(reporter, 'get_order', { id: order.id });
      if (result.isError) refusal = result;
      else {
        assert.deepEqual(JSON.parse(text(result)), order, `read ${i + 1}`);
        successes++;
      }
    }
    const elapsedMs = Date.now() - started;
    assert.ok(refusal, `refused within ${REPORTER_CAPACITY * 2} calls; ${successes} succeeded`);

    // The budget was whole and refills one unit per 3 s: the refusal comes after exactly 20 reads, plus one for each whole
    // 3 s the loop took (none when it is quicker, as it is by far). Both bounds hold whatever the machine's speed.
    const refilled = Math.floor(elapsedMs / REFILL_MS_PER_UNIT);
    assert.ok(successes >= REPORTER_CAPACITY && successes <= REPORTER_CAPACITY + refilled, `${successes} reads before the refusal, in ${elapsedMs} ms`);
    if (refilled === 0) assert.equal(successes, REPORTER_CAPACITY);
    assert.equal((await executions())['GET /orders/{id}'], readsBefore + successes, 'the refused call never reached the demo API');

    const summary = text(refusal);
    assert.match(summary, /^Error RATE_LIMITED \(HTTP 429\)/);
    const after = /Retryable: yes, after (\d+) seconds/.exec(summary);
    assert.ok(after, summary);
    const seconds = Number(after[1]);
    // One unit is missing, and one refills within 3 s.
    assert.ok(seconds > 0 && seconds <= REFILL_MS_PER_UNIT / 1000, `retry after ${seconds} s`);
    const envelope = JSON.parse(text(refusal, 1)) as Record<string, unknown>;
    assert.equal(envelope.code, 'RATE_LIMITED');
    assert.equal(typeof envelope.retry_after_seconds, 'number');
    assert.equal(envelope.retry_after_seconds, seconds, 'the summary and the envelope agree');
    assert.equal(refusal._meta?.['agentgate/status'], 429);
  });

  test('ledger_status: the demo API answers 200 {ok: false, error}; the result is an isError SILENT_FAILURE', async () => {
    const before = (await executions())['GET /status'] ?? 0;
    const result = await call(demo, 'ledger_status');
    assert.equal(result.isError, true, JSON.stringify(result));
    assert.match(text(result), /^Error SILENT_FAILURE \(HTTP 502\)/);
    const envelope = JSON.parse(text(result, 1)) as Record<string, unknown>;
    assert.deepEqual([envelope.code, envelope.rule, envelope.upstream_status], ['SILENT_FAILURE', 'error_fields', 200]);
    assert.equal(result._meta?.['agentgate/status'], 502);
    assert.equal((await executions())['GET /status'], before + 1, 'the call reached the demo API, which answered 200');
  });
});

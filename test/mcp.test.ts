// The MCP endpoint (mcp.path) driven by the official SDK client: tools are the operations the agent may call, and every
// tool call runs through the same pipeline as the agent's HTTP request would (scopes, budgets, idempotency,
// silent-failure checks, the envelope).
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { startUpstream, json, type TestUpstream } from './helpers/upstream.ts';
import { startTestGateway, configYaml, type TestGateway } from './helpers/gateway.ts';
import { send } from './helpers/http.ts';
import { keyHash, newKey } from '../src/agents/keys.ts';

const writerKey = newKey();
const readerKey = newKey();

const AGENTS = `agents:
  - id: writer
    keys: ['${keyHash(writerKey)}']
    scopes: [orders:read, orders:write]
  - id: reader
    keys: ['${keyHash(readerKey)}']
    scopes: [orders:read]
`;

const SPEC = `openapi: 3.0.3
info: {title: Orders, version: '1'}
paths:
  /orders:
    post:
      operationId: create_order
      summary: Create an order
      requestBody: {required: true, content: {application/json: {schema: {$ref: '#/components/schemas/NewOrder'}}}}
      responses:
        '201': {description: created, content: {application/json: {schema: {$ref: '#/components/schemas/Order'}}}}
  /orders/{id}:
    get:
      operationId: get_order
      summary: Read an order
      parameters: [{name: id, in: path, required: true, schema: {type: string}}]
      responses:
        '200': {description: the order, content: {application/json: {schema: {$ref: '#/components/schemas/Order'}}}}
components:
  schemas:
    NewOrder: {type: object, required: [sku], properties: {sku: {type: string}, note: {type: string, nullable: true}}}
    Order: {type: object, required: [id], properties: {id: {type: integer}, sku: {type: string}, parent: {$ref: '#/components/schemas/Order'}}}
`;

const CONFIG = (upstreamUrl: string) =>
  configYaml(`consumers:
  authenticate: {api_keys: {file: agents.yaml}}
upstreams: {api: {url: '${upstreamUrl}'}}
rate_limits:
  agents: {capacity: 1000, per: 1h}
  tiny: {capacity: 2, per: 1h}
defaults: {rate_limit: agents}
openapi: {spec: legacy.yaml}
mcp: {path: /mcp}
routes:
  - {name: create-order, match: {methods: [POST], path: /orders}, upstream: api, scopes: [orders:write], idempotency: {required: true, ttl: 1h}}
  - {name: get-order, match: {methods: [GET], path: '/orders/{id}'}, upstream: api, scopes: [orders:read]}
  - {name: scarce, match: {methods: [GET], path: /scarce}, upstream: api, scopes: [orders:read], rate_limit: tiny, cost: 1}
  - {name: report, match: {methods: [GET], path: /report}, upstream: api, scopes: [orders:read]}
  - {name: flaky, match: {methods: [GET], path: /flaky}, upstream: api, scopes: [orders:read], silent_failure: {error_fields: [{pointer: /ok, equals: false}]}}
`);

describe('the MCP endpoint', () => {
  let upstream: TestUpstream;
  let gw: TestGateway;
  let created = 0;
  const clients: Client[] = [];

  before(async () => {
    upstream = await startUpstream({
      'POST /orders': (_req, res, body) => json(res, 201, { id: ++created, sku: JSON.parse(body.toString()).sku }),
      '/scarce': (_req, res) => json(res, 200, { ok: true }),
      '/flaky': (_req, res) => json(res, 200, { ok: false, message: 'nothing was done' }),
      '/report': (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/csv' });
        res.end(`id,total\n${'1,3\n'.repeat(30_000)}`);
      },
      '*': (req, res) => json(res, 200, { id: 7, sku: 'seen ' + req.url }),
    });
    gw = await startTestGateway(CONFIG(upstream.url), { files: { 'agents.yaml': AGENTS, 'legacy.yaml': SPEC } });
  });
  after(async () => {
    for (const client of clients) await client.close();
    await gw.close();
    await upstream.close();
  });

  async function connect(headers: Record<string, string>): Promise<Client> {
    const client = new Client({ name: 'agentgate-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), { requestInit: { headers } }));
    clients.push(client);
    return client;
  }
  const text = (result: CallToolResult, i = 0) => (result.content[i] as { text: string }).text;

  test('tools/list: one tool per operation the agent may call, with schemas a draft-07 client compiles and annotations', async () => {
    const reader = await connect({ authorization: `Bearer ${readerKey}` });
    const names = (await reader.listTools()).tools.map((t) => t.name).sort();
    assert.deepEqual(names, ['flaky', 'get_order', 'report', 'scarce'], 'create_order needs orders:write');
    const writer = await connect({ 'x-agent-key': writerKey });
    const tools = (await writer.listTools()).tools;
    const create = tools.find((t) => t.name === 'create_order')!;
    assert.deepEqual(create.inputSchema.required, ['body', 'idempotency_key']);
    assert.ok(create.description!.includes('idempotency_key'));
    assert.deepEqual(create.annotations, { title: 'Create an order', readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true });
    const get = tools.find((t) => t.name === 'get_order')!;
    assert.equal(get.annotations?.readOnlyHint, true);
    assert.equal(get.outputSchema?.type, 'object');
    assert.ok(JSON.stringify(get.outputSchema).includes('#/$defs/Order'), 'the recursive schema is referred to in $defs');
  });

  test('a read: structuredContent and its text', async () => {
    const client = await connect({ authorization: `Bearer ${readerKey}` });
    const result = (await client.callTool({ name: 'get_order', arguments: { id: '42' } })) as CallToolResult;
    assert.equal(result.isError, undefined);
    assert.deepEqual(result.structuredContent, { id: 7, sku: 'seen /orders/42' });
    assert.deepEqual(JSON.parse(text(result)), result.structuredContent);
    const seen = upstream.received.at(-1)!;
    assert.equal(seen.headers.authorization, undefined, "the agent's key never reaches the upstream");
    assert.equal(seen.headers['x-agentgate-mcp-client'], undefined, 'the internal header is stripped');
  });

  test('a write twice with one idempotency_key runs once; the second is a replay of the first', async () => {
    const client = await connect({ authorization: `Bearer ${writerKey}` });
    const before = upstream.received.filter((r) => r.method === 'POST').length;
    const args = { body: { sku: 'abc' }, idempotency_key: 'order-abc-1' };
    const first = (await client.callTool({ name: 'create_order', arguments: args })) as CallToolResult;
    const second = (await client.callTool({ name: 'create_order', arguments: args })) as CallToolResult;
    assert.equal(upstream.received.filter((r) => r.method === 'POST').length, before + 1);
    assert.deepEqual(second.structuredContent, first.structuredContent);
    assert.deepEqual(second.content, first.content);
    assert.equal(second._meta?.['agentgate/replayed'], true);
    assert.equal(first._meta?.['agentgate/replayed'], undefined);
  });

  test('arguments that fail the input schema, and an unknown tool, are JSON-RPC errors; nothing is forwarded', async () => {
    const client = await connect({ authorization: `Bearer ${writerKey}` });
    const before = upstream.received.length;
    await assert.rejects(client.callTool({ name: 'create_order', arguments: { body: { sku: 'x' } } }), (err: McpError) => err.code === -32602 && /idempotency_key/.test(err.message));
    await assert.rejects(client.callTool({ name: 'no_such_tool', arguments: {} }), (err: McpError) => err.code === -32602 && /Unknown tool/.test(err.message));
    for (const key of ['k\r\nX-Injected: 1', 'k\u00e9', 'k'.repeat(256)]) {
      await assert.rejects(
        client.callTool({ name: 'create_order', arguments: { body: { sku: 'x' }, idempotency_key: key } }),
        (err: McpError) => err.code === -32602 && /idempotency_key/.test(err.message),
        JSON.stringify(key.slice(0, 20)),
      );
    }
    assert.equal(upstream.received.length, before);
  });

  test('an exhausted budget is an isError result that says when to retry; the client does not throw', async () => {
    const client = await connect({ authorization: `Bearer ${readerKey}` });
    let result: CallToolResult | undefined;
    for (let i = 0; i < 3; i++) result = (await client.callTool({ name: 'scarce', arguments: {} })) as CallToolResult;
    assert.equal(result!.isError, true);
    assert.match(text(result!), /RATE_LIMITED/);
    assert.match(text(result!), /Retryable: yes, after \d+ seconds/);
    assert.equal(JSON.parse(text(result!, 1)).code, 'RATE_LIMITED');
  });

  test('an error of a tool with an outputSchema carries no structuredContent, so the official client reports it (typescript-sdk #1943)', async () => {
    // The writer lacks nothing, the reader lacks orders:write: the pipeline's scopes policy answers the call.
    const client = await connect({ authorization: `Bearer ${readerKey}` });
    const result = (await client.callTool({ name: 'create_order', arguments: { body: { sku: 'x' }, idempotency_key: 'k-1' } })) as CallToolResult;
    assert.equal(result.isError, true);
    assert.equal(result.structuredContent, undefined);
    assert.match(text(result), /^Error \w+ \(HTTP 403\)/);
  });

  test('an answer that is not JSON comes back as text, bounded, saying that it was cut', async () => {
    const client = await connect({ authorization: `Bearer ${readerKey}` });
    const result = (await client.callTool({ name: 'report', arguments: {} })) as CallToolResult;
    assert.equal(result.isError, undefined);
    assert.equal(result.structuredContent, undefined);
    const [body, note] = text(result).split('\n[truncated: ');
    assert.equal(body!.length, 64 * 1024);
    assert.ok(body!.startsWith('id,total\n1,3\n1,3\n'));
    assert.match(note!, /longer than 65536 characters; ask for less/);
  });

  test('a silent failure is an isError result', async () => {
    const client = await connect({ authorization: `Bearer ${readerKey}` });
    const result = (await client.callTool({ name: 'flaky', arguments: {} })) as CallToolResult;
    assert.equal(result.isError, true);
    assert.match(text(result), /SILENT_FAILURE|UPSTREAM/);
  });

  test('a path parameter with /, .. or an encoded separator stays one segment of the operation path, or is refused', async () => {
    const client = await connect({ authorization: `Bearer ${readerKey}` });
    const before = upstream.received.length;
    for (const id of ['..', '.', '']) {
      await assert.rejects(client.callTool({ name: 'get_order', arguments: { id } }), (err: McpError) => err.code === -32602 && /path parameter 'id'/.test(err.message), `'${id}'`);
    }
    for (const id of ['../x', 'a/b', '%2F..%2Fscarce', '..%2f..%2fflaky', 'a b?c=d#e']) {
      const result = (await client.callTool({ name: 'get_order', arguments: { id } })) as CallToolResult;
      if (result.isError) assert.match(text(result), /INVALID_REQUEST|ROUTE_NOT_FOUND/, `${id}: ${text(result)}`);
    }
    for (const seen of upstream.received.slice(before)) {
      assert.match(seen.url, /^\/orders\/[^/?]+$/, `${seen.url} is one segment under /orders`);
      assert.ok(!seen.url.startsWith('/orders/..') || seen.url.includes('%'), seen.url);
    }
  });

  test('without a credential the MCP request is refused with the usual 401 envelope', async () => {
    const reply = await send(`${gw.url}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    assert.equal(reply.status, 401);
    assert.match(String(reply.headers['content-type']), /problem\+json/);
    await assert.rejects(connect({}));
  });

  test('malformed JSON-RPC and a GET get the protocol\'s errors; the gateway keeps serving', async () => {
    const headers = { authorization: `Bearer ${readerKey}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    const malformed = await send(`${gw.url}/mcp`, { method: 'POST', headers, body: '{"jsonrpc": "2.0", "id": 1, "method"' });
    assert.equal(malformed.status, 400);
    assert.equal(JSON.parse(malformed.text).error.code, -32700);
    const notRpc = await send(`${gw.url}/mcp`, { method: 'POST', headers, body: '{"hello": "world"}' });
    assert.equal(notRpc.status, 400);
    const get = await send(`${gw.url}/mcp`, { headers: { authorization: `Bearer ${readerKey}`, accept: 'text/event-stream' } });
    assert.equal(get.status, 405);
    const client = await connect({ authorization: `Bearer ${readerKey}` });
    assert.ok((await client.listTools()).tools.length > 0);
  });

  test('bad messages get the protocol\'s errors and forward nothing: oversized, unknown methods, wrong media types and versions, wrong argument types', async () => {
    const headers = { authorization: `Bearer ${readerKey}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    const post = (body: string | Buffer, extra: Record<string, string> = {}) => send(`${gw.url}/mcp`, { method: 'POST', headers: { ...headers, ...extra }, body });
    const call = (id: number, name: string, args: unknown) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });
    const forwardedBefore = upstream.received.length;

    const oversized = await post(JSON.stringify(call(1, 'get_order', { id: 'x'.repeat(5 * 1024 * 1024) })));
    assert.equal(oversized.status, 413);
    assert.match(oversized.json().error.message, /must not exceed \d+ bytes/);

    const unknownMethod = await post(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'resources/list' }));
    assert.equal(unknownMethod.json().error.code, -32601, unknownMethod.text);

    const noAccept = await post(JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/list' }), { accept: 'application/json' });
    assert.equal(noAccept.status, 406);
    assert.match(noAccept.json().error.message, /text\/event-stream/);

    const notJson = await post(JSON.stringify({ jsonrpc: '2.0', id: 4, method: 'tools/list' }), { 'content-type': 'text/plain' });
    assert.equal(notJson.status, 415);

    const unknownVersion = await post(JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'tools/list' }), { 'mcp-protocol-version': '1999-01-01' });
    assert.equal(unknownVersion.status, 400);
    assert.match(unknownVersion.json().error.message, /Unsupported protocol version: 1999-01-01 \(supported versions: /);
    // Without the header, a stateless server takes the request as the version it would have negotiated.
    const noVersion = await post(JSON.stringify({ jsonrpc: '2.0', id: 6, method: 'tools/list' }));
    assert.ok(noVersion.json().result.tools.length > 0);

    const wrongTypes = await post(JSON.stringify(call(7, 'get_order', { id: 42 })));
    assert.equal(wrongTypes.json().error.code, -32602);
    assert.match(wrongTypes.json().error.message, /Invalid arguments for tool 'get_order': \/id must be string/);
    const notAnObject = await post(JSON.stringify(call(8, 'get_order', ['x'])));
    assert.equal(notAnObject.json().error.code, -32602, notAnObject.text);
    assert.match(notAnObject.json().error.message, /Invalid tools\/call request: .*arguments/s);

    assert.equal(upstream.received.length, forwardedBefore, 'nothing was forwarded');
    const client = await connect({ authorization: `Bearer ${readerKey}` });
    assert.ok((await client.listTools()).tools.length > 0, 'the gateway keeps serving');
  });

  test('a batch (protocol 2025-03-26) runs each call through the pipeline once; more than 100 messages are refused whole', async () => {
    const headers = { authorization: `Bearer ${readerKey}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-03-26' };
    const call = (id: number, orderId: string) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'get_order', arguments: { id: orderId } } });
    const forwardedBefore = upstream.received.length;
    const batch = await send(`${gw.url}/mcp`, { method: 'POST', headers, body: JSON.stringify([call(1, 'b-1'), call(2, 'b-2')]) });
    assert.equal(batch.status, 200, batch.text);
    const replies = batch.json() as { id: number; result: CallToolResult }[];
    assert.deepEqual(replies.map((r) => r.id).sort(), [1, 2]);
    assert.deepEqual(upstream.received.slice(forwardedBefore).map((r) => r.url).sort(), ['/orders/b-1', '/orders/b-2']);
    const requestIds = upstream.received.slice(forwardedBefore).map((r) => r.headers['x-request-id']);
    assert.equal(new Set(requestIds).size, 2, 'each call is its own request, with its own request id');

    const tooMany = await send(`${gw.url}/mcp`, { method: 'POST', headers, body: JSON.stringify(Array.from({ length: 101 }, (_, i) => call(i, `c-${i}`))) });
    assert.equal(tooMany.status, 400);
    assert.equal(tooMany.json().error.code, -32600);
    assert.equal(upstream.received.length, forwardedBefore + 2, 'nothing of the refused batch was forwarded');
  });

  test('the tools and the OpenAPI document agree: the same operations, parameters, Idempotency-Key and Approval-Id rules, for each agent', async () => {
    for (const key of [readerKey, writerKey]) {
      const doc = (await send(`${gw.url}/_agentgate/openapi.json`, { headers: { authorization: `Bearer ${key}` } })).json();
      type DocumentedOperation = { operationId: string; parameters?: { name: string; in: string; required?: boolean; schema?: { pattern?: string } }[] };
      const operations = new Map<string, DocumentedOperation>();
      for (const item of Object.values(doc.paths) as Record<string, DocumentedOperation>[]) {
        for (const [method, op] of Object.entries(item)) if (['get', 'post', 'put', 'patch', 'delete'].includes(method)) operations.set(op.operationId, op);
      }
      const client = await connect({ authorization: `Bearer ${key}` });
      const tools = (await client.listTools()).tools;
      assert.deepEqual(tools.map((t) => t.name).sort(), [...operations.keys()].sort(), 'one tool per operation the agent may call');
      for (const tool of tools) {
        const parameters = operations.get(tool.name)!.parameters ?? [];
        const idempotencyKey = parameters.find((p) => p.in === 'header' && p.name.toLowerCase() === 'idempotency-key');
        const properties = Object.keys(tool.inputSchema.properties ?? {});
        assert.equal(properties.includes('idempotency_key'), idempotencyKey !== undefined, `${tool.name}: idempotency_key where the document has Idempotency-Key`);
        assert.equal((tool.inputSchema.required ?? []).includes('idempotency_key'), idempotencyKey?.required === true, `${tool.name}: required alike`);
        // An approval route's tools and operations (test/mcp-approvals.test.ts has some): approval_id is the Approval-Id header.
        const approvalId = parameters.find((p) => p.in === 'header' && p.name.toLowerCase() === 'approval-id');
        assert.equal(properties.includes('approval_id'), approvalId !== undefined, `${tool.name}: approval_id where the document has Approval-Id`);
        assert.equal((tool.inputSchema.properties?.approval_id as { pattern?: string } | undefined)?.pattern, approvalId?.schema?.pattern, `${tool.name}: the same pattern`);
        assert.ok(!(tool.inputSchema.required ?? []).includes('approval_id') && approvalId?.required !== true, `${tool.name}: optional in both`);
        for (const p of parameters.filter((p) => p.in === 'path' || p.in === 'query')) assert.ok(properties.includes(p.name), `${tool.name}: ${p.in} parameter ${p.name}`);
      }
    }
  });

  test('the internal client-address header from a caller is stripped, never believed or forwarded', async () => {
    const reply = await send(`${gw.url}/orders/9`, { headers: { authorization: `Bearer ${readerKey}`, 'x-agentgate-mcp-client': `${'0'.repeat(64)} 203.0.113.9` } });
    assert.equal(reply.status, 200);
    const seen = upstream.received.at(-1)!;
    assert.equal(seen.headers['x-agentgate-mcp-client'], undefined);
    assert.ok(!String(seen.headers['x-forwarded-for']).includes('203.0.113.9'));
  });
});

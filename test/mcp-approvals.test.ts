// Approvals through the agent-facing contract: MCP tools of approval routes take approval_id and say in plain words what
// to do next (confirm, wait for a person, give up), driven by the official SDK client; the OpenAPI document says the same
// (x-agentgate-approval, the Approval-Id header, the APPROVAL_* answers) and stays valid OpenAPI 3.1.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { startUpstream, json, type TestUpstream } from './helpers/upstream.ts';
import { startTestGateway, type TestGateway } from './helpers/gateway.ts';
import { send } from './helpers/http.ts';
import { APPROVAL_ID_PATTERN } from '../src/approvals/record.ts';
import { ADMIN_TOKEN, alice, mallory, AGENTS, approvalsConfig } from './helpers/approvals.ts';



const CONFIG = (upstreamUrl: string) =>
  approvalsConfig(
    upstreamUrl,
    `mcp: {path: /mcp}
routes:
  - name: delete-customer
    match: {methods: [DELETE], path: '/customers/{id}'}
    upstream: crm
    approval: {by: human, ttl: 15m}
  - name: get-customer
    match: {methods: [GET], path: '/customers/{id}'}
    upstream: crm
  - name: refund
    match: {methods: [POST], path: /refunds}
    upstream: crm
    idempotency: {required: false, ttl: 1h}
    approval: {by: agent, ttl: 10m}
`);

const ID = /approval_id "(apr_[A-Za-z0-9_-]{22})"/;

describe('approvals through MCP and the OpenAPI document', () => {
  let upstream: TestUpstream;
  let gw: TestGateway;
  const clients: Client[] = [];

  before(async () => {
    upstream = await startUpstream({
      '*': (req, res, body) => json(res, req.method === 'POST' ? 201 : 200, { done: `${req.method} ${req.url}`, body: body.toString() }),
    });
    gw = await startTestGateway(CONFIG(upstream.url), { files: { 'agents.yaml': AGENTS }, env: { ...process.env, ADMIN_TOKEN } });
  });
  after(async () => {
    for (const client of clients) await client.close();
    await gw.close();
    await upstream.close();
  });

  async function connect(key = alice): Promise<Client> {
    const client = new Client({ name: 'agentgate-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${key}` } } }));
    clients.push(client);
    return client;
  }
  const call = async (client: Client, name: string, args: Record<string, unknown>) => (await client.callTool({ name, arguments: args })) as CallToolResult;
  const text = (result: CallToolResult, i = 0) => (result.content[i] as { text: string }).text;
  const envelope = (result: CallToolResult) => JSON.parse(text(result, 1));
  /** How often the upstream received exactly this request. */
  const received = (method: string, url: string, body?: string) =>
    upstream.received.filter((r) => r.method === method && r.url === url && (body === undefined || r.body.toString() === body)).length;
  const admin = (path: string, body: unknown) =>
    send(`${gw.adminUrl}${path}`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });

  /** The approval a refused call names: the id its first text tells the model to send, which is the envelope's. */
  function refused(result: CallToolResult, code: string): string {
    assert.equal(result.isError, true, JSON.stringify(result));
    assert.equal(result.structuredContent, undefined);
    assert.equal(envelope(result).code, code, text(result));
    const id = ID.exec(text(result))?.[1];
    assert.ok(id, `the first text names the approval_id to send: ${text(result)}`);
    if (envelope(result).approval) assert.equal(id, envelope(result).approval.id);
    return id;
  }

  test('tools/list: the tools of approval routes take an optional approval_id and say who approves; the others do not', async () => {
    const client = await connect();
    const tools = new Map((await client.listTools()).tools.map((t) => [t.name, t]));
    assert.deepEqual([...tools.keys()].sort(), ['delete_customer', 'get_customer', 'refund']);
    for (const name of ['delete_customer', 'refund']) {
      const tool = tools.get(name)!;
      const argument = tool.inputSchema.properties?.approval_id as { type: string; pattern: string; description: string };
      assert.equal(argument.type, 'string', name);
      assert.equal(argument.pattern, APPROVAL_ID_PATTERN.source, name);
      assert.match(argument.description, /exactly the same as in the call that was refused/, name);
      assert.ok(!(tool.inputSchema.required ?? []).includes('approval_id'), `${name}: approval_id is not required`);
    }
    assert.match(tools.get('delete_customer')!.description!, /Needs approval by a person/);
    assert.match(tools.get('refund')!.description!, /Needs your own confirmation/);
    assert.equal(tools.get('get_customer')!.inputSchema.properties?.approval_id, undefined);
    assert.doesNotMatch(tools.get('get_customer')!.description!, /approv/i);
    // The annotations come from the effect, as before: approvals change none of them.
    assert.equal(tools.get('delete_customer')!.annotations?.destructiveHint, true);
    assert.equal(tools.get('refund')!.annotations?.destructiveHint, false);
    assert.equal(tools.get('get_customer')!.annotations?.readOnlyHint, true);
    assert.match(client.getInstructions() ?? '', /approval_id/);
  });

  test('by: agent — the first call asks for confirmation with a preview, the same call with approval_id runs once, that approval_id again runs nothing', async () => {
    const client = await connect();
    const args = { body: { amount: 100, order: 'ord_1' } };
    const sent = JSON.stringify(args.body);
    const first = await call(client, 'refund', args);
    const id = refused(first, 'APPROVAL_REQUIRED');
    assert.match(text(first), /^This action needs your confirmation before it runs\. Nothing was executed\./);
    assert.match(text(first), /It would send: POST \/refunds with the body \{"amount":100,"order":"ord_1"\}/);
    assert.ok(text(first).includes(`To go ahead, call refund again with exactly the same arguments plus approval_id "${id}"`), text(first));
    assert.equal(received('POST', '/refunds', sent), 0, 'nothing was executed');

    const confirmed = await call(client, 'refund', { ...args, approval_id: id });
    assert.equal(confirmed.isError, undefined, text(confirmed));
    assert.equal(JSON.parse(text(confirmed)).done, 'POST /refunds');
    assert.equal(received('POST', '/refunds', sent), 1, 'executed once');
    assert.equal(upstream.received.at(-1)!.headers['approval-id'], undefined, 'the Approval-Id is never forwarded');

    const again = await call(client, 'refund', { ...args, approval_id: id });
    const next = refused(again, 'APPROVAL_REQUIRED');
    assert.notEqual(next, id, 'a new approval is required');
    assert.match(text(again), new RegExp(`^Approval ${id} was used already: that call ran once`));
    assert.equal(received('POST', '/refunds', sent), 1, 'a used approval runs nothing again');
  });

  test('by: human — a person must approve first; with approval_id it is pending (retry later) until approved, then it runs once', async () => {
    const client = await connect();
    const first = await call(client, 'delete_customer', { id: '42' });
    const id = refused(first, 'APPROVAL_REQUIRED');
    assert.match(text(first), new RegExp(`^A person must approve this first\\. Nothing was executed\\. Approval ${id} is pending until \\S+Z \\(in about 15 minutes\\)\\. Do not retry now;`));
    assert.ok(text(first).includes(`call delete_customer again with the same arguments plus approval_id "${id}" after the person approved`), text(first));
    assert.ok(text(first).includes(`${gw.url}/_agentgate/approvals/${id}`), 'where to check its status');

    const pending = await call(client, 'delete_customer', { id: '42', approval_id: id });
    assert.equal(refused(pending, 'APPROVAL_PENDING'), id);
    assert.match(text(pending), /^A person has not decided on approval \S+ yet\. Nothing was executed\. Do not retry now; wait at least \d+ seconds/);
    assert.equal(envelope(pending).retryable, true);
    assert.equal(received('DELETE', '/customers/42'), 0);

    const approved = await admin(`/approvals/${id}/approve`, { by: 'dana@ops' });
    assert.equal(approved.status, 200, approved.text);
    const executed = await call(client, 'delete_customer', { id: '42', approval_id: id });
    assert.equal(executed.isError, undefined, text(executed));
    assert.equal(received('DELETE', '/customers/42'), 1, 'executed once');
    const twice = await call(client, 'delete_customer', { id: '42', approval_id: id });
    refused(twice, 'APPROVAL_REQUIRED');
    assert.equal(received('DELETE', '/customers/42'), 1);
  });

  test('by: human — a denial says so, with the reason, and not to call again', async () => {
    const client = await connect();
    const id = refused(await call(client, 'delete_customer', { id: '43' }), 'APPROVAL_REQUIRED');
    assert.equal((await admin(`/approvals/${id}/deny`, { by: 'dana@ops', reason: 'customer has open invoices' })).status, 200);
    const denied = await call(client, 'delete_customer', { id: '43', approval_id: id });
    assert.equal(denied.isError, true);
    assert.equal(envelope(denied).code, 'APPROVAL_DENIED');
    assert.equal(
      text(denied).split(' (APPROVAL_DENIED')[0],
      `A person (dana@ops) denied approval ${id}, saying: customer has open invoices. Nothing was executed. Do not call delete_customer again for this action; tell whoever asked for it that it was denied, and why.`,
    );
    assert.equal(received('DELETE', '/customers/43'), 0);
  });

  test('approval_id with a changed argument, or from another agent, is a mismatch and runs nothing; the approval stays usable, its body in any member order', async () => {
    const client = await connect();
    const args = { body: { amount: 5, order: 'ord_2' } };
    const id = refused(await call(client, 'refund', args), 'APPROVAL_REQUIRED');
    const changed = await call(client, 'refund', { body: { amount: 6, order: 'ord_2' }, approval_id: id });
    assert.equal(refused(changed, 'APPROVAL_MISMATCH'), id);
    assert.match(text(changed), new RegExp(`^Approval ${id} does not cover this call: its arguments are not exactly those of the call that was refused`));
    assert.ok(text(changed).includes('call refund without approval_id to ask for its own approval'));
    const other = await call(await connect(mallory), 'refund', { ...args, approval_id: id });
    refused(other, 'APPROVAL_MISMATCH');
    assert.equal(upstream.received.filter((r) => r.url === '/refunds' && r.body.toString().includes('ord_2')).length, 0, 'nothing was executed');
    // A malformed id never leaves the client's call: the input schema refuses it.
    await assert.rejects(call(client, 'refund', { ...args, approval_id: 'apr_nope' }), (err: McpError) => err.code === -32602 && /approval_id/.test(err.message));

    const reordered = await call(client, 'refund', { body: { order: 'ord_2', amount: 5 }, approval_id: id });
    assert.equal(reordered.isError, undefined, text(reordered));
    assert.equal(received('POST', '/refunds', '{"amount":5,"order":"ord_2"}'), 1);
  });

  test('the OpenAPI document: x-agentgate-approval, the Approval-Id header and the APPROVAL_* answers, valid OpenAPI 3.1', async () => {
    const reply = await send(`${gw.url}/_agentgate/openapi.json`, { headers: { authorization: `Bearer ${alice}` } });
    assert.equal(reply.status, 200, reply.text);
    const document = reply.json();
    const del = document.paths['/customers/{id}'].delete;
    const get = document.paths['/customers/{id}'].get;
    const refund = document.paths['/refunds'].post;
    assert.deepEqual(del['x-agentgate-approval'], { by: 'human', ttl_seconds: 900 });
    assert.deepEqual(refund['x-agentgate-approval'], { by: 'agent', ttl_seconds: 600 });
    assert.equal(get['x-agentgate-approval'], undefined);

    const approvalId = (op: any) => (op.parameters ?? []).find((p: any) => p.in === 'header' && p.name === 'Approval-Id');
    for (const op of [del, refund]) {
      const parameter = approvalId(op);
      assert.equal(parameter.required, false);
      assert.equal(parameter.schema.pattern, APPROVAL_ID_PATTERN.source);
      assert.match(parameter.description, /428 APPROVAL_REQUIRED/);
      assert.match(op.description, /Approval-Id/);
    }
    assert.equal(approvalId(get), undefined);
    assert.match(del.description, /a person's approval/);
    assert.match(refund.description, /your confirmation/);

    const codes = (op: any, status: string): string[] => op.responses[status]?.content?.['application/problem+json']?.schema.allOf[1].properties.code.enum ?? [];
    assert.deepEqual(codes(del, '428'), ['APPROVAL_REQUIRED']);
    assert.ok(codes(del, '409').includes('APPROVAL_PENDING'));
    assert.ok(codes(del, '403').includes('APPROVAL_DENIED'));
    assert.ok(codes(del, '422').includes('APPROVAL_MISMATCH'));
    assert.deepEqual(codes(refund, '428'), ['APPROVAL_REQUIRED']);
    assert.ok(codes(refund, '422').includes('APPROVAL_MISMATCH'));
    assert.ok(codes(refund, '409').includes('IDEMPOTENCY_IN_PROGRESS') && !codes(refund, '409').includes('APPROVAL_PENDING'), "an agent's own confirmation is never pending");
    assert.ok(!Object.keys(get.responses).some((status) => codes(get, status).some((code) => code.startsWith('APPROVAL_'))));
    const required = del.responses['428'].content['application/problem+json'].schema.allOf[1].properties;
    assert.deepEqual(required.approval, { $ref: '#/components/schemas/agentgate.Approval' });
    assert.equal(required.preview.type, 'object');
    assert.deepEqual(document.components.schemas['agentgate.Approval'].properties.id.pattern, APPROVAL_ID_PATTERN.source);

    await assertValid31(document);
  });

  test('the tools and the OpenAPI document agree: approval_id where the document has Approval-Id, with its pattern', async () => {
    const document = (await send(`${gw.url}/_agentgate/openapi.json`, { headers: { authorization: `Bearer ${alice}` } })).json();
    const operations = new Map<string, any>();
    for (const item of Object.values<any>(document.paths)) for (const op of Object.values<any>(item)) operations.set(op.operationId, op);
    const tools = (await (await connect()).listTools()).tools;
    assert.deepEqual(tools.map((t) => t.name).sort(), [...operations.keys()].sort());
    for (const tool of tools) {
      const op = operations.get(tool.name);
      const header = (op.parameters ?? []).find((p: any) => p.in === 'header' && p.name.toLowerCase() === 'approval-id');
      const argument = tool.inputSchema.properties?.approval_id as { pattern?: string } | undefined;
      assert.equal(argument !== undefined, header !== undefined, `${tool.name}: approval_id where the document has Approval-Id`);
      assert.equal(argument?.pattern, header?.schema.pattern, `${tool.name}: the same pattern`);
      assert.equal(header !== undefined, op['x-agentgate-approval'] !== undefined, `${tool.name}: Approval-Id where x-agentgate-approval says so`);
      const by = op['x-agentgate-approval']?.by;
      assert.equal(/Needs approval by a person/.test(tool.description!), by === 'human', tool.name);
      assert.equal(/Needs your own confirmation/.test(tool.description!), by === 'agent', tool.name);
    }
  });
});

/** Valid OpenAPI 3.1 by the validator test/openapi.test.ts uses, and every schema in it compiles as JSON Schema 2020-12. */
async function assertValid31(document: Record<string, any>): Promise<void> {
  const validator = new Validator();
  const result = await validator.validate(structuredClone(document));
  assert.equal(validator.version, '3.1');
  assert.ok(result.valid, `not valid OpenAPI 3.1: ${JSON.stringify(result.errors, null, 1)?.slice(0, 3000)}`);
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats.default(ajv);
  ajv.addSchema({ ...document, $id: 'https://agentgate.test/openapi.json' });
  const escape = (token: string) => token.replace(/~/g, '~0').replace(/\//g, '~1');
  const pointers = Object.keys(document.components.schemas).map((name) => `/components/schemas/${escape(name)}`);
  for (const [p, item] of Object.entries<any>(document.paths)) {
    for (const [method, op] of Object.entries<any>(item)) {
      const at = `/paths/${escape(p)}/${method}`;
      (op.parameters ?? []).forEach((param: any, i: number) => param.schema && pointers.push(`${at}/parameters/${i}/schema`));
      for (const [status, response] of Object.entries<any>(op.responses)) {
        for (const type of Object.keys(response.content ?? {})) pointers.push(`${at}/responses/${status}/content/${escape(type)}/schema`);
      }
    }
  }
  for (const pointer of pointers) assert.doesNotThrow(() => ajv.compile({ $ref: `https://agentgate.test/openapi.json#${pointer}` }), `the schema at ${pointer} does not compile`);
}

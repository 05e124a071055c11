// The MCP endpoint driven by a second real client: the MCP Inspector's CLI (@modelcontextprotocol/inspector-cli, its
// `mcp-inspector-cli --cli` entry), run as a child process the way a person runs it, against the demo (config/gateway.yaml
// in front of the bundled demo legacy API) with the demo's public agent keys. It lists the tools, calls a read, and is
// refused: without a credential, with a key the gateway does not know, for a tool the agent lacks the scope for.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { startLegacyApi, type LegacyApi } from '../src/demo/legacy-api.ts';
import { newKey } from '../src/agents/keys.ts';
import type { TestGateway } from './helpers/gateway.ts';
import { demoKey, startDemo } from './helpers/demo.ts';

/** The CLI's JS entry, as its package's bin names it (never npx, which may reach for the network). */
const INSPECTOR = await (async () => {
  const manifest = createRequire(import.meta.url).resolve('@modelcontextprotocol/inspector-cli/package.json');
  const bin = (JSON.parse(await readFile(manifest, 'utf8')) as { bin: Record<string, string> }).bin['mcp-inspector-cli'];
  assert.ok(bin, 'the package has the bin mcp-inspector-cli');
  return path.join(path.dirname(manifest), bin);
})();

/** Most a CLI run may take; it is killed (with the process it starts) beyond that. */
const RUN_TIMEOUT_MS = 30_000;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * `mcp-inspector-cli --cli <url> ...args`. In --cli mode that entry runs the CLI proper (build/index.js) with the `node`
 * on PATH, so this node goes first on PATH. Its working directory is the entry's own folder: index.js checks for
 * `../package.json` relative to the working directory but imports it relative to itself, and from anywhere else (the
 * repository root, say) it fails with "Cannot find module .../node_modules/@modelcontextprotocol/package.json".
 * The URL comes before --header: --header takes any number of values, and would take the URL as one more.
 */
function inspector(url: string, args: string[]): Promise<Run> {
  const child = spawn(process.execPath, [INSPECTOR, '--cli', url, '--transport', 'http', ...args], {
    cwd: path.dirname(INSPECTOR),
    env: { ...process.env, PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}` },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, so that a timeout kills the process it starts too.
    detached: true,
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
      reject(new Error(`mcp-inspector-cli ${args.join(' ')} did not end within ${RUN_TIMEOUT_MS} ms; stdout:\n${stdout}\nstderr:\n${stderr}`));
    }, RUN_TIMEOUT_MS);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    // 'close': the process and what it started have ended, and their output has been read.
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The JSON the CLI prints for a run that succeeded. */
function printed<T>(run: Run): T {
  assert.equal(run.code, 0, `exit status; stderr:\n${run.stderr}`);
  try {
    return JSON.parse(run.stdout) as T;
  } catch {
    assert.fail(`stdout is not JSON:\n${run.stdout}\nstderr:\n${run.stderr}`);
  }
}

interface ToolList {
  tools: { name: string; description?: string; inputSchema: { required?: string[] }; annotations?: { readOnlyHint?: boolean } }[];
}

interface ToolResult {
  content: { type: string; text: string }[];
  structuredContent?: unknown;
  isError?: boolean;
  _meta?: Record<string, unknown>;
}

/** The tools only an agent holding orders:write may call: the demo's create-order and change-order routes. */
const WRITE_TOOLS = ['create_order', 'delete_customer', 'change_order_post', 'change_order_put', 'change_order_patch', 'change_order_delete'];

describe('the MCP Inspector CLI against the demo', () => {
  let api: LegacyApi;
  let gw: TestGateway;
  let mcpUrl: string;
  let demo: { authorization: string };
  let reporter: { authorization: string };

  before(async () => {
    api = await startLegacyApi({ port: 0 });
    gw = await startDemo(api.url);
    mcpUrl = `${gw.url}/mcp`;
    demo = { authorization: `Authorization: Bearer ${await demoKey('DEMO_KEY')}` };
    reporter = { authorization: `Authorization: Bearer ${await demoKey('REPORTER_KEY')}` };
  });
  after(async () => {
    await gw?.close();
    await api?.close();
  });

  /** What the demo legacy API has run, by route: only what reaches it is counted. */
  async function executions(): Promise<Record<string, number>> {
    const res = await fetch(`${api.url}/_demo/stats`);
    return ((await res.json()) as { executions: Record<string, number> }).executions;
  }

  /** An order made straight at the demo legacy API (not through the gateway). */
  async function createOrderUpstream(body: Record<string, unknown>): Promise<Record<string, unknown>> {
    const res = await fetch(`${api.url}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    assert.equal(res.status, 201);
    return (await res.json()) as Record<string, unknown>;
  }

  test("tools/list: the demo's tools by name; reporter, without orders:write, gets all of them but the writes", async () => {
    const before = await executions();
    const demoTools = printed<ToolList>(await inspector(mcpUrl, ['--method', 'tools/list', '--header', demo.authorization])).tools;
    const names = demoTools.map((t) => t.name);
    for (const name of ['list_orders', 'get_order', 'slow_report', 'ledger_status', ...WRITE_TOOLS]) assert.ok(names.includes(name), `${name} in ${names.join(' ')}`);
    assert.equal(new Set(names).size, names.length, 'each tool once');
    const get = demoTools.find((t) => t.name === 'get_order')!;
    assert.deepEqual(get.inputSchema.required, ['id']);
    assert.equal(get.annotations?.readOnlyHint, true);
    assert.match(get.description ?? '', /An id the API does not know is a 404 NOT_FOUND/, "the route's agent.hint");
    assert.equal(demoTools.find((t) => t.name === 'create_order')!.annotations?.readOnlyHint, false);

    const reporterNames = printed<ToolList>(await inspector(mcpUrl, ['--method', 'tools/list', '--header', reporter.authorization])).tools.map((t) => t.name);
    assert.deepEqual(reporterNames, names.filter((n) => !WRITE_TOOLS.includes(n)), 'the same tools in the same order, less the writes');
    assert.deepEqual(await executions(), before, 'listing the tools calls nothing upstream');
  });

  test('tools/call of a read (get_order): the order the demo API holds, read upstream through the pipeline as demo-agent', async () => {
    const order = await createOrderUpstream({ item: 'inspected widget', quantity: 3 });
    assert.match(String(order.id), /^ord_\d+$/);
    const before = (await executions())['GET /orders/{id}'] ?? 0;

    const result = printed<ToolResult>(await inspector(mcpUrl, ['--method', 'tools/call', '--tool-name', 'get_order', '--tool-arg', `id=${String(order.id)}`, '--header', demo.authorization]));
    assert.equal(result.isError, undefined, JSON.stringify(result));
    assert.equal(result.content.length, 1);
    assert.equal(result.content[0]!.type, 'text');
    assert.deepEqual(JSON.parse(result.content[0]!.text), order, "the demo API's answer, as it gave it");
    // The demo names no OpenAPI spec, so its tools declare no outputSchema, and a result then carries no structuredContent.
    assert.equal(result.structuredContent, undefined);
    assert.equal(result._meta?.['agentgate/status'], 200);

    assert.equal((await executions())['GET /orders/{id}'], before + 1, 'the call reached the demo API once');
    const requestId = result._meta?.['agentgate/request_id'];
    assert.equal(typeof requestId, 'string');
    const line = gw.logs.requestLines().find((l) => l.request_id === requestId);
    assert.ok(line, `a request log line with the result's request id ${String(requestId)}`);
    assert.deepEqual(
      [line.route, line.consumer, line.method, line.path, line.status, line.upstream_status],
      ['get-order', 'agent:demo-agent', 'GET', `/orders/${String(order.id)}`, 200, 200],
    );
  });

  test('without a credential, or with a key the gateway does not know: the CLI cannot connect, says UNAUTHENTICATED and exits 1', async () => {
    const order = await createOrderUpstream({ item: 'never read' });
    const before = await executions();
    const call = ['--method', 'tools/call', '--tool-name', 'get_order', '--tool-arg', `id=${String(order.id)}`];

    const anonymous = await inspector(mcpUrl, call);
    assert.equal(anonymous.code, 1, `stdout:\n${anonymous.stdout}\nstderr:\n${anonymous.stderr}`);
    assert.equal(anonymous.stdout, '', 'no result printed');
    assert.match(anonymous.stderr, /Failed to connect to MCP server/);
    assert.match(anonymous.stderr, /"code":"UNAUTHENTICATED"/);
    assert.match(anonymous.stderr, /"reason":"missing"/);

    const unknown = await inspector(mcpUrl, [...call, '--header', `Authorization: Bearer ${newKey()}`]);
    assert.equal(unknown.code, 1, `stdout:\n${unknown.stdout}\nstderr:\n${unknown.stderr}`);
    assert.equal(unknown.stdout, '');
    assert.match(unknown.stderr, /Failed to connect to MCP server/);
    assert.match(unknown.stderr, /"code":"UNAUTHENTICATED"/);
    assert.match(unknown.stderr, /"reason":"unknown_key"/);

    assert.deepEqual(await executions(), before, 'nothing reached the demo API');
  });

  test('a call the gateway refuses (reporter calling create_order) is an isError result the CLI prints, exit 0; nothing is created', async () => {
    const before = await executions();
    const run = await inspector(mcpUrl, [
      '--method', 'tools/call', '--tool-name', 'create_order',
      '--tool-arg', 'body={"item": "widget"}', 'idempotency_key=inspector-refused-1',
      '--header', reporter.authorization,
    ]);
    const result = printed<ToolResult>(run);
    assert.equal(result.isError, true, JSON.stringify(result));
    assert.match(result.content[0]!.text, /^Error FORBIDDEN \(HTTP 403\): Agent 'reporter' lacks scope 'orders:write'/);
    const envelope = JSON.parse(result.content[1]!.text) as Record<string, unknown>;
    assert.equal(envelope.code, 'FORBIDDEN');
    assert.deepEqual(envelope.missing_scopes, ['orders:write']);
    assert.equal(result._meta?.['agentgate/status'], 403);
    assert.deepEqual(await executions(), before, 'nothing reached the demo API');
  });

  test("a read of an order the demo API does not have: its 404 as an isError NOT_FOUND result, exit 0", async () => {
    const before = (await executions())['GET /orders/{id}'] ?? 0;
    const result = printed<ToolResult>(await inspector(mcpUrl, ['--method', 'tools/call', '--tool-name', 'get_order', '--tool-arg', 'id=ord_999999', '--header', demo.authorization]));
    assert.equal(result.isError, true, JSON.stringify(result));
    assert.match(result.content[0]!.text, /^Error NOT_FOUND \(HTTP 404\): Upstream 'orders' answered 404: order ord_999999 not found/);
    const envelope = JSON.parse(result.content[1]!.text) as Record<string, unknown>;
    assert.deepEqual([envelope.code, envelope.upstream_status, envelope.retryable], ['NOT_FOUND', 404, false]);
    assert.equal((await executions())['GET /orders/{id}'], before + 1, 'the call reached the demo API');
  });

  test('arguments the tool refuses, and an unknown tool: JSON-RPC errors, the CLI exits 1 with the message; nothing is forwarded', async () => {
    const before = await executions();
    // The CLI reads a --tool-arg value as JSON when it can: id=42 is the number 42, and get_order's id is a string.
    const numeric = await inspector(mcpUrl, ['--method', 'tools/call', '--tool-name', 'get_order', '--tool-arg', 'id=42', '--header', demo.authorization]);
    assert.equal(numeric.code, 1, `stdout:\n${numeric.stdout}\nstderr:\n${numeric.stderr}`);
    assert.match(numeric.stderr, /Failed to call tool get_order: MCP error -32602: .*Invalid arguments for tool 'get_order': \/id must be string/);

    const unknownTool = await inspector(mcpUrl, ['--method', 'tools/call', '--tool-name', 'no_such_tool', '--header', demo.authorization]);
    assert.equal(unknownTool.code, 1, `stdout:\n${unknownTool.stdout}\nstderr:\n${unknownTool.stderr}`);
    assert.match(unknownTool.stderr, /Failed to call tool no_such_tool: MCP error -32602: .*Unknown tool 'no_such_tool'/);
    assert.deepEqual(await executions(), before, 'nothing reached the demo API');

    // As a JSON string, the same id is a string: forwarded, and the demo API has no order 42.
    const quoted = printed<ToolResult>(await inspector(mcpUrl, ['--method', 'tools/call', '--tool-name', 'get_order', '--tool-arg', 'id="42"', '--header', demo.authorization]));
    assert.equal(quoted.isError, true);
    assert.match(quoted.content[0]!.text, /^Error NOT_FOUND \(HTTP 404\): .*order 42 not found/);
  });
});

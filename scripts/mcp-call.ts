// An MCP client for agentgate's MCP endpoint (mcp.path), built on the official SDK: lists the tools an agent key may
// call, or calls one and prints its result.
//   sh scripts/node.sh scripts/mcp-call.ts URL KEY                   one line per tool: its name and its description
//   sh scripts/node.sh scripts/mcp-call.ts URL KEY TOOL [JSON_ARGS]  the tool's text content; an error marked as one
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';

const USAGE = 'usage: sh scripts/node.sh scripts/mcp-call.ts URL KEY [TOOL [JSON_ARGS]]\n' + "  e.g. ... http://127.0.0.1:8080/mcp \"$DEMO_KEY\" get_order '{\"id\":\"ord_1\"}'";

function usage(problem?: string): never {
  if (problem) console.error(`mcp-call: ${problem}`);
  console.error(USAGE);
  process.exit(2);
}

const [url, key, tool, json, ...extra] = process.argv.slice(2);
if (!url || !key || extra.length > 0) usage();
let endpoint: URL;
try {
  endpoint = new URL(url);
} catch {
  usage(`not a URL: ${url}`);
}
let args: Record<string, unknown> = {};
if (json !== undefined) {
  try {
    args = JSON.parse(json) as Record<string, unknown>;
  } catch {
    usage(`JSON_ARGS is not JSON: ${json}`);
  }
  if (typeof args !== 'object' || args === null || Array.isArray(args)) usage('JSON_ARGS must be a JSON object');
}

const client = new Client({ name: 'agentgate-mcp-call', version: '1.0.0' });
try {
  await client.connect(new StreamableHTTPClientTransport(endpoint, { requestInit: { headers: { authorization: `Bearer ${key}` } } }));
  if (tool === undefined) {
    for (const t of (await client.listTools()).tools) console.log(`${t.name}: ${(t.description ?? '').replace(/\s*\n\s*/g, ' ')}`);
  } else {
    const result = (await client.callTool({ name: tool, arguments: args })) as CallToolResult;
    if (result.isError) console.log('isError: true');
    for (const part of result.content) console.log(part.type === 'text' ? part.text : `[${part.type} content]`);
    if (result._meta?.['agentgate/replayed'] === true) console.log('(replayed: the first call\'s answer, nothing was run again)');
    process.exitCode = result.isError ? 1 : 0;
  }
} catch (err) {
  console.error(`mcp-call: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
} finally {
  await client.close();
}

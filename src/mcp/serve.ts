// <mcp.path> on the proxy port: the Model Context Protocol over Streamable HTTP, stateless (a fresh server and transport
// per HTTP request, so any replica answers any request), on the official SDK's low-level Server.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Ajv, type ValidateFunction } from 'ajv';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ErrorCode, ListToolsRequestSchema, McpError, type CallToolRequest, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from 'pino';
import type { RequestContext } from '../context.ts';
import type { Runtime } from '../runtime.ts';
import { toolsOf, type McpTool } from './tools.ts';
import { callSelf, httpRequestOf, resultOf, type SelfCall } from './call.ts';

const SERVER_INFO = { name: 'agentgate', version: '0.1.0' };
const INSTRUCTIONS =
  'Each tool is an operation of the API behind agentgate. Errors come back as isError results with a stable code and whether and when to retry; ' +
  'send idempotency_key with writes so that a retry runs once.';
const APPROVAL_INSTRUCTIONS =
  'A tool that needs approval executes nothing on its first call: its result says who approves (a person, or you by confirming) and when to call it again with the same arguments plus approval_id.';

/** Compiles tool input schemas as the official client does (draft-07, not strict), once per tool object. */
const ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false });
const validators = new WeakMap<McpTool, ValidateFunction>();

/**
 * tools/call as the SDK's base protocol parses it first: without its params, which the SDK's Server checks next and
 * answers as InvalidParams (-32602). Registered with the full schema, params of the wrong shape (arguments as an
 * array) fail that first parse and come back as an internal error (-32603), which tells an agent nothing.
 */
const ToolCallRequest = CallToolRequestSchema.omit({ params: true }).loose();


/** Answers one HTTP request of the MCP endpoint; the caller is settled (pipeline step 4). */
export async function serveMcp(req: IncomingMessage, res: ServerResponse, runtime: Runtime, ctx: RequestContext, self: SelfCall, logger: Logger): Promise<void> {
  // Stateless: no session to resume (GET's server-sent stream) or end (DELETE); the client goes on with POSTs alone.
  if (req.method !== 'POST') return refuseMethod(res);
  const tools = toolsOf(runtime.operations);
  const instructions = tools.some((tool) => tool.operation.approval) ? `${INSTRUCTIONS} ${APPROVAL_INSTRUCTIONS}` : INSTRUCTIONS;
  const server = new Server(SERVER_INFO, { capabilities: { tools: { listChanged: false } }, instructions });
  const scopes = ctx.agent?.scopes;
  // As GET /_agentgate/openapi.json: an operation whose scopes the caller lacks would only answer 403, so it is not listed.
  const visible = tools.filter((tool) => tool.operation.scopes.every((scope) => scopes?.has(scope) === true));
  let calls = 0;
  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: visible.map((tool) => tool.definition) }));
  server.setRequestHandler(ToolCallRequest, async (request, extra): Promise<CallToolResult> => {
    // The Server checked the request against CallToolRequestSchema before handing it here.
    const { params } = request as unknown as CallToolRequest;
    // A tool the caller may not call is still called: the pipeline's scopes policy answers it, with its envelope and its metrics.
    const tool = tools.find((t) => t.definition.name === params.name);
    if (!tool) throw new McpError(ErrorCode.InvalidParams, `Unknown tool '${params.name}'; tools/list names the tools you may call.`);
    const args = params.arguments ?? {};
    checkArguments(tool, args);
    const caller = { headers: req.headers, clientAddress: ctx.clientAddress, requestId: ctx.requestId, identifyHeaders: identifyHeaders(runtime) };
    const http = httpRequestOf(tool, args);
    const answer = await callSelf(self, caller, http, ++calls, extra.signal);
    return resultOf(tool, answer, http);
  });
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  transport.onerror = (err) => logger.debug({ request_id: ctx.requestId, err: err.message }, 'MCP request refused');
  res.once('close', () => {
    void transport.close();
    void server.close();
  });
  await server.connect(transport);
  await transport.handleRequest(req, res);
}

function refuseMethod(res: ServerResponse): void {
  const body = JSON.stringify({ jsonrpc: '2.0', error: { code: ErrorCode.ConnectionClosed, message: 'Method not allowed: this MCP endpoint is stateless; send JSON-RPC messages with POST.' }, id: null });
  res.writeHead(405, { allow: 'POST', 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Arguments that fail the tool's input schema are a protocol error (InvalidParams), saying which and why; nothing is sent. */
function checkArguments(tool: McpTool, args: Record<string, unknown>): void {
  let validate = validators.get(tool);
  if (validate === undefined) {
    validate = ajv.compile(tool.definition.inputSchema);
    validators.set(tool, validate);
  }
  if (validate(args)) return;
  const problems = (validate.errors ?? []).slice(0, 5).map((e) => `${e.instancePath || '(arguments)'} ${e.message ?? 'is invalid'}${e.params && 'additionalProperty' in e.params ? ` '${String(e.params.additionalProperty)}'` : ''}`);
  throw new McpError(ErrorCode.InvalidParams, `Invalid arguments for tool '${tool.definition.name}': ${problems.join('; ')}.`);
}

function identifyHeaders(runtime: Runtime): string[] {
  return runtime.config.consumers.identify.flatMap((source) => (source.header ? [source.header.toLowerCase()] : []));
}

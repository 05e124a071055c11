// tools/call: the tool's arguments as the HTTP request an agent would have sent, made to the gateway's own proxy
// listener, so that it passes the one pipeline (identity, scopes, budgets, idempotency, silent-failure checks, error
// normalization, logs and metrics); its answer as a tool result.
import { request, type IncomingMessage } from 'node:http';
import { ErrorCode, McpError, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { AGENT_KEY_HEADER } from '../agents/authenticate.ts';
import { BODY_ARGUMENT, IDEMPOTENCY_ARGUMENT, type McpTool } from './tools.ts';
import { CLIENT_ADDRESS_HEADER, type InternalSecret } from './internal-client.ts';

/** Most of an answer read back; JSON beyond it is returned as truncated text. */
const MAX_ANSWER_BYTES = 1024 * 1024;
/** Most text put in a result: an LLM's context is the budget here. */
const MAX_TEXT_CHARS = 64 * 1024;

/** Where the gateway's proxy listener is, and the secret that vouches for the client address it is told. */
export interface SelfCall {
  /** e.g. http://127.0.0.1:8080; undefined until the listener is bound. */
  url: string | undefined;
  readonly secret: InternalSecret;
}

/** The MCP request a tool call comes from: what is carried over to the HTTP request made for it. */
export interface Caller {
  readonly headers: IncomingMessage['headers'];
  readonly clientAddress: string;
  readonly requestId: string;
  /** Headers consumers.identify reads a self-asserted identity from: the tool call is the same caller. */
  readonly identifyHeaders: readonly string[];
}

export interface HttpRequest {
  readonly method: string;
  /** Path and query, every parameter percent-encoded. */
  readonly target: string;
  readonly body: Buffer | undefined;
  readonly idempotencyKey: string | undefined;
}

/** The request a call with these (already validated) arguments stands for. */
export function httpRequestOf(tool: McpTool, args: Record<string, unknown>): HttpRequest {
  const op = tool.operation;
  // Each value is one encoded segment: a '/', '..' or '%2F' in an argument stays inside its parameter, and the
  // gateway's request-target reader refuses or keeps whatever would still look like another path.
  const path = op.path.replace(/\{([^}]+)\}/g, (_, name: string) => pathSegment(name, argumentText(args[name])));
  const query = new URLSearchParams();
  for (const name of tool.queryParameters) {
    const value = args[name];
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const item of value) query.append(name, argumentText(item));
    else query.append(name, argumentText(value));
  }
  const search = query.toString();
  const body = args[BODY_ARGUMENT];
  const key = args[IDEMPOTENCY_ARGUMENT];
  return {
    method: op.method,
    target: search === '' ? path : `${path}?${search}`,
    body: body === undefined ? undefined : Buffer.from(JSON.stringify(body)),
    idempotencyKey: typeof key === 'string' ? key : undefined,
  };
}

/**
 * One path parameter as one encoded segment. '.', '..' and '' are refused: no encoding keeps them a segment (an
 * encoded dot is an unreserved character, read as a dot), and the path would name another resource (/orders/.. is /).
 */
function pathSegment(name: string, value: string): string {
  if (value === '' || value === '.' || value === '..') {
    throw new McpError(ErrorCode.InvalidParams, `The path parameter '${name}' may not be '${value}': it would name another path than the operation's.`);
  }
  return encodeURIComponent(value);
}

function argumentText(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value ?? '');
}

/** The HTTP answer, read (bounded). */
export interface HttpAnswer {
  readonly status: number;
  readonly headers: IncomingMessage['headers'];
  readonly body: Buffer;
  readonly truncated: boolean;
}

/** Sends the request to the gateway's own proxy listener as the caller, and reads the answer. */
export function callSelf(self: SelfCall, caller: Caller, http: HttpRequest, sequence: number, signal: AbortSignal): Promise<HttpAnswer> {
  const headers: Record<string, string> = {
    accept: 'application/json',
    'x-request-id': `${caller.requestId}.${sequence}`,
    [CLIENT_ADDRESS_HEADER]: self.secret.header(caller.clientAddress),
  };
  // The caller's own credential and identity, exactly as it sent them: the pipeline decides what they prove.
  for (const name of ['authorization', AGENT_KEY_HEADER, 'traceparent', 'tracestate', ...caller.identifyHeaders]) {
    const value = caller.headers[name];
    if (typeof value === 'string') headers[name] = value;
  }
  if (http.idempotencyKey !== undefined) headers['idempotency-key'] = http.idempotencyKey;
  if (http.body !== undefined) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = String(http.body.length);
  }
  return new Promise((resolve, reject) => {
    const req = request(`${self.url}${http.target}`, { method: http.method, headers, signal }, (res) => readAnswer(res).then(resolve, reject));
    req.once('error', reject);
    req.end(http.body);
  });
}

function readAnswer(res: IncomingMessage): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let truncated = false;
    res.on('data', (chunk: Buffer) => {
      if (truncated) return;
      const room = MAX_ANSWER_BYTES - size;
      if (chunk.length > room) {
        truncated = true;
        chunks.push(chunk.subarray(0, room));
        size = MAX_ANSWER_BYTES;
        res.destroy();
        resolve({ status: res.statusCode ?? 502, headers: res.headers, body: Buffer.concat(chunks), truncated });
        return;
      }
      chunks.push(chunk);
      size += chunk.length;
    });
    res.once('end', () => resolve({ status: res.statusCode ?? 502, headers: res.headers, body: Buffer.concat(chunks), truncated }));
    res.once('error', reject);
  });
}

/** The answer as a tool result: a success as JSON or text, an envelope as an error result an LLM reads well. */
export function resultOf(tool: McpTool, answer: HttpAnswer): CallToolResult {
  const type = String(answer.headers['content-type'] ?? '');
  const meta = {
    'agentgate/status': answer.status,
    'agentgate/request_id': answer.headers['x-request-id'],
    ...(answer.headers['idempotent-replayed'] === 'true' && { 'agentgate/replayed': true }),
  };
  if (answer.status >= 400) return errorResult(answer, type, meta);
  const text = answer.body.toString('utf8');
  if (!answer.truncated && /^application\/([^;]*\+)?json/i.test(type)) {
    const json = parseJson(text);
    // structuredContent only where the tool promised one (outputSchema): a client checks it against that schema.
    if (tool.structured && isPlainObject(json)) return { content: [textContent(text)], structuredContent: json, _meta: meta };
  }
  return { content: [textContent(answer.status === 204 || text === '' ? `Done (HTTP ${answer.status}, no content).` : text, answer.truncated)], _meta: meta };
}

/**
 * An error never carries structuredContent: the official client (1.x) checks an error's structuredContent against the
 * tool's outputSchema and throws (typescript-sdk #1943), so the envelope goes as JSON text after a short summary.
 */
function errorResult(answer: HttpAnswer, type: string, meta: Record<string, unknown>): CallToolResult {
  const text = answer.body.toString('utf8');
  const envelope = /problem\+json|application\/json/i.test(type) ? parseJson(text) : undefined;
  if (!isPlainObject(envelope)) {
    return { isError: true, content: [textContent(`The call failed with HTTP ${answer.status}.`), textContent(text, answer.truncated)], _meta: meta };
  }
  return { isError: true, content: [textContent(summary(envelope, answer.status)), textContent(JSON.stringify(envelope))], _meta: meta };
}

/** code, what happened, whether and when to retry, what to do: the envelope in the few lines an agent acts on. */
export function summary(envelope: Record<string, unknown>, status: number): string {
  const lines = [`Error ${String(envelope.code ?? 'UNKNOWN')} (HTTP ${status}): ${String(envelope.detail ?? envelope.title ?? 'the call failed')}`];
  const after = envelope.retry_after_seconds;
  if (envelope.retryable === true) lines.push(typeof after === 'number' ? `Retryable: yes, after ${after} seconds.` : 'Retryable: yes.');
  else lines.push('Retryable: no, not without changing something first.');
  if (typeof envelope.suggestion === 'string') lines.push(`Suggestion: ${envelope.suggestion}`);
  return lines.join('\n');
}

function textContent(text: string, truncated = false): { type: 'text'; text: string } {
  if (!truncated && text.length <= MAX_TEXT_CHARS) return { type: 'text', text };
  return { type: 'text', text: `${text.slice(0, MAX_TEXT_CHARS)}\n[truncated: the answer is longer than ${MAX_TEXT_CHARS} characters; ask for less, e.g. with a filter or a page size]` };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

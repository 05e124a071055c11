// tools/call: the tool's arguments as the HTTP request an agent would have sent, made to the gateway's own proxy
// listener, so that it passes the one pipeline (identity, scopes, budgets, idempotency, silent-failure checks, error
// normalization, logs and metrics); its answer as a tool result.
import { request, type IncomingMessage } from 'node:http';
import { ErrorCode, McpError, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { AGENT_KEY_HEADER } from '../agents/authenticate.ts';
import { APPROVAL_ARGUMENT, BODY_ARGUMENT, IDEMPOTENCY_ARGUMENT, type McpTool } from './tools.ts';
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
  /** The Approval-Id header: the approval_id argument. */
  readonly approvalId: string | undefined;
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
  const approvalId = args[APPROVAL_ARGUMENT];
  // An approval covers the request's exact bytes, and a model calling again with "the same arguments" may well write
  // the body's members in another order: on such a tool the body is sent with its members sorted, so that the same
  // arguments are always the same request.
  const text = body === undefined ? undefined : op.approval ? JSON.stringify(sortedMembers(body)) : JSON.stringify(body);
  return {
    method: op.method,
    target: search === '' ? path : `${path}?${search}`,
    body: text === undefined ? undefined : Buffer.from(text),
    idempotencyKey: typeof key === 'string' ? key : undefined,
    approvalId: typeof approvalId === 'string' ? approvalId : undefined,
  };
}

/** A JSON value with every object's members in code-unit order (arrays keep theirs). */
function sortedMembers(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedMembers);
  if (typeof value !== 'object' || value === null) return value;
  const object = value as Record<string, unknown>;
  return Object.fromEntries(Object.keys(object).sort().map((key) => [key, sortedMembers(object[key])]));
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
  if (http.approvalId !== undefined) headers['approval-id'] = http.approvalId;
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

/**
 * The answer as a tool result: a success as JSON or text, an envelope as an error result an LLM reads well. `sent`:
 * the request the call made (an approval answer tells the model what to call next).
 */
export function resultOf(tool: McpTool, answer: HttpAnswer, sent?: HttpRequest): CallToolResult {
  const type = String(answer.headers['content-type'] ?? '');
  const meta = {
    'agentgate/status': answer.status,
    'agentgate/request_id': answer.headers['x-request-id'],
    ...(answer.headers['idempotent-replayed'] === 'true' && { 'agentgate/replayed': true }),
  };
  if (answer.status >= 400) return errorResult(tool, answer, type, meta, sent);
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
function errorResult(tool: McpTool, answer: HttpAnswer, type: string, meta: Record<string, unknown>, sent: HttpRequest | undefined): CallToolResult {
  const text = answer.body.toString('utf8');
  const envelope = /problem\+json|application\/json/i.test(type) ? parseJson(text) : undefined;
  if (!isPlainObject(envelope)) {
    return { isError: true, content: [textContent(`The call failed with HTTP ${answer.status}.`), textContent(text, answer.truncated)], _meta: meta };
  }
  const first = approvalSummary(tool.definition.name, envelope, answer.status, sent?.approvalId) ?? summary(envelope, answer.status);
  return { isError: true, content: [textContent(first), textContent(JSON.stringify(envelope))], _meta: meta };
}

/**
 * An APPROVAL_* answer as what happens next, in the tool's own terms (approval_id, not the Approval-Id header): an LLM
 * that reads only this line must neither give up on an action that waits for a person nor run one twice. Undefined for
 * any other envelope, or one without what it needs.
 */
function approvalSummary(toolName: string, envelope: Record<string, unknown>, status: number, sentId: string | undefined): string | undefined {
  const code = envelope.code;
  const approval = isPlainObject(envelope.approval) ? envelope.approval : undefined;
  const id = typeof approval?.id === 'string' ? approval.id : sentId;
  if (typeof code !== 'string' || !code.startsWith('APPROVAL_') || id === undefined) return undefined;
  const until = typeof approval?.expires_at === 'string' ? `${approval.expires_at}${fromNow(approval.expires_at)}` : undefined;
  const again = (exactly: string) => `call ${toolName} again with ${exactly} arguments plus approval_id "${id}"`;
  const tail = `(${code}, HTTP ${status}; the details are in the JSON that follows.)`;
  switch (code) {
    case 'APPROVAL_REQUIRED': {
      if (approval === undefined) return undefined;
      const before = sentId === undefined ? '' : priorOf(sentId, envelope.prior);
      if (approval.by === 'human') {
        const check = typeof approval.url === 'string' ? `check its status with GET ${approval.url} if you can` : 'calling with approval_id before then only tells you it is still pending';
        return (
          `${before}A person must approve this first. Nothing was executed. Approval ${id} is pending until ${until ?? 'it expires'}. ` +
          `Do not retry now; ${again('the same')} after the person approved (${check}). ${tail}`
        );
      }
      const preview = previewText(envelope.preview);
      return (
        `${before}This action needs your confirmation before it runs. Nothing was executed.${preview ? ` It would send: ${preview}.` : ''} ` +
        `To go ahead, ${again('exactly the same')}${until ? ` before ${until}` : ''}. If that is not what you intend, do not call it again. ${tail}`
      );
    }
    case 'APPROVAL_PENDING': {
      const wait = typeof envelope.retry_after_seconds === 'number' ? `at least ${envelope.retry_after_seconds} seconds (people often take minutes)` : 'a while (people often take minutes)';
      return (
        `A person has not decided on approval ${id} yet. Nothing was executed. Do not retry now; wait ${wait}, then ${again('the same')}. ` +
        `It can be approved until ${until ?? 'it expires'}; after that, it needs a new approval. ${tail}`
      );
    }
    case 'APPROVAL_DENIED': {
      const who = typeof approval?.decided_by === 'string' ? `A person (${approval.decided_by})` : 'A person';
      const reason = typeof envelope.reason === 'string' ? envelope.reason : undefined;
      return (
        `${who} denied approval ${id}${reason ? `, saying: ${reason}` : ' without giving a reason'}. Nothing was executed. ` +
        `Do not call ${toolName} again for this action; tell whoever asked for it that it was denied${reason ? ', and why' : ''}. ${tail}`
      );
    }
    case 'APPROVAL_MISMATCH':
      return (
        `Approval ${id} does not cover this call: its arguments are not exactly those of the call that was refused (or the approval is another agent's). Nothing was executed. ` +
        `To use it, ${again('exactly the refused call\'s')}; for a different action, call ${toolName} without approval_id to ask for its own approval. ${tail}`
      );
    default:
      return undefined;
  }
}

/** Why a call that carried an approval_id needs a new approval: the envelope's `prior` says (used, expired or unknown). */
function priorOf(sentId: string, prior: unknown): string {
  const status = isPlainObject(prior) ? prior.status : undefined;
  if (status === 'executed') {
    return `Approval ${sentId} was used already: that call ran once, and running it again needs a new approval. Only go on if you mean to do it again. `;
  }
  const why = status === 'expired' ? 'has expired' : status === 'unknown' ? 'is not known (or expired long ago)' : 'cannot be used any more';
  return `Approval ${sentId} ${why}, so a new approval was asked for. `;
}

/** The request an approval covers, on one line: method, path, query and body as the preview shows them. */
function previewText(preview: unknown): string | undefined {
  if (!isPlainObject(preview) || typeof preview.method !== 'string' || typeof preview.path !== 'string') return undefined;
  const query = typeof preview.query === 'string' ? `?${preview.query}` : '';
  let body = '';
  if (typeof preview.body === 'string') {
    const json = parseJson(preview.body);
    body = ` with the body ${json === undefined ? preview.body : JSON.stringify(json)}${preview.body_truncated === true ? ' (shortened)' : ''}`;
  }
  return `${preview.method} ${preview.path}${query}${body}`;
}

/** " (in about 15 minutes)": an LLM knows no clock. */
function fromNow(iso: string): string {
  const seconds = Math.round((Date.parse(iso) - Date.now()) / 1000);
  if (!Number.isFinite(seconds) || seconds <= 0) return '';
  if (seconds < 120) return ` (in about ${seconds} seconds)`;
  if (seconds < 7200) return ` (in about ${Math.round(seconds / 60)} minutes)`;
  return ` (in about ${Math.round(seconds / 3600)} hours)`;
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

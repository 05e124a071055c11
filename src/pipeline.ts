// The request pipeline, top to bottom. Every request passes these steps in this order; each step says why it stands where
// it does. The route's policies answer it in one vocabulary (src/policies/contract.ts), asked in the order of
// src/policies/index.ts.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { AccessLog } from './observability/access-log.ts';
import { outcomeOf, type RequestContext } from './context.ts';
import type { Store } from './store/store.ts';
import type { Route, Runtime } from './runtime.ts';
import { requestIdFrom, traceContextFrom } from './identity/request-id.ts';
import { GatewayError, problemAnswer, sendProblem } from './errors/problem.ts';
import { connectionOptions, Forwarder, streamResponse, writeResponseHead } from './proxy/forwarder.ts';
import { readRequestTarget } from './routing/request-target.ts';
import { HOST_PATTERN } from './proxy/forwarded.ts';
import { HTTP_METHODS } from './config/schema.ts';
import { serveCatalog } from './endpoints/catalog.ts';
import { methodLabel, type GatewayMetrics } from './observability/metrics.ts';
import { CONTINUE, Exchange, type Verdict } from './policies/contract.ts';
import { normalizeUpstreamError } from './errors/normalize.ts';
import { decodeBody, readBounded } from './proxy/body.ts';
import { serveBudget } from './endpoints/budget.ts';
import { serveWhoami } from './endpoints/whoami.ts';
import { serveOpenApi } from './endpoints/openapi.ts';
import { serveApprovalStatus } from './endpoints/approval-status.ts';
import { isMcpPath } from './mcp/schema.ts';
import type { SelfCall } from './mcp/call.ts';

export interface PipelineDeps {
  /** The config in force; read once per request, so a reload never mixes two configs within one request. */
  runtime: () => Runtime;
  forwarder: Forwarder;
  metrics: GatewayMetrics;
  logger: Logger;
  /** Writes the one line per request. */
  accessLog: AccessLog;
  /** The shared state store the policies' batched operations are made in (step 7). */
  store: Store;
  /** The gateway's own proxy listener, which MCP tool calls are sent to, and the secret that vouches for their client address. */
  self: SelfCall;
}

const GATEWAY_PREFIX = '/_agentgate/';
/** How much of an upstream 4xx body is read for the explanation passed on to the agent. */
const UPSTREAM_ERROR_BODY_BYTES = 8 * 1024;
/** Most a compressed error body is expanded to while reading its explanation. */
const UPSTREAM_ERROR_DECODED_BYTES = 64 * 1024;
/**
 * Methods never forwarded: a TRACE (or IIS's TRACK) is echoed back by the upstream with every header it received,
 * the credentials the gateway injects included (cross-site tracing). CONNECT never reaches the pipeline (Node hands it
 * to a 'connect' listener, and there is none).
 */
const REFUSED_METHODS: ReadonlySet<string> = new Set(['TRACE', 'TRACK']);
/** Methods that may be sent twice with the effect of once (RFC 9110 §9.2.2); a lost answer to any other is not safe to retry blind. */
const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);
/**
 * Request headers that make an upstream framework execute another method or path than the request line names (Symfony
 * and IIS read X-Original-URL / X-Rewrite-URL, Express's method-override and Spring read the method overrides), so the
 * route matched would not be the route executed. Refused rather than dropped: the agent learns why.
 */
const TARGET_OVERRIDE_HEADERS = ['x-http-method-override', 'x-http-method', 'x-method-override', 'x-original-url', 'x-rewrite-url'];
/** Headers a Connection header may not name: dropping them would change how the request is framed or addressed. */
const UNDROPPABLE = new Set(['content-length', 'transfer-encoding', 'host']);

export function createPipeline(deps: PipelineDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const closeFailed = (err: unknown) => deps.logger.error({ err }, 'a policy failed to close what it opened for a request');
  return (req, res) => {
    // 1. Identify the request: a request id and trace context first, so every answer below, error or not, carries them.
    const ctx = beginRequest(req);
    const ex = new Exchange(req, res, ctx);
    // 13. Record: exactly one log line and one set of metrics per request, however it ended; and whatever a policy
    //     opened for the request (an idempotency claim, a breaker's probe slot) is closed, on every path.
    res.once('close', () => {
      record(ctx, req, res, deps);
      void ex.close(closeFailed);
    });
    handle(ex, deps.runtime(), deps).catch((err: unknown) => answerWithError(ex, err, deps.logger, closeFailed));
  };
}

async function handle(ex: Exchange, runtime: Runtime, deps: PipelineDeps): Promise<void> {
  const { req, res, ctx } = ex;
  // 2. Read the request target once, for the router and the forwarder alike (normalised where RFC 3986 says spellings
  //    are equal, refused where upstreams disagree), and refuse what would let the upstream execute another request
  //    than the one the policies see: framing tricks, Host, method and path overrides.
  readTarget(req, ctx, runtime);
  checkRequestHead(req);
  ctx.peerTrusted = runtime.trustedProxies.trusts(req.socket.remoteAddress);
  ctx.clientAddress = ctx.peerTrusted ? runtime.trustedProxies.clientAddress(req) : (req.socket.remoteAddress ?? 'unknown');
  // An MCP tool call arrives from this process over loopback, carrying the address of the MCP request it is made for
  // (src/mcp/internal-client.ts); the header is removed from every request, vouched for or not.
  const vouched = deps.self.secret.take(req);
  if (vouched !== undefined) ctx.clientAddress = vouched;

  // 3. The gateway's own endpoints are answered here and never forwarded.
  if (ctx.matchPath.startsWith(GATEWAY_PREFIX) || ctx.matchPath === GATEWAY_PREFIX.slice(0, -1)) {
    ctx.outcome = 'gateway_endpoint';
    await serveGatewayEndpoint(ctx, req, res, runtime);
    return;
  }

  // 4. Who is calling, before anything is read, charged or forwarded: a verified agent (consumers.authenticate; a
  //    request without a valid key or token is refused here), or a self-asserted identity (hashed). Budgets,
  //    idempotency records and every log line are scoped by it, including those of requests no route takes.
  const resolving = runtime.callers.resolve(req, ctx);
  if (resolving) await resolving;

  // 4b. The MCP endpoint (mcp.path), once the caller is known: its tool calls come back through this pipeline as the
  //     same caller's HTTP requests, so it applies no policy of its own.
  if (isMcpPath(ctx.matchPath, runtime)) {
    ctx.outcome = 'gateway_endpoint';
    setHeaders(res, ctx.responseHeaders);
    const { serveMcp } = await loadMcp();
    await serveMcp(req, res, runtime, ctx, deps.self, deps.logger);
    return;
  }

  // 5. Match a route: the route decides upstream, timeout and which policies apply.
  const route = runtime.router.match(req.method ?? 'GET', ctx.matchPath);
  if (!route) {
    throw new GatewayError('ROUTE_NOT_FOUND', `No route matches ${req.method} ${truncate(ctx.path)}.`);
  }
  ctx.route = route;
  const policies = route.policies;

  // 6. Request phase: each policy looks at the request (the idempotency key, the cost), reads its body if it must, and
  //    adds what it needs of the store to the request's batch. A request refused here is malformed: it is charged
  //    nothing, and the policies that never saw it may still describe themselves on the answer (the budget headers).
  for (let i = 0; i < policies.length; i++) {
    const verdict = policies[i]!.onRequest ? await policies[i]!.onRequest!(ex) : CONTINUE;
    if (verdict.kind === 'continue') continue;
    if (verdict.kind === 'refuse') for (const later of policies.slice(i + 1)) await later.onSkipped?.(ex);
    return answerWith(ex, verdict);
  }

  // 7. One store round trip for the whole batch, right before forwarding: the charge first, and the idempotency claim
  //    with it only when the charge is allowed. The policies decide on its replies: over budget, a stored answer to
  //    replay, a key in use; from here on every answer, errors included, carries the budget headers.
  const decided = await ex.batch.commit(deps.store);
  if (decided.kind !== 'continue') return answerWith(ex, decided);

  // 8. Last checks before forwarding, which fail fast without reaching the upstream: a credential it keeps refusing
  //    (auth halt), an upstream known to be failing (open circuit).
  for (const policy of policies) {
    let verdict = policy.beforeForward?.(ex);
    if (verdict instanceof Promise) verdict = await verdict;
    if (verdict && verdict.kind !== 'continue') return answerWith(ex, verdict);
  }

  // 9. Forward. Upstream failures come back as typed results, never as exceptions. A request that a Redis reply resumed
  //    is one of a batch already (one reply resumes many) and is sent at once; any other is sent with the rest of this
  //    turn of the event loop, so one wake-up of the upstream serves them all. Every policy hears how it ended.
  const resumedByRedis = deps.store.kind === 'redis' && ex.batch.waitedOnStore;
  const result = await deps.forwarder.send(req, res, ctx, route, ctx.requestBody, resumedByRedis, runtime.requestBodyIdleMs);
  await ex.upstreamResult(result);
  if (result.kind !== 'response') {
    // Recorded first (a claim released or marked unknown), so a retry sent the moment this answer arrives never finds
    // the key still "in progress".
    await ex.recorded();
    if (result.kind === 'client_closed') return;
    if (!result.clientFault) deps.metrics.upstreamErrors.inc({ upstream: route.upstream.name, code: result.error.code });
    // A write that may have executed, with no key to make a second attempt safe: an SDK that obeys X-Should-Retry must
    // not send it again blind.
    if (result.reachedUpstream && !ctx.retryReplays && !IDEMPOTENT_METHODS.has(req.method ?? 'GET')) throw outcomeUnknownWithoutKey(result.error, req.method ?? 'POST');
    throw result.error;
  }
  const response = result.response;
  const status = response.statusCode ?? 502;

  // 10. An upstream 4xx/5xx becomes one envelope before any of it reaches the agent: its 4xx explanation kept, 5xx
  //     internals dropped.
  if (status >= 400) {
    const error = await normalizedUpstreamError(response, route, ctx);
    deps.metrics.upstreamErrors.inc({ upstream: route.upstream.name, code: error.code });
    ex.answer({ kind: 'upstream_error', upstreamStatus: status, ...answerOf(error, ctx) });
    await ex.recorded();
    throw error;
  }

  // 11. Response phase: each policy may refuse a success that is none (silent failure), reading its body whole to
  //     check it if it must.
  for (const policy of policies) {
    const verdict = policy.onResponse ? await policy.onResponse(ex, response) : CONTINUE;
    if (verdict.kind === 'continue') continue;
    ex.answer({ kind: 'discarded', why: `refused by ${policy.name}` });
    await ex.recorded();
    return answerWith(ex, verdict);
  }

  // 12. Deliver: a checked body from memory, anything else as a stream. The policies see the answer first (an
  //     idempotency claim keeps a copy of what the agent gets), and it ends only once they have recorded it, so an
  //     immediate retry is answered by the replay.
  const body = ex.responseBody;
  if (body !== undefined) {
    ctx.upstreamEndedAt = process.hrtime.bigint();
    writeResponseHead(response, res, ctx.responseHeaders, body.length, route.upstream.secrets);
    ex.answer({ kind: 'buffered', status, headers: response.headers as Record<string, string | string[]>, body });
    await ex.recorded();
    res.end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  ex.answer({ kind: 'stream', response });
  streamResponse(response, res, ctx, route.timeoutMs, ex.awaitsRecording ? () => ex.recorded() : undefined);
}

/** Answers a verdict that stopped the pipeline. */
function answerWith(ex: Exchange, verdict: Exclude<Verdict, { kind: 'continue' }>): void {
  switch (verdict.kind) {
    case 'client_closed':
      return;
    case 'refuse':
      throw verdict.error;
    case 'respond':
      ex.ctx.outcome = verdict.outcome;
      setHeaders(ex.res, ex.ctx.responseHeaders);
      verdict.write(ex.res);
  }
}

/** Reads a bounded part of an upstream error's body (4xx only: 5xx bodies are never shown) and makes the envelope. */
async function normalizedUpstreamError(response: IncomingMessage, route: Route, ctx: RequestContext): Promise<GatewayError> {
  const status = response.statusCode ?? 502;
  let body: Buffer = Buffer.alloc(0);
  if (status < 500) {
    const read = await readBounded(response, UPSTREAM_ERROR_BODY_BYTES, route.timeoutMs);
    const raw = read.kind === 'complete' ? read.body : read.kind === 'too_large' ? read.prefix : undefined;
    // A compressed explanation is read decoded (as far as it was read); one that cannot be decoded is not shown at all.
    const decoded = raw && decodeBody(raw, response.headers['content-encoding'], UPSTREAM_ERROR_DECODED_BYTES, read.kind === 'too_large');
    if (decoded?.kind === 'decoded') body = decoded.body.subarray(0, UPSTREAM_ERROR_BODY_BYTES);
  }
  // Whatever was not read is not needed: drop the connection rather than drain an error page of unknown size.
  if (!response.complete) response.destroy();
  ctx.upstreamEndedAt = process.hrtime.bigint();
  return normalizeUpstreamError({
    status,
    headers: response.headers,
    body,
    upstream: route.upstream.name,
    override: route.upstreamErrors.get(status),
    secrets: route.upstream.secrets,
  });
}

/** The envelope exactly as the client will get it (with this request's gateway headers), for an idempotency record. */
function answerOf(error: GatewayError, ctx: RequestContext) {
  // The route's secrets: a stored (and replayed) envelope is redacted like the one sent.
  const answer = problemAnswer(error, ctx.requestId, ctx.route?.upstream.secrets);
  return { status: answer.status, headers: { ...ctx.responseHeaders, ...answer.headers }, body: Buffer.from(answer.body) };
}

function beginRequest(req: IncomingMessage): RequestContext {
  const requestId = requestIdFrom(req.headers['x-request-id']);
  const url = req.url ?? '/';
  const query = url.indexOf('?');
  return {
    requestId,
    responseHeaders: { 'x-request-id': requestId },
    trace: traceContextFrom(req.headers.traceparent),
    startedAt: process.hrtime.bigint(),
    path: query === -1 ? url : url.slice(0, query),
    matchPath: '',
    peerTrusted: false,
    clientAddress: '',
    retryReplays: false,
    route: undefined,
    consumer: undefined,
    agent: undefined,
    credentialHeaders: undefined,
    upstreamStatus: undefined,
    upstreamResponse: undefined,
    upstreamStartedAt: undefined,
    upstreamEndedAt: undefined,
    errorCode: undefined,
    outcome: 'ok',
  };
}

function readTarget(req: IncomingMessage, ctx: RequestContext, runtime: Runtime): void {
  const url = req.url ?? '';
  if (Buffer.byteLength(url) > runtime.maxUrlBytes) {
    throw new GatewayError('INVALID_REQUEST', `The request target is ${Buffer.byteLength(url)} bytes; at most ${runtime.maxUrlBytes} are accepted.`, {
      status: 414,
    });
  }
  const reading = readRequestTarget(url, runtime.caseSensitivePaths);
  if (reading.kind === 'refuse') throw new GatewayError('INVALID_REQUEST', reading.detail);
  ctx.path = reading.path;
  ctx.matchPath = reading.matchPath;
  // Everything after this step (routing, the idempotency fingerprint, cost rules, the forwarder) sees this one target.
  req.url = reading.target;
}

/** Refuses a request head that would make the upstream read another request than the gateway does. */
function checkRequestHead(req: IncomingMessage): void {
  const method = req.method ?? '';
  if (REFUSED_METHODS.has(method)) {
    throw new GatewayError('INVALID_REQUEST', `${method} is not forwarded: the upstream would echo back the credentials the gateway adds.`, {
      status: 405,
      headers: { allow: HTTP_METHODS.join(', ') },
    });
  }
  // RFC 9112 §3.2: exactly one Host, and none missing in HTTP/1.1.
  let hosts = 0;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host') hosts++;
    // CGI-style upstreams (WSGI, Rack, PHP) read X_Original_URL as X-Original-URL: the same override, spelled past the check.
    else if (name.includes('_') && TARGET_OVERRIDE_HEADERS.includes(name.toLowerCase().replaceAll('_', '-'))) throw targetOverride(name);
  }
  if (hosts > 1) throw new GatewayError('INVALID_REQUEST', 'The request has more than one Host header (RFC 9112 §3.2).');
  if (hosts === 0 && req.httpVersion !== '1.0') throw new GatewayError('INVALID_REQUEST', 'The request has no Host header (RFC 9112 §3.2 requires one).');
  const headers = req.headers;
  // The Host travels on as X-Forwarded-Host and Forwarded host=, which upstreams build links from: only a host[:port].
  if (headers.host !== undefined && !HOST_PATTERN.test(headers.host)) throw new GatewayError('INVALID_REQUEST', 'The Host header is not a host name or address with an optional port.');
  // RFC 9110 §9.3.1: a GET or HEAD body has no meaning, and an upstream that does not read it leaves it on the pooled
  // connection, where it is read as the next agent's request.
  if ((method === 'GET' || method === 'HEAD') && (headers['transfer-encoding'] !== undefined || (headers['content-length'] !== undefined && headers['content-length'] !== '0'))) {
    throw new GatewayError('INVALID_REQUEST', `A ${method} request may not carry a body.`, { headers: { connection: 'close' } });
  }
  const te = headers['transfer-encoding'];
  if (te !== undefined && te.trim().toLowerCase() !== 'chunked') {
    throw new GatewayError('INVALID_REQUEST', `Transfer-Encoding '${truncate(te)}' is not supported; send the body with Content-Length or chunked alone.`, {
      status: 501,
      headers: { connection: 'close' },
    });
  }
  const named = connectionOptions(headers.connection);
  if (named?.some((name) => UNDROPPABLE.has(name))) {
    throw new GatewayError('INVALID_REQUEST', 'The Connection header names Content-Length, Transfer-Encoding or Host; those can never be hop-by-hop.', {
      headers: { connection: 'close' },
    });
  }
  for (const name of TARGET_OVERRIDE_HEADERS) if (headers[name] !== undefined) throw targetOverride(name);
  // The same override as a query parameter (Rack, Laravel, Symfony read _method on a POST).
  const query = req.url!.indexOf('?');
  if (query !== -1 && hasMethodParameter(req.url!.slice(query + 1))) throw targetOverride('_method');
}

/** Whether a query string has a _method parameter, however it is spelled (escapes, any case). */
function hasMethodParameter(query: string): boolean {
  // Most queries have neither an escape nor the word: no parsing for them.
  if (!query.includes('%') && !/method/i.test(query)) return false;
  for (const key of new URLSearchParams(query).keys()) if (key.toLowerCase() === '_method') return true;
  return false;
}

function targetOverride(name: string): GatewayError {
  return new GatewayError('INVALID_REQUEST', `The ${name} ${name.startsWith('_') ? 'query parameter' : 'header'} is not accepted: it would make the API run another method or path than this request names. Send that method and path instead.`);
}

/** A write whose outcome is unknown (timeout, reset after sending) and that no Idempotency-Key protects. */
function outcomeUnknownWithoutKey(error: GatewayError, method: string): GatewayError {
  return new GatewayError(error.code, error.message, {
    status: error.status,
    retryable: false,
    upstreamStatus: error.upstreamStatus,
    extensions: error.extensions,
    headers: error.headers,
    cause: error,
    suggestion: `Do not send this ${method} again blind: it reached the API and may have taken effect. Check the current state first; send an Idempotency-Key with writes so a retry is safe.`,
  });
}

async function serveGatewayEndpoint(ctx: RequestContext, req: IncomingMessage, res: ServerResponse, runtime: Runtime): Promise<void> {
  setHeaders(res, ctx.responseHeaders);
  const rest = ctx.matchPath.slice(GATEWAY_PREFIX.length);
  if (rest === 'budget' || rest === 'whoami' || rest === 'openapi.json') {
    onlyGet(req);
    // The caller's own budgets, identity and operations: settled the same way a forwarded request's would be.
    const resolving = runtime.callers.resolve(req, ctx);
    if (resolving) await resolving;
    if (rest === 'budget') await serveBudget(req, res, runtime, ctx.consumer!);
    else if (rest === 'whoami') serveWhoami(res, ctx);
    else serveOpenApi(req, res, runtime, ctx);
    return;
  }
  if (rest.startsWith('approvals/')) {
    onlyGet(req);
    // Only the agent that asked sees an approval: settled as a forwarded request's caller is.
    const resolving = runtime.callers.resolve(req, ctx);
    if (resolving) await resolving;
    await serveApprovalStatus(ctx.path.slice(ctx.path.lastIndexOf('/') + 1), req, res, ctx, runtime.approvals);
    return;
  }
  if (rest === 'errors' || rest.startsWith('errors/')) {
    onlyGet(req);
    serveCatalog(rest.slice('errors'.length), res);
    return;
  }
  throw new GatewayError('ROUTE_NOT_FOUND', `The gateway has no endpoint ${truncate(ctx.path)}; see /_agentgate/errors.`);
}

function onlyGet(req: IncomingMessage): void {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    throw new GatewayError('INVALID_REQUEST', `${req.method} is not allowed here; use GET.`, { status: 405, headers: { allow: 'GET, HEAD' } });
  }
}

/** For answers the gateway makes itself (errors, replays, its endpoints); proxied answers get them in writeResponseHead. */
function setHeaders(res: ServerResponse, headers: Record<string, string>): void {
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
}

async function answerWithError(ex: Exchange, err: unknown, logger: Logger, closeFailed: (err: unknown) => void): Promise<void> {
  const { ctx, res } = ex;
  const error = err instanceof GatewayError ? err : new GatewayError('GATEWAY_ERROR', 'The gateway failed while handling this request.', { cause: err });
  if (!(err instanceof GatewayError)) logger.error({ request_id: ctx.requestId, err }, 'unexpected error in the request pipeline');
  // Before the answer goes out, so that a retry sent the moment it arrives finds the claim ended, not "in progress".
  await ex.close(closeFailed);
  if (ctx.upstreamResponse && !ctx.upstreamResponse.complete) ctx.upstreamResponse.destroy();
  ctx.errorCode = error.code;
  ctx.outcome = outcomeOf(error.code);
  if (!res.headersSent) {
    setHeaders(res, ctx.responseHeaders);
    // Answered before its body was read (refused at the door): reading the rest to keep the connection would let any
    // client make the gateway swallow gigabytes after a 401.
    if (hasUnreadBody(ex.req)) res.setHeader('connection', 'close');
  }
  // Whatever the upstream echoed into the envelope is redacted of the credentials the gateway injected there.
  sendProblem(res, error, ctx.requestId, ctx.route?.upstream.secrets);
}

function record(ctx: RequestContext, req: IncomingMessage, res: ServerResponse, deps: PipelineDeps): void {
  const finished = res.writableFinished;
  // An answer cut short by the gateway keeps its reason; otherwise an unfinished answer means the client left.
  if (!finished && ctx.outcome === 'ok') ctx.outcome = 'client_closed';
  // 499 is nginx's convention for "the client closed the connection before the answer was complete".
  const status = finished ? res.statusCode : ctx.outcome === 'client_closed' ? 499 : res.statusCode;
  const now = process.hrtime.bigint();
  const seconds = Number(now - ctx.startedAt) / 1e9;
  const routeName = ctx.route?.name ?? (ctx.outcome === 'gateway_endpoint' ? '_agentgate' : 'none');
  let upstreamSeconds: number | undefined;
  if (ctx.upstreamStartedAt !== undefined && ctx.route) {
    upstreamSeconds = Number((ctx.upstreamEndedAt ?? now) - ctx.upstreamStartedAt) / 1e9;
    deps.metrics.recordUpstreamDuration(ctx.route.upstream.name, routeName, upstreamSeconds);
  }
  deps.metrics.recordRequest(routeName, methodLabel(req.method), status, ctx.outcome, seconds);
  deps.accessLog.write({
    request_id: ctx.requestId,
    trace_id: ctx.trace.traceId,
    route: routeName,
    consumer: ctx.consumer?.id,
    method: req.method,
    path: truncate(ctx.path),
    status,
    upstream_status: ctx.upstreamStatus,
    duration_ms: round(seconds * 1000),
    upstream_duration_ms: upstreamSeconds === undefined ? undefined : round(upstreamSeconds * 1000),
    outcome: ctx.outcome,
    code: ctx.errorCode,
    idempotency_key_hash: ctx.idempotencyKeyHash,
  });
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

function truncate(text: string): string {
  return text.length > 256 ? `${text.slice(0, 256)}...` : text;
}

/**
 * The MCP endpoint and the SDK under it are loaded on its first request: a gateway without mcp.path never loads them
 * (with swagger-parser, they added a quarter of a second to every start).
 */
let mcpModule: Promise<typeof import('./mcp/serve.ts')> | undefined;
function loadMcp(): Promise<typeof import('./mcp/serve.ts')> {
  return (mcpModule ??= import('./mcp/serve.ts'));
}

/** Whether the request announced a body that has not been read to its end. */
function hasUnreadBody(req: IncomingMessage): boolean {
  if (req.complete) return false;
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

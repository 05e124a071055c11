// Sends a request to its upstream with http-proxy-3 over a keep-alive pool, and streams the answer back; maps network failures to typed errors.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse, ClientRequest } from 'node:http';
import type { Socket } from 'node:net';
import { Stream } from 'node:stream';
import { createProxyServer, type ProxyServer, type ServerOptions } from 'http-proxy-3';
import { GatewayError, requestBodyStalled } from '../errors/problem.ts';
import { redactSecrets } from '../errors/redact.ts';
import type { Outcome, RequestContext } from '../context.ts';
import type { Upstream } from '../runtime.ts';
import type { UpstreamResult } from '../upstream-result.ts';
import { CLIENT_ADDRESS_HEADERS, FORWARDING_CHAIN_HEADERS, writeForwardedHeaders } from './forwarded.ts';

/**
 * What the forwarder needs of a route: where to send and how long the upstream may stay silent. A Route is one; the
 * forwarder's per-route options are cached by this object.
 */
export interface ForwardTarget {
  readonly upstream: Upstream;
  readonly timeoutMs: number;
}

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection, not the message, so they are never passed on.
 * Expect is answered by the gateway itself (Node sends the 100 Continue), and Proxy-Authorization is meant for the gateway.
 */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-authenticate', 'expect']);

/** Headers addressed to the gateway alone, on any route: an approval is the gateway's record, nothing the upstream reads. */
const GATEWAY_ONLY = new Set(['approval-id']);

/**
 * Request headers the client never decides for the upstream: framing (Content-Length, Transfer-Encoding) is written
 * from what Node's parser made of the request, so no header trick (a Connection header naming Content-Length, a DELETE
 * with a chunked body) can leave a body unframed on a pooled connection, where it would be read as the next request.
 * Host is the upstream's (changeOrigin).
 */
const GATEWAY_FRAMED = new Set(['content-length', 'transfer-encoding', 'host', 'tracestate']);

/** Headers the gateway writes on every upstream request: a client's copy spelled with '_' is dropped like the dashed one. */
const GATEWAY_WRITTEN = new Set(['x-request-id', 'traceparent']);

/** Methods whose requests carry a body the upstream is expected to read; after any other with a body, the connection is not reused. */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

/** Response headers that may quote a URL carrying the injected credential (a redirect with ?token=...): redacted. */
const URL_RESPONSE_HEADERS = ['location', 'content-location', 'link', 'refresh'];

/** Response headers never copied to the client: hop-by-hop ones, framing (Node re-frames), and the upstream's own request id. */
const NOT_FORWARDED_IN_RESPONSE = new Set([...HOP_BY_HOP, 'transfer-encoding', 'x-request-id', 'idempotent-replayed', 'x-idempotent-replayed', 'x-should-retry']);

/** Connect-phase failures: the request never reached the upstream, so retrying cannot duplicate anything. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNECT_TIMEOUT']);

/** Seconds an agent is told to wait before retrying an upstream that refused the connection. */
const UNAVAILABLE_RETRY_AFTER_SECONDS = 2;


interface InFlight {
  readonly req: IncomingMessage;
  readonly ctx: RequestContext;
  readonly route: ForwardTarget;
  resolve: (result: UpstreamResult) => void;
  proxyReq: ClientRequest | undefined;
  timedOut: boolean;
  /** Sent a second time on a fresh connection, after a pooled one turned out to be closed (see isStaleConnection). */
  retried: boolean;
  /** The client stopped sending its body for longer than server.timeouts.request_body_idle. */
  clientTimedOut: boolean;
  /** The upstream connection must not go back to the pool after this request (see prepareUpstreamHeaders). */
  readonly singleUse: boolean;
}

/**
 * Where a request's InFlight lives while it is being forwarded: on the request itself. Kept in a WeakMap keyed by the
 * request, every request's objects survived V8's young-generation collections and were promoted to the old generation
 * (measured under load: scavenges of ~10 ms instead of under 1 ms, and a major GC every second).
 */
const IN_FLIGHT = Symbol('agentgate.inFlight');
type ForwardedRequest = IncomingMessage & { [IN_FLIGHT]?: InFlight };

/** Methods whose request can be sent again without changing anything upstream (RFC 9110 §9.2.1). */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * A body a policy has read already, in the shape http-proxy-3 forwards (it only calls pipe): written to the upstream
 * request in one end(). A PassThrough holding it, as before, cost about 6 µs of CPU per request to set up and drain.
 */
class BufferedBody extends Stream {
  private readonly body: Buffer;

  constructor(body: Buffer) {
    super();
    this.body = body;
  }

  override pipe<T extends NodeJS.WritableStream>(destination: T): T {
    destination.end(this.body);
    return destination;
  }
}

export class Forwarder {
  private readonly proxy: ProxyServer;
  /** Each route's proxy options, built once rather than on every request. */
  private readonly optionsByRoute = new WeakMap<ForwardTarget, ServerOptions>();
  /**
   * Requests ready to go upstream, sent together once per turn of the event loop (its check phase). Node writes a
   * request to its socket on the next tick after it is set up, so setting up a whole batch in one callback puts all
   * its writes back to back, and one wake-up of the upstream's process serves many of them. Sent as each became
   * ready, between other requests' work, every write woke it anew. Measured in paired runs: upstream context switches
   * per request 0.82 -> 0.10 and about a quarter less gateway CPU per request on a passthrough route. Requests that one
   * Redis reply resumed together are a batch already and are sent at once (see send's inBatch): queued, they went out
   * one phase later and the upstream's wake-ups per request rose (0.08 -> 0.15).
   */
  private queue: (() => void)[] = [];
  private readonly sendQueue = () => {
    const batch = this.queue;
    this.queue = [];
    for (const send of batch) send();
  };

  constructor() {
    // selfHandleResponse: the pipeline decides how a response is delivered (streamed as-is here; inspected by later policies).
    // toProxy: the path is sent exactly as the pipeline read it (src/routing/request-target.ts); without it
    // http-proxy-3 re-parses it by WHATWG URL rules, which turn '\' into '/' and resolve dot segments, so the
    // upstream would get another path than the one the route was matched on.
    this.proxy = createProxyServer({ selfHandleResponse: true, changeOrigin: true, xfwd: false, toProxy: true });
    // http-proxy-3's deleteLength pass gives a DELETE or OPTIONS without Content-Length a 'content-length: 0' and drops
    // its Transfer-Encoding, so a chunked body would follow unframed. Framing is the gateway's (prepareUpstreamHeaders).
    const passes = this.proxy as unknown as { webPasses: { name: string }[] };
    passes.webPasses = passes.webPasses.filter((pass) => pass.name !== 'deleteLength');
    this.proxy.on('proxyReq', (proxyReq: ClientRequest, req: ForwardedRequest) => {
      const flight = req[IN_FLIGHT];
      if (!flight) return;
      flight.proxyReq = proxyReq;
      // A 'connection: close' request header alone does not stop Node from pooling the socket when the upstream's
      // answer does not close it; this does.
      if (flight.singleUse) proxyReq.shouldKeepAlive = false;
      // http-proxy-3 turns its own timeout into a generic socket hang-up; remember that it was a timeout.
      proxyReq.once('timeout', () => {
        flight.timedOut = true;
      });
      // A 101 to a request that asked for no upgrade (the gateway never forwards Upgrade): no HTTP answer will follow.
      proxyReq.once('upgrade', (upgraded: IncomingMessage, socket: Socket) => {
        socket.destroy();
        flight.resolve(invalidStatus(flight, upgraded.statusCode ?? 101));
      });
      // Closed without an answer and without an error (nothing else will settle the attempt): an upstream failure.
      proxyReq.once('close', () => {
        if (flight.ctx.upstreamStatus === undefined && !flight.retried) flight.resolve(failure(new Error('the connection closed without an answer'), flight));
      });
    });
    this.proxy.on('proxyRes', (proxyRes: IncomingMessage, req: ForwardedRequest) => {
      const flight = req[IN_FLIGHT];
      if (!flight) return;
      flight.ctx.upstreamStatus = proxyRes.statusCode;
      flight.ctx.upstreamResponse = proxyRes;
      const status = proxyRes.statusCode ?? 0;
      if (status < 200 || status > 599) {
        // 000, 099, 600, 999: no HTTP status an agent (or Node's own server) can act on; never delivered or stored.
        proxyRes.destroy();
        flight.resolve(invalidStatus(flight, status));
        return;
      }
      const transferEncoding = proxyRes.headers['transfer-encoding'];
      if (transferEncoding !== undefined && transferEncoding.trim().toLowerCase() !== 'chunked') {
        // Node undoes only the chunking: a gzip transfer coding would reach the agent as bytes nobody says are gzip.
        proxyRes.destroy();
        flight.resolve(invalidFraming(flight, transferEncoding));
        return;
      }
      // A 204 or 304 has no body whatever its head says; one the upstream writes anyway would be read as the next
      // request's answer on this pooled connection, so the connection is not reused.
      if ((status === 204 || status === 304) && announcesBody(proxyRes)) flight.proxyReq!.shouldKeepAlive = false;
      // From here on the socket may go quiet because the client reads slowly (backpressure), which is not the
      // upstream's fault: the body phase is guarded by streamResponse's idle timer instead.
      flight.proxyReq?.setTimeout(0);
      flight.resolve({ kind: 'response', response: proxyRes });
    });
    // The client went away while the upstream call was open; http-proxy-3 has already destroyed the upstream request.
    this.proxy.on('econnreset', (_err: Error, req: ForwardedRequest) => {
      req[IN_FLIGHT]?.resolve({ kind: 'client_closed', reachedUpstream: true });
    });
  }

  /**
   * Sends the request upstream and resolves once the response head arrives or the attempt fails. `body` replaces the
   * request stream when a policy has already read it. `inBatch`: the caller is one of a batch already (resumed with
   * others by one store reply), so the request goes out at once instead of waiting for the end of this turn of the loop.
   */
  send(req: ForwardedRequest, res: ServerResponse, ctx: RequestContext, route: ForwardTarget, body: Buffer | undefined, inBatch: boolean, bodyIdleMs: number): Promise<UpstreamResult> {
    const singleUse = prepareUpstreamHeaders(req, ctx, body, route.upstream.headers);
    return new Promise((resolve, reject) => {
      // Settled once, through a flag. Replacing `resolve` with a no-op closure on the first call, as this did, kept
      // each request's objects alive past V8's young collections: at 1,000 req/s 6.5 KiB of every request was promoted
      // and freed only by major collections (9 in 10 s); 0.1-0.9 KiB and 2-3 with the flag (test/bench/gc-trace.ts).
      let settled = false;
      const flight: InFlight = {
        req,
        ctx,
        route,
        proxyReq: undefined,
        timedOut: false,
        retried: false,
        clientTimedOut: false,
        singleUse,
        resolve: (result) => {
          if (settled) return;
          settled = true;
          resolve(result);
        },
      };
      req[IN_FLIGHT] = flight;
      ctx.upstreamStartedAt = process.hrtime.bigint();
      const routeOptions = this.optionsOf(route);
      // A body still arriving from the client is watched for silence (the client's time, not the upstream's).
      const options =
        body !== undefined ? { ...routeOptions, buffer: new BufferedBody(body) } : req.complete ? routeOptions : { ...routeOptions, buffer: new WatchedBody(req, flight, bodyIdleMs) };
      const onError = (err: NodeJS.ErrnoException) => {
        if (req.socket.destroyed || res.destroyed) {
          flight.resolve({ kind: 'client_closed', reachedUpstream: true });
          return;
        }
        // An upstream may close an idle pooled connection just as a request is sent on it. A safe, bodiless request
        // is sent once more on a fresh connection (as Envoy and nginx do) rather than failing the agent's call.
        if (!flight.retried && body === undefined && isStaleConnection(err, flight) && hasNoBody(req)) {
          flight.retried = true;
          this.proxy.web(req, res, options, onError);
          return;
        }
        flight.resolve(failure(err, flight));
      };
      const sendNow = () => {
        if (req.socket.destroyed || res.destroyed) return flight.resolve({ kind: 'client_closed', reachedUpstream: false });
        try {
          this.proxy.web(req, res, options, onError);
        } catch (err) {
          // Thrown outside the promise now, so it would take the process down and the rest of the batch with it.
          settled = true;
          reject(err);
        }
      };
      if (inBatch) sendNow();
      else this.enqueue(sendNow);
    });
  }

  private enqueue(send: () => void): void {
    if (this.queue.push(send) === 1) setImmediate(this.sendQueue);
  }

  private optionsOf(route: ForwardTarget): ServerOptions {
    let options = this.optionsByRoute.get(route);
    if (!options) {
      const { target, agent, connectTimeoutMs, headers } = route.upstream;
      options = { target, agent, proxyTimeout: route.timeoutMs, connectTimeout: connectTimeoutMs, ...(headers ? { headers } : {}) };
      this.optionsByRoute.set(route, options);
    }
    return options;
  }

  close(): void {
    this.proxy.close();
  }
}

/** The request failed on a reused keep-alive connection before any answer: the upstream had closed it. */
function isStaleConnection(err: NodeJS.ErrnoException, flight: InFlight): boolean {
  return flight.proxyReq?.reusedSocket === true && !flight.timedOut && flight.ctx.upstreamStatus === undefined && (err.code === 'ECONNRESET' || err.code === 'EPIPE');
}

function hasNoBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return SAFE_METHODS.has(req.method ?? '') && (length === undefined || length === '0') && req.headers['transfer-encoding'] === undefined;
}

/**
 * A body still streaming from the client, in the shape http-proxy-3 forwards (it only calls pipe): piped as it is, and
 * watched for silence once the pipe consumes it (a 'data' listener of its own, added earlier, would start the flow
 * before the pipe and lose the first chunks). Silence for longer than `idleMs` while the body is incomplete ends the
 * attempt as the client's fault (408), never the upstream's.
 */
class WatchedBody extends Stream {
  private readonly req: IncomingMessage;
  private readonly flight: InFlight;
  private readonly idleMs: number;

  constructor(req: IncomingMessage, flight: InFlight, idleMs: number) {
    super();
    this.req = req;
    this.flight = flight;
    this.idleMs = idleMs;
  }

  override pipe<T extends NodeJS.WritableStream>(destination: T): T {
    const { req, flight } = this;
    req.pipe(destination);
    if (req.complete) return destination;
    const timer = setTimeout(() => {
      if (req.complete) return;
      flight.clientTimedOut = true;
      flight.proxyReq?.destroy();
      flight.resolve(clientTooSlow());
    }, this.idleMs);
    const refresh = () => timer.refresh();
    const stop = () => {
      clearTimeout(timer);
      req.off('data', refresh);
    };
    req.on('data', refresh).once('end', stop).once('close', stop);
    return destination;
  }
}

function clientTooSlow(): UpstreamResult {
  return {
    kind: 'failed',
    reachedUpstream: true,
    clientFault: true,
    error: requestBodyStalled(),
  };
}

function invalidFraming(flight: InFlight, transferEncoding: string): UpstreamResult {
  return {
    kind: 'failed',
    reachedUpstream: true,
    error: new GatewayError('UPSTREAM_ERROR', `Upstream '${flight.route.upstream.name}' answered with Transfer-Encoding '${transferEncoding.slice(0, 64)}', which the gateway cannot pass on.`),
  };
}

function announcesBody(response: IncomingMessage): boolean {
  const length = response.headers['content-length'];
  return response.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

function invalidStatus(flight: InFlight, status: number): UpstreamResult {
  return {
    kind: 'failed',
    reachedUpstream: true,
    error: new GatewayError('UPSTREAM_ERROR', `Upstream '${flight.route.upstream.name}' answered with status ${status}, which is not a valid final HTTP status.`),
  };
}

function failure(err: NodeJS.ErrnoException, flight: InFlight): UpstreamResult {
  const upstream = flight.route.upstream.name;
  // Silence while the client has not finished sending is the client's: the upstream cannot answer a request it lacks.
  if (flight.clientTimedOut || (flight.timedOut && !flight.req.complete)) return clientTooSlow();
  if (flight.timedOut) {
    return {
      kind: 'failed',
      reachedUpstream: true,
      error: new GatewayError('UPSTREAM_TIMEOUT', `Upstream '${upstream}' sent nothing for ${flight.route.timeoutMs} ms.`, { cause: err }),
    };
  }
  const code = err.code ?? '';
  if (UNREACHABLE.has(code)) {
    return {
      kind: 'failed',
      reachedUpstream: false,
      error: new GatewayError('UPSTREAM_UNAVAILABLE', `Upstream '${upstream}' cannot be reached (${code}).`, {
        retryAfterSeconds: UNAVAILABLE_RETRY_AFTER_SECONDS,
        cause: err,
      }),
    };
  }
  return {
    kind: 'failed',
    reachedUpstream: true,
    error: new GatewayError('UPSTREAM_ERROR', `Upstream '${upstream}' closed the connection before answering (${code || err.message}).`, {
      cause: err,
    }),
  };
}

/** The header names a Connection header lists (RFC 9110 §7.6.1): hop-by-hop for this message only, in either direction. */
export function connectionOptions(connection: string | undefined): string[] | undefined {
  // The values nearly every message carries name no header beyond the hop-by-hop ones dropped anyway.
  if (!connection || connection === 'keep-alive' || connection === 'close') return undefined;
  return connection.split(',').map((token) => token.trim().toLowerCase());
}

/**
 * What the upstream is told: the client's end-to-end headers, framed by the gateway, with who is calling through whom and
 * the request id and trace context of this hop. The request's headers are replaced by a copy without the hop-by-hop ones
 * rather than edited with `delete`: deleting a property turns a V8 object into a slow dictionary, and http-proxy-3
 * copies the headers of every request.
 */
function prepareUpstreamHeaders(req: IncomingMessage, ctx: RequestContext, body: Buffer | undefined, injected: Record<string, string> | undefined): boolean {
  const incoming = req.headers;
  const namedInConnection = connectionOptions(incoming.connection);
  const trusted = ctx.peerTrusted;
  const headers: IncomingHttpHeaders = {};
  for (const name in incoming) {
    // CGI-style upstreams (WSGI, Rack, PHP) read X_Real_IP as X-Real-IP: every check compares the dashed spelling.
    const dashed = name.includes('_') ? name.replaceAll('_', '-') : name;
    if (HOP_BY_HOP.has(dashed) || GATEWAY_FRAMED.has(dashed) || GATEWAY_ONLY.has(dashed) || CLIENT_ADDRESS_HEADERS.has(dashed) || namedInConnection?.includes(name)) continue;
    if (!trusted && FORWARDING_CHAIN_HEADERS.has(dashed)) continue;
    // The agent's own key or token is the gateway's to check, never the upstream's to see.
    if (ctx.credentialHeaders?.includes(dashed)) continue;
    // Spelled with '_', a header such an upstream would merge with one the gateway writes or injects.
    if (dashed !== name && (GATEWAY_WRITTEN.has(dashed) || FORWARDING_CHAIN_HEADERS.has(dashed) || injected?.[dashed] !== undefined)) continue;
    headers[name] = incoming[name];
  }
  // The body as Node's parser framed it: the one a policy read whole, a Content-Length body, a chunked body, or none.
  let hasBody: boolean;
  if (body !== undefined) {
    headers['content-length'] = String(body.length);
    hasBody = body.length > 0;
  } else if (incoming['transfer-encoding'] !== undefined) {
    headers['transfer-encoding'] = 'chunked';
    hasBody = true;
  } else {
    if (incoming['content-length'] !== undefined) headers['content-length'] = incoming['content-length'];
    hasBody = incoming['content-length'] !== undefined && incoming['content-length'] !== '0';
  }
  // An upstream may leave a body it does not expect (a DELETE's) unread, and the answer to a HEAD may be followed by a
  // body after all (an upstream that serves HEAD as GET): either would be read as the next agent's on a pooled
  // connection, so these connections are used once.
  const singleUse = req.method === 'HEAD' || (hasBody && !BODY_METHODS.has(req.method ?? ''));
  if (singleUse) headers['connection'] = 'close';
  headers['x-request-id'] = ctx.requestId;
  headers['traceparent'] = ctx.trace.traceparent;
  // A tracestate belongs to the traceparent it came with: it travels only when that trace is continued.
  if (ctx.trace.continued && incoming.tracestate !== undefined) headers['tracestate'] = incoming.tracestate;
  writeForwardedHeaders(headers, req, incoming.host, (req.socket as Socket & { encrypted?: boolean }).encrypted === true, trusted, ctx.clientAddress);
  req.headers = headers;
  return singleUse;
}

/**
 * Writes the response head in one writeHead: the gateway's own headers (X-Request-Id, budget headers; they win over
 * the upstream's), then the upstream's status and end-to-end headers. `contentLength` replaces the upstream's when the
 * gateway delivers a body it has read.
 */
export function writeResponseHead(
  upstream: IncomingMessage,
  res: ServerResponse,
  gatewayHeaders: Record<string, string>,
  contentLength: number | undefined,
  /** The route's injected credentials: redacted where an upstream quotes them in a URL header. */
  secrets: readonly string[] | undefined,
): void {
  const headers = upstream.headers;
  const named = connectionOptions(headers.connection);
  const raw: string[] = [];
  if (secrets !== undefined && secrets.length > 0) {
    for (const name of URL_RESPONSE_HEADERS) if (headers[name] !== undefined) headers[name] = redactSecrets(headers[name], secrets) as string;
  }
  for (const name in gatewayHeaders) raw.push(name, gatewayHeaders[name]!);
  for (const name in headers) {
    if (NOT_FORWARDED_IN_RESPONSE.has(name) || named?.includes(name) || name in gatewayHeaders) continue;
    if (contentLength !== undefined && name === 'content-length') continue;
    const value = headers[name];
    if (typeof value === 'string') raw.push(name, value);
    else if (value !== undefined) for (const each of value) raw.push(name, each);
  }
  if (contentLength !== undefined) raw.push('content-length', String(contentLength));
  res.writeHead(upstream.statusCode ?? 502, raw);
}

/**
 * Streams the upstream body to the client with backpressure. If the upstream dies mid-body (reset, fewer bytes than
 * its Content-Length) or stays silent for `idleTimeoutMs` while the client is ready for more, the client connection
 * is cut so the client sees a broken response, never a short success.
 */
export function streamResponse(
  upstream: IncomingMessage,
  res: ServerResponse,
  ctx: RequestContext,
  idleTimeoutMs: number,
  /** Awaited after the upstream's last byte and before the client's response ends, so a policy can record the answer first. */
  beforeEnd?: () => Promise<void>,
): void {
  writeResponseHead(upstream, res, ctx.responseHeaders, undefined, ctx.route?.upstream.secrets);
  const abort = (outcome: Outcome) => {
    clearTimeout(idle);
    ctx.outcome = outcome;
    upstream.destroy();
    res.destroy();
  };
  const idle = setTimeout(function checkIdle() {
    // A client that is slow to read pauses the upstream; only silence while the client waits for bytes counts.
    if (res.writableNeedDrain) idle.refresh();
    else abort('upstream_timeout');
  }, idleTimeoutMs);
  // A client knows a Content-Length body is complete when its last byte arrives, whether or not the response has been
  // ended: with beforeEnd, that one byte (and, for an empty body, the head) is held back until beforeEnd has run.
  // Everything before it streams as usual. A chunked body is complete only with its terminating chunk, which res.end() sends.
  const length = upstream.headers['content-length'];
  let remaining = beforeEnd && length !== undefined ? Number(length) : -1;
  let held: Buffer | undefined;
  const resumeUpstream = () => upstream.resume();
  // A hand-written pump rather than pipe(): the same backpressure with fewer listeners, and room for the held-back byte.
  upstream.on('data', (chunk: Buffer) => {
    idle.refresh();
    let out = chunk;
    if (remaining > 0) {
      remaining -= chunk.length;
      if (remaining <= 0 && chunk.length > 0) {
        held = chunk.subarray(chunk.length - 1);
        out = chunk.subarray(0, chunk.length - 1);
      }
    }
    if (out.length > 0 && !res.write(out)) {
      upstream.pause();
      res.once('drain', resumeUpstream);
    }
  });
  upstream.once('end', () => {
    clearTimeout(idle);
    ctx.upstreamEndedAt = process.hrtime.bigint();
    if (beforeEnd) void beforeEnd().finally(() => res.end(held));
    else res.end();
  });
  upstream.once('error', () => abort('upstream_aborted'));
  upstream.once('close', () => {
    clearTimeout(idle);
    if (!upstream.complete && ctx.outcome !== 'upstream_timeout') abort('upstream_aborted');
  });
  // The client left: http-proxy-3 destroys the upstream request, which ends this pump.
  res.once('close', () => clearTimeout(idle));
  // An inspection may have paused the stream (to put its first bytes back); a 'data' listener alone does not resume it.
  upstream.resume();
}

// A deliberately misbehaving "orders" API that the demo runs behind agentgate, so every protection can be shown against it.
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface LegacyApi {
  url: string;
  port: number;
  close(): Promise<void>;
}

export interface LegacyApiOptions {
  host?: string;
  port?: number;
}

interface Order {
  id: string;
  created_at: string;
  [field: string]: unknown;
}

/** A fixed window that opens at its first call, so "the 4th call within a minute" never straddles a calendar-minute boundary. */
interface QuotaWindow {
  startedAt: number;
  used: number;
}

interface Customer {
  id: string;
  name: string;
  email: string;
}

interface State {
  orders: Map<string, Order>;
  /** Three demo customers, back after every reset: deleting one is the walk-through's destructive call. */
  customers: Map<string, Customer>;
  nextOrderNumber: number;
  executions: Map<string, number>;
  dailyQuota: QuotaWindow;
  weeklyQuota: QuotaWindow;
  /** Times of the /inventory calls that were let through; only those count, so a caller that backs off does recover. */
  inventoryCalls: number[];
  profileCalls: number;
}

interface Context {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  params: Record<string, string>;
  state: State;
  /** Resolves after ms; pending waits are dropped when the server closes so close() does not wait on them. */
  wait(ms: number): Promise<void>;
}

type Handler = (ctx: Context) => void | Promise<void>;

interface Route {
  method: string;
  /** Path with `{name}` segments, e.g. /orders/{id}; also the key under which executions are counted. */
  path: string;
  handler: Handler;
  /** Meta endpoints for the demo itself are not counted as executions of the legacy API. */
  uncounted?: boolean;
}

const ORDER_DELAY_MS = 200;
const REPORT_QUOTA_PER_MINUTE = 3;
const QUOTA_WINDOW_MS = 60_000;
const INVENTORY_LIMIT = 5;
const INVENTORY_WINDOW_MS = 10_000;
const SLOW_DEFAULT_MS = 3000;
const SLOW_MAX_MS = 60_000;
const STREAM_DEFAULT_CHUNKS = 5;
const STREAM_MAX_CHUNKS = 1000;
const STREAM_INTERVAL_MS = 100;
const MAX_BODY_BYTES = 1024 * 1024;

function freshState(): State {
  return {
    orders: new Map(),
    customers: new Map(
      [
        { id: 'cus_1', name: 'Ada Lovelace', email: 'ada@example.com' },
        { id: 'cus_2', name: 'Grace Hopper', email: 'grace@example.com' },
        { id: 'cus_3', name: 'Linus Pauling', email: 'linus@example.com' },
      ].map((c) => [c.id, c]),
    ),
    nextOrderNumber: 1,
    executions: new Map(),
    dailyQuota: { startedAt: 0, used: 0 },
    weeklyQuota: { startedAt: 0, used: 0 },
    inventoryCalls: [],
    profileCalls: 0,
  };
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const payload = Buffer.from(JSON.stringify(body));
  res.writeHead(status, {
    ...headers,
    'Content-Type': 'application/json',
    'Content-Length': String(payload.length),
  });
  res.end(payload);
}

function sendText(res: ServerResponse, status: number, contentType: string, text: string): void {
  const payload = Buffer.from(text);
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': String(payload.length) });
  res.end(payload);
}

/** A non-negative integer query parameter, or the fallback when it is missing or unparseable. */
function intParam(url: URL, name: string, fallback: number, max: number): number {
  const raw = url.searchParams.get(name);
  if (raw === null || !/^\d+$/.test(raw)) return fallback;
  return Math.min(Number(raw), max);
}

class BodyTooLargeError extends Error {}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > MAX_BODY_BYTES) throw new BodyTooLargeError();
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Counts a call against a quota window; true while the window still has quota left. */
function takeQuota(window: QuotaWindow, now: number): boolean {
  if (window.used === 0 || now - window.startedAt >= QUOTA_WINDOW_MS) {
    window.startedAt = now;
    window.used = 0;
  }
  window.used += 1;
  return window.used <= REPORT_QUOTA_PER_MINUTE;
}

function report(kind: 'daily' | 'weekly', state: State): Record<string, unknown> {
  const orders = [...state.orders.values()];
  const units = orders.reduce((sum, o) => sum + (typeof o.quantity === 'number' ? o.quantity : 1), 0);
  return {
    report: kind,
    generated_at: new Date().toISOString(),
    orders_created: orders.length,
    units_ordered: units,
  };
}

// Handlers. Each one misbehaves in one specific way that a real legacy API is known to.

/** Not idempotent on purpose: every call, including a client's retry, creates another order. */
const createOrder: Handler = async ({ req, res, state, wait }) => {
  let raw: string;
  try {
    raw = await readBody(req);
  } catch (err) {
    if (err instanceof BodyTooLargeError) {
      sendJson(res, 413, { message: `request body exceeds ${MAX_BODY_BYTES} bytes` });
      return;
    }
    throw err;
  }

  let body: unknown;
  try {
    body = JSON.parse(raw);
  } catch {
    sendJson(res, 400, {
      message: 'request body is not valid JSON',
      errors: [{ field: 'item', message: 'is required' }],
    });
    return;
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    sendJson(res, 400, {
      message: 'request body must be a JSON object',
      errors: [{ field: 'item', message: 'is required' }],
    });
    return;
  }
  const fields = body as Record<string, unknown>;
  const errors: { field: string; message: string }[] = [];
  if (typeof fields.item !== 'string' || fields.item.trim() === '') {
    errors.push({ field: 'item', message: 'is required' });
  }
  if (fields.quantity !== undefined && !(Number.isInteger(fields.quantity) && (fields.quantity as number) > 0)) {
    errors.push({ field: 'quantity', message: 'must be a positive integer' });
  }
  if (errors.length > 0) {
    sendJson(res, 400, { message: 'order could not be created', errors });
    return;
  }

  // The delay widens the window in which a client times out and retries while the first attempt is still running.
  await wait(ORDER_DELAY_MS);

  // Created even if the client has gone away meanwhile: the caller never learns the order exists, which is the trap.
  const id = `ord_${state.nextOrderNumber++}`;
  const { id: _ignoredId, created_at: _ignoredCreatedAt, ...rest } = fields;
  const order: Order = { id, ...rest, created_at: new Date().toISOString() };
  state.orders.set(id, order);
  sendJson(res, 201, order, { Location: `/orders/${id}` });
};

const listOrders: Handler = ({ res, state }) => {
  const orders = [...state.orders.values()];
  sendJson(res, 200, { orders, count: orders.length });
};

const getOrder: Handler = ({ res, params, state }) => {
  const id = params.id ?? '';
  const order = state.orders.get(id);
  if (order === undefined) {
    sendJson(res, 404, { message: `order ${id} not found` });
    return;
  }
  sendJson(res, 200, order);
};

const listCustomers: Handler = ({ res, state }) => {
  sendJson(res, 200, [...state.customers.values()]);
};

/** Irreversible, as legacy deletes are: the walk-through puts it behind an approval. */
const deleteCustomer: Handler = ({ res, params, state }) => {
  const id = params.id ?? '';
  if (!state.customers.delete(id)) {
    sendJson(res, 404, { message: `customer ${id} not found` });
    return;
  }
  sendJson(res, 200, { deleted: id });
};

const slow: Handler = async ({ res, url, wait }) => {
  const ms = intParam(url, 'ms', SLOW_DEFAULT_MS, SLOW_MAX_MS);
  await wait(ms);
  sendJson(res, 200, { waited_ms: ms });
};

/** Quota exhaustion reported as success: 200 with Content-Length: 0. */
const dailyReport: Handler = ({ res, state }) => {
  if (takeQuota(state.dailyQuota, Date.now())) {
    sendJson(res, 200, report('daily', state));
    return;
  }
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '0' });
  res.end();
};

/** The same silent failure, but as a chunked body with no chunks, so there is no Content-Length: 0 to spot it by. */
const weeklyReport: Handler = ({ res, state }) => {
  if (takeQuota(state.weeklyQuota, Date.now())) {
    sendJson(res, 200, report('weekly', state));
    return;
  }
  res.writeHead(200, { 'Content-Type': 'application/json' });
  // Without flushing first, Node would see the empty end() and add Content-Length: 0 itself.
  res.flushHeaders();
  res.end();
};

const CRASH_PAGE = `<!DOCTYPE html>
<html>
<head><title>500 Internal Server Error</title></head>
<body>
<h1>HTTP Status 500 - Internal Server Error</h1>
<hr>
<p><b>type</b> Exception report</p>
<p><b>message</b> Request processing failed; nested exception is java.lang.NullPointerException</p>
<pre>Error: NullPointerException
    at com.legacy.OrderService.findCustomer(OrderService.java:142)
    at com.legacy.OrderService.placeOrder(OrderService.java:87)
    at com.legacy.web.OrderController.handle(OrderController.java:53)
    at org.apache.catalina.core.ApplicationFilterChain.doFilter(ApplicationFilterChain.java:166)
    at Layer.handle [as handle_request] (/srv/legacy/node_modules/express/lib/router/layer.js:95:5)
    at /srv/legacy/db/pool.js:214:17
    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)
Caused by: java.sql.SQLException: Connection refused (db-primary.internal:5432, user=orders_rw)</pre>
<hr>
<h3>Apache Tomcat/7.0.52</h3>
</body>
</html>
`;

/** Leaks internals (stack trace, hostnames, users) in an HTML page an agent cannot parse. */
const crash: Handler = ({ res }) => {
  sendText(res, 500, 'text/html; charset=utf-8', CRASH_PAGE);
};

/** Rate limited, but says neither in JSON nor with Retry-After when to come back. */
const inventory: Handler = ({ res, state }) => {
  const now = Date.now();
  state.inventoryCalls = state.inventoryCalls.filter((t) => now - t < INVENTORY_WINDOW_MS);
  if (state.inventoryCalls.length >= INVENTORY_LIMIT) {
    sendText(res, 429, 'text/plain', 'Too Many Requests');
    return;
  }
  state.inventoryCalls.push(now);
  sendJson(res, 200, {
    items: [
      { sku: 'widget', in_stock: 42 },
      { sku: 'gadget', in_stock: 0 },
      { sku: 'gizmo', in_stock: 7 },
    ],
  });
};

/**
 * A 401 that is not about the caller's credentials at all: retrying the same token works. A revoked credential is
 * refused on every call, however often it is sent: the token `revoked` (`Authorization: Bearer revoked`) or the user
 * `revoked` (`Authorization: Basic`, `curl -u revoked:...`; the scheme an agent can send beside its X-Agent-Key).
 */
const profile: Handler = ({ req, res, state }) => {
  if (isRevoked(req.headers.authorization)) {
    sendJson(res, 401, { error: 'token_revoked', error_description: 'This token was revoked.' }, { 'WWW-Authenticate': 'Bearer error="invalid_token"' });
    return;
  }
  state.profileCalls += 1;
  if (state.profileCalls % 3 === 0) {
    sendJson(res, 401, { error: 'invalid_token' }, { 'WWW-Authenticate': 'Bearer' });
    return;
  }
  sendJson(res, 200, { user: 'demo' });
};

function isRevoked(authorization: string | undefined): boolean {
  if (authorization === undefined) return false;
  if (authorization === 'Bearer revoked') return true;
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(authorization);
  return basic !== null && Buffer.from(basic[1]!, 'base64').toString('utf8').split(':')[0] === 'revoked';
}

const status: Handler = ({ res }) => {
  sendJson(res, 200, { ok: false, error: 'upstream ledger unavailable' });
};

/** Promises 1000 bytes, sends fewer, then hangs up: the client must notice the body is incomplete. */
const truncated: Handler = ({ res }) => {
  const partial = Buffer.from('{"orders":[{"id":"ord_1","item":"widget","quantity":2},{"id":"ord_2","ite');
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '1000' });
  // Destroy only once the partial body has reached the socket, or the client might see no body at all.
  res.write(partial, () => res.destroy());
};

const stream: Handler = async ({ res, url, wait }) => {
  const chunks = intParam(url, 'chunks', STREAM_DEFAULT_CHUNKS, STREAM_MAX_CHUNKS);
  res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
  res.flushHeaders();
  for (let i = 1; i <= chunks; i++) {
    if (res.destroyed) return;
    res.write(`${JSON.stringify({ chunk: i, of: chunks, at: new Date().toISOString() })}\n`);
    if (i < chunks) await wait(STREAM_INTERVAL_MS);
  }
  res.end();
};

const echoHeaders: Handler = ({ req, res }) => {
  sendJson(res, 200, { method: req.method, url: req.url, headers: req.headers });
};

const stats: Handler = ({ res, state }) => {
  sendJson(res, 200, { executions: Object.fromEntries(state.executions), orders: state.orders.size });
};

const reset: Handler = (ctx) => {
  Object.assign(ctx.state, freshState());
  ctx.res.writeHead(204);
  ctx.res.end();
};

const ROUTES: readonly Route[] = [
  { method: 'POST', path: '/orders', handler: createOrder },
  { method: 'GET', path: '/orders', handler: listOrders },
  { method: 'GET', path: '/orders/{id}', handler: getOrder },
  { method: 'GET', path: '/customers', handler: listCustomers },
  { method: 'DELETE', path: '/customers/{id}', handler: deleteCustomer },
  { method: 'GET', path: '/slow', handler: slow },
  { method: 'GET', path: '/reports/daily', handler: dailyReport },
  { method: 'GET', path: '/reports/weekly', handler: weeklyReport },
  { method: 'GET', path: '/crash', handler: crash },
  { method: 'GET', path: '/inventory', handler: inventory },
  { method: 'GET', path: '/profile', handler: profile },
  { method: 'GET', path: '/status', handler: status },
  { method: 'GET', path: '/truncated', handler: truncated },
  { method: 'GET', path: '/stream', handler: stream },
  { method: 'GET', path: '/headers', handler: echoHeaders },
  { method: 'GET', path: '/_demo/stats', handler: stats, uncounted: true },
  { method: 'POST', path: '/_demo/reset', handler: reset, uncounted: true },
];

function matchPath(pattern: string, pathname: string): Record<string, string> | undefined {
  const want = pattern.split('/');
  const got = pathname.split('/');
  if (want.length !== got.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    const w = want[i]!;
    const g = got[i]!;
    if (w.startsWith('{') && w.endsWith('}')) {
      if (g === '') return undefined;
      try {
        params[w.slice(1, -1)] = decodeURIComponent(g);
      } catch {
        return undefined;
      }
    } else if (w !== g) {
      return undefined;
    }
  }
  return params;
}

function findRoute(method: string, pathname: string): { route: Route; params: Record<string, string> } | undefined {
  for (const route of ROUTES) {
    if (route.method !== method) continue;
    const params = matchPath(route.path, pathname);
    if (params !== undefined) return { route, params };
  }
  return undefined;
}

function urlFor(host: string, port: number): string {
  // A wildcard bind address is not something a client can connect to.
  const reachable = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return reachable.includes(':') ? `http://[${reachable}]:${port}` : `http://${reachable}:${port}`;
}

export function startLegacyApi(options: LegacyApiOptions = {}): Promise<LegacyApi> {
  const host = options.host ?? '127.0.0.1';
  const state = freshState();
  const timers = new Set<NodeJS.Timeout>();

  const wait = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        resolve();
      }, ms);
      timers.add(timer);
    });

  const server: Server = createServer((req, res) => {
    // A client that hangs up mid-response must not take the server down.
    req.on('error', () => {});
    res.on('error', () => {});

    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://legacy.invalid');
    } catch {
      sendJson(res, 400, { message: 'malformed request target' });
      return;
    }

    const match = findRoute(req.method ?? 'GET', url.pathname);
    if (match === undefined) {
      sendJson(res, 404, { message: 'not found' });
      return;
    }
    const { route, params } = match;
    if (!route.uncounted) {
      const key = `${route.method} ${route.path}`;
      state.executions.set(key, (state.executions.get(key) ?? 0) + 1);
    }

    const fail = (): void => {
      if (res.headersSent || res.destroyed) {
        res.destroy();
        return;
      }
      sendJson(res, 500, { message: 'internal error' });
    };
    try {
      const result = route.handler({ req, res, url, params, state, wait });
      if (result instanceof Promise) result.catch(fail);
    } catch {
      fail();
    }
  });

  // Malformed requests and resets before a request is parsed: answer if possible, never throw.
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    else socket.destroy();
  });

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 3000, host, () => {
      server.off('error', reject);
      const port = (server.address() as AddressInfo).port;
      resolve({
        url: urlFor(host, port),
        port,
        close: () =>
          new Promise<void>((done, fail) => {
            for (const timer of timers) clearTimeout(timer);
            timers.clear();
            server.close((err) => (err ? fail(err) : done()));
            // Keep-alive and in-flight (slow, streaming) connections would otherwise hold close() open.
            server.closeAllConnections();
          }),
      });
    });
  });
}

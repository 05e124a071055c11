// Fuzz: thousands of generated request targets and header sets (encodings, separators, dot-like segments, framing
// headers, overrides) over raw sockets, against one invariant: what reached the upstream is, by the most lenient reading
// any upstream framework gives a path, the route the gateway matched; and nothing reached it that no route's policies saw.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { startUpstream, json, type TestUpstream } from './helpers/upstream.ts';
import { startTestGateway, configYaml, type TestGateway } from './helpers/gateway.ts';

const REQUESTS = 3000;
const CONCURRENCY = 16;
/**
 * Deterministic, so that CI judges every commit on the same 3,000 requests: AGENTGATE_FUZZ_SEED=N runs another set, and
 * AGENTGATE_FUZZ_SEED=random a fresh one each run (to explore; a failure names its seed, which replays it).
 */
const SEED = process.env.AGENTGATE_FUZZ_SEED === 'random' ? Date.now() % 1_000_000 : Number(process.env.AGENTGATE_FUZZ_SEED ?? 260239);

let upstream: TestUpstream;
let gw: TestGateway;

before(async () => {
  upstream = await startUpstream({ '*': (req, res) => json(res, 200, { ok: true, url: req.url }) });
  gw = await startTestGateway(
    configYaml(`  timeouts: {request_body_idle: 300ms, keep_alive: 200ms}
logging: {level: info}
upstreams: {api: {url: '${upstream.url}', timeout: 2s}}
rate_limits: {agents: {capacity: 1000000, per: 1s}}
routes:
  - {name: create-order, match: {methods: [POST], path: /orders}, upstream: api, rate_limit: agents, cost: 10, idempotency: {required: true, ttl: 1h}}
  - {name: get-order, match: {methods: [GET], path: '/orders/{id}'}, upstream: api}
  - {name: admin, match: {path: /admin/*}, upstream: api, rate_limit: agents, cost: 50}
  - {name: everything-else, match: {path: /*}, upstream: api}
`),
  );
});

after(async () => {
  await gw.close();
  await upstream.close();
});

/** mulberry32: a small seeded PRNG. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const random = prng(SEED);
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
const chance = (p: number) => random() < p;

const WORDS = ['orders', 'admin', 'x', '42', 'v1', 'users', 'a.b', '~me', '.well-known', '..', '.', '', '...', 'adm%C4%B1n', '%C5%BFecret', 'orders%C0%AF'];
const SEPARATORS = ['/', '/', '/', '/', '//', '\\', '%2f', '%2F', '%5c', '/./', '/../', '/%2e/', '/%2e%2e/', '/.%2e/', '/..;/', ';x=1/', '/%20../'];
const SUFFIXES = ['', '', '', '/', '?q=1', '?q=/../admin', '?a=%2e%2e&b=\\', '#frag', '%00', '%0a', '%', '%zz', ';jsessionid=1', '/.', '/..', '%20', '.'];

/** One word, each character possibly percent-encoded (either hex case) or upper-cased. */
function spell(word: string): string {
  let out = '';
  for (const ch of word) {
    const r = random();
    if (r < 0.12) out += `%${ch.charCodeAt(0).toString(16).padStart(2, '0')[chance(0.5) ? 'toUpperCase' : 'toLowerCase']()}`;
    else if (r < 0.22) out += ch.toUpperCase();
    else out += ch;
  }
  return out;
}

/** Half plain spellings of real paths (case, escapes, trailing slash), half hostile ones (separators, dots, junk). */
function target(): string {
  if (chance(0.5)) {
    let path = '';
    const segments = 1 + Math.floor(random() * 3);
    for (let i = 0; i < segments; i++) path += `/${spell(pick(['orders', 'orders', 'admin', 'x', '42', 'users', 'a.b', '~me']))}`;
    return path + pick(['', '', '/', '?q=1', '?q=/../admin']);
  }
  let path = chance(0.1) ? pick(['', '/', '//', '\\']) : '';
  const segments = 1 + Math.floor(random() * 3);
  for (let i = 0; i < segments; i++) path += (i === 0 ? pick(['/', '/', '/', '//', '/%2e/', '\\']) : pick(SEPARATORS)) + spell(pick(WORDS));
  if (!path.startsWith('/') && chance(0.9)) path = `/${path}`;
  return path + pick(SUFFIXES);
}

const HIDDEN = 'POST /admin/wipe HTTP/1.1\r\nHost: hidden\r\nX-Request-Id: smuggled\r\nContent-Length: 0\r\n\r\n';

function request(): { method: string; payload: string } {
  const method = pick(['GET', 'GET', 'POST', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS', 'TRACE']);
  const headers = [chance(0.98) ? 'Host: gateway.test' : ''];
  if (chance(0.02)) headers.push('Host: second.test');
  if (chance(0.6)) headers.push(`Idempotency-Key: fuzz-${Math.floor(random() * 1e9)}`);
  if (chance(0.1)) headers.push(`Connection: ${pick(['keep-alive, Content-Length', 'Transfer-Encoding', 'x-agent-id', 'close, Host', 'keep-alive', 'close'])}`);
  if (chance(0.03)) headers.push(`${pick(['X-HTTP-Method-Override', 'X-Original-URL', 'X-Rewrite-URL', 'X-Method-Override'])}: ${pick(['DELETE', '/admin/wipe'])}`);
  if (chance(0.05)) headers.push(`${pick(['X-Forwarded-For', 'X-Real-IP', 'Forwarded', 'True-Client-IP'])}: 10.9.9.9`);
  const bodyKind = pick(['none', 'none', 'none', 'length', 'length', 'chunked', 'hidden-length', 'hidden-chunked', 'short']);
  let body = '';
  if (bodyKind === 'length') body = '{"a":1}';
  if (bodyKind.startsWith('hidden')) body = HIDDEN;
  if (bodyKind === 'chunked' || bodyKind === 'hidden-chunked') {
    headers.push('Transfer-Encoding: chunked');
    const content = bodyKind === 'chunked' ? '{"a":1}' : HIDDEN;
    body = `${content.length.toString(16)}\r\n${content}\r\n0\r\n\r\n`;
  } else if (bodyKind === 'short') {
    headers.push('Content-Length: 50');
    body = '{"a"';
  } else if (body !== '') headers.push(`Content-Length: ${body.length}`);
  headers.push('Connection: close');
  return { method, payload: `${method} ${target()} HTTP/1.1\r\n${headers.filter(Boolean).join('\r\n')}\r\n\r\n${body}` };
}

function exchange(payload: string): Promise<string> {
  const { hostname, port } = new URL(gw.url);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname);
    let data = '';
    const timer = setTimeout(() => socket.destroy(), 3000);
    socket.on('data', (chunk) => (data += chunk.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(data);
    });
    socket.write(Buffer.from(payload, 'latin1'));
  });
}

/**
 * The most lenient reading an upstream framework gives a path: every escape decoded, '\' as '/', ';' parameters
 * dropped (Servlet), empty and '.' segments dropped and '..' resolved (Go, WSGI, WHATWG), case folded (Express,
 * ASP.NET, by upper case), trailing slash ignored (Express's non-strict routing), blanks and trailing dots trimmed (IIS).
 */
function lenientPath(url: string): string {
  const path = url.split('?')[0]!.split('#')[0]!;
  const out: string[] = [];
  for (const raw of path.replaceAll('\\', '/').split('/').map(decodeLeniently)) {
    const segment = raw.split(';')[0]!.trim();
    if (segment === '' || segment === '.') continue;
    if (segment === '..') out.pop();
    // Windows drops trailing dots and blanks; .NET folds case by upper case (the dotless i is I there).
    else out.push(segment.replace(/[\s.]+$/, '').toUpperCase().toLowerCase());
  }
  return `/${out.join('/')}`;
}

/** One segment's escapes decoded; one that is not UTF-8 left as it is, the others still decoded (as WHATWG decoders do). */
function decodeLeniently(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment.replace(/(%[0-9A-Fa-f]{2})+/g, (run) => {
      try {
        return decodeURIComponent(run);
      } catch {
        return run;
      }
    });
  }
}

/** The route a lenient upstream would take the request for, by the same table as the config. */
function routeOf(method: string, path: string): string {
  if (method === 'POST' && path === '/orders') return 'create-order';
  if ((method === 'GET' || method === 'HEAD') && /^\/orders\/[^/]+$/.test(path)) return 'get-order';
  if (/^\/admin(\/|$)/.test(path)) return 'admin';
  return 'everything-else';
}

test(`${REQUESTS} generated requests: the upstream only ever gets what the matched route's policies saw (seed ${SEED})`, async (t) => {
  const queue = Array.from({ length: REQUESTS }, request);
  const statuses = new Map<number, number>();
  const workers = Array.from({ length: CONCURRENCY }, async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const reply = await exchange(next.payload);
      const status = Number(reply.slice(9, 12)) || 0;
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
  });
  await Promise.all(workers);
  await new Promise((resolve) => setTimeout(resolve, 200));

  const routeByRequestId = new Map<string, string>();
  for (const line of gw.logs.requestLines()) routeByRequestId.set(String(line.request_id), String(line.route));

  const failures: string[] = [];
  const seenIds = new Set<string>();
  const forwardedPerRoute = new Map<string, number>();
  for (const received of upstream.received) {
    const id = String(received.headers['x-request-id']);
    const route = routeByRequestId.get(id);
    if (route === undefined) {
      failures.push(`the upstream got a request the gateway never logged (smuggled?): ${received.method} ${received.url} id=${id}`);
      continue;
    }
    if (seenIds.has(id)) failures.push(`the upstream got request ${id} twice: ${received.method} ${received.url}`);
    seenIds.add(id);
    forwardedPerRoute.set(route, (forwardedPerRoute.get(route) ?? 0) + 1);
    const lenient = routeOf(received.method, lenientPath(received.url));
    if (lenient !== route) failures.push(`${received.method} ${received.url} was matched as '${route}' but an upstream would read it as '${lenient}'`);
    if (route === 'create-order' && received.headers['idempotency-key'] === undefined) failures.push(`a keyless write reached the upstream: ${received.url}`);
    for (const name of ['x-http-method-override', 'x-original-url', 'x-rewrite-url', 'x-method-override']) {
      if (received.headers[name] !== undefined) failures.push(`${name} reached the upstream on ${received.url}`);
    }
    if (JSON.stringify(received.headers).includes('10.9.9.9')) failures.push(`a client's proxy-trust header reached the upstream on ${received.url}`);
    if (received.method === 'TRACE') failures.push('a TRACE reached the upstream');
  }
  assert.deepEqual(failures.slice(0, 20), [], `seed ${SEED}: ${failures.length} violations`);

  // Not vacuous: the generator reached every route and every kind of answer.
  const summary = `seed ${SEED}: forwarded ${JSON.stringify(Object.fromEntries(forwardedPerRoute))}, statuses ${JSON.stringify(Object.fromEntries(statuses))}`;
  t.diagnostic(summary);
  for (const route of ['create-order', 'get-order', 'admin', 'everything-else']) assert.ok((forwardedPerRoute.get(route) ?? 0) > 0, `no request reached ${route}; ${summary}`);
  assert.ok((statuses.get(400) ?? 0) > REQUESTS / 5, `few refusals; ${summary}`);
  assert.ok(upstream.received.length > REQUESTS / 5, `few forwarded; ${summary}`);
  assert.equal(statuses.get(0) ?? 0, 0, `some requests got no answer at all; ${summary}`);
});

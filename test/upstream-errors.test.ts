// Upstream failures of every shape become one envelope an agent can act on: normalization, the override table, circuit
// breakers, the auth-failure halt, credential injection, and the OpenAI SDK obeying X-Should-Retry through the gateway.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
import { CLI, configYaml, startTestGateway, tempDir, type TestGateway } from './helpers/gateway.ts';
import { json, startUpstream, type TestUpstream } from './helpers/upstream.ts';
import { envelopeOf, send, type Reply } from './helpers/http.ts';

/** A Tomcat error page with a stack trace, internal host names and a database user: none of it may reach an agent. */
const CRASH_PAGE = `<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head><body>
<h1>HTTP Status 500</h1><pre>java.lang.NullPointerException
    at com.legacy.OrderService.findCustomer(OrderService.java:142)
    at com.legacy.web.OrderController.handle(OrderController.java:53)
Caused by: java.sql.SQLException: Connection refused (db-primary.internal:5432, user=orders_rw)</pre>
<h3>Apache Tomcat/7.0.52</h3></body></html>`;
/** Strings of the 5xx bodies below that must appear nowhere in what the agent gets. */
const INTERNALS = ['NullPointerException', 'OrderService.java', 'db-primary.internal', 'orders_rw', 'Tomcat', 'redis-7.prod.internal', 'Traceback', 'cache.py'];

const SECRET_TOKEN = 'sk-legacy-9f8e7d6c5b4a';
const SECRET_KEY = 'lk-0a1b2c3d4e5f';

let upstream: TestUpstream;
let deadPort: number;
let tg: TestGateway;
/** Answer of the flaky upstream: 'fail' (500), 'ok', or 'gated' (200 once the test calls releaseProbe). */
let flakyMode: 'fail' | 'ok' | 'gated' = 'fail';
let releaseProbe: () => void = () => {};
let flakyAuthCalls = 0;

function send429Date(res: ServerResponse, seconds: number): void {
  res.writeHead(429, { 'content-type': 'text/plain', 'retry-after': new Date(Date.now() + seconds * 1000).toUTCString() });
  res.end('Too Many Requests');
}

before(async () => {
  upstream = await startUpstream({
    // ----- 5xx: the body never reaches the agent
    '/e/html-500': (_req, res) => {
      res.writeHead(500, { 'content-type': 'text/html; charset=utf-8' });
      res.end(CRASH_PAGE);
    },
    '/e/json-500': (_req, res) => json(res, 500, { error: 'cache miss storm', host: 'redis-7.prod.internal', trace: 'Traceback (most recent call last): File "cache.py"' }),
    '/e/502': (_req, res) => json(res, 502, { message: 'bad gateway from redis-7.prod.internal' }),
    '/e/503': (_req, res) => {
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end('maintenance on redis-7.prod.internal');
    },
    '/e/503-date': (_req, res) => json(res, 503, { message: 'down' }, { 'retry-after': new Date(Date.now() + 120_000).toUTCString() }),
    '/e/504': (_req, res) => {
      res.writeHead(504, { 'content-type': 'text/html' });
      res.end('<html><body><h1>504 Gateway Time-out</h1>nginx at redis-7.prod.internal</body></html>');
    },
    // ----- 429
    '/e/429-date': (_req, res) => send429Date(res, 30),
    '/e/429-none': (_req, res) => {
      res.writeHead(429, { 'content-type': 'text/plain' });
      res.end('Too Many Requests');
    },
    '/e/429-seconds': (_req, res) => json(res, 429, { message: 'slow down' }, { 'retry-after': '7' }),
    // ----- 4xx: the explanation reaches the agent
    '/e/400-fields': (_req, res) =>
      json(res, 400, { message: 'order could not be created', errors: [{ field: 'item', message: 'is required' }, { field: 'quantity', message: 'must be a positive integer' }] }),
    '/e/400-text': (_req, res) => {
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end('quantity must be\n  a positive integer');
    },
    '/e/400-html': (_req, res) => {
      res.writeHead(400, { 'content-type': 'text/html' });
      res.end('<html><body>Bad Request at /srv/app/views.py line 12</body></html>');
    },
    '/e/401': (_req, res) => json(res, 401, { error: 'invalid_token', error_description: 'The access token expired' }, { 'www-authenticate': 'Bearer' }),
    '/e/403': (_req, res) => json(res, 403, { message: 'missing scope orders:write' }),
    '/e/404': (_req, res) => json(res, 404, { message: 'order ord_9 not found' }),
    '/e/409': (_req, res) => json(res, 409, { message: 'order ord_1 was changed by someone else (version 4, you sent 3)' }),
    '/e/422': (_req, res) => json(res, 422, { errors: [{ field: 'email', message: 'is not an email address' }] }),
    '/e/408': (_req, res) => json(res, 408, { message: 'request took too long to arrive' }),
    '/e/long-400': (_req, res) => json(res, 400, { message: 'x'.repeat(600), errors: Array.from({ length: 200 }, (_, i) => ({ field: `f${i}`, message: 'bad' })) }),
    // ----- override table
    '/o/400-busy': (_req, res) => json(res, 400, { message: 'system busy, try later' }),
    '/o/404': (_req, res) => json(res, 404, { message: 'no such record' }),
    '/o/500-validation': (_req, res) => json(res, 500, { message: 'ORA-01400: cannot insert NULL into ORDERS.ITEM' }),
    '/o/401': (_req, res) => json(res, 401, { message: 'session expired' }),
    '/limited/400': (_req, res) => json(res, 400, { message: 'no' }),
    '/limited/503': (_req, res) => json(res, 503, { message: 'down' }),
    // ----- circuit breaker
    '/flaky/x': (_req, res) => {
      if (flakyMode === 'fail') return json(res, 500, { message: 'boom' });
      if (flakyMode === 'ok') return json(res, 200, { ok: true });
      releaseProbe = () => json(res, 200, { ok: true, probe: true });
    },
    // ----- auth halt: only 'Bearer good' is accepted, and 'Bearer flaky' on every third call
    '/authy/me': (req, res) => {
      const auth = req.headers.authorization;
      if (auth === 'Bearer flaky') flakyAuthCalls++;
      if (auth === 'Bearer good' || (auth === 'Bearer flaky' && flakyAuthCalls % 3 === 0)) return json(res, 200, { user: 'good' });
      json(res, 401, { error: 'invalid_token' });
    },
    // ----- credential injection: the upstream accepts only the injected secrets, and its 401 echoes what it got
    '/secret/me': (req, res) =>
      req.headers.authorization === `Bearer ${SECRET_TOKEN}` && req.headers['x-legacy-key'] === SECRET_KEY
        ? json(res, 200, { user: 'service' })
        : json(res, 401, { message: `invalid credentials ${req.headers.authorization} / ${req.headers['x-legacy-key']}` }),
    '/secret/denied': (req, res) => json(res, 403, { message: `key ${req.headers['x-legacy-key']} may not read this (token ${req.headers.authorization})` }),
    '/secret/crash': (req, res) => json(res, 500, { message: `login with ${req.headers.authorization} failed` }),
    '/keyed/me': (_req, res) => json(res, 401, { message: 'revoked key' }),
  });
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  deadPort = (probe.address() as AddressInfo).port;
  await new Promise((r) => probe.close(r));

  tg = await startTestGateway(
    configYaml(`upstreams:
  legacy: {url: '${upstream.url}'}
  flaky: {url: '${upstream.url}', circuit_breaker: {failures: 3, window: 10s, open_for: 2s}}
  gone: {url: 'http://127.0.0.1:${deadPort}', circuit_breaker: {failures: 2, window: 10s, open_for: 30s}}
  authy: {url: '${upstream.url}', auth_halt: {after: 3, cooldown: 1s}}
  secret:
    url: '${upstream.url}'
    headers: {Authorization: 'Bearer \${AG_TEST_LEGACY_TOKEN}', X-Legacy-Key: '\${AG_TEST_LEGACY_KEY}'}
    auth_halt: {after: 2, cooldown: 1m}
  keyed:
    url: '${upstream.url}'
    headers: {X-Auth-Token: '\${AG_TEST_LEGACY_KEY}'}
    auth_halt: {after: 2, cooldown: 1m}
rate_limits:
  agents: {capacity: 1000, per: 1h}
routes:
  - name: overridden
    match: {path: /o/*}
    upstream: legacy
    upstream_errors:
      '400': {code: UPSTREAM_UNAVAILABLE, retryable: true, suggestion: 'The legacy API says busy with a 400; wait and retry.'}
      '404': {code: CONFLICT}
      '500': {code: VALIDATION_FAILED}
      '401': {code: UNAUTHENTICATED, retryable: true}
  - {name: limited, match: {path: /limited/*}, upstream: legacy, rate_limit: agents}
  - {name: flaky, match: {path: /flaky/*}, upstream: flaky}
  - {name: gone, match: {path: /gone/*}, upstream: gone}
  - {name: authy, match: {path: /authy/*}, upstream: authy}
  - {name: secret, match: {path: /secret/*}, upstream: secret}
  - {name: keyed, match: {path: /keyed/*}, upstream: keyed}
  - {name: errors, match: {path: /*}, upstream: legacy}
`),
    { env: { ...process.env, AG_TEST_LEGACY_TOKEN: SECRET_TOKEN, AG_TEST_LEGACY_KEY: SECRET_KEY } },
  );
});

after(async () => {
  await tg.close();
  await upstream.close();
});

const get = (p: string, headers: Record<string, string> = {}) => send(`${tg.url}${p}`, { headers });
const calls = (p: string) => upstream.received.filter((r) => r.url.split('?')[0] === p).length;
const metricsText = async () => (await send(`${tg.adminUrl}/metrics`)).text;
const metric = (text: string, series: string) => Number(text.split('\n').find((l) => l.startsWith(`${series} `))?.split(' ')[1] ?? 'NaN');
/** Everything the agent received: status line data, every header, the body. */
const everything = (reply: Reply) => `${JSON.stringify(reply.headers)}\n${reply.text}`;

interface Expected {
  status: number;
  code: string;
  retryable: boolean;
  retryAfter: number | null;
  detail: string | RegExp;
  suggestion: string | RegExp;
  upstreamMember?: unknown;
}

/** Checks the whole envelope and its headers; returns the parsed body for more checks. */
function expectEnvelope(reply: Reply, want: Expected): Record<string, any> {
  const body = envelopeOf(reply);
  assert.equal(reply.status, want.status);
  assert.equal(body.code, want.code);
  assert.equal(body.retryable, want.retryable);
  assert.equal(reply.headers['x-should-retry'], String(want.retryable));
  assert.equal(body.retry_after_seconds, want.retryAfter);
  assert.equal(reply.headers['retry-after'], want.retryAfter === null ? undefined : String(want.retryAfter));
  assert.equal(body.upstream_status, want.status);
  assert.equal(typeof body.suggestion, 'string');
  assert.ok(body.suggestion.length > 0);
  if (typeof want.suggestion === 'string') assert.equal(body.suggestion, want.suggestion);
  else assert.match(body.suggestion, want.suggestion);
  if (typeof want.detail === 'string') assert.equal(body.detail, want.detail);
  else assert.match(body.detail, want.detail);
  if ('upstreamMember' in want) assert.deepEqual(body.upstream, want.upstreamMember);
  else assert.equal('upstream' in body, false, `unexpected upstream member: ${JSON.stringify(body.upstream)}`);
  assert.equal(reply.headers['cache-control'], 'no-store');
  return body;
}

describe('upstream 5xx: one retryable envelope, the body never shown', () => {
  test('an HTML 500 with a stack trace is UPSTREAM_ERROR 500; nothing of the page reaches the agent or the logs', async () => {
    const reply = await get('/e/html-500');
    expectEnvelope(reply, {
      status: 500,
      code: 'UPSTREAM_ERROR',
      retryable: true,
      retryAfter: null,
      detail: "Upstream 'legacy' failed with HTTP 500.",
      suggestion: 'The API behind the gateway failed: back off, then retry a few times before escalating.',
    });
    for (const secret of INTERNALS) assert.ok(!everything(reply).includes(secret), `'${secret}' reached the agent`);
    for (const secret of INTERNALS) assert.ok(!tg.logs.text.includes(secret), `'${secret}' reached the logs`);
  });

  test('JSON 500, 502, 503 (with and without Retry-After) and 504: status kept, internals never shown', async () => {
    const json500 = await get('/e/json-500');
    expectEnvelope(json500, { status: 500, code: 'UPSTREAM_ERROR', retryable: true, retryAfter: null, detail: "Upstream 'legacy' failed with HTTP 500.", suggestion: /back off/ });
    const e502 = await get('/e/502');
    expectEnvelope(e502, { status: 502, code: 'UPSTREAM_ERROR', retryable: true, retryAfter: null, detail: "Upstream 'legacy' failed with HTTP 502.", suggestion: /back off/ });
    // A 503 without Retry-After gets the default wait of 5 s.
    const e503 = await get('/e/503');
    expectEnvelope(e503, {
      status: 503,
      code: 'UPSTREAM_UNAVAILABLE',
      retryable: true,
      retryAfter: 5,
      detail: "Upstream 'legacy' failed with HTTP 503.",
      suggestion: 'Wait 5 seconds, then send the same request again.',
    });
    // An HTTP-date Retry-After becomes whole seconds.
    const dated = envelopeOf(await get('/e/503-date'));
    assert.ok(dated.retry_after_seconds >= 118 && dated.retry_after_seconds <= 121, String(dated.retry_after_seconds));
    const e504 = await get('/e/504');
    expectEnvelope(e504, {
      status: 504,
      code: 'UPSTREAM_TIMEOUT',
      retryable: true,
      retryAfter: null,
      detail: "Upstream 'legacy' failed with HTTP 504.",
      suggestion: /did not answer in time/,
    });
    for (const reply of [json500, e502, e503, e504]) {
      for (const secret of INTERNALS) assert.ok(!everything(reply).includes(secret), `'${secret}' reached the agent`);
    }
    const text = await metricsText();
    assert.ok(metric(text, 'agentgate_upstream_errors_total{upstream="legacy",code="UPSTREAM_ERROR"}') >= 3);
    assert.ok(metric(text, 'agentgate_upstream_errors_total{upstream="legacy",code="UPSTREAM_UNAVAILABLE"}') >= 2);
  });
});

describe("upstream 429: UPSTREAM_RATE_LIMITED with the upstream's wait as integer seconds", () => {
  test('an HTTP-date Retry-After becomes whole seconds; none gets 5 s; delay-seconds are kept', async () => {
    const dated = await get('/e/429-date');
    const body = expectEnvelope(dated, {
      status: 429,
      code: 'UPSTREAM_RATE_LIMITED',
      retryable: true,
      retryAfter: envelopeOf(dated).retry_after_seconds,
      detail: "Upstream 'legacy' is rate limiting this gateway (429): Too Many Requests",
      suggestion: /^Wait \d+ seconds, then send the same request again\.$/,
    });
    assert.ok(Number.isInteger(body.retry_after_seconds) && body.retry_after_seconds >= 28 && body.retry_after_seconds <= 31, String(body.retry_after_seconds));
    assert.match(String(dated.headers['retry-after']), /^\d+$/, 'Retry-After is integer seconds, never a date');

    expectEnvelope(await get('/e/429-none'), {
      status: 429,
      code: 'UPSTREAM_RATE_LIMITED',
      retryable: true,
      retryAfter: 5,
      detail: "Upstream 'legacy' is rate limiting this gateway (429): Too Many Requests",
      suggestion: 'Wait 5 seconds, then send the same request again.',
    });
    expectEnvelope(await get('/e/429-seconds'), {
      status: 429,
      code: 'UPSTREAM_RATE_LIMITED',
      retryable: true,
      retryAfter: 7,
      detail: "Upstream 'legacy' is rate limiting this gateway (429): slow down",
      suggestion: 'Wait 7 seconds, then send the same request again.',
      upstreamMember: { message: 'slow down' },
    });
  });
});

describe("upstream 4xx: the upstream's explanation reaches the agent", () => {
  test('400 with field errors: the message and the field errors in detail, the whole JSON in the upstream member', async () => {
    expectEnvelope(await get('/e/400-fields'), {
      status: 400,
      code: 'INVALID_REQUEST',
      retryable: false,
      retryAfter: null,
      detail: "Upstream 'legacy' answered 400: order could not be created (item: is required; quantity: must be a positive integer)",
      suggestion: 'Fix the request as the detail says; sending it again unchanged will fail the same way.',
      upstreamMember: { message: 'order could not be created', errors: [{ field: 'item', message: 'is required' }, { field: 'quantity', message: 'must be a positive integer' }] },
    });
  });

  test('400 as plain text: the text (whitespace folded) in detail, no upstream member; an HTML 4xx page is not shown', async () => {
    expectEnvelope(await get('/e/400-text'), {
      status: 400,
      code: 'INVALID_REQUEST',
      retryable: false,
      retryAfter: null,
      detail: "Upstream 'legacy' answered 400: quantity must be a positive integer",
      suggestion: /Fix the request/,
    });
    const html = await get('/e/400-html');
    expectEnvelope(html, { status: 400, code: 'INVALID_REQUEST', retryable: false, retryAfter: null, detail: "Upstream 'legacy' answered 400.", suggestion: /Fix the request/ });
    assert.ok(!everything(html).includes('views.py'));
  });

  test('a long explanation is clipped in detail and the upstream member is left out above 4 KiB', async () => {
    const body = expectEnvelope(await get('/e/long-400'), {
      status: 400,
      code: 'INVALID_REQUEST',
      retryable: false,
      retryAfter: null,
      detail: /^Upstream 'legacy' answered 400: x+\.\.\.$/,
      suggestion: /Fix the request/,
    });
    assert.ok(body.detail.length <= 540, String(body.detail.length));
  });

  test('401, 403, 404, 409, 422, 408: code, retryable and suggestion for each', async () => {
    const e401 = await get('/e/401');
    assert.equal(e401.headers['www-authenticate'], undefined, "the upstream's own headers are not passed on with the envelope");
    expectEnvelope(e401, {
      status: 401,
      code: 'UNAUTHENTICATED',
      retryable: false,
      retryAfter: null,
      detail: "Upstream 'legacy' answered 401: The access token expired",
      suggestion: 'Refresh your credentials once and retry; if it fails again, escalate to a human.',
      upstreamMember: { error: 'invalid_token', error_description: 'The access token expired' },
    });
    expectEnvelope(await get('/e/403'), {
      status: 403,
      code: 'FORBIDDEN',
      retryable: false,
      retryAfter: null,
      detail: "Upstream 'legacy' answered 403: missing scope orders:write",
      suggestion: 'Do not retry: you are not allowed to do this. Escalate to a human if you need access.',
      upstreamMember: { message: 'missing scope orders:write' },
    });
    expectEnvelope(await get('/e/404'), {
      status: 404,
      code: 'NOT_FOUND',
      retryable: false,
      retryAfter: null,
      detail: "Upstream 'legacy' answered 404: order ord_9 not found",
      suggestion: 'Check the identifier in the path; the resource does not exist.',
      upstreamMember: { message: 'order ord_9 not found' },
    });
    expectEnvelope(await get('/e/409'), {
      status: 409,
      code: 'CONFLICT',
      retryable: false,
      retryAfter: null,
      detail: "Upstream 'legacy' answered 409: order ord_1 was changed by someone else (version 4, you sent 3)",
      suggestion: 'Read the current state of the resource, then decide whether to send a changed request.',
      upstreamMember: { message: 'order ord_1 was changed by someone else (version 4, you sent 3)' },
    });
    expectEnvelope(await get('/e/422'), {
      status: 422,
      code: 'VALIDATION_FAILED',
      retryable: false,
      retryAfter: null,
      detail: "Upstream 'legacy' answered 422: email: is not an email address",
      suggestion: 'Fix the fields named in the detail, then send the corrected request.',
      upstreamMember: { errors: [{ field: 'email', message: 'is not an email address' }] },
    });
    expectEnvelope(await get('/e/408'), {
      status: 408,
      code: 'UPSTREAM_TIMEOUT',
      retryable: true,
      retryAfter: null,
      detail: "Upstream 'legacy' answered 408: request took too long to arrive",
      suggestion: /did not answer in time/,
      upstreamMember: { message: 'request took too long to arrive' },
    });
    const lines = tg.logs.requestLines();
    const line = lines.find((l) => l.path === '/e/404');
    assert.deepEqual([line?.status, line?.upstream_status, line?.outcome, line?.code], [404, 404, 'not_found', 'NOT_FOUND']);
  });
});

describe('the per-route override table', () => {
  test('a status can mean another code, retryability and suggestion on one route; the status is kept', async () => {
    expectEnvelope(await get('/o/400-busy'), {
      status: 400,
      code: 'UPSTREAM_UNAVAILABLE',
      retryable: true,
      retryAfter: null,
      detail: "Upstream 'legacy' answered 400: system busy, try later",
      suggestion: 'The legacy API says busy with a 400; wait and retry.',
      upstreamMember: { message: 'system busy, try later' },
    });
    // Only the code overridden: retryability and suggestion follow the new code's catalog entry.
    expectEnvelope(await get('/o/404'), {
      status: 404,
      code: 'CONFLICT',
      retryable: false,
      retryAfter: null,
      detail: "Upstream 'legacy' answered 404: no such record",
      suggestion: 'Read the current state of the resource, then decide whether to send a changed request.',
      upstreamMember: { message: 'no such record' },
    });
    // A 500 that means "validation failed" is not retryable; its body is still a 5xx body and stays hidden.
    const validation = await get('/o/500-validation');
    expectEnvelope(validation, {
      status: 500,
      code: 'VALIDATION_FAILED',
      retryable: false,
      retryAfter: null,
      detail: "Upstream 'legacy' failed with HTTP 500.",
      suggestion: 'Fix the fields named in the detail, then send the corrected request.',
    });
    assert.ok(!validation.text.includes('ORA-01400'));
    expectEnvelope(await get('/o/401'), {
      status: 401,
      code: 'UNAUTHENTICATED',
      retryable: true,
      retryAfter: null,
      detail: "Upstream 'legacy' answered 401: session expired",
      suggestion: 'Refresh your credentials once and retry; if it fails again, escalate to a human.',
      upstreamMember: { message: 'session expired' },
    });
    // Routes without the table are not affected.
    assert.equal(envelopeOf(await get('/e/400-text')).code, 'INVALID_REQUEST');
  });
});

describe('interplay with rate limits', () => {
  test('a normalized 4xx or 5xx on a rate-limited route still carries the budget headers', async () => {
    const first = await get('/limited/400', { 'x-agent-id': 'budgeted' });
    const second = await get('/limited/503', { 'x-agent-id': 'budgeted' });
    assert.equal(envelopeOf(first).code, 'INVALID_REQUEST');
    assert.equal(envelopeOf(second).code, 'UPSTREAM_UNAVAILABLE');
    for (const reply of [first, second]) {
      assert.equal(reply.headers['x-ratelimit-limit'], '1000');
      assert.equal(reply.headers['x-ratelimit-cost'], '1');
      assert.match(String(reply.headers['x-ratelimit-reset']), /^\d+$/);
      assert.match(String(reply.headers['ratelimit-policy']), /^"agents";q=1000;w=3600;pk=:/);
      assert.match(String(reply.headers.ratelimit), /^"agents";r=\d+;t=\d+;pk=:/);
    }
    assert.deepEqual([first.headers['x-ratelimit-remaining'], second.headers['x-ratelimit-remaining']], ['999', '998']);
    assert.equal(second.headers['retry-after'], '5');
  });
});

describe('circuit breaker', () => {
  const gauge = async (name: string) => metric(await metricsText(), `agentgate_circuit_breaker_state{upstream="${name}"}`);

  test('opens after N failures, fails fast without calling the upstream, lets exactly one probe through, and closes on its success', async () => {
    assert.equal(await gauge('flaky'), 0, 'closed before anything happened');
    flakyMode = 'fail';
    for (let i = 0; i < 3; i++) assert.equal(envelopeOf(await get('/flaky/x')).code, 'UPSTREAM_ERROR');
    assert.equal(calls('/flaky/x'), 3);
    assert.equal(await gauge('flaky'), 2, 'open after 3 failures');
    const opened = tg.logs.lines.find((l) => l.level === 'error' && l.upstream === 'flaky' && l.state === 'open');
    assert.ok(opened, 'the opening is logged');
    const thirdFailure = tg.logs.requestLines().filter((l) => l.path === '/flaky/x').at(2);
    assert.equal(opened.request_id, thirdFailure?.request_id, 'with the id of the request that opened it');

    // Open: answered by the gateway, the upstream is not called.
    flakyMode = 'ok';
    for (let i = 0; i < 3; i++) {
      const reply = await get('/flaky/x');
      const body = envelopeOf(reply);
      assert.equal(reply.status, 503);
      assert.deepEqual([body.code, body.retryable, body.upstream_status], ['CIRCUIT_OPEN', true, null]);
      // Retry-After is the time left until the probe (open_for: 2s), rounded up.
      assert.ok(body.retry_after_seconds === 2 || body.retry_after_seconds === 1, String(body.retry_after_seconds));
      assert.equal(reply.headers['retry-after'], String(body.retry_after_seconds));
      assert.equal(body.detail, "Upstream 'flaky' is failing, so calls to it are paused for now.");
      assert.match(body.suggestion, /^Wait [12] seconds?, then send the same request again\.$/);
    }
    assert.equal(calls('/flaky/x'), 3, 'no call reached the upstream while the circuit was open');

    // After open_for: one probe goes through (and is held); everything else meanwhile still fails fast.
    await sleep(2050);
    flakyMode = 'gated';
    const probe = get('/flaky/x');
    while (calls('/flaky/x') < 4) await sleep(5);
    assert.equal(await gauge('flaky'), 1, 'half-open while the probe runs');
    const others = await Promise.all([get('/flaky/x'), get('/flaky/x'), get('/flaky/x')]);
    for (const reply of others) {
      assert.equal(reply.status, 503);
      assert.equal(envelopeOf(reply).code, 'CIRCUIT_OPEN');
      assert.equal(reply.headers['retry-after'], '2', 'while the probe runs, wait up to a whole open_for');
    }
    assert.equal(calls('/flaky/x'), 4, 'exactly one probe reached the upstream');
    releaseProbe();
    const probed = await probe;
    assert.equal(probed.status, 200);
    assert.deepEqual(probed.json(), { ok: true, probe: true });
    assert.equal(await gauge('flaky'), 0, 'closed after the probe succeeded');
    flakyMode = 'ok';
    assert.equal((await get('/flaky/x')).status, 200);
    assert.equal(calls('/flaky/x'), 5);
  });

  test('a failed probe opens the circuit again', async () => {
    flakyMode = 'fail';
    for (let i = 0; i < 3; i++) await get('/flaky/x');
    assert.equal(await gauge('flaky'), 2);
    await sleep(2050);
    const before = calls('/flaky/x');
    assert.equal(envelopeOf(await get('/flaky/x')).code, 'UPSTREAM_ERROR', 'the probe reaches the upstream and fails');
    assert.equal(await gauge('flaky'), 2, 'open again');
    assert.equal(envelopeOf(await get('/flaky/x')).code, 'CIRCUIT_OPEN');
    assert.equal(calls('/flaky/x'), before + 1);
  });

  test('an unreachable upstream counts as failing too; upstreams without a breaker never open', async () => {
    for (let i = 0; i < 2; i++) assert.equal(envelopeOf(await get('/gone/x')).code, 'UPSTREAM_UNAVAILABLE');
    const open = await get('/gone/x');
    assert.equal(envelopeOf(open).code, 'CIRCUIT_OPEN');
    assert.ok(Number(open.headers['retry-after']) >= 29 && Number(open.headers['retry-after']) <= 30, String(open.headers['retry-after']));
    assert.equal(await gauge('gone'), 2);
    // legacy has no circuit_breaker: its many 5xx above never opened anything.
    assert.equal(await gauge('legacy'), 0);
    assert.equal(envelopeOf(await get('/e/502')).code, 'UPSTREAM_ERROR');
  });
});

describe('auth-failure halt', () => {
  test('after N consecutive 401s one credential is answered by the gateway until the cool-down ends; others still pass', async () => {
    const bad = { authorization: 'Bearer bad-token-123' };
    for (let i = 0; i < 3; i++) {
      const body = envelopeOf(await get('/authy/me', bad));
      assert.deepEqual([body.code, body.upstream_status, body.retryable], ['UNAUTHENTICATED', 401, false]);
      assert.equal(body.auth_halted, undefined);
    }
    assert.equal(calls('/authy/me'), 3);

    const halted = await get('/authy/me', bad);
    const body = envelopeOf(halted);
    assert.equal(halted.status, 401);
    assert.deepEqual([body.code, body.retryable, body.upstream_status, body.retry_after_seconds, body.auth_halted, body.halted_for_seconds], [
      'UNAUTHENTICATED',
      false,
      null,
      null,
      true,
      1,
    ]);
    assert.equal(halted.headers['x-should-retry'], 'false');
    assert.equal(halted.headers['retry-after'], undefined);
    assert.match(body.suggestion, /Do not retry.*A human must fix or rotate it/);
    assert.match(body.detail, /refused this credential several times in a row/);
    assert.equal(calls('/authy/me'), 3, 'the halted credential did not reach the upstream');

    // Other credentials, and callers without one, are unaffected.
    assert.equal((await get('/authy/me', { authorization: 'Bearer good' })).status, 200);
    const other = envelopeOf(await get('/authy/me', { authorization: 'Bearer another-bad' }));
    assert.deepEqual([other.upstream_status, other.auth_halted], [401, undefined]);
    assert.equal(calls('/authy/me'), 5);

    // Counted and logged loudly, without the credential itself.
    assert.equal(metric(await metricsText(), 'agentgate_auth_halts_total{upstream="authy"}'), 1);
    const logged = tg.logs.lines.find((l) => l.level === 'error' && l.upstream === 'authy' && typeof l.credential_hash === 'string');
    assert.ok(logged, 'the halt is logged at error level');
    assert.match(String(logged.msg), /halted until a human fixes it or the cool-down ends/);
    assert.equal(logged.request_id, tg.logs.requestLines().filter((l) => l.path === '/authy/me').at(2)?.request_id, 'with the id of the request whose 401 halted it');
    assert.ok(!tg.logs.text.includes('bad-token-123'));
    const requestLine = tg.logs.requestLines().filter((l) => l.path === '/authy/me').at(3);
    assert.deepEqual([requestLine?.status, requestLine?.outcome, requestLine?.upstream_status], [401, 'unauthenticated', undefined]);

    // After the cool-down the credential is tried again; one more 401 halts it again at once.
    await sleep(1100);
    assert.equal(envelopeOf(await get('/authy/me', bad)).upstream_status, 401);
    assert.equal(calls('/authy/me'), 6);
    assert.equal(envelopeOf(await get('/authy/me', bad)).auth_halted, true);
    assert.equal(calls('/authy/me'), 6);
    assert.equal(metric(await metricsText(), 'agentgate_auth_halts_total{upstream="authy"}'), 2);
  });

  test('a success in between resets the count: a credential that is refused twice in every three calls never halts', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 9; i++) statuses.push((await get('/authy/me', { authorization: 'Bearer flaky' })).status);
    assert.deepEqual(statuses, [401, 401, 200, 401, 401, 200, 401, 401, 200], 'six 401s in all, never three in a row: never halted');
    assert.equal(metric(await metricsText(), 'agentgate_auth_halts_total{upstream="authy"}'), 2);
  });
});

describe('credential injection', () => {
  test("upstreams.X.headers replaces the agent's headers with the injected secrets on the way upstream", async () => {
    const reply = await get('/secret/me', { authorization: 'Bearer agent-own-token', 'x-legacy-key': 'agent-key', 'x-agent-id': 'agent-a' });
    assert.equal(reply.status, 200);
    assert.deepEqual(reply.json(), { user: 'service' });
    const seen = upstream.received.filter((r) => r.url === '/secret/me').at(-1)!;
    assert.equal(seen.headers.authorization, `Bearer ${SECRET_TOKEN}`);
    assert.equal(seen.headers['x-legacy-key'], SECRET_KEY);
    assert.ok(!JSON.stringify(seen.headers).includes('agent-own-token'), "the agent's own credential never reaches the upstream");
    assert.equal(seen.headers['x-agent-id'], 'agent-a');
  });

  test('the injected secrets appear in no error body, no log line and no metric, even when the upstream echoes them', async () => {
    const denied = await get('/secret/denied');
    const body = envelopeOf(denied);
    assert.equal(body.code, 'FORBIDDEN');
    assert.match(body.detail, /^Upstream 'secret' answered 403: key \[redacted\] may not read this \(token (Bearer )?\[redacted\]\)$/);
    assert.match(body.upstream.message, /^key \[redacted\] may not read this/);
    const crash = await get('/secret/crash');
    assert.equal(envelopeOf(crash).code, 'UPSTREAM_ERROR');
    const metrics = await metricsText();
    for (const secret of [SECRET_TOKEN, SECRET_KEY]) {
      for (const reply of [denied, crash]) assert.ok(!everything(reply).includes(secret), `the injected secret reached an error body: ${reply.text}`);
      assert.ok(!tg.logs.text.includes(secret), 'the injected secret reached the logs');
      assert.ok(!metrics.includes(secret), 'the injected secret reached /metrics');
    }
  });

  test('with an injected credential, the halt protects it for the whole fleet: every agent is answered by the gateway', async () => {
    // 'keyed' injects X-Auth-Token (a custom header name), and the upstream has revoked it.
    for (let i = 0; i < 2; i++) assert.equal(envelopeOf(await get('/keyed/me', { 'x-agent-id': `agent-${i}` })).upstream_status, 401);
    assert.equal(calls('/keyed/me'), 2);
    for (const agent of ['agent-0', 'agent-1', 'agent-2']) {
      const halted = envelopeOf(await get('/keyed/me', { 'x-agent-id': agent }));
      assert.deepEqual([halted.code, halted.auth_halted, halted.retryable], ['UNAUTHENTICATED', true, false]);
    }
    assert.equal(calls('/keyed/me'), 2, 'no agent burned the revoked key further');
    assert.equal(metric(await metricsText(), 'agentgate_auth_halts_total{upstream="keyed"}'), 1);
    assert.ok(!tg.logs.text.includes(SECRET_KEY));
  });
});

describe('agentgate validate', () => {
  test('names file, line and key of an unreadable or invalid response_schema', async (t) => {
    const tmp = await tempDir('agentgate-schema');
    t.after(() => tmp.remove());
    await writeFile(path.join(tmp.dir, 'broken.json'), '{"type": "object", "properties": ');
    await writeFile(path.join(tmp.dir, 'wrong.json'), '{"type": "nonsense"}');
    const file = path.join(tmp.dir, 'gateway.yaml');
    await writeFile(
      file,
      `version: 1
upstreams:
  orders: {url: 'http://127.0.0.1:1'}
routes:
  - name: a
    match: {path: /a}
    upstream: orders
    silent_failure:
      response_schema: schemas/missing.json
  - name: b
    match: {path: /b}
    upstream: orders
    silent_failure: {response_schema: broken.json}
  - name: c
    match: {path: /c}
    upstream: orders
    silent_failure: {error_fields: [/error], response_schema: wrong.json}
`,
    );
    const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
      execFile(process.execPath, [CLI, 'validate', '--config', file], (err, stdout, stderr) => resolve({ code: err ? (err.code as number) : 0, stdout, stderr })),
    );
    assert.equal(run.code, 1);
    assert.equal(run.stdout, '');
    const lines = run.stderr.split('\n').filter((l) => l.trim() !== '');
    assert.equal(lines.length, 3, run.stderr);
    assert.ok(lines[0]!.startsWith(`${file}:9:7: routes[0].silent_failure.response_schema: cannot read response schema ${path.join(tmp.dir, 'schemas/missing.json')}: ENOENT`), lines[0]);
    assert.ok(lines[1]!.startsWith(`${file}:13:22: routes[1].silent_failure.response_schema: response schema ${path.join(tmp.dir, 'broken.json')} is not valid JSON`), lines[1]);
    assert.ok(lines[2]!.startsWith(`${file}:17:46: routes[2].silent_failure.response_schema: response schema ${path.join(tmp.dir, 'wrong.json')} is not a valid JSON Schema`), lines[2]);
  });
});

// ---------------------------------------------------------------------------------------------------------------------
// The OpenAI SDK pointed at the gateway. Its retry rule (node_modules/openai/client.js shouldRetry): X-Should-Retry
// 'true' or 'false' is obeyed first; only without it does the status decide (408, 409, 429, >= 500 retried). So a 409
// the gateway marks non-retryable must be tried once, and a 400 it marks retryable must be retried: the header, not
// the status, decides. Waits follow Retry-After (<= 60 s), else 0.5 s, 1 s backoff.
// ---------------------------------------------------------------------------------------------------------------------
describe('the OpenAI SDK retries exactly the retryable envelopes, because of X-Should-Retry', () => {
  let llm: TestUpstream;
  let gw: TestGateway;
  const COMPLETION = {
    id: 'chatcmpl-1',
    object: 'chat.completion',
    created: 1_800_000_000,
    model: 'legacy-1',
    choices: [{ index: 0, message: { role: 'assistant', content: 'ok', refusal: null }, finish_reason: 'stop', logprobs: null }],
  };
  /** Answers gzip-compressed when the client accepts it, as most production servers do. */
  const gzipJson = (req: import('node:http').IncomingMessage, res: ServerResponse, status: number, body: unknown) => {
    const text = Buffer.from(JSON.stringify(body));
    if (!/\bgzip\b/.test(String(req.headers['accept-encoding']))) return json(res, status, body);
    const zipped = gzipSync(text);
    res.writeHead(status, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': zipped.length, vary: 'accept-encoding' });
    res.end(zipped);
  };

  before(async () => {
    llm = await startUpstream({
      'POST /s503/v1/chat/completions': (_req, res) => json(res, 503, { error: { message: 'overloaded', type: 'server_error' } }, { 'retry-after': '1' }),
      'POST /s429/v1/chat/completions': (_req, res) => json(res, 429, { error: { message: 'slow down', type: 'rate_limit' } }, { 'retry-after': '1' }),
      'POST /s500/v1/chat/completions': (_req, res) => {
        res.writeHead(500, { 'content-type': 'text/html' });
        res.end(CRASH_PAGE);
      },
      'POST /silent/v1/chat/completions': (_req, res) => json(res, 200, { error: { message: 'quota exhausted', type: 'billing' } }),
      'POST /s400/v1/chat/completions': (_req, res) => json(res, 400, { error: { message: "'messages' is required", type: 'invalid_request_error' } }),
      'POST /s409/v1/chat/completions': (_req, res) => json(res, 409, { error: { message: 'conversation was modified', type: 'conflict' } }),
      'POST /busy400/v1/chat/completions': (_req, res) => json(res, 400, { error: { message: 'system busy' } }),
      'POST /halt/v1/chat/completions': (_req, res) => json(res, 401, { error: { message: 'Incorrect API key provided', type: 'invalid_request_error' } }),
      'POST /gzip/v1/chat/completions': (req, res) => gzipJson(req, res, 200, COMPLETION),
      'POST /gzip-silent/v1/chat/completions': (req, res) => gzipJson(req, res, 200, { error: { message: 'quota exhausted' } }),
      'POST /gzip400/v1/chat/completions': (req, res) => gzipJson(req, res, 400, { error: { message: 'model legacy-9 does not exist' } }),
    });
    gw = await startTestGateway(
      configYaml(`upstreams:
  llm: {url: '${llm.url}'}
  llm-auth: {url: '${llm.url}', auth_halt: {after: 1, cooldown: 1m}}
routes:
  - name: busy400
    match: {path: /busy400/*}
    upstream: llm
    upstream_errors: {'400': {code: UPSTREAM_UNAVAILABLE, retryable: true}}
  - {name: halt, match: {path: /halt/*}, upstream: llm-auth}
  - name: checked
    match: {path: /*}
    upstream: llm
    silent_failure: {error_fields: [/error], content_type: [application/json]}
`),
    );
  });

  after(async () => {
    await gw.close();
    await llm.close();
  });

  const attempts = (scenario: string) => llm.received.filter((r) => r.url === `/${scenario}/v1/chat/completions`).length;

  /** Asks once through a fresh client; returns the outcome and every HTTP answer the SDK saw. */
  async function ask(scenario: string, apiKey = 'sk-agent') {
    const seen: { status: number; shouldRetry: string | null; retryAfter: string | null; body: any }[] = [];
    const client = new OpenAI({
      apiKey,
      baseURL: `${gw.url}/${scenario}/v1`,
      maxRetries: 2,
      fetch: async (url, init) => {
        const response = await fetch(url, init);
        const copy = response.clone();
        seen.push({ status: response.status, shouldRetry: response.headers.get('x-should-retry'), retryAfter: response.headers.get('retry-after'), body: await copy.json().catch(() => null) });
        return response;
      },
    });
    try {
      const completion = await client.chat.completions.create({ model: 'legacy-1', messages: [{ role: 'user', content: 'hi' }] });
      return { completion, error: undefined, seen };
    } catch (error) {
      assert.ok(error instanceof OpenAI.APIError, `expected an APIError, got ${String(error)}`);
      return { completion: undefined, error, seen };
    }
  }

  test('retryable envelopes (503, 429, 500, SILENT_FAILURE, a 400 the route marks retryable) are retried: maxRetries + 1 calls', async () => {
    const started = performance.now();
    const [s503, s429, s500, silent, busy400] = await Promise.all([ask('s503'), ask('s429'), ask('s500'), ask('silent'), ask('busy400')]);
    for (const [scenario, result, status, code] of [
      ['s503', s503, 503, 'UPSTREAM_UNAVAILABLE'],
      ['s429', s429, 429, 'UPSTREAM_RATE_LIMITED'],
      ['s500', s500, 500, 'UPSTREAM_ERROR'],
      ['silent', silent, 502, 'SILENT_FAILURE'],
      ['busy400', busy400, 400, 'UPSTREAM_UNAVAILABLE'],
    ] as const) {
      assert.equal(result.error?.status, status, scenario);
      assert.equal(attempts(scenario), 3, `${scenario}: the upstream saw ${attempts(scenario)} calls, expected maxRetries + 1 = 3`);
      assert.equal(result.seen.length, 3, scenario);
      for (const answer of result.seen) assert.deepEqual([answer.status, answer.shouldRetry, answer.body?.code], [status, 'true', code], scenario);
    }
    // The SDK waited the Retry-After the gateway passed on (1 s, twice) before each retry.
    assert.deepEqual(s503.seen.map((s) => s.retryAfter), ['1', '1', '1']);
    assert.ok(performance.now() - started >= 2000);
    // The SDK would never retry a 400 on its own: it did because the envelope said X-Should-Retry: true.
    assert.equal(busy400.seen[0]!.status, 400);
    for (const secret of INTERNALS) assert.ok(!JSON.stringify(s500.seen).includes(secret));
  });

  test('non-retryable envelopes (400, 409, an auth halt) are tried exactly once', async () => {
    const [s400, s409] = await Promise.all([ask('s400'), ask('s409')]);
    assert.equal(s400.error?.status, 400);
    assert.equal(attempts('s400'), 1);
    assert.deepEqual(s400.seen.map((s) => [s.status, s.shouldRetry, s.body?.code]), [[400, 'false', 'INVALID_REQUEST']]);
    assert.equal(s400.seen[0]!.body.detail, "Upstream 'llm' answered 400: 'messages' is required");
    // The SDK retries a 409 by default ("lock timeout"); X-Should-Retry: false stops it.
    assert.equal(s409.error?.status, 409);
    assert.equal(attempts('s409'), 1);
    assert.deepEqual(s409.seen.map((s) => [s.status, s.shouldRetry, s.body?.code]), [[409, 'false', 'CONFLICT']]);

    // The first 401 halts the key (after: 1); the upstream's own 401 is tried once.
    const first = await ask('halt', 'sk-revoked');
    assert.deepEqual(first.seen.map((s) => [s.status, s.shouldRetry, s.body?.code, s.body?.upstream_status]), [[401, 'false', 'UNAUTHENTICATED', 401]]);
    assert.equal(attempts('halt'), 1);
    // Now the gateway answers for the halted key: one SDK attempt, zero upstream calls.
    const halted = await ask('halt', 'sk-revoked');
    assert.equal(halted.error?.status, 401);
    assert.deepEqual(halted.seen.map((s) => [s.status, s.shouldRetry, s.body?.code, s.body?.auth_halted]), [[401, 'false', 'UNAUTHENTICATED', true]]);
    assert.equal(attempts('halt'), 1);
  });

  test('a compressed upstream is inspected decoded: a gzip success passes, a gzip silent failure and a gzip 400 are read', async () => {
    const ok = await ask('gzip');
    assert.equal(ok.completion?.choices[0]?.message.content, 'ok');
    assert.equal(attempts('gzip'), 1);
    const silent = await ask('gzip-silent');
    assert.equal(attempts('gzip-silent'), 3);
    assert.deepEqual([silent.seen[0]!.status, silent.seen[0]!.body.code, silent.seen[0]!.body.rule, silent.seen[0]!.body.field], [502, 'SILENT_FAILURE', 'error_fields', '/error']);
    const bad = await ask('gzip400');
    assert.equal(attempts('gzip400'), 1);
    assert.equal(bad.seen[0]!.body.detail, "Upstream 'llm' answered 400: model legacy-9 does not exist");
    assert.deepEqual(bad.seen[0]!.body.upstream, { error: { message: 'model legacy-9 does not exist' } });
  });
});

// Upstream 4xx/5xx normalization: code, status, retryability, Retry-After and what of the upstream's body reaches the agent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeUpstreamError, parseRetryAfter, codeForStatus } from './normalize.ts';

const NOW = Date.parse('2026-11-22T12:00:00Z');
const input = (status: number, body = '', headers: Record<string, string> = {}) => ({ status, headers, body: Buffer.from(body), upstream: 'orders', nowMs: NOW });

test('each upstream status maps to its code, keeping the status', () => {
  const expected: [number, string, boolean][] = [
    [400, 'INVALID_REQUEST', false], [401, 'UNAUTHENTICATED', false], [403, 'FORBIDDEN', false], [404, 'NOT_FOUND', false],
    [409, 'CONFLICT', false], [422, 'VALIDATION_FAILED', false], [429, 'UPSTREAM_RATE_LIMITED', true], [418, 'INVALID_REQUEST', false],
    [500, 'UPSTREAM_ERROR', true], [502, 'UPSTREAM_ERROR', true], [503, 'UPSTREAM_UNAVAILABLE', true], [504, 'UPSTREAM_TIMEOUT', true], [599, 'UPSTREAM_ERROR', true],
  ];
  for (const [status, code, retryable] of expected) {
    const error = normalizeUpstreamError(input(status));
    assert.deepEqual([error.code, error.status, error.retryable, error.upstreamStatus], [code, status, retryable, status], `HTTP ${status}`);
  }
  assert.equal(codeForStatus(451), 'INVALID_REQUEST');
});

test("a 4xx JSON explanation reaches the agent in detail and in a bounded 'upstream' member", () => {
  const body = JSON.stringify({ message: 'quantity must be positive', errors: [{ field: 'quantity', message: 'must be > 0' }] });
  const error = normalizeUpstreamError(input(422, body, { 'content-type': 'application/json' }));
  assert.equal(error.message, "Upstream 'orders' answered 422: quantity must be positive (quantity: must be > 0)");
  assert.deepEqual(error.extensions, { upstream: JSON.parse(body) });
  const nested = normalizeUpstreamError(input(400, JSON.stringify({ error: { message: 'bad cursor' } })));
  assert.match(nested.message, /bad cursor/);
  const fieldsOnly = normalizeUpstreamError(input(400, JSON.stringify({ errors: [{ message: 'a' }, { message: 'b' }] })));
  assert.match(fieldsOnly.message, /a; b/);
});

test('a short plain-text 4xx passes; HTML never does; a huge body is clipped and not attached', () => {
  assert.match(normalizeUpstreamError(input(400, 'missing   customer\nid', { 'content-type': 'text/plain' })).message, /: missing customer id$/);
  const html = normalizeUpstreamError(input(404, '<html><body>Not Found<pre>at Foo.bar()</pre></body></html>', { 'content-type': 'text/html' }));
  assert.equal(html.message, "Upstream 'orders' answered 404.");
  assert.equal(html.extensions, undefined);
  const huge = normalizeUpstreamError(input(400, JSON.stringify({ message: 'x'.repeat(10_000) })));
  assert.ok(huge.message.length < 600);
  assert.equal(huge.extensions, undefined);
});

test('5xx bodies never reach the agent: no stack traces, no HTML, no internals', () => {
  const trace = '<html><pre>java.lang.NullPointerException\n at com.legacy.OrderService(OrderService.java:42)\n db=10.0.0.5 user=sa</pre></html>';
  const error = normalizeUpstreamError(input(500, trace, { 'content-type': 'text/html' }));
  assert.equal(error.message, "Upstream 'orders' failed with HTTP 500.");
  assert.equal(error.extensions, undefined);
  const jsonTrace = normalizeUpstreamError(input(503, JSON.stringify({ message: 'pool exhausted at db-7.internal', stack: 'Error: ...' })));
  assert.doesNotMatch(jsonTrace.message, /db-7|stack/);
});

test("the upstream's Retry-After is carried over as whole seconds, in seconds or as an HTTP date", () => {
  assert.equal(normalizeUpstreamError(input(429, '', { 'retry-after': '7' })).retryAfterSeconds, 7);
  assert.equal(normalizeUpstreamError(input(429, '', { 'retry-after': new Date(NOW + 12_000).toUTCString() })).retryAfterSeconds, 12);
  assert.equal(normalizeUpstreamError(input(503, '', { 'retry-after': '30' })).retryAfterSeconds, 30);
  assert.equal(normalizeUpstreamError(input(429)).retryAfterSeconds, 5, 'a 429 without Retry-After still tells the agent how long to wait');
  assert.equal(normalizeUpstreamError(input(400, '', { 'retry-after': '9' })).retryAfterSeconds, undefined, 'a non-retryable error has no wait');
});

test('Retry-After parsing clamps to 1 s .. 1 day and ignores garbage', () => {
  assert.equal(parseRetryAfter('0', NOW), 1);
  assert.equal(parseRetryAfter('2.5', NOW), 3);
  assert.equal(parseRetryAfter(new Date(NOW - 60_000).toUTCString(), NOW), 1);
  assert.equal(parseRetryAfter('999999999', NOW), 86_400);
  assert.equal(parseRetryAfter('soon', NOW), undefined);
  assert.equal(parseRetryAfter('-5', NOW), undefined);
  assert.equal(parseRetryAfter(undefined, NOW), undefined);
});

test('a route override reinterprets a status', () => {
  const error = normalizeUpstreamError({ ...input(400, JSON.stringify({ message: 'try later' })), override: { code: 'UPSTREAM_UNAVAILABLE', retryable: true, suggestion: 'This API says 400 when it is busy: wait and retry.' } });
  assert.deepEqual([error.code, error.status, error.retryable, error.suggestion], ['UPSTREAM_UNAVAILABLE', 400, true, 'This API says 400 when it is busy: wait and retry.']);
});

test('an override that names only a code takes that code\'s retryability, whatever the status', () => {
  const validation = normalizeUpstreamError({ ...input(500), override: { code: 'VALIDATION_FAILED' } });
  assert.deepEqual([validation.code, validation.status, validation.retryable, validation.retryAfterSeconds], ['VALIDATION_FAILED', 500, false, undefined]);
  assert.equal(validation.message, "Upstream 'orders' failed with HTTP 500.", 'a 5xx body stays hidden under any code');
  const busy = normalizeUpstreamError({ ...input(400), override: { code: 'UPSTREAM_UNAVAILABLE' } });
  assert.equal(busy.retryable, true);
});

test('field errors are named in detail, in the common shapes (list with field/param/loc, Rails map, GraphQL path)', () => {
  const detail = (body: unknown) => normalizeUpstreamError(input(400, JSON.stringify(body))).message.replace("Upstream 'orders' answered 400: ", '');
  assert.equal(detail({ errors: [{ field: 'email', message: 'is invalid' }, { param: 'qty', message: 'too big' }] }), 'email: is invalid; qty: too big');
  assert.equal(detail({ detail: [{ loc: ['body', 'email'], msg: 'field required', type: 'value_error.missing' }] }), 'body.email: field required');
  assert.equal(detail({ message: 'Validation failed', errors: { email: ['is invalid', 'is taken'] } }), 'Validation failed (email: is invalid; is taken)');
  assert.equal(detail({ errors: [{ message: 'Cannot query field', path: ['order', 'total'] }] }), 'order.total: Cannot query field');
  assert.equal(detail({ error: { message: 'bad cursor', type: 'invalid_request_error' } }), 'bad cursor');
});

test('secrets the gateway injected are redacted from the explanation and the upstream member', () => {
  const body = JSON.stringify({ message: 'token sk-live-123456 is revoked', echo: { 'sk-live-123456': 'sk-live-123456' } });
  const error = normalizeUpstreamError({ ...input(401, body), secrets: ['Bearer sk-live-123456', 'sk-live-123456'] });
  assert.equal(error.message, "Upstream 'orders' answered 401: token [redacted] is revoked");
  assert.deepEqual(error.extensions, { upstream: { message: 'token [redacted] is revoked', echo: { '[redacted]': '[redacted]' } } });
});

test('redaction comes before the clip: a secret echoed across the 500-character clip leaves no prefix behind', () => {
  const secret = 'sk-live-9f8e7d6c5b4';
  for (const at of [480, 490]) {
    const error = normalizeUpstreamError({ ...input(401, JSON.stringify({ message: `${'x'.repeat(at)}${secret} is revoked` })), secrets: [secret] });
    for (let n = 8; n <= secret.length; n++) assert.ok(!error.message.includes(secret.slice(0, n)), `at ${at}: ${error.message.slice(-40)}`);
    assert.match(error.message, /x\[red/);
  }
  const encoded = normalizeUpstreamError({ ...input(400, `retry with token=${encodeURIComponent(`Bearer ${secret}`)}`, { 'content-type': 'text/plain' }), secrets: [`Bearer ${secret}`, secret] });
  assert.equal(encoded.message, "Upstream 'orders' answered 400: retry with token=[redacted]");
});

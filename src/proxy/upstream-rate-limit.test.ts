// An upstream's 429 as an envelope: Retry-After from seconds, a date or nothing, and the upstream's own words without its HTML.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { PassThrough } from 'node:stream';
import { DEFAULT_UPSTREAM_RETRY_AFTER_SECONDS, parseRetryAfter, upstreamRateLimited } from './upstream-rate-limit.ts';

const NOW = Date.parse('2026-11-22T12:00:00Z');

function response(body: string, headers: Record<string, string>): IncomingMessage {
  const stream = new PassThrough();
  Object.assign(stream, { headers, statusCode: 429 });
  stream.end(body);
  return stream as unknown as IncomingMessage;
}

test('Retry-After: delay-seconds or an HTTP-date, rounded up to whole seconds, within 1 s and 1 day', () => {
  assert.equal(parseRetryAfter('7', NOW), 7);
  assert.equal(parseRetryAfter(' 0 ', NOW), 1);
  assert.equal(parseRetryAfter('2.2', NOW), 3);
  assert.equal(parseRetryAfter(new Date(NOW + 4_500).toUTCString(), NOW), 4, 'HTTP-dates have whole seconds: 4.5 s becomes a date 4 s ahead');
  assert.equal(parseRetryAfter('Sun, 22 Nov 2026 12:00:30 GMT', NOW), 30);
  assert.equal(parseRetryAfter('Sun, 22 Nov 2026 11:00:00 GMT', NOW), 1, 'a date in the past');
  assert.equal(parseRetryAfter('999999999', NOW), 86_400);
  assert.equal(parseRetryAfter('2027', NOW), 2027, 'digits are delay-seconds, however much they look like a year');
  for (const bad of [undefined, '', '-5', 'soon', '12:00']) assert.equal(parseRetryAfter(bad, NOW), undefined, String(bad));
});

test("the envelope keeps status 429, says upstream_status 429, and passes the upstream's JSON message on", async () => {
  const error = await upstreamRateLimited(response('{"error":{"message":"slow down, 5 per 10s"}}', { 'retry-after': '3', 'content-type': 'application/json' }), 'inventory', 1_000, NOW);
  assert.deepEqual([error.code, error.status, error.upstreamStatus, error.retryable, error.retryAfterSeconds], ['UPSTREAM_RATE_LIMITED', 429, 429, true, 3]);
  assert.equal(error.message, "Upstream 'inventory' is rate limiting this gateway (429): slow down, 5 per 10s");
  assert.equal(error.suggestion, 'Wait 3 seconds, then send the same request again.');
});

test('without Retry-After the agent still gets a sane wait; HTML bodies never reach it', async () => {
  const error = await upstreamRateLimited(response('<html><body>Too Many Requests at /srv/app.py:12</body></html>', { 'content-type': 'text/html' }), 'legacy', 1_000, NOW);
  assert.equal(error.retryAfterSeconds, DEFAULT_UPSTREAM_RETRY_AFTER_SECONDS);
  assert.equal(error.message, "Upstream 'legacy' is rate limiting this gateway (429).");
});

test('a body that never ends is given up after the idle timeout', async () => {
  const stream = new PassThrough();
  Object.assign(stream, { headers: { 'content-type': 'text/plain' }, statusCode: 429 });
  stream.write('too many');
  const error = await upstreamRateLimited(stream as unknown as IncomingMessage, 'legacy', 50, NOW);
  assert.equal(error.message, "Upstream 'legacy' is rate limiting this gateway (429): too many");
  assert.equal(stream.destroyed, true);
});

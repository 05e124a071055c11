// What a person (and a webhook) is shown of a request: bounded, and without what looks like a secret.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { APPROVAL_ID_PATTERN, newApprovalId, previewOf } from './record.ts';

test('ids are apr_ and 128 random bits, and the pattern the Approval-Id header is held to', () => {
  const ids = new Set(Array.from({ length: 1000 }, newApprovalId));
  assert.equal(ids.size, 1000);
  for (const id of ids) assert.match(id, APPROVAL_ID_PATTERN);
  assert.doesNotMatch('apr_short', APPROVAL_ID_PATTERN);
});

test('secret-looking JSON members and query parameters are redacted; agent keys and bearer tokens in text too', () => {
  const body = Buffer.from(JSON.stringify({ customer: 'cus_1', password: 'hunter22', nested: { api_key: 'k', note: 'use agk_AC_xiepRgy8OlsB9gySxPiBOyFSjxjh4U8xPGrI1Qug' }, auth: 'Bearer abcdefghijkl' }));
  const preview = previewOf('POST', '/customers/cus_1/erase?dry=false&token=t0p', { contentType: 'application/json' }, body);
  assert.equal(preview.path, '/customers/cus_1/erase');
  assert.equal(preview.query, 'dry=false&token=%5Bredacted%5D');
  assert.equal(preview.body_bytes, body.length);
  const shown = JSON.parse(preview.body!);
  assert.deepEqual(shown, { customer: 'cus_1', password: '[redacted]', nested: { api_key: '[redacted]', note: 'use [redacted]' }, auth: 'Bearer [redacted]' });
});

test('the body is shown as the API will read it: big numbers and repeated members as sent, a compressed body decoded, names that merely contain a secret word shown', () => {
  const text = '{"id": 90071992547409931, "amount": 999999, "amount": 5, "bypass_limits": true, "passengers": "all", "tokens_to_refund": 3, "x_session_token": "s"}';
  const preview = previewOf('POST', '/refunds?bypass=1&compass=all', { contentType: 'application/json' }, Buffer.from(text));
  assert.equal(preview.body, text.replace('"x_session_token": "s"', '"x_session_token": "[redacted]"'));
  assert.equal(preview.query, 'bypass=1&compass=all');
  const zipped = previewOf('POST', '/refunds', { contentType: 'application/json', contentEncoding: 'gzip' }, gzipSync(Buffer.from('{"amount": 7}')));
  assert.equal(zipped.body, '{"amount": 7}');
  assert.equal(zipped.content_encoding, 'gzip');
  const form = previewOf('POST', '/users/1', { contentType: 'application/x-www-form-urlencoded' }, Buffer.from('_method=DELETE&password=x'));
  assert.equal(form.body, '_method=DELETE&password=%5Bredacted%5D');
});

test('a long body is cut and says so; a binary one is described, not shown; an empty one has no summary', () => {
  const long = previewOf('POST', '/x', { contentType: 'text/plain' }, Buffer.from('a'.repeat(5000)));
  assert.equal(long.body!.length, 2001);
  assert.equal(long.body_truncated, true);
  const binary = previewOf('PUT', '/x', { contentType: 'application/octet-stream' }, Buffer.from([0, 1, 2, 255, 254]));
  assert.equal(binary.body, '(5 bytes, not text)');
  assert.equal(previewOf('DELETE', '/x', {}, Buffer.alloc(0)).body, undefined);
});

// What a person (and a webhook) is shown of a request: bounded, and without what looks like a secret.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { APPROVAL_ID_PATTERN, newApprovalId, previewOf } from './record.ts';

test('ids are apr_ and 128 random bits, and the pattern the Approval-Id header is held to', () => {
  const ids = new Set(Array.from({ length: 1000 }, newApprovalId));
  assert.equal(ids.size, 1000);
  for (const id of ids) assert.match(id, APPROVAL_ID_PATTERN);
  assert.doesNotMatch('apr_short', APPROVAL_ID_PATTERN);
});

test('secret-looking JSON members and query parameters are redacted; agent keys and bearer tokens in text too', () => {
  const body = Buffer.from(JSON.stringify({ customer: 'cus_1', password: 'hunter22', nested: { api_key: 'k', note: 'use agk_AC_xiepRgy8OlsB9gySxPiBOyFSjxjh4U8xPGrI1Qug' }, auth: 'Bearer abcdefghijkl' }));
  const preview = previewOf('POST', '/customers/cus_1/erase?dry=false&token=t0p', 'application/json', body);
  assert.equal(preview.path, '/customers/cus_1/erase');
  assert.equal(preview.query, 'dry=false&token=%5Bredacted%5D');
  assert.equal(preview.body_bytes, body.length);
  const shown = JSON.parse(preview.body!);
  assert.deepEqual(shown, { customer: 'cus_1', password: '[redacted]', nested: { api_key: '[redacted]', note: 'use [redacted]' }, auth: 'Bearer [redacted]' });
});

test('a long body is cut and says so; a binary one is described, not shown; an empty one has no summary', () => {
  const long = previewOf('POST', '/x', 'text/plain', Buffer.from('a'.repeat(5000)));
  assert.equal(long.body!.length, 2001);
  assert.equal(long.body_truncated, true);
  const binary = previewOf('PUT', '/x', 'application/octet-stream', Buffer.from([0, 1, 2, 255, 254]));
  assert.equal(binary.body, '(5 bytes, not text)');
  assert.equal(previewOf('DELETE', '/x', undefined, Buffer.alloc(0)).body, undefined);
});

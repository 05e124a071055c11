// The envelope is serialized in one place, which redacts the route's secrets from every member and only then clips.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GatewayError, MAX_PROBLEM_STRING_CHARS, problemAnswer, problemDocument } from './problem.ts';
import { secretSet } from './redact.ts';

const TOKEN = 'sk-live-9f8e7d6c5b4';
const SECRETS = secretSet([`Bearer ${TOKEN}`, TOKEN]);

test('every member is redacted: detail, suggestion, the upstream member and every extension, keys and values, nested', () => {
  const error = new GatewayError('SILENT_FAILURE', `token ${TOKEN}`, {
    suggestion: `Rotate ${encodeURIComponent(`Bearer ${TOKEN}`)}.`,
    headers: { 'x-echo': TOKEN },
    extensions: {
      rule: 'response_schema',
      schema_errors: [{ path: `/meta/${TOKEN}`, message: 'must be string' }],
      upstream: { [TOKEN]: { deep: [Buffer.from(TOKEN).toString('base64')] } },
    },
  });
  const document = problemDocument(error, 'req-1', SECRETS);
  assert.equal(document.detail, 'token [redacted]');
  assert.equal(document.suggestion, 'Rotate [redacted].');
  assert.deepEqual(document.schema_errors, [{ path: '/meta/[redacted]', message: 'must be string' }]);
  assert.deepEqual(document.upstream, { '[redacted]': { deep: ['[redacted]'] } });
  const answer = problemAnswer(error, 'req-1', SECRETS);
  assert.equal(answer.headers['x-echo'], '[redacted]');
  assert.ok(!answer.body.includes(TOKEN.slice(0, 8)), answer.body);
});

test('redaction comes before the clip: a 19-character secret across the 500-character boundary leaks no prefix', () => {
  assert.equal(TOKEN.length, 19);
  // Clipped first, the detail would keep 497 characters: 17 of the secret's.
  for (const at of [470, 480, 490, 496]) {
    const detail = `${'x'.repeat(at)}${TOKEN} is revoked`;
    const document = problemDocument(new GatewayError('UNAUTHENTICATED', detail, { extensions: { echo: { [detail]: detail } } }), 'req-2', SECRETS);
    const body = JSON.stringify(document);
    for (let n = 8; n <= TOKEN.length; n++) assert.ok(!body.includes(TOKEN.slice(0, n)), `secret at ${at}: ${n} characters leaked`);
    assert.ok((document.detail as string).length <= MAX_PROBLEM_STRING_CHARS);
  }
});

test('without secrets every string is still clipped; the request id is never touched', () => {
  const longId = `${TOKEN}-${'r'.repeat(100)}`;
  const document = problemDocument(new GatewayError('INVALID_REQUEST', 'd'.repeat(2000), { extensions: { note: 'n'.repeat(600) } }), longId, SECRETS);
  assert.equal((document.detail as string).length, MAX_PROBLEM_STRING_CHARS);
  assert.match(document.detail as string, /^d+\.\.\.$/);
  assert.equal((document.note as string).length, MAX_PROBLEM_STRING_CHARS);
  assert.equal(document.request_id, longId, 'the request id stays the X-Request-Id of the answer');
  assert.equal(problemDocument(new GatewayError('INVALID_REQUEST', 'e'.repeat(501)), 'req-3').detail, `${'e'.repeat(497)}...`);
});

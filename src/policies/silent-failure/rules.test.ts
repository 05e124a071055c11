// Silent-failure rules on their own: which 2xx answers count as failures, and what the envelope is told.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ajv } from 'ajv';
import { bodyExpected, checkBody, checkContentType, needsWholeBody, parsePointer, type SilentFailureRules } from './rules.ts';

const ajv = new Ajv({ allErrors: true });
const rules = (over: Partial<SilentFailureRules>): SilentFailureRules => ({ emptyBody: false, schema: undefined, errorFields: [], contentTypes: [], ...over });
const field = (pointer: string, equals?: unknown) => (equals === undefined ? { pointer, tokens: parsePointer(pointer) } : { pointer, tokens: parsePointer(pointer), equals });
const json = (value: unknown) => Buffer.from(JSON.stringify(value));

test('bodies are expected on 2xx except 204/205 and HEAD', () => {
  assert.equal(bodyExpected('GET', 200), true);
  assert.equal(bodyExpected('POST', 201), true);
  assert.equal(bodyExpected('GET', 204), false);
  assert.equal(bodyExpected('GET', 205), false);
  assert.equal(bodyExpected('HEAD', 200), false);
  assert.equal(bodyExpected('GET', 304), false);
  assert.equal(bodyExpected('GET', 500), false);
});

test('only schema and error-field rules need the whole body', () => {
  assert.equal(needsWholeBody(rules({ emptyBody: true, contentTypes: ['application/json'] })), false);
  assert.equal(needsWholeBody(rules({ errorFields: [field('/error')] })), true);
  assert.equal(needsWholeBody(rules({ schema: ajv.compile({ type: 'object' }) })), true);
});

test('an error field fails when present and non-empty; empty values mean no error', () => {
  const r = rules({ errorFields: [field('/errors'), field('/error')] });
  assert.equal(checkBody(r, json({ data: 1, errors: [] })), undefined);
  assert.equal(checkBody(r, json({ data: 1, error: null })), undefined);
  assert.equal(checkBody(r, json({ data: 1, error: '' })), undefined);
  assert.equal(checkBody(r, json({ data: 1 })), undefined);
  const graphql = checkBody(r, json({ data: null, errors: [{ message: 'Cannot query field' }] }));
  assert.equal(graphql?.rule, 'error_fields');
  assert.deepEqual(graphql?.extensions, { field: '/errors' });
  assert.match(graphql!.detail, /Cannot query field/);
});

test('an equals rule catches Slack-style {"ok": false} and passes {"ok": true}', () => {
  const r = rules({ errorFields: [field('/ok', false)] });
  assert.equal(checkBody(r, json({ ok: true })), undefined);
  assert.equal(checkBody(r, json({ ok: false, error: 'channel_not_found' }))?.rule, 'error_fields');
});

test('pointers follow RFC 6901, into arrays and escaped keys', () => {
  assert.deepEqual(parsePointer('/a~1b/c~0d/0'), ['a/b', 'c~d', '0']);
  assert.throws(() => parsePointer('errors'), /must start with \//);
  const r = rules({ errorFields: [field('/results/0/error'), field('/a~1b')] });
  assert.equal(checkBody(r, json({ results: [{ error: 'boom' }] }))?.extensions?.field, '/results/0/error');
  assert.equal(checkBody(r, json({ 'a/b': 'x' }))?.extensions?.field, '/a~1b');
  assert.equal(checkBody(r, json({ results: [] })), undefined);
});

test('a body failing the response schema names the failing paths', () => {
  const schema = ajv.compile({ type: 'object', required: ['id', 'status'], properties: { id: { type: 'string' }, status: { enum: ['open', 'paid'] } } });
  const r = rules({ schema });
  assert.equal(checkBody(r, json({ id: 'ord_1', status: 'open' })), undefined);
  const failure = checkBody(r, json({ id: 7, status: 'lost' }));
  assert.equal(failure?.rule, 'response_schema');
  const paths = (failure!.extensions!.schema_errors as { path: string }[]).map((e) => e.path).sort();
  assert.deepEqual(paths, ['/id', '/status']);
});

test('a body that is not JSON fails the body rules', () => {
  assert.equal(checkBody(rules({ schema: ajv.compile({}) }), Buffer.from('<html>Login</html>'))?.rule, 'response_schema');
  assert.equal(checkBody(rules({ errorFields: [field('/error')] }), Buffer.from('oops'))?.rule, 'error_fields');
});

test('the content type rule compares media types without parameters, case-insensitively', () => {
  const r = rules({ contentTypes: ['application/json'] });
  assert.equal(checkContentType(r, 'application/json; charset=utf-8'), undefined);
  assert.equal(checkContentType(r, 'Application/JSON'), undefined);
  assert.match(checkContentType(r, 'text/html')!.detail, /'text\/html'/);
  assert.match(checkContentType(r, undefined)!.detail, /no content type/);
  assert.equal(checkContentType(rules({}), 'text/html'), undefined);
});

test('an error value is quoted whole, not cut at 200 characters: the envelope redacts secrets before it clips', () => {
  const secret = 'sk-live-9f8e7d6c5b4';
  const failure = checkBody(rules({ errorFields: [field('/error')] }), json({ error: `${'x'.repeat(179)}${secret} rejected` }));
  // A cut here would leave 17 of the 19 characters, a prefix that redaction no longer reads as the secret.
  assert.ok(failure!.detail.includes(`${secret} rejected`), failure!.detail);
  const huge = checkBody(rules({ errorFields: [field('/error')] }), json({ error: 'y'.repeat(100_000) }));
  assert.ok(huge!.detail.length < 9000, 'a huge value is not copied whole');
});

// The credentials the gateway injects upstream never reach an agent, however the legacy API echoes them back: in a 4xx
// message, a field-error list, a 2xx error field, a response-schema error path; raw, URL-encoded, JSON-escaped or base64;
// whole or cut off by a length limit. Every answer is searched for the secret, each encoding and every 8+ char prefix.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { configYaml, startTestGateway, tempDir, type TestGateway } from './helpers/gateway.ts';
import { json, startUpstream, type TestUpstream } from './helpers/upstream.ts';
import { envelopeOf, send, type Reply } from './helpers/http.ts';

/** 19 characters, as in the issue, with a slash: %2F when URL-encoded, \/ when JSON-escaped, ~1 in a JSON Pointer. */
const TOKEN = 'sk-live/9f8e7d6c5b4';
/** A quote, a plus, a slash and a tilde: every escape of every encoding differs from the raw value. */
const KEY = 'lk"0a1b+c3d/4e5f~9';
const AUTH = `Bearer ${TOKEN}`;

const b64 = (s: string) => Buffer.from(s).toString('base64');
const b64url = (s: string) => Buffer.from(s).toString('base64url');
/** Every character but letters and digits as a JSON \u escape, as some serializers write them. */
const unicodeEscaped = (s: string) => s.replace(/[^A-Za-z0-9]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
/** The detail of a 4xx up to the upstream's explanation. */
const UPSTREAM_DETAIL_PREFIX = "Upstream 'legacy' answered 400: ";
/** The detail of an error-field failure up to the quoted value. */
const FIELD_DETAIL_PREFIX = 'The upstream answered success, but /error reports an error: "';

/** Answers with what the upstream received, echoed in one more way. */
function echo(respond: (res: ServerResponse, auth: string, key: string, token: string) => void) {
  return (req: IncomingMessage, res: ServerResponse) => {
    const auth = String(req.headers.authorization);
    respond(res, auth, String(req.headers['x-legacy-key']), auth.slice('Bearer '.length));
  };
}

function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

let upstream: TestUpstream;
let tg: TestGateway;
let schemaDir: { dir: string; remove: () => Promise<void> };

before(async () => {
  assert.equal(TOKEN.length, 19);
  schemaDir = await tempDir('agentgate-redaction-schema');
  const schemaFile = path.join(schemaDir.dir, 'order.schema.json');
  await writeFile(
    schemaFile,
    JSON.stringify({ type: 'object', required: ['id'], properties: { id: { type: 'string' }, meta: { type: 'object', additionalProperties: { type: 'string' } } } }),
  );
  upstream = await startUpstream({
    // ----- 4xx explanations
    '/4xx/raw': echo((res, auth, key) => json(res, 401, { message: `invalid credentials ${auth} / ${key}`, echo: { [key]: auth, n: 1 } })),
    // The issue's case: clipped at 500 characters before redaction, the detail kept the first 17 of the 19 characters.
    '/4xx/boundary': echo((res, _auth, _key, token) => json(res, 400, { message: `${'x'.repeat(480)}${token} is revoked` })),
    // The same across the 500-character clip of the whole detail.
    '/4xx/boundary-detail': echo((res, _auth, _key, token) => json(res, 400, { message: `${'x'.repeat(480 - UPSTREAM_DETAIL_PREFIX.length)}${token} is revoked` })),
    '/4xx/boundary-text': echo((res, _auth, _key, token) => text(res, 400, `${'x'.repeat(480 - UPSTREAM_DETAIL_PREFIX.length)}${token} is revoked`)),
    '/4xx/fields': echo((res, auth, key, token) =>
      json(res, 422, {
        message: 'validation failed',
        errors: [
          { field: 'authorization', message: `${auth} is malformed` },
          { field: key, message: 'unknown header value' },
          { loc: ['header', token], msg: 'bad' },
        ],
      }),
    ),
    '/4xx/urlencoded': echo((res, auth, key) =>
      text(res, 400, `sign in again: https://sso.example/login?token=${encodeURIComponent(auth)}&key=${encodeURIComponent(key)}&${new URLSearchParams({ a: auth, k: key })}`),
    ),
    '/4xx/json-escaped': echo((res, auth, key) => text(res, 400, `upstream said ${JSON.stringify({ auth, key }).replaceAll('/', '\\/')} and ${unicodeEscaped(key)}`)),
    '/4xx/json-in-json': echo((res, auth, key) => json(res, 400, { message: JSON.stringify({ auth, key }).replaceAll('/', '\\/'), raw: unicodeEscaped(auth) })),
    '/4xx/base64': echo((res, auth, key, token) =>
      json(res, 403, {
        message: `basic ${b64(auth)} token ${b64url(token)} header ${b64(`Authorization: ${auth}`)} key ${b64(`X-Key: ${key}`)} ${b64url(`Key: ${key}`).replace(/=+$/, '')}`,
      }),
    ),
    // ----- 2xx bodies that are no success
    // The error-field preview was clipped at 200 characters before redaction: 17 characters of the token survived.
    '/2xx/field/preview-boundary': echo((res, _auth, _key, token) => json(res, 200, { error: `${'x'.repeat(179)}${token} rejected` })),
    '/2xx/field/detail-boundary': echo((res, _auth, _key, token) => json(res, 200, { error: `${'y'.repeat(480 - FIELD_DETAIL_PREFIX.length)}${token} rejected` })),
    '/2xx/field/object': echo((res, auth, key, token) => json(res, 200, { error: { auth, [key]: 'rejected', nested: [{ token: b64(token) }], url: encodeURIComponent(auth) } })),
    '/2xx/schema/meta': echo((res, _auth, key, token) =>
      json(res, 200, { id: 'ord_1', meta: { [token]: 5, [key]: 6, [`${'z'.repeat(474)}${token}`]: 7, [encodeURIComponent(key)]: 8 } }),
    ),
    // ----- an idempotent route stores the envelope and replays it
    'POST /idem/create': echo((res, _auth, key) => json(res, 400, { message: `key ${key} may not create orders` })),
  });
  tg = await startTestGateway(
    configYaml(`upstreams:
  legacy:
    url: '${upstream.url}'
    headers: {Authorization: 'Bearer \${AG_REDACT_TOKEN}', X-Legacy-Key: '\${AG_REDACT_KEY}'}
routes:
  - {name: fields, match: {path: /2xx/field/*}, upstream: legacy, silent_failure: {error_fields: [/error]}}
  - {name: schema, match: {path: /2xx/schema/*}, upstream: legacy, silent_failure: {response_schema: '${schemaFile}'}}
  - name: idem
    match: {methods: [POST], path: /idem/create}
    upstream: legacy
    idempotency: {required: true, ttl: 1h}
  - {name: rest, match: {path: /*}, upstream: legacy}
`),
    { env: { ...process.env, AG_REDACT_TOKEN: TOKEN, AG_REDACT_KEY: KEY } },
  );
});

after(async () => {
  await tg?.close();
  await upstream?.close();
  await schemaDir?.remove();
});

/** A secret in the forms an upstream plausibly echoes it in. */
function encodings(s: string): string[] {
  const escaped = JSON.stringify(s).slice(1, -1);
  return [
    s,
    encodeURIComponent(s),
    new URLSearchParams({ s }).toString().slice('s='.length),
    escaped,
    escaped.replaceAll('/', '\\/'),
    unicodeEscaped(s),
    s.replaceAll('~', '~0').replaceAll('/', '~1'),
    b64(s),
    b64(s).replace(/=+$/, ''),
    b64url(s),
  ];
}

/** The secrets and each encoding, and every prefix of 8 or more characters of them, in each encoding. */
const FORBIDDEN = [
  ...new Set([
    ...encodings(AUTH),
    ...[TOKEN, KEY].flatMap((secret) => Array.from({ length: secret.length - 7 }, (_, i) => secret.slice(0, 8 + i)).flatMap(encodings)),
  ]),
];

/** Every string of a parsed document, keys included. */
function stringsOf(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value)) return value.flatMap(stringsOf);
  if (value !== null && typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => [k, ...stringsOf(v)]);
  return [String(value)];
}

/** Base64 in any alignment: every run of base64 characters, decoded from each of its first four offsets, must not hold 8 characters of a secret. */
function base64Leaks(haystack: string): string[] {
  const leaks: string[] = [];
  for (const run of haystack.match(/[A-Za-z0-9+/_-]{11,}/g) ?? []) {
    for (let offset = 0; offset < 4; offset++) {
      const decoded = Buffer.from(run.slice(offset).replaceAll('-', '+').replaceAll('_', '/'), 'base64').toString('latin1');
      for (const secret of [TOKEN, KEY]) if (decoded.includes(secret.slice(0, 8))) leaks.push(run);
    }
  }
  return leaks;
}

/** Asserts that nothing of a secret reached the agent: headers, body as sent, body as decoded. */
function assertNoSecret(reply: Reply, where: string): void {
  const parsed = stringsOf(JSON.parse(reply.text)).join('\n');
  const haystacks = { headers: JSON.stringify(reply.headers), body: reply.text, 'decoded body': parsed };
  for (const [name, haystack] of Object.entries(haystacks)) {
    for (const form of FORBIDDEN) assert.ok(!haystack.includes(form), `${where}: ${name} contains ${JSON.stringify(form)}:\n${haystack}`);
    assert.deepEqual(base64Leaks(haystack), [], `${where}: ${name} holds a secret in base64:\n${haystack}`);
  }
}

const get = (p: string) => send(`${tg.url}${p}`);

describe('4xx explanations', () => {
  test('a raw echo in the message and in the upstream member (keys and values) is redacted', async () => {
    const reply = await get('/4xx/raw');
    assertNoSecret(reply, '/4xx/raw');
    const body = envelopeOf(reply);
    assert.equal(body.code, 'UNAUTHENTICATED');
    assert.equal(body.detail, "Upstream 'legacy' answered 401: invalid credentials [redacted] / [redacted]");
    assert.deepEqual(body.upstream, { message: 'invalid credentials [redacted] / [redacted]', echo: { '[redacted]': '[redacted]', n: 1 } });
  });

  test('a secret echoed across the 500-character clip of the explanation or of detail leaks none of its characters', async () => {
    for (const p of ['/4xx/boundary', '/4xx/boundary-detail', '/4xx/boundary-text']) {
      const reply = await get(p);
      assertNoSecret(reply, p);
      const body = envelopeOf(reply);
      assert.equal(body.detail.length, 500, p);
      assert.match(body.detail, p === '/4xx/boundary' ? /^Upstream 'legacy' answered 400: x+\.\.\.$/ : /^Upstream 'legacy' answered 400: x+\[red/, p);
    }
  });

  test('a field-error list naming the secret as message, field and location', async () => {
    const reply = await get('/4xx/fields');
    assertNoSecret(reply, '/4xx/fields');
    const body = envelopeOf(reply);
    assert.equal(body.code, 'VALIDATION_FAILED');
    assert.equal(body.detail, "Upstream 'legacy' answered 422: validation failed (authorization: [redacted] is malformed; [redacted]: unknown header value; header.[redacted]: bad)");
    assert.deepEqual(body.upstream.errors[2].loc, ['header', '[redacted]']);
  });

  test('URL-encoded (encodeURIComponent, and + for spaces), JSON-escaped (\\/, \\", \\u0022) and base64 echoes', async () => {
    for (const p of ['/4xx/urlencoded', '/4xx/json-escaped', '/4xx/json-in-json', '/4xx/base64']) {
      const reply = await get(p);
      assertNoSecret(reply, p);
      const body = envelopeOf(reply);
      assert.ok(body.detail.includes('[redacted]'), `${p}: ${body.detail}`);
    }
    const urlencoded = envelopeOf(await get('/4xx/urlencoded'));
    assert.equal(urlencoded.detail, "Upstream 'legacy' answered 400: sign in again: https://sso.example/login?token=[redacted]&key=[redacted]&a=[redacted]&k=[redacted]");
  });

  test('a replayed envelope of an idempotent route is the redacted one', async () => {
    const headers = { 'idempotency-key': 'redaction-replay-1' };
    const first = await send(`${tg.url}/idem/create`, { method: 'POST', headers, body: '{}' });
    const replay = await send(`${tg.url}/idem/create`, { method: 'POST', headers, body: '{}' });
    for (const reply of [first, replay]) assertNoSecret(reply, '/idem/create');
    assert.equal(replay.headers['idempotent-replayed'], 'true');
    assert.equal(envelopeOf(first).detail, "Upstream 'legacy' answered 400: key [redacted] may not create orders");
  });
});

describe('2xx bodies that are no success', () => {
  test('an error field echoing the secret across the old 200- and the 500-character clips leaks none of it', async () => {
    for (const p of ['/2xx/field/preview-boundary', '/2xx/field/detail-boundary']) {
      const reply = await get(p);
      assertNoSecret(reply, p);
      const body = envelopeOf(reply);
      assert.deepEqual([body.code, body.rule, body.field], ['SILENT_FAILURE', 'error_fields', '/error']);
      assert.ok(body.detail.length <= 500, `${p}: ${body.detail.length}`);
      assert.ok(body.detail.startsWith(FIELD_DETAIL_PREFIX), body.detail);
      assert.match(body.detail, /\[red/, p);
    }
  });

  test('an error field holding the secret in an object: raw value, JSON-escaped key, base64 and URL-encoded', async () => {
    const reply = await get('/2xx/field/object');
    assertNoSecret(reply, '/2xx/field/object');
    assert.equal(envelopeOf(reply).rule, 'error_fields');
  });

  test('schema_errors paths (JSON Pointers: / as ~1) and the detail listing them are redacted', async () => {
    const reply = await get('/2xx/schema/meta');
    assertNoSecret(reply, '/2xx/schema/meta');
    const body = envelopeOf(reply);
    assert.equal(body.rule, 'response_schema');
    assert.equal(body.schema_errors.length, 4);
    for (const error of body.schema_errors) {
      assert.match(error.path, /^\/meta\/z*\[red/, error.path);
      assert.ok(error.path.length <= 500);
      assert.equal(error.message, 'must be string');
    }
  });
});

test('the secrets reach no log line either', () => {
  for (const secret of [TOKEN, KEY]) assert.ok(!tg.logs.text.includes(secret.slice(0, 8)), 'a secret reached the logs');
});

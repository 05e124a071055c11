// inspectSuccess, table-driven: what each rule set decides for each kind of 2xx, and what it reads of the body to decide.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import type { IncomingMessage } from 'node:http';
import { compileSilentFailure, inspectSuccess, type Inspection } from './policy.ts';
import type { SilentFailureSettings } from './schema.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'silent-failure-'));
writeFileSync(path.join(dir, 'order.json'), JSON.stringify({ type: 'object', required: ['id'], properties: { id: { type: 'integer' } } }));
after(() => rmSync(dir, { recursive: true, force: true }));

function rules(settings: Partial<SilentFailureSettings>) {
  const check = compileSilentFailure({ empty_body: false, error_fields: [], content_type: [], max_body_bytes: '64b', ...settings } as SilentFailureSettings, dir);
  assert.ok(check, 'the rules are active');
  return check;
}

/** An upstream answer: a stream with a status and headers; `end: false` leaves it cut off (closed before complete). */
function answer(status: number, body: Buffer | string, headers: Record<string, string> = { 'content-type': 'application/json' }, end = true): IncomingMessage {
  const stream = new PassThrough() as unknown as IncomingMessage & PassThrough;
  Object.assign(stream, { statusCode: status, headers, complete: false });
  setImmediate(() => {
    if (body.length > 0) stream.write(body);
    if (end) {
      stream.complete = true;
      stream.end();
    } else stream.destroy();
  });
  return stream;
}

const summary = (inspection: Inspection) =>
  inspection.kind === 'failed' ? `failed:${inspection.failure.rule}` : inspection.kind === 'buffered' && inspection.unchecked ? 'buffered-unchecked' : inspection.kind;

const cases: [string, Partial<SilentFailureSettings>, string, () => IncomingMessage, string][] = [
  ['HEAD has no body to check', { empty_body: true }, 'HEAD', () => answer(200, ''), 'stream'],
  ['204 has no body to check', { empty_body: true }, 'GET', () => answer(204, ''), 'stream'],
  ['an empty 200 fails empty_body', { empty_body: true }, 'GET', () => answer(200, ''), 'failed:empty_body'],
  ['a 200 with a body passes empty_body and streams', { empty_body: true }, 'GET', () => answer(200, '{"id":1}'), 'stream'],
  ['an empty body is fine without empty_body', { error_fields: ['/error'] }, 'GET', () => answer(200, ''), 'buffered'],
  ['an error field present fails', { error_fields: ['/error'] }, 'GET', () => answer(200, '{"error":"quota"}'), 'failed:error_fields'],
  ['an error field absent passes, buffered', { error_fields: ['/error'] }, 'GET', () => answer(200, '{"id":1}'), 'buffered'],
  ['a body off the schema fails', { response_schema: 'order.json' }, 'GET', () => answer(200, '{"id":"x"}'), 'failed:response_schema'],
  ['a body on the schema passes', { response_schema: 'order.json' }, 'GET', () => answer(200, '{"id":1}'), 'buffered'],
  ['a gzip body is checked decoded', { error_fields: ['/error'] }, 'GET', () => answer(200, zlib.gzipSync('{"error":"x"}'), { 'content-type': 'application/json', 'content-encoding': 'gzip' }), 'failed:error_fields'],
  ['an unknown encoding is delivered unchecked', { error_fields: ['/error'] }, 'GET', () => answer(200, 'zzz', { 'content-type': 'application/json', 'content-encoding': 'compress' }), 'buffered-unchecked'],
  ['a body larger than max_body_bytes is delivered unchecked', { error_fields: ['/error'] }, 'GET', () => answer(200, `{"pad":"${'x'.repeat(100)}"}`), 'unchecked'],
  ['a body cut off before its end fails truncated', { error_fields: ['/error'] }, 'GET', () => answer(200, '{"id":', undefined, false), 'failed:truncated'],
  ['a wrong media type fails content_type on the head', { content_type: ['application/json'] }, 'GET', () => answer(200, '<html>', { 'content-type': 'text/html' }), 'failed:content_type'],
  ['the right media type streams', { content_type: ['application/json'] }, 'GET', () => answer(200, '{}'), 'stream'],
];

for (const [what, settings, method, make, expected] of cases) {
  test(what, async () => {
    assert.equal(summary(await inspectSuccess(rules(settings), method, make(), 1000)), expected);
  });
}

test('rules that decide on the head or the first byte never buffer the body: a streamed answer keeps all of its bytes', async () => {
  const upstream = answer(200, '{"id":1,"long":"' + 'y'.repeat(1000) + '"}');
  const inspection = await inspectSuccess(rules({ empty_body: true, content_type: ['application/json'] }), 'GET', upstream, 1000);
  assert.equal(inspection.kind, 'stream');
  const chunks: Buffer[] = [];
  for await (const chunk of upstream as unknown as AsyncIterable<Buffer>) chunks.push(chunk);
  assert.equal(Buffer.concat(chunks).length, 1000 + '{"id":1,"long":""}'.length);
});

test('no active rule compiles to no check at all', () => {
  assert.equal(compileSilentFailure({ empty_body: false, error_fields: [], content_type: [], max_body_bytes: '1mb' } as SilentFailureSettings, dir), undefined);
  assert.equal(compileSilentFailure(false, dir), undefined);
});

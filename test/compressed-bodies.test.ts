// Silent-failure rules read a compressed 2xx body decoded (gzip, deflate, br), and deliver a good one byte for byte as
// the upstream sent it, still compressed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import zlib from 'node:zlib';
import { writeFile } from 'node:fs/promises';
import { startUpstream, type TestUpstream } from './helpers/upstream.ts';
import { startTestGateway, configYaml, tempDir, type TestGateway } from './helpers/gateway.ts';
import { send, envelopeOf } from './helpers/http.ts';

const ENCODERS: Record<string, (body: Buffer) => Buffer> = { gzip: zlib.gzipSync, deflate: zlib.deflateSync, br: zlib.brotliCompressSync };

let upstream: TestUpstream;
let gw: TestGateway;
let dir: { dir: string; remove: () => Promise<void> };

before(async () => {
  // /<rule>/<encoding>/<good|bad>: a JSON body, compressed with the encoding named in the path.
  upstream = await startUpstream({
    '*': (req, res) => {
      const [, rule, encoding, verdict] = (req.url ?? '').split('/');
      const document = verdict === 'good' ? { status: 'ok', id: 7 } : rule === 'fields' ? { status: 'ok', error: 'quota exhausted' } : { id: 'not-a-number' };
      const body = ENCODERS[encoding!]!(Buffer.from(JSON.stringify(document)));
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': encoding!, 'content-length': body.length });
      res.end(body);
    },
  });
  dir = await tempDir('agentgate-compressed');
  const schemaFile = path.join(dir.dir, 'order.json');
  await writeFile(schemaFile, JSON.stringify({ type: 'object', required: ['status', 'id'], properties: { status: { type: 'string' }, id: { type: 'integer' } } }));
  gw = await startTestGateway(
    configYaml(`upstreams: {api: {url: '${upstream.url}'}}
routes:
  - {name: fields, match: {path: /fields/*}, upstream: api, silent_failure: {error_fields: [/error]}}
  - {name: schema, match: {path: /schema/*}, upstream: api, silent_failure: {response_schema: '${schemaFile}'}}
`),
  );
});

after(async () => {
  await gw.close();
  await upstream.close();
  await dir.remove();
});

for (const encoding of Object.keys(ENCODERS)) {
  test(`${encoding}: an error field inside the compressed body is a SILENT_FAILURE naming the field`, async () => {
    const reply = await send(`${gw.url}/fields/${encoding}/bad`, { headers: { 'accept-encoding': encoding } });
    assert.equal(reply.status, 502);
    const body = envelopeOf(reply);
    assert.equal(body.code, 'SILENT_FAILURE');
    assert.equal(body.rule, 'error_fields');
    assert.match(body.detail, /quota exhausted/);
  });

  test(`${encoding}: a compressed body off its response schema is a SILENT_FAILURE with the schema errors`, async () => {
    const reply = await send(`${gw.url}/schema/${encoding}/bad`, { headers: { 'accept-encoding': encoding } });
    assert.equal(reply.status, 502);
    const body = envelopeOf(reply);
    assert.equal(body.rule, 'response_schema');
    assert.ok(Array.isArray(body.schema_errors) && body.schema_errors.length > 0, JSON.stringify(body));
  });

  test(`${encoding}: a good compressed body is delivered as the upstream sent it, still compressed`, async () => {
    for (const rule of ['fields', 'schema']) {
      const reply = await send(`${gw.url}/${rule}/${encoding}/good`, { headers: { 'accept-encoding': encoding } });
      assert.equal(reply.status, 200);
      assert.equal(reply.headers['content-encoding'], encoding);
      assert.deepEqual(reply.body, ENCODERS[encoding]!(Buffer.from(JSON.stringify({ status: 'ok', id: 7 }))));
    }
  });
}

// silent_failure.response_schema: from_openapi — a 2xx is checked against the schema the legacy API's own OpenAPI
// document describes for the operation the request is and the status it got: the most literal path wins, recursive
// and 3.0 schemas are read as the spec means them, formats are not checked, and an undescribed answer passes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { configYaml, startTestGateway, tempDir, type TestGateway } from './helpers/gateway.ts';
import { json, startUpstream, type TestUpstream } from './helpers/upstream.ts';
import { envelopeOf, send, type Reply } from './helpers/http.ts';

const SPEC = `openapi: 3.0.3
info: {title: Orders, version: '1'}
paths:
  /orders:
    post:
      responses:
        '201': {description: created, content: {application/json: {schema: {$ref: '#/components/schemas/Order'}}}}
  /orders/{id}:
    get:
      parameters: [{name: id, in: path, required: true, schema: {type: string}}]
      responses:
        '200': {description: the order, content: {application/json: {schema: {$ref: '#/components/schemas/Order'}}}}
        '404': {description: no such order, content: {application/json: {schema: {type: object, required: [message]}}}}
  /orders/recent:
    get:
      responses:
        2XX: {description: the latest orders, content: {application/json: {schema: {type: array, items: {$ref: '#/components/schemas/Order'}}}}}
  /reports:
    get:
      responses:
        '200': {description: a CSV report, content: {text/csv: {schema: {type: string}}}}
components:
  schemas:
    Order:
      type: object
      required: [id]
      properties:
        id: {type: integer}
        created: {type: string, format: date-time}
        note: {type: string, nullable: true}
        total: {type: number, minimum: 0, exclusiveMinimum: true}
        parent: {$ref: '#/components/schemas/Order'}
`;

const CONFIG = (upstreamUrl: string) =>
  configYaml(`upstreams: {api: {url: '${upstreamUrl}'}}
openapi: {spec: legacy.yaml}
routes:
  - {name: orders, match: {path: /orders/*}, upstream: api, silent_failure: {response_schema: from_openapi}}
  - {name: reports, match: {path: /reports}, upstream: api, silent_failure: {response_schema: from_openapi}}
`);

/** What the upstream answers, by the request's last path segment, so one route can be asked for each shape. */
const ANSWERS: Record<string, unknown> = {
  good: { id: 7, created: '2024-01-01 10:00', note: null, total: 3, parent: { id: 1 } },
  'wrong-type': { id: 'seven' },
  'bad-parent': { id: 9, parent: { id: 'x' } },
  'zero-total': { id: 9, total: 0 },
  empty: {},
  recent: [{ id: 1 }, { id: 2 }],
};

describe('silent_failure.response_schema: from_openapi', () => {
  let upstream: TestUpstream;
  let gw: TestGateway;

  before(async () => {
    upstream = await startUpstream({
      'POST /orders': (req, res) => json(res, req.headers['x-answer'] === 'accepted' ? 202 : 201, req.headers['x-answer'] === 'empty' ? {} : { id: 5 }),
      '/reports': (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/csv' });
        res.end('id,total\n1,3\n');
      },
      '*': (req, res) => {
        const last = (req.url ?? '').split('/').at(-1)!;
        if (last === 'missing') return json(res, 404, { message: 'no such order' });
        if (last === 'items') return json(res, 200, { anything: 'goes' });
        json(res, 200, ANSWERS[last] ?? { id: 1 });
      },
    });
    gw = await startTestGateway(CONFIG(upstream.url), { files: { 'legacy.yaml': SPEC } });
  });
  after(async () => {
    await gw.close();
    await upstream.close();
  });

  const get = (p: string) => send(`${gw.url}${p}`);
  function failed(reply: Reply): { path: string; message: string }[] {
    assert.equal(reply.status, 502, reply.text);
    const envelope = envelopeOf(reply);
    assert.equal(envelope.code, 'SILENT_FAILURE');
    assert.equal(envelope.rule, 'response_schema');
    return envelope.schema_errors;
  }

  test("an answer that fits the operation's schema passes: 3.0's nullable and exclusive bounds are read as meant, formats are not checked", async () => {
    const reply = await get('/orders/good');
    assert.equal(reply.status, 200, reply.text);
    assert.deepEqual(reply.json(), ANSWERS.good);
  });

  test('an answer off the schema is SILENT_FAILURE naming where, through $refs and recursion', async () => {
    assert.deepEqual(failed(await get('/orders/wrong-type')), [{ path: '/id', message: 'must be integer' }]);
    assert.deepEqual(failed(await get('/orders/bad-parent')), [{ path: '/parent/id', message: 'must be integer' }]);
    assert.deepEqual(failed(await get('/orders/zero-total')), [{ path: '/total', message: 'must be > 0' }]);
    assert.deepEqual(failed(await get('/orders/empty')), [{ path: '/', message: "must have required property 'id'" }]);
  });

  test('a path two operations fit is the most literal one: /orders/recent is the list, not an order', async () => {
    const reply = await get('/orders/recent');
    assert.equal(reply.status, 200, reply.text);
    assert.deepEqual(reply.json(), ANSWERS.recent);
  });

  test('the schema is the status answered: 201 is checked, an undescribed 202 passes, an error is no success to check', async () => {
    const post = (answer: string) => send(`${gw.url}/orders`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-answer': answer }, body: '{}' });
    assert.equal((await post('created')).status, 201);
    assert.deepEqual(failed(await post('empty')), [{ path: '/', message: "must have required property 'id'" }]);
    const accepted = await post('accepted');
    assert.equal(accepted.status, 202, 'the spec describes no 202');
    assert.equal((await get('/orders/missing')).status, 404, 'a 404 is made an envelope by the usual rules, not checked as a success');
  });

  test('an answer the spec does not describe is passed on: no operation, or no JSON schema for it', async () => {
    const items = await get('/orders/7/items');
    assert.equal(items.status, 200);
    assert.deepEqual(items.json(), { anything: 'goes' });
    const report = await get('/reports');
    assert.equal(report.status, 200);
    assert.equal(report.text, 'id,total\n1,3\n');
    assert.equal(upstream.received.filter((r) => r.url === '/reports').length, 1);
  });
});

describe('from_openapi in the config', () => {
  const cli = path.join(import.meta.dirname, '../src/cli.ts');
  const validate = (file: string) =>
    promisify(execFile)(process.execPath, [cli, 'validate', '--config', file], { encoding: 'utf8' }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
    );

  test('without openapi.spec it is a config error at its key', async () => {
    const dir = await tempDir();
    try {
      const file = path.join(dir.dir, 'gateway.yaml');
      await writeFile(file, configYaml(`upstreams: {api: {url: 'http://127.0.0.1:9'}}\nroutes:\n  - {name: orders, match: {path: /orders}, upstream: api, silent_failure: {response_schema: from_openapi}}\n`));
      const result = await validate(file);
      assert.equal(result.code, 1, result.stdout);
      assert.match(result.stdout + result.stderr, /gateway\.yaml:\d+:\d+: routes\[0\]\.silent_failure\.response_schema: from_openapi takes the schemas of openapi\.spec, and there is no openapi\.spec/);
    } finally {
      await dir.remove();
    }
  });

  test('a route whose operations describe no JSON success schema is warned of: nothing would be checked', async () => {
    const dir = await tempDir();
    try {
      const file = path.join(dir.dir, 'gateway.yaml');
      await writeFile(path.join(dir.dir, 'legacy.yaml'), SPEC);
      await writeFile(file, CONFIG('http://127.0.0.1:9'));
      const result = await validate(file);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stderr, /warning: route 'reports': silent_failure\.response_schema is from_openapi, but legacy\.yaml describes no 2xx JSON schema of its operations/);
      assert.doesNotMatch(result.stderr, /route 'orders': silent_failure/);
    } finally {
      await dir.remove();
    }
  });
});

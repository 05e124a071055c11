// Spec operations matched to routes as the router would route their requests, and what `validate` warns of.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { compilePathTemplate } from '../routing/router.ts';
import { parseConfig } from '../config/load.ts';
import { coverageWarnings, routeTakes, servingRoutes, specPathTemplate } from './match.ts';
import { readLegacySpec, type SpecOperation } from './spec.ts';

const route = (name: string, template: string, methods?: string[]) => ({ name, methods: methods && new Set(methods), template: compilePathTemplate(template, false) });
const op = (method: string, p: string) => ({ method, path: p, parameters: [], responses: {} }) as SpecOperation;
const takes = (template: string, methods: string[] | undefined, method: string, specPath: string) =>
  routeTakes(route('r', template, methods), method, specPathTemplate(specPath, false)!);

test('a route takes an operation when it takes every request of it', () => {
  assert.ok(takes('/orders/{id}', ['GET'], 'GET', '/orders/{orderId}'), 'parameters match whatever their names');
  assert.ok(takes('/orders/{id}', ['GET'], 'HEAD', '/orders/{orderId}'), 'HEAD goes where GET does');
  assert.ok(!takes('/orders/{id}', ['GET'], 'POST', '/orders/{orderId}'));
  assert.ok(takes('/orders/{id}', undefined, 'DELETE', '/orders/{orderId}'), 'a route without methods takes them all');
  assert.ok(takes('/orders/{id}', undefined, 'GET', '/orders/latest'), 'a parameter takes a literal');
  assert.ok(!takes('/orders/latest', undefined, 'GET', '/orders/{id}'), 'a literal takes only some of a parameter');
  assert.ok(takes('/Orders/{id}', undefined, 'GET', '/orders/{id}'), 'literals in any case unless routing is case-sensitive');
  assert.ok(takes('/orders/*', undefined, 'GET', '/orders'), 'a prefix takes its own path');
  assert.ok(takes('/orders/*', undefined, 'GET', '/orders/{id}/confirm'));
  assert.ok(!takes('/orders/*', undefined, 'GET', '/order'));
  assert.ok(takes('/*', undefined, 'GET', '/'));
  assert.ok(!takes('/{id}', undefined, 'GET', '/'), 'a parameter never takes the empty root segment');
  assert.ok(!takes('/orders', undefined, 'GET', '/orders/{id}'));
  assert.ok(takes('/files/{name}', undefined, 'GET', '/files/{base}.{ext}'), 'a segment mixing text and parameters is one segment of any value');
  assert.equal(specPathTemplate('/files/*', false), undefined, 'no request path has a literal *');
});

test('each operation goes to the first route in file order that takes it, as requests would', () => {
  const routes = [route('create', '/orders', ['POST']), route('one', '/orders/{id}', ['GET']), route('rest', '/orders/*'), route('other', '/other')];
  const ops = [op('POST', '/orders'), op('GET', '/orders/{id}'), op('DELETE', '/orders/{id}'), op('GET', '/orders'), op('GET', '/nowhere'), op('TRACE', '/orders')];
  const serving = servingRoutes(routes, ops, false);
  assert.deepEqual(ops.map((o) => serving.get(o)?.name), ['create', 'one', 'rest', 'rest', undefined, undefined], 'TRACE never reaches a route');
});

test('coverageWarnings: routes and methods the spec does not describe, operations no route serves', async () => {
  const reading = await readLegacySpec(path.join(import.meta.dirname, '../../test/fixtures/openapi/legacy.yaml'));
  assert.equal(reading.kind, 'loaded');
  const config = parseConfig(
    `version: 1
upstreams: {api: {url: 'http://127.0.0.1:9'}}
routes:
  - {name: orders, match: {methods: [GET, POST, PUT], path: /orders}, upstream: api}
  - {name: one, match: {path: '/orders/{id}/*'}, upstream: api}
  - {name: reports, match: {path: /reports/*}, upstream: api}
`,
    'f.yaml',
    {},
  );
  assert.deepEqual(coverageWarnings(config, reading.kind === 'loaded' ? reading.spec : assert.fail()), [
    "route 'orders' (PUT /orders): legacy.yaml describes no such operation",
    "route 'reports' (/reports/*, any method): legacy.yaml describes no operation it serves",
    'legacy.yaml: GET /categories (listCategories) is served by no route',
    'legacy.yaml: POST /admin/purge (purgeEverything) is served by no route',
  ]);
});

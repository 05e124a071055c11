// Route matching: literal segments, {param} segments, trailing /* prefixes, method sets and first-match-wins.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compilePathTemplate, matchesTemplate, Router } from './router.ts';

const cases: [template: string, path: string, expected: boolean][] = [
  ['/', '/', true],
  ['/', '/x', false],
  ['/orders', '/orders', true],
  ['/orders', '/orders/', false],
  ['/orders', '/order', false],
  ['/orders', '/ordersX', false],
  ['/orders/{id}', '/orders/42', true],
  ['/orders/{id}', '/orders/', false],
  ['/orders/{id}', '/orders', false],
  ['/orders/{id}', '/orders/42/items', false],
  ['/orders/{id}/items/{item}', '/orders/1/items/2', true],
  ['/orders/{id}/items/{item}', '/orders/1/items', false],
  ['/*', '/', true],
  ['/*', '/anything/at/all', true],
  ['/admin/*', '/admin', true],
  ['/admin/*', '/admin/', true],
  ['/admin/*', '/admin/users/7', true],
  ['/admin/*', '/administrator', false],
  ['/v1/{tenant}/*', '/v1/acme/x/y', true],
  ['/v1/{tenant}/*', '/v1//x', false],
];

for (const [template, path, expected] of cases) {
  test(`${template} ${expected ? 'matches' : 'does not match'} ${path}`, () => {
    assert.equal(matchesTemplate(compilePathTemplate(template), path), expected);
  });
}

test('malformed templates are refused with a reason', () => {
  assert.throws(() => compilePathTemplate('orders'), /must start with \//);
  assert.throws(() => compilePathTemplate('/a/*/b'), /only at the end/);
  assert.throws(() => compilePathTemplate('/a/{id}x'), /not allowed/);
  assert.throws(() => compilePathTemplate('/a/{1id}'), /not a valid parameter name/);
  assert.throws(() => compilePathTemplate('/a/{id}/{id}'), /appears twice/);
});

test('the first matching route wins, methods filter, and HEAD is served by GET routes', () => {
  const route = (name: string, path: string, methods?: string[]) => ({
    name,
    methods: methods ? new Set(methods) : undefined,
    template: compilePathTemplate(path),
  });
  const router = new Router([route('create', '/orders', ['POST']), route('read', '/orders/{id}', ['GET']), route('rest', '/*')]);
  assert.equal(router.match('POST', '/orders')?.name, 'create');
  assert.equal(router.match('GET', '/orders')?.name, 'rest');
  assert.equal(router.match('GET', '/orders/1')?.name, 'read');
  assert.equal(router.match('HEAD', '/orders/1')?.name, 'read');
  assert.equal(router.match('DELETE', '/orders/1')?.name, 'rest');
  assert.equal(new Router([route('read', '/orders/{id}', ['GET'])]).match('POST', '/orders/1'), undefined);
});

// The one reading of a request target: what is forwarded, what routes are matched against, and what is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readRequestTarget } from './request-target.ts';
import { compilePathTemplate, matchesTemplate } from './router.ts';

// [target as sent, forwarded target, matchPath (case-insensitive routing)]
const read: [string, string, string][] = [
  ['/', '/', '/'],
  ['/orders', '/orders', '/orders'],
  ['/orders/', '/orders/', '/orders'],
  ['/Orders/42?x=%2E%2e', '/Orders/42?x=%2E%2e', '/orders/42'],
  ['/%6frders', '/orders', '/orders'],
  ['/%6Frders/%7e%2D%5f%2E', '/orders/~-_.', '/orders/~-_'],
  ['/a%2fb'.replace('%2f', '%3a'), '/a%3Ab', '/a:b'],
  ['/files/%c3%a9t%C3%A9', '/files/%C3%A9t%C3%A9', '/files/été'],
  ['/files/\u00c3\u00a9', '/files/%C3%A9', '/files/é'],
  ['/a"b<c>', '/a%22b%3Cc%3E', '/a"b<c>'],
  ['/admin./x', '/admin./x', '/admin/x'],
  ['/admin%20/x', '/admin%20/x', '/admin/x'],
  ['/x/report.pdf', '/x/report.pdf', '/x/report.pdf'],
  ['/.well-known/x', '/.well-known/x', '/.well-known/x'],
  ['/%C5%BFecret', '/%C5%BFecret', '/secret'],
  ['/%E2%84%AAey', '/%E2%84%AAey', '/key'],
  ['/bad/%ff/%61', '/bad/%FF/a', '/bad/%ff/a'],
  ['/100%25', '/100%25', '/100%'],
  ['/100%25zz', '/100%25zz', '/100%zz'],
  ['/100%25-', '/100%25-', '/100%-'],
  ['/q?a=1#', '', ''],
];

for (const [target, forwarded, matchPath] of read) {
  test(`${JSON.stringify(target)} is forwarded as ${JSON.stringify(forwarded)} and matched as ${JSON.stringify(matchPath)}`, () => {
    const reading = readRequestTarget(target, false);
    if (forwarded === '') {
      assert.equal(reading.kind, 'refuse');
      return;
    }
    assert.equal(reading.kind, 'ok', JSON.stringify(reading));
    if (reading.kind !== 'ok') return;
    assert.equal(reading.target, forwarded);
    assert.equal(reading.matchPath, matchPath);
  });
}

test('case-sensitive routing keeps the case of the match path, and nothing else changes', () => {
  const reading = readRequestTarget('/Orders/%6f/', true);
  assert.deepEqual(reading, { kind: 'ok', path: '/Orders/o/', target: '/Orders/o/', matchPath: '/Orders/o' });
});

const refused: [string, RegExp][] = [
  ['*', /origin-form/],
  ['http://a/b', /origin-form/],
  ['/a\\b', /backslash/],
  ['/a%5Cb', /encoded slash or backslash/],
  ['/a%2Fb', /encoded slash/],
  ['//a', /empty segment/],
  ['/a//b', /empty segment/],
  ['/a/./b', /\. or \.\. segments/],
  ['/a/..', /\. or \.\. segments/],
  ['/a/%2E%2e/b', /\. or \.\. segments/],
  ['/a/...', /\. or \.\. segments/],
  ['/a/%09../b', /control character/],
  ['/a;b', /';'/],
  ['/a#b', /fragment/],
  ['/a?b#c', /fragment/],
  ['/a%00', /control character/],
  ['/a%7F', /control character/],
  ['/a%c0%afb', /overlong/],
  ['/a%C1%9C', /overlong/],
  ['/a%g0', /malformed percent-escape/],
  ['/%2561dmin/x', /double-encoded/],
  ['/a/%252e%252e/b', /double-encoded/],
  ['/a/%25%32%65%25%32%65/b', /double-encoded/],
  ['/x/%25%435%BF', /double-encoded/],
  ['/100%25a', /double-encoded/],
  ['/a%4', /malformed percent-escape/],
];
for (const [target, reason] of refused) {
  test(`${JSON.stringify(target)} is refused`, () => {
    const reading = readRequestTarget(target, false);
    assert.equal(reading.kind, 'refuse');
    if (reading.kind === 'refuse') assert.match(reading.detail, reason);
  });
}

test('a route literal is read like a request: case, escapes, trailing slash and non-ASCII text meet the same spelling', () => {
  const template = compilePathTemplate('/Café/{id}/', false);
  // Node hands a request's raw UTF-8 bytes over one char per byte (\u00c3\u00a9 is é).
  for (const path of ['/caf\u00c3\u00a9/1', '/CAF\u00c3\u0089/1/', '/caf%C3%A9/1', '/Caf%c3%a9/1']) {
    const reading = readRequestTarget(path, false);
    assert.ok(reading.kind === 'ok' && matchesTemplate(template, reading.matchPath), path);
  }
  assert.throws(() => compilePathTemplate('/a;b', false), /can never match/);
  assert.throws(() => compilePathTemplate('/a/%2e%2e', false), /can never match/);
});

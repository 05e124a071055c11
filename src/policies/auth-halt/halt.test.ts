// The auth-failure halt on its own: consecutive 401s per credential, cool-down, reset on success, bounded memory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AuthFailureHalt } from './halt.ts';

function halt() {
  let now = 0;
  return { h: new AuthFailureHalt({ threshold: 3, cooldownMs: 60_000, clock: () => now }), advance: (ms: number) => (now += ms) };
}

test('N consecutive 401s halt that credential only, for the cool-down', () => {
  const { h, advance } = halt();
  assert.equal(h.record('bad', 401), false);
  assert.equal(h.record('bad', 401), false);
  assert.equal(h.record('bad', 401), true, 'the third 401 halts');
  assert.equal(h.haltedFor('bad'), 60_000);
  assert.equal(h.haltedFor('good'), undefined);
  advance(59_000);
  assert.equal(h.haltedFor('bad'), 1000);
});

test('any other answer resets the count', () => {
  const { h } = halt();
  h.record('k', 401);
  h.record('k', 401);
  h.record('k', 200);
  assert.equal(h.record('k', 401), false);
  assert.equal(h.record('k', 401), false);
  assert.equal(h.haltedFor('k'), undefined);
});

test('after the cool-down one call is tried; a 401 halts again at once, a success clears it', () => {
  const { h, advance } = halt();
  for (let i = 0; i < 3; i++) h.record('k', 401);
  advance(60_000);
  assert.equal(h.haltedFor('k'), undefined);
  assert.equal(h.record('k', 401), true);
  assert.equal(h.haltedFor('k'), 60_000);
  advance(60_000);
  assert.equal(h.haltedFor('k'), undefined);
  h.record('k', 200);
  assert.equal(h.record('k', 401), false);
});

test('memory stays bounded under a flood of distinct credentials', () => {
  const { h } = halt();
  for (let i = 0; i < 50_000; i++) h.record(`token-${i}`, 401);
  assert.ok((h as unknown as { credentials: Map<string, unknown> }).credentials.size <= 10_000);
});

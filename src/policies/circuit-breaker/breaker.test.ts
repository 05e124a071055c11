// The circuit breaker's state machine, driven by an injected clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CircuitBreaker, type CircuitState } from './breaker.ts';

function breaker() {
  let now = 1_000_000;
  const changes: CircuitState[] = [];
  const b = new CircuitBreaker({ failureThreshold: 3, windowMs: 1000, openMs: 5000, clock: () => now, onStateChange: (s) => changes.push(s) });
  return { b, changes, advance: (ms: number) => (now += ms) };
}

test('opens after N failures within the window, and fails fast with the time to half-open', () => {
  const { b, changes, advance } = breaker();
  for (let i = 0; i < 3; i++) {
    assert.deepEqual(b.admit(), { allowed: true, probe: false });
    b.record(false, false);
    advance(100);
  }
  assert.equal(b.state, 'open');
  assert.deepEqual(changes, ['open']);
  const denied = b.admit();
  assert.equal(denied.allowed, false);
  assert.equal(!denied.allowed && denied.retryAfterMs, 4900);
});

test('failures spread wider than the window do not open it, and successes do not reset a closed window', () => {
  const { b, advance } = breaker();
  b.record(false, false);
  advance(600);
  b.record(false, false);
  advance(600);
  b.record(false, false);
  assert.equal(b.state, 'closed', 'three failures over 1.2 s with a 1 s window');
  advance(100);
  b.record(false, false);
  assert.equal(b.state, 'open', 'the last three failures are within 1 s');
});

test('half-open lets exactly one probe through; its success closes, its failure reopens', () => {
  const { b, changes, advance } = breaker();
  for (let i = 0; i < 3; i++) b.record(false, false);
  advance(5000);
  assert.deepEqual(b.admit(), { allowed: true, probe: true });
  assert.equal(b.state, 'half_open');
  assert.equal(b.admit().allowed, false, 'a second request while the probe is out is refused');
  b.record(false, true);
  assert.equal(b.state, 'open');
  advance(5000);
  assert.deepEqual(b.admit(), { allowed: true, probe: true });
  b.record(true, true);
  assert.equal(b.state, 'closed');
  assert.deepEqual(b.admit(), { allowed: true, probe: false });
  assert.deepEqual(changes, ['open', 'half_open', 'open', 'half_open', 'closed']);
});

test('an abandoned probe frees the half-open slot', () => {
  const { b, advance } = breaker();
  for (let i = 0; i < 3; i++) b.record(false, false);
  advance(5000);
  assert.equal(b.admit().allowed, true);
  b.abandonProbe();
  assert.deepEqual(b.admit(), { allowed: true, probe: true });
});

// The rate-limit headers: which policy they describe, the IETF fields as RFC 9651 parses them, and the warning.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseList } from 'structured-headers';
import { byExhaustion, rateLimitHeaders, type PolicyView } from './headers.ts';

const NOW = 1_800_000_000_000;
const view = (name: string, capacity: number, perMs: number, remaining: number, resetMs: number, waitMs = 0, warnBelowUnits = 0): PolicyView => ({
  policy: { name, capacity, perMs, warnBelowUnits },
  state: { remaining, resetMs, waitMs },
  pk: Buffer.from(`pk-${name}`).toString('base64'),
});

test('X-RateLimit-* describe the policy closest to exhaustion (least share left), RateLimit lists it first', () => {
  const burst = view('burst', 10, 1_000, 9, 100);
  const daily = view('daily', 1000, 86_400_000, 50, 82_080_000);
  const headers = rateLimitHeaders([burst, daily], 1, NOW, false);
  assert.equal(headers['x-ratelimit-limit'], '1000');
  assert.equal(headers['x-ratelimit-remaining'], '50');
  assert.equal(headers['x-ratelimit-reset'], String(Math.ceil((NOW + 82_080_000) / 1000)));
  assert.equal(headers['x-ratelimit-cost'], '1');
  const limits = parseList(headers.ratelimit!);
  assert.deepEqual(limits.map(([name]) => name), ['daily', 'burst']);
  assert.deepEqual(Object.fromEntries((limits[0] as [string, Map<string, unknown>])[1]), {
    r: 50,
    t: 82_080,
    pk: new Uint8Array(Buffer.from('pk-daily')).buffer,
  });
  // The policy field keeps config order, so it stays the same from response to response.
  const policies = parseList(headers['ratelimit-policy']!);
  assert.deepEqual(policies.map(([name]) => name), ['burst', 'daily']);
  assert.deepEqual([...(policies[1] as [string, Map<string, unknown>])[1].entries()].slice(0, 2), [['q', 1000], ['w', 86_400]]);
  assert.equal(headers['x-ratelimit-warning'], undefined);
});

test('a refused request is described by the policy that refused it, with t = its wait, never past Retry-After', () => {
  const burst = view('burst', 10, 10_000, 1, 9_000, 2_000);
  const daily = view('daily', 1000, 86_400_000, 3, 86_000_000, 0);
  const ordered = byExhaustion([daily, burst], true);
  assert.equal(ordered[0]!.policy.name, 'burst', 'a policy with room is not the one to describe, however low its share');
  const headers = rateLimitHeaders([daily, burst], 3, NOW, true);
  assert.equal(headers['x-ratelimit-limit'], '10');
  assert.equal(headers['x-ratelimit-remaining'], '1');
  const [first] = parseList(headers.ratelimit!);
  assert.equal(first![0], 'burst');
  assert.equal((first as [string, Map<string, unknown>])[1].get('t'), 2);
  // A cost that can never fit sorts as the longest wait.
  const never = view('tiny', 2, 1_000, 2, 0, -1);
  assert.equal(byExhaustion([burst, never], true)[0]!.policy.name, 'tiny');
});

test('X-RateLimit-Warning lists, as a structured list, every policy left below its threshold', () => {
  const low = view('daily', 1000, 86_400_000, 150, 10_000_000, 0, 200);
  const fine = view('burst', 10, 1_000, 9, 100, 0, 2);
  const headers = rateLimitHeaders([fine, low], 1, NOW, false);
  const warning = parseList(headers['x-ratelimit-warning']!);
  assert.equal(warning.length, 1);
  assert.equal(warning[0]![0], 'daily');
  assert.deepEqual(Object.fromEntries((warning[0] as [string, Map<string, unknown>])[1]), { r: 150, q: 1000, t: 10_000 });
});

test('windows shorter than a second still give w >= 1 (the draft has no sub-second precision)', () => {
  const headers = rateLimitHeaders([view('fast', 5, 250, 5, 0)], 1, NOW, false);
  assert.match(headers['ratelimit-policy']!, /;w=1;/);
});

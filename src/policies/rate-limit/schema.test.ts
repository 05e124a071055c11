// The rate-limit config: defaults filled in, and each mistake reported with its line, key path and a did-you-mean.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseConfig, type ConfigProblem } from '../../config/load.ts';

const BASE = `version: 1
upstreams:
  api: {url: 'http://127.0.0.1:3000'}
rate_limits:
  agents: {capacity: 1000, per: 60s}
  daily: {capacity: 5000, per: 1d, scope: global, on_store_error: fail_closed, warn_below: 0.1}
defaults:
  rate_limit: agents
routes:
  - name: create
    match: {path: /orders}
    upstream: api
    cost: 5
  - name: bulk
    match: {path: /bulk}
    upstream: api
    rate_limit: [agents, daily]
    cost: {items: /orders, settle: {header: X-Actual-Cost}}
  - name: free
    match: {path: /*}
    upstream: api
    rate_limit: false
`;

function problems(yaml: string): ConfigProblem[] {
  try {
    parseConfig(yaml, 'f.yaml', {});
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return [...err.problems];
  }
  assert.fail('accepted');
}

test('policies, costs and defaults get their defaults from the schema', () => {
  const config = parseConfig(BASE, 'f.yaml', {});
  assert.deepEqual(config.rate_limits.agents, { capacity: 1000, per: '60s', scope: 'consumer', warn_below: 0.2, on_store_error: 'fail_open' });
  assert.deepEqual(config.defaults, { rate_limit: 'agents', cost: 1 });
  assert.deepEqual(config.routes[1]!.cost, { items: '/orders', settle: { header: 'X-Actual-Cost' }, base: 1, per_item: 1, max_body: '1mb' });
  assert.equal(config.routes[0]!.rate_limit, undefined, 'left to defaults.rate_limit');
  const bare = parseConfig(BASE.replace(/rate_limits:[\s\S]*?routes:/, 'routes:').replace('    rate_limit: [agents, daily]\n', ''), 'f.yaml', {});
  assert.deepEqual(bare.rate_limits, {});
  assert.deepEqual(bare.defaults, { rate_limit: false, cost: 1 });
});

test('a route naming an unknown policy: line, key path and did-you-mean', () => {
  const [p] = problems(BASE.replace('[agents, daily]', '[agents, dialy]'));
  assert.deepEqual({ line: p!.line, keyPath: p!.keyPath, message: p!.message }, { line: 17, keyPath: 'routes[1].rate_limit[1]', message: "unknown rate-limit policy 'dialy' (did you mean 'daily'?)" });
  const [d] = problems(BASE.replace('  rate_limit: agents\n', '  rate_limit: nobody\n'));
  assert.deepEqual([d!.line, d!.keyPath, d!.message], [8, 'defaults.rate_limit', "unknown rate-limit policy 'nobody' (defined under rate_limits: agents, daily)"]);
});

test('typos and wrong shapes in policies and costs', () => {
  const cases: [string, string, number, string, RegExp][] = [
    ['capacity: 1000, per: 60s}', 'capacity: 1000, per: 60s, scop: route}', 5, 'rate_limits.agents.scop', /unknown key 'scop' \(did you mean 'scope'\?\)/],
    ['per: 60s}', 'per: 60 s}', 5, 'rate_limits.agents.per', /must be a duration/],
    ['cost: 5', 'cost: 2.5', 13, 'routes[0].cost', /must be an integer or a mapping/],
    ['cost: 5', 'cost: {bsae: 1}', 13, 'routes[0].cost.bsae', /did you mean 'base'/],
    ['items: /orders', 'items: orders', 18, 'routes[1].cost.items', /JSON Pointer/],
    ['rate_limit: false', 'rate_limit: true', 22, 'routes[2].rate_limit', /a policy name under rate_limits, a list of them .*, or false for no limit, got boolean true/],
    ['warn_below: 0.1', 'warn_below: 20', 6, 'rate_limits.daily.warn_below', /must be <= 1/],
    ['capacity: 5000, per: 1d', 'capacity: 100000000000, per: 1d', 6, 'rate_limits.daily.capacity', /too fine to count exactly/],
    ['per: 60s}', 'per: 0ms}', 5, 'rate_limits.agents.per', /at least 1ms/],
  ];
  for (const [from, to, line, keyPath, message] of cases) {
    const found = problems(BASE.replace(from, to));
    assert.equal(found.length, 1, `${to}: ${JSON.stringify(found)}`);
    assert.deepEqual([found[0]!.line, found[0]!.keyPath], [line, keyPath], to);
    assert.match(found[0]!.message, message, to);
  }
});

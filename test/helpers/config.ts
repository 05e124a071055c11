// Config test helpers: a minimal valid file and the problems a config text is refused with.
import assert from 'node:assert/strict';
import { parseConfig, ConfigError, type ConfigProblem } from '../../src/config/load.ts';

export const GOOD = `version: 1
upstreams:
  orders:
    url: http://127.0.0.1:3000
routes:
  - name: get-order
    match: {methods: [GET], path: '/orders/{id}'}
    upstream: orders
`;

export function problemsOf(yaml: string, env: NodeJS.ProcessEnv = {}): ConfigProblem[] {
  try {
    parseConfig(yaml, 'f.yaml', env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return [...err.problems];
  }
  assert.fail('the config was accepted');
}

export function onlyProblem(yaml: string, env: NodeJS.ProcessEnv = {}): ConfigProblem {
  const problems = problemsOf(yaml, env);
  assert.equal(problems.length, 1, `expected one problem, got:\n${problems.map((p) => JSON.stringify(p)).join('\n')}`);
  return problems[0]!;
}

// The demo (config/gateway.yaml and config/agents.yaml, in front of the bundled demo legacy API) started for a test, and
// its public agent keys as docs/getting-started.md gives them.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { startTestGateway, type TestGateway } from './gateway.ts';

const REPO = path.resolve(import.meta.dirname, '../..');

/** A demo key as docs/getting-started.md gives it. */
export async function demoKey(variable: 'DEMO_KEY' | 'REPORTER_KEY' | 'BATCH_KEY'): Promise<string> {
  const doc = await readFile(path.join(REPO, 'docs/getting-started.md'), 'utf8');
  const key = new RegExp(`^${variable}=(agk_\\S+)`, 'm').exec(doc)?.[1];
  assert.ok(key, `docs/getting-started.md sets ${variable}`);
  return key;
}

/** The demo's config on free ports, its upstreams at the given demo legacy API, with its agents file and response schema beside it. */
export async function startDemo(legacyUrl: string): Promise<TestGateway> {
  const original = await readFile(path.join(REPO, 'config/gateway.yaml'), 'utf8');
  const yaml = original
    .replaceAll('http://127.0.0.1:3000', legacyUrl)
    .replace('listen: 127.0.0.1:8080', 'listen: 127.0.0.1:0')
    .replace('admin_listen: 127.0.0.1:9090', 'admin_listen: 127.0.0.1:0')
    .replaceAll('schemas/order-list.schema.json', 'order-list.schema.json');
  for (const port of ['3000', '8080', '9090']) assert.ok(!yaml.includes(`127.0.0.1:${port}`), `port ${port} of config/gateway.yaml was not replaced`);
  assert.match(yaml, /^mcp: \{path: \/mcp\}/m, 'the demo serves MCP at /mcp');
  return startTestGateway(yaml, {
    files: {
      'agents.yaml': await readFile(path.join(REPO, 'config/agents.yaml'), 'utf8'),
      'order-list.schema.json': await readFile(path.join(REPO, 'config/schemas/order-list.schema.json'), 'utf8'),
    },
  });
}

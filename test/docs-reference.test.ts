// The generated references in docs/reference/ are exactly what scripts/write-reference.ts renders now, and leave nothing out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { REFERENCE_PAGES, referenceFile, renderConfiguration, renderMetrics } from '../scripts/write-reference.ts';
import { ConfigSchema } from '../src/config/schema.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The first line where two texts part, for a message that says where the page drifted. */
function firstDifference(onDisk: string, rendered: string): string {
  const a = onDisk.split('\n');
  const b = rendered.split('\n');
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i] !== b[i]) return `line ${i + 1}\n  on disk:   ${a[i] ?? '(end of file)'}\n  generated: ${b[i] ?? '(end of file)'}`;
  }
  return '';
}

for (const page of REFERENCE_PAGES) {
  test(`docs reference: ${page.file} is what the generator renders`, async () => {
    const file = referenceFile(page.file);
    const onDisk = existsSync(file) ? readFileSync(file, 'utf8') : '';
    const rendered = await page.render();
    if (onDisk !== rendered) assert.fail(`${page.file} is out of date: run npm run build (first difference at ${firstDifference(onDisk, rendered)})`);
  });
}

test('docs reference: every key name of the config schema is in the configuration reference', () => {
  const names = new Set<string>();
  const collect = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(collect);
    if (node === null || typeof node !== 'object') return;
    const n = node as Record<string, unknown>;
    if (n.properties && typeof n.properties === 'object') for (const key of Object.keys(n.properties)) names.add(key);
    for (const key of ['properties', 'patternProperties', 'items', 'anyOf']) {
      const child = n[key];
      if (key === 'properties' || key === 'patternProperties') Object.values((child ?? {}) as object).forEach(collect);
      else collect(child);
    }
  };
  collect(JSON.parse(JSON.stringify(ConfigSchema)));
  assert.ok(names.size > 50, 'the schema was walked');
  const page = renderConfiguration();
  const missing = [...names].filter((name) => !new RegExp(`^\\| \`(?:[^\`]*\\.)?${name}\` \\|`, 'm').test(page)).sort();
  assert.deepEqual(missing, [], 'keys of the schema with no row in docs/reference/configuration.md');
});

test('docs reference: every agentgate_ metric defined in src/ is in the metrics reference', async () => {
  const defined = new Set<string>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) {
        for (const m of readFileSync(full, 'utf8').matchAll(/\bname: ['"`](agentgate_[a-z0-9_]+)['"`]|\(\s*['"`](agentgate_[a-z0-9_]+)['"`]\s*,/g)) defined.add((m[1] ?? m[2])!);
      }
    }
  };
  walk(path.join(REPO, 'src'));
  assert.ok(defined.has('agentgate_requests_total') && defined.has('agentgate_memory_store_entries') && defined.has('agentgate_workers'), 'the metric definitions were found');
  const page = await renderMetrics();
  assert.deepEqual([...defined].filter((name) => !page.includes(`| \`${name}\` |`)).sort(), [], 'metrics defined in src/ with no row in docs/reference/metrics.md');
});

// releaseStartUpMemory (src/gateway.ts): one collection that gives memory back once a gateway listens, without leaving
// V8's gc extension switched on for anything else in the process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getHeapStatistics } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { execFileSync } from 'node:child_process';
import { releaseStartUpMemory } from './gateway.ts';

test('collects what start-up left behind and gives the pages back', () => {
  // Objects that live long enough to reach the old generation, then are dropped: what loading a config leaves.
  let leftOver: { n: number; text: string }[] | undefined = Array.from({ length: 300_000 }, (_, n) => ({ n, text: `item ${n}` }));
  for (let i = 0; i < 5; i++) Array.from({ length: 100_000 }, (_, n) => ({ n }));
  assert.equal(leftOver.length, 300_000);
  leftOver = undefined;
  const before = getHeapStatistics();
  releaseStartUpMemory();
  const after = getHeapStatistics();
  assert.ok(after.used_heap_size < before.used_heap_size - 10 * 2 ** 20, `used heap ${before.used_heap_size} -> ${after.used_heap_size}`);
  assert.ok(after.total_heap_size < before.total_heap_size, `committed heap ${before.total_heap_size} -> ${after.total_heap_size}`);
});

test('leaves no gc function behind: not as a global, not in contexts made later', () => {
  releaseStartUpMemory();
  assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined');
  assert.equal(runInNewContext('typeof gc'), 'undefined');
});

test('a process started with --expose-gc keeps its gc, in its own context and in contexts made later', () => {
  const gateway = new URL('./gateway.ts', import.meta.url).href;
  const script = `const { releaseStartUpMemory } = await import(${JSON.stringify(gateway)});
const { runInNewContext } = await import('node:vm');
releaseStartUpMemory();
process.stdout.write(JSON.stringify([typeof globalThis.gc, runInNewContext('typeof gc')]));`;
  const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '--eval', script], { encoding: 'utf8' });
  assert.deepEqual(JSON.parse(out), ['function', 'function']);
});

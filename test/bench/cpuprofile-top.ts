// Summarises a V8 .cpuprofile (node --cpu-prof, or `npm run bench -- --cpu-prof DIR`): where the process spent its
// time, by function (self and inclusive) and by module. Usage: sh scripts/node.sh test/bench/cpuprofile-top.ts FILE [--top N]
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { table } from './report.ts';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith('--'));
const topIndex = args.indexOf('--top');
const top = topIndex === -1 ? 25 : Number(args[topIndex + 1]);
if (!file) {
  process.stderr.write('usage: sh scripts/node.sh test/bench/cpuprofile-top.ts FILE.cpuprofile [--top N]\n');
  process.exit(2);
}

const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const root = path.resolve(import.meta.dirname, '../..');
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

// Time per sample: timeDeltas[i] is the gap before sample i.
const selfUs = new Map<number, number>();
for (let i = 0; i < profile.samples.length; i++) {
  const id = profile.samples[i]!;
  selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
}
const totalUs = [...selfUs.values()].reduce((a, b) => a + b, 0);

function where(frame: CallFrame): string {
  let url = frame.url.replace(/^file:\/\//, '');
  if (url.startsWith(root)) url = path.relative(root, url);
  const nm = url.lastIndexOf('node_modules/');
  if (nm !== -1) url = url.slice(nm + 'node_modules/'.length);
  return url === '' ? '' : `${url}:${frame.lineNumber + 1}`;
}

function moduleOf(frame: CallFrame): string {
  const url = frame.url.replace(/^file:\/\//, '');
  if (url === '') return frame.functionName.startsWith('(') ? frame.functionName : '(native/builtin)';
  if (url.startsWith('node:')) return url;
  const nm = url.lastIndexOf('node_modules/');
  if (nm !== -1) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  return url.startsWith(root) ? path.relative(root, url) : url;
}

const key = (f: CallFrame) => `${f.functionName || '(anonymous)'}  ${where(f)}`;
const self = new Map<string, number>();
const inclusive = new Map<string, number>();
const modules = new Map<string, number>();
for (const [id, us] of selfUs) {
  const node = byId.get(id)!;
  self.set(key(node.callFrame), (self.get(key(node.callFrame)) ?? 0) + us);
  modules.set(moduleOf(node.callFrame), (modules.get(moduleOf(node.callFrame)) ?? 0) + us);
  // Inclusive: every distinct function on the sample's stack gets the sample once (recursion counted once).
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const k = key(byId.get(cur)!.callFrame);
    if (seen.has(k)) continue;
    seen.add(k);
    inclusive.set(k, (inclusive.get(k) ?? 0) + us);
  }
}

const pct = (us: number) => `${((us / totalUs) * 100).toFixed(1)}%`;
const ms = (us: number) => (us / 1000).toFixed(0);
const rows = (m: Map<string, number>) =>
  [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([k, us]) => [pct(us), ms(us), k]);

console.log(`${file}: ${(totalUs / 1e6).toFixed(2)} s of samples\n`);
console.log(table(['self', 'ms', 'module'], rows(modules), [true, true, false]));
console.log('');
console.log(table(['self', 'ms', 'function'], rows(self), [true, true, false]));
console.log('');
console.log(table(['incl.', 'ms', 'function'], rows(inclusive), [true, true, false]));

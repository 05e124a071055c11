// The module graph of src/ has no import cycle, and no policy imports another policy's modules (issue 19).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SRC = path.join(REPO, 'src');

/**
 * Cycles through `import type` only (erased at compile time, so no module runs before its imports), each edge as
 * `from -> to` relative to src/, that are accepted for now: none. (The last one, context.ts naming runtime.ts's Route,
 * went when the context came to name only what it needs of a route.) Any cycle fails.
 */
const KNOWN_TYPE_CYCLE_EDGES: readonly string[] = [];

/**
 * Imports from one policy's folder into another's that exist today, each `from -> to`, relative to src/ (none: keep
 * it so). A new one fails the test; src/policies/deps.ts and modules outside src/policies/ are shared by all.
 */
const KNOWN_POLICY_TO_POLICY: readonly string[] = [];

/**
 * Import and re-export statements start a line (a comment's lines start with `*` or `//`, so none is taken for one)
 * and their clause may span lines; a dynamic import() of a literal is matched too. TypeScript 7, the project's
 * compiler, has no JavaScript API to ask instead.
 */
const STATIC_IMPORT = /^(import|export)\s+(type\s+)?(?:[^'";]*?\sfrom\s*)?['"]([^'"]+)['"]/gm;
const DYNAMIC_IMPORT = /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

interface Import {
  specifier: string;
  /** `import type` / `export type ... from`: erased by the compiler (verbatimModuleSyntax keeps every other import). */
  typeOnly: boolean;
}

/** What a module's text imports: static statements first, then dynamic imports, each in order of appearance. */
function importsOf(text: string): Import[] {
  return [
    ...[...text.matchAll(STATIC_IMPORT)].map((m) => ({ specifier: m[3]!, typeOnly: m[2] !== undefined })),
    ...[...text.matchAll(DYNAMIC_IMPORT)].map((m) => ({ specifier: m[1]!, typeOnly: false })),
  ];
}

/** Every .ts file under `dir`; tests beside the code are left out (they are not part of the program's graph). */
function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !f.endsWith('.d.ts'))
    .map((f) => path.join(dir, f))
    .sort();
}

/** From file to the project files it imports, and whether only types (every import of that file is `import type`). */
type Graph = Map<string, Map<string, { typeOnly: boolean }>>;

function importGraph(files: string[]): Graph {
  const known = new Set(files);
  const graph: Graph = new Map();
  for (const file of files) {
    const edges = new Map<string, { typeOnly: boolean }>();
    for (const { specifier, typeOnly } of importsOf(readFileSync(file, 'utf8'))) {
      if (!specifier.startsWith('.')) continue;
      const target = path.resolve(path.dirname(file), specifier.replace(/\.js$/, '.ts'));
      assert.ok(known.has(target), `${rel(file)} imports ${specifier}, which is not a source file under src/`);
      edges.set(target, { typeOnly: typeOnly && (edges.get(target)?.typeOnly ?? true) });
    }
    graph.set(file, edges);
  }
  return graph;
}

function rel(file: string): string {
  return path.relative(SRC, file).split(path.sep).join('/');
}

/**
 * The edges inside every cycle, as `from -> to` (with ` (type)` for a type-only edge), sorted: the edges between files
 * of one strongly connected component (Tarjan's algorithm), a file importing itself included. `runtimeOnly` leaves
 * type-only edges out of the graph first.
 */
function cycleEdges(graph: Graph, runtimeOnly: boolean): string[] {
  const targets = (file: string) => [...(graph.get(file) ?? [])].filter(([, e]) => !runtimeOnly || !e.typeOnly).map(([t]) => t);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const component = new Map<string, number>();
  const stack: string[] = [];
  let counter = 0;
  let components = 0;
  const connect = (file: string): void => {
    index.set(file, counter);
    low.set(file, counter++);
    stack.push(file);
    for (const next of targets(file)) {
      if (!index.has(next)) {
        connect(next);
        low.set(file, Math.min(low.get(file)!, low.get(next)!));
      } else if (!component.has(next)) {
        low.set(file, Math.min(low.get(file)!, index.get(next)!));
      }
    }
    if (low.get(file) === index.get(file)) {
      let member: string;
      do {
        member = stack.pop()!;
        component.set(member, components);
      } while (member !== file);
      components++;
    }
  };
  for (const file of graph.keys()) if (!index.has(file)) connect(file);
  const size = new Map<number, number>();
  for (const c of component.values()) size.set(c, (size.get(c) ?? 0) + 1);
  const edges: string[] = [];
  for (const file of graph.keys()) {
    for (const next of targets(file)) {
      if (component.get(next) !== component.get(file)) continue;
      if (size.get(component.get(file)!)! > 1 || next === file) edges.push(`${rel(file)} -> ${rel(next)}${graph.get(file)!.get(next)!.typeOnly ? ' (type)' : ''}`);
    }
  }
  return edges.sort();
}

/** The policy folder a file of src/policies/<name>/ belongs to; undefined elsewhere (src/policies/deps.ts included). */
function policyOf(file: string): string | undefined {
  const parts = rel(file).split('/');
  return parts[0] === 'policies' && parts.length > 2 ? parts[1] : undefined;
}

const graph = importGraph(sourceFiles(SRC));

test('import graph: no cycle of src/ modules through imports that run', () => {
  assert.deepEqual(cycleEdges(graph, true), []);
});

test('import graph: no cycle through type imports either, but the known ones', () => {
  assert.deepEqual(cycleEdges(graph, false), [...KNOWN_TYPE_CYCLE_EDGES].sort(), 'a new cycle, or a known one changed or gone (then update KNOWN_TYPE_CYCLE_EDGES)');
});

test("import graph: no policy imports another policy's modules", () => {
  const crossings: string[] = [];
  for (const [file, targets] of graph) {
    const from = policyOf(file);
    if (from === undefined) continue;
    for (const target of targets.keys()) {
      const to = policyOf(target);
      if (to !== undefined && to !== from) crossings.push(`${rel(file)} -> ${rel(target)}`);
    }
  }
  assert.deepEqual(crossings.sort(), [...KNOWN_POLICY_TO_POLICY].sort(), 'a policy imports its own folder, src/policies/deps.ts and shared modules, never another policy');
});

test('import graph: the checker itself finds imports, cycles and crossings', () => {
  const text =
    "import { x } from './a.ts';\nimport type {\n  Y,\n  Z,\n} from '../b.ts';\nexport { w } from './c.ts';\nexport type { V } from './v.ts';\nimport './d.ts';\n" +
    "/**\n * import { no } from './comment.ts';\n */\nconst later = await import('./e.ts');\nimport { Type } from '@sinclair/typebox';\n";
  assert.deepEqual(
    importsOf(text).map((i) => `${i.specifier}${i.typeOnly ? ' (type)' : ''}`),
    ['./a.ts', '../b.ts (type)', './c.ts', './v.ts (type)', './d.ts', '@sinclair/typebox', './e.ts'],
  );
  const [a, b, c, d] = ['policies/a/x.ts', 'policies/b/y.ts', 'c.ts', 'd.ts'].map((f) => path.join(SRC, f)) as [string, string, string, string];
  const run = { typeOnly: false };
  const type = { typeOnly: true };
  const tangle: Graph = new Map([
    [a, new Map([[b, run]])],
    [b, new Map([[c, run]])],
    [c, new Map([[a, type], [d, run]])],
    [d, new Map([[d, run]])],
  ]);
  assert.deepEqual(cycleEdges(tangle, false), ['c.ts -> policies/a/x.ts (type)', 'd.ts -> d.ts', 'policies/a/x.ts -> policies/b/y.ts', 'policies/b/y.ts -> c.ts']);
  assert.deepEqual(cycleEdges(tangle, true), ['d.ts -> d.ts']);
  assert.deepEqual(cycleEdges(new Map([[a, new Map([[b, run]])], [b, new Map()]]), false), []);
  assert.equal(policyOf(a), 'a');
  assert.equal(policyOf(path.join(SRC, 'policies/deps.ts')), undefined);
});

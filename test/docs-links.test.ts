// Every relative link in README.md and docs/**/*.md points at a file that exists, and its #anchor at a heading of that file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DOCS = path.join(REPO, 'docs');
const pages = [
  path.join(REPO, 'README.md'),
  ...readdirSync(DOCS, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => path.join(DOCS, f)),
];

/** GitHub's heading anchor: lowercase, punctuation other than '-' and '_' dropped, each space a '-'. */
function slug(heading: string): string {
  return heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // a link in a heading counts by its text
    .replace(/<[^>]+>/g, '')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}_\- ]/gu, '')
    .replace(/ /g, '-');
}

/** The lines of a Markdown file outside fenced code blocks, with their 1-based numbers. */
function prose(text: string): { line: string; n: number }[] {
  const out: { line: string; n: number }[] = [];
  let fence: string | undefined;
  text.split('\n').forEach((line, i) => {
    const m = /^ {0,3}(`{3,}|~{3,})/.exec(line);
    if (m) {
      if (fence === undefined) fence = m[1]!;
      else if (m[1]!.startsWith(fence)) fence = undefined;
      return;
    }
    if (fence === undefined) out.push({ line, n: i + 1 });
  });
  return out;
}

/** The anchors of a file's headings, numbered as GitHub numbers repeats (-1, -2, ...). */
function anchors(file: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const { line } of prose(readFileSync(file, 'utf8'))) {
    const m = /^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$/.exec(line);
    if (!m) continue;
    const base = slug(m[1]!);
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    out.add(count === 0 ? base : `${base}-${count}`);
  }
  return out;
}

/** Link targets of a file (inline links, images, reference definitions), outside code blocks and code spans. */
function links(file: string): { target: string; n: number }[] {
  const out: { target: string; n: number }[] = [];
  for (const { line, n } of prose(readFileSync(file, 'utf8'))) {
    const text = line.replace(/(`+)[^`]*?\1/g, 'code');
    for (const m of text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)/g)) out.push({ target: m[1]!, n });
    const def = /^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?/.exec(text);
    if (def) out.push({ target: def[1]!, n });
  }
  return out;
}

const isExternal = (target: string) => /^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//');

/** Every broken relative link of the given pages, as `file:line: target: why`. */
function brokenLinks(files: string[]): string[] {
  const cache = new Map<string, Set<string>>();
  const broken: string[] = [];
  for (const file of files) {
    for (const { target, n } of links(file)) {
      if (isExternal(target)) continue;
      const where = `${path.relative(REPO, file)}:${n}: ${target}`;
      const hash = target.indexOf('#');
      const filePart = decodeURIComponent(hash === -1 ? target : target.slice(0, hash));
      const anchor = hash === -1 ? undefined : decodeURIComponent(target.slice(hash + 1));
      const dest = filePart === '' ? file : path.resolve(path.dirname(file), filePart);
      if (path.relative(REPO, dest).startsWith('..')) {
        broken.push(`${where}: points outside the repository`);
        continue;
      }
      if (!existsSync(dest)) {
        broken.push(`${where}: no such file`);
        continue;
      }
      if (anchor === undefined || !dest.endsWith('.md') || statSync(dest).isDirectory()) continue;
      if (!cache.has(dest)) cache.set(dest, anchors(dest));
      if (!cache.get(dest)!.has(anchor)) broken.push(`${where}: no heading with the anchor #${anchor} in ${path.relative(REPO, dest)}`);
    }
  }
  return broken;
}

test('docs links: GitHub heading anchors', () => {
  const cases: [string, string][] = [
    ['Idempotency: a retried write runs once', 'idempotency-a-retried-write-runs-once'],
    ['Several processes on one port: `server.workers`', 'several-processes-on-one-port-serverworkers'],
    ['How deploy/ is tested without a Docker engine', 'how-deploy-is-tested-without-a-docker-engine'],
    ['Design choices (where the contract is silent)', 'design-choices-where-the-contract-is-silent'],
    ['Auth-failure halt: one bad credential must not burn the fleet', 'auth-failure-halt-one-bad-credential-must-not-burn-the-fleet'],
    ['Silent failures: a 2xx that is no success', 'silent-failures-a-2xx-that-is-no-success'],
    ['snake_case and [a link](x.md) — kept', 'snake_case-and-a-link--kept'],
  ];
  for (const [heading, anchor] of cases) assert.equal(slug(heading), anchor, heading);
});

test('docs links: README.md and docs/*.md link only to files and headings that exist', () => {
  assert.ok(pages.length > 10, 'README.md and the pages of docs/');
  const all = pages.flatMap((p) => links(p));
  assert.ok(all.length > 50, 'the links were found');
  assert.deepEqual(brokenLinks(pages), []);
});

test('docs links: every page of docs/ is linked from README.md', () => {
  const fromReadme = new Set(
    links(path.join(REPO, 'README.md'))
      .filter((l) => !isExternal(l.target))
      .map((l) => path.resolve(REPO, decodeURIComponent(l.target.split('#')[0]!))),
  );
  assert.deepEqual(pages.slice(1).filter((p) => !fromReadme.has(p)).map((p) => path.relative(REPO, p)), []);
});

// The demo legacy API as its own process (its container in deploy/): `node dist/demo/serve-legacy-api.js`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { REPO } from './helpers/dockerfile.ts';

const ENTRY = path.join(REPO, 'dist/demo/serve-legacy-api.js');

interface Run {
  lines: () => Record<string, unknown>[];
  stderr: () => string;
  exited: Promise<number | null>;
  kill(signal: NodeJS.Signals): void;
  listening: Promise<{ url: string; port: number }>;
}

function start(args: string[], env: Record<string, string> = {}): Run {
  const child = spawn(process.execPath, [ENTRY, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const lines = () =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const listening = new Promise<{ url: string; port: number }>((resolve, reject) => {
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const line = lines().find((l) => l.msg === 'demo legacy API listening');
      if (line) resolve({ url: String(line.url), port: Number(line.port) });
    });
    void exited.then((code) => reject(new Error(`exited ${code} before listening: ${err}`)));
  });
  listening.catch(() => undefined);
  return { lines, stderr: () => err, exited, kill: (s) => child.kill(s), listening };
}

test('serves the demo API on the host and port from its flags, and stops with exit 0 on SIGTERM', async (t) => {
  const run = start(['--host', '127.0.0.1', '--port', '0']);
  t.after(() => run.kill('SIGKILL'));
  const { url, port } = await run.listening;
  assert.equal(url, `http://127.0.0.1:${port}`);
  const created = await fetch(`${url}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"item":"widget"}' });
  assert.equal(created.status, 201);
  const stats = (await (await fetch(`${url}/_demo/stats`)).json()) as { executions: Record<string, number> };
  assert.equal(stats.executions['POST /orders'], 1);
  run.kill('SIGTERM');
  assert.equal(await run.exited, 0);
  assert.ok(run.lines().some((l) => l.msg === 'demo legacy API stopping' && l.signal === 'SIGTERM'));
});

test('takes LEGACY_API_HOST and LEGACY_API_PORT from the environment (how deploy/ configures it), flags win', async (t) => {
  const fromEnv = start([], { LEGACY_API_HOST: '127.0.0.1', LEGACY_API_PORT: '0' });
  t.after(() => fromEnv.kill('SIGKILL'));
  const { url } = await fromEnv.listening;
  assert.equal((await fetch(`${url}/orders`)).status, 200);
  fromEnv.kill('SIGINT');
  assert.equal(await fromEnv.exited, 0);

  const flagWins = start(['--port=0'], { LEGACY_API_HOST: '127.0.0.1', LEGACY_API_PORT: '1' });
  t.after(() => flagWins.kill('SIGKILL'));
  assert.notEqual((await flagWins.listening).port, 1);
  flagWins.kill('SIGTERM');
  assert.equal(await flagWins.exited, 0);
});

test('a bad port or an unknown argument exits 2 with usage, never a silent default', async () => {
  for (const [args, env, message] of [
    [['--port', '70000'], {}, /port must be an integer from 0 to 65535, got '70000'/],
    [[], { LEGACY_API_PORT: 'http' }, /got 'http'/],
    [['--verbose'], {}, /unknown argument '--verbose'/],
    [['--host'], {}, /--host needs a value/],
  ] as [string[], Record<string, string>, RegExp][]) {
    const run = start(args, env);
    assert.equal(await run.exited, 2, args.join(' '));
    assert.match(run.stderr(), message);
    assert.match(run.stderr(), /Usage: serve-legacy-api/);
  }
});

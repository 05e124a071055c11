// What a newcomer meets first, from the outside: `npm start`'s entry (dist/demo/start.js) when a port is taken and the
// first command its banner suggests, and what the log says when a refused config edit is reverted.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { configYaml, startTestGateway, tempDir } from './helpers/gateway.ts';
import { until } from './helpers/wait.ts';

const REPO = path.resolve(import.meta.dirname, '..');
const DEMO = path.join(REPO, 'dist/demo/start.js');
const DEMO_CONFIG = path.join(REPO, 'config/gateway.yaml');

/** A port held open by this test for as long as it runs, as another program would hold it. */
async function occupyPort(t: TestContext): Promise<number> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as { port: number }).port;
}

/** A port nothing listens on right now (bound and released at once). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * config/gateway.yaml with its three ports replaced, in a temporary folder with the schemas it refers to, so the demo
 * runs beside other tests (and a developer's own `npm start`) without colliding on 3000, 8080 or 9090.
 */
async function demoConfig(t: TestContext, ports: { legacy: number; proxy: number; admin: number }): Promise<string> {
  const tmp = await tempDir('agentgate-demo');
  t.after(() => tmp.remove());
  await cp(path.join(REPO, 'config/schemas'), path.join(tmp.dir, 'schemas'), { recursive: true });
  const original = await readFile(DEMO_CONFIG, 'utf8');
  const replaced = original
    .replaceAll('http://127.0.0.1:3000', `http://127.0.0.1:${ports.legacy}`)
    .replace('listen: 127.0.0.1:8080', `listen: 127.0.0.1:${ports.proxy}`)
    .replace('admin_listen: 127.0.0.1:9090', `admin_listen: 127.0.0.1:${ports.admin}`);
  for (const port of ['3000', '8080', '9090']) assert.ok(!replaced.includes(`127.0.0.1:${port}`), `port ${port} of config/gateway.yaml was not replaced`);
  const file = path.join(tmp.dir, 'gateway.yaml');
  await writeFile(file, replaced);
  return file;
}

interface Demo {
  stderr(): string;
  exited: Promise<number | null>;
}

/** Runs the demo entry (what `npm start` runs) on the given config; it is stopped when the test ends. */
function runDemo(t: TestContext, configFile: string): Demo {
  const child = spawn(process.execPath, [DEMO], { env: { ...process.env, AGENTGATE_CONFIG: configFile }, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  return { stderr: () => err, exited };
}

async function exitCode(demo: Demo, timeoutMs: number): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'still running'>((resolve) => (timer = setTimeout(() => resolve('still running'), timeoutMs)));
  const code = await Promise.race([demo.exited, timeout]);
  clearTimeout(timer);
  assert.notEqual(code, 'still running', `the demo did not exit within ${timeoutMs} ms; stderr:\n${demo.stderr()}`);
  return code as number | null;
}

function assertOneClearLine(stderr: string, port: number, role: RegExp): void {
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  assert.equal(lines.length, 1, `one line, not a stack trace; stderr:\n${stderr}`);
  const line = lines[0]!;
  assert.match(line, new RegExp(`\\bport ${port}\\b`), 'names the port');
  assert.match(line, role, 'says what the port is for');
  assert.match(line, /already in use/);
  assert.ok(line.includes(`ss -ltnp 'sport = :${port}'`), `says how to find what holds it: ${line}`);
  assert.ok(line.includes('AGENTGATE_CONFIG='), `says how to choose other ports: ${line}`);
  assert.doesNotMatch(stderr, /^\s+at /m, 'no stack frames');
  assert.doesNotMatch(stderr, /EADDRINUSE|Error:|node:net/, 'no raw error');
}

test('npm start with the demo legacy API port taken: one line naming the port and what to do, exit 1', async (t) => {
  const taken = await occupyPort(t);
  const config = await demoConfig(t, { legacy: taken, proxy: 0, admin: 0 });
  const demo = runDemo(t, config);
  assert.equal(await exitCode(demo, 15_000), 1);
  assertOneClearLine(demo.stderr(), taken, /demo legacy API/);
});

test("npm start with agentgate's proxy or admin port taken: one line naming the port and what to do, exit 1", async (t) => {
  for (const which of ['proxy', 'admin'] as const) {
    const taken = await occupyPort(t);
    const ports = { legacy: await freePort(), proxy: which === 'proxy' ? taken : 0, admin: which === 'admin' ? taken : 0 };
    const demo = runDemo(t, await demoConfig(t, ports));
    assert.equal(await exitCode(demo, 15_000), 1, which);
    assertOneClearLine(demo.stderr(), taken, which === 'proxy' ? /proxy port, server\.listen/ : /admin port, server\.admin_listen/);
  }
});

test("the start banner's first suggested command succeeds on a fresh demo, and its other claims hold", async (t) => {
  const demo = runDemo(t, await demoConfig(t, { legacy: await freePort(), proxy: 0, admin: 0 }));
  await until(async () => /^Try: .*\n.*\n/m.test(demo.stderr()), 15_000, () => `no banner; stderr:\n${demo.stderr()}`);
  const banner = demo.stderr();

  const command = /^Try:\s+(curl .+?)\s*$/m.exec(banner)?.[1];
  assert.ok(command, `the banner suggests a curl command:\n${banner}`);
  const url = /\bhttp:\/\/\S+/.exec(command)![0];
  const proxyUrl = /^agentgate:\s+(http:\/\/\S+)/m.exec(banner)?.[1];
  assert.ok(proxyUrl && url.startsWith(`${proxyUrl}/`), `the command goes to agentgate (${proxyUrl}): ${command}`);

  // The command as printed, when curl is at hand; the same request through fetch either way.
  const curl = await promisify(execFile)('sh', ['-c', command], { timeout: 10_000 }).then(
    ({ stdout }) => ({ stdout, exit: 0 }),
    (err: { code?: unknown; stdout?: string }) => ({ stdout: err.stdout ?? '', exit: err.code }),
  );
  if (curl.exit !== 127) {
    // 127: the shell found no curl on this machine.
    assert.equal(curl.exit, 0, `the printed command failed (${String(curl.exit)}):\n${curl.stdout}`);
    assert.match(curl.stdout, /^HTTP\/1\.1 200 /, `the printed command answers 200:\n${curl.stdout}`);
  }
  const res = await fetch(url);
  const body = await res.text();
  assert.equal(res.status, 200, `${url}: ${body}`);
  // What the banner says the answer shows.
  assert.deepEqual(JSON.parse(body), { orders: [], count: 0 }, 'the list of orders, empty on a fresh demo');
  assert.ok(res.headers.get('x-request-id'), 'X-Request-Id');
  assert.ok(res.headers.get('x-ratelimit-remaining'), 'X-RateLimit-*');

  const adminLine = /^admin:\s+(http:\/\/[^/\s]+)(\/\S+)((?: \/\S+)*)\s*$/m.exec(banner);
  assert.ok(adminLine, banner);
  const adminPaths = [adminLine[2]!, ...adminLine[3]!.trim().split(' ')];
  assert.deepEqual(adminPaths, ['/metrics', '/healthz', '/readyz']);
  for (const p of adminPaths) assert.equal((await fetch(`${adminLine[1]}${p}`)).status, 200, `admin ${p}`);
  const legacyUrl = /^Demo legacy API:\s+(http:\/\/\S+)/m.exec(banner)?.[1];
  assert.equal((await fetch(`${legacyUrl}/orders`)).status, 200, 'the demo legacy API answers where the banner says');
});

test('a refused config edit reverted to the config in force is logged (not counted); the same mistake again is tried again', async (t) => {
  const original = configYaml('upstreams:\n  api: {url: "http://127.0.0.1:9"}\nroutes:\n  - {name: main, match: {path: /*}, upstream: api}\n');
  const invalid = original.replace('upstream: api}', 'upstream: nowhere}');
  assert.notEqual(invalid, original);
  const tg = await startTestGateway(original, { watchConfig: true });
  t.after(() => tg.close());
  const messages = (msg: string) => tg.logs.lines.filter((l) => l.msg === msg);
  const failed = () => messages('config reload failed; the previous config keeps serving');
  const back = () => messages('config file is back to the config in force; nothing to reload');
  const reloads = async (result: string) => {
    const text = await (await fetch(`${tg.adminUrl}/metrics`)).text();
    return Number(new RegExp(`^agentgate_config_reloads_total\\{result="${result}"\\} (\\d+)$`, 'm').exec(text)?.[1]);
  };

  await writeFile(tg.configFile, invalid);
  await until(async () => failed().length === 1, 5000, () => `the invalid edit was not refused:\n${tg.logs.text}`);

  await writeFile(tg.configFile, original);
  await until(async () => back().length === 1, 5000, () => `the revert logged nothing:\n${tg.logs.text}`);
  const line = back()[0]!;
  assert.equal(line.level, 'info');
  assert.equal(line.trigger, 'file change');
  assert.equal(messages('config reloaded').length, 0, 'nothing was reloaded');
  assert.deepEqual([await reloads('success'), await reloads('error')], [0, 1], 'the revert is neither a successful nor a failed reload');

  // Logged once: later events in the folder find the file still in force and say nothing more.
  await writeFile(path.join(path.dirname(tg.configFile), 'notes.txt'), 'x');
  await new Promise((resolve) => setTimeout(resolve, 600));
  assert.equal(back().length, 1);

  // The same mistake made again is a new edit: refused, logged and counted again, and its revert logged again.
  await writeFile(tg.configFile, invalid);
  await until(async () => failed().length === 2, 5000, () => `the repeated invalid edit was not refused again:\n${tg.logs.text}`);
  await writeFile(tg.configFile, original);
  await until(async () => back().length === 2, 5000, () => `the second revert logged nothing:\n${tg.logs.text}`);
  assert.deepEqual([await reloads('success'), await reloads('error')], [0, 2]);
});

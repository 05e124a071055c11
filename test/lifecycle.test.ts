// The process lifecycle of the built CLI in child processes: validate, exit codes, draining on SIGTERM/SIGINT, and config reloads (SIGHUP, file change, Kubernetes ConfigMap swap).
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { request, type IncomingHttpHeaders } from 'node:http';
import { mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CLI, configYaml, startCliGateway, tempDir, type CliGateway } from './helpers/gateway.ts';
import { json, startUpstream, type TestUpstream } from './helpers/upstream.ts';
import { until } from './helpers/wait.ts';
import { REDIS_URL, skipWithoutRedis, uniquePrefix } from './helpers/redis.ts';

/** How long the slow upstream endpoint takes: long enough that a signal surely lands while the request is in flight. */
const SLOW_MS = 1500;

/** Asked before any test is registered: node:test starts running the tests registered so far while a module awaits. */
const withoutRedis = await skipWithoutRedis();

let upstreamA: TestUpstream;
let upstreamB: TestUpstream;

before(async () => {
  upstreamA = await startUpstream({
    '/slow': (_req, res) => void setTimeout(() => json(res, 200, { server: 'A', slow: true, padding: 'x'.repeat(64 * 1024) }), SLOW_MS),
    '/medium': (_req, res) => void setTimeout(() => json(res, 200, { server: 'A', medium: true }), 600),
    '/hang': () => undefined, // never answers; the upstream's close() tears the connection down
    '*': (req, res) => json(res, 200, { server: 'A', url: req.url }),
  });
  upstreamB = await startUpstream({ '*': (req, res) => json(res, 200, { server: 'B', url: req.url }) });
});

after(async () => {
  await upstreamA.close();
  await upstreamB.close();
});

// ---------- helpers ----------

interface ConfigOptions {
  /** Path the single route matches. */
  path?: string;
  upstream?: 'a' | 'b';
  /** Extra lines inside `server:` (indented by two spaces). */
  server?: string;
  listen?: string;
  /** Extra top-level YAML appended at the end. */
  extra?: string;
}

/** A small valid config: one route to upstream a or b. Upstream timeouts are long so that only the drain bound can end the "/hang" request. */
function config(options: ConfigOptions = {}): string {
  // configYaml() ends inside the `server:` mapping, so lines indented by two spaces continue it.
  let yaml = configYaml(
    `${options.server ?? ''}upstreams:\n` +
      `  a:\n    url: ${upstreamA.url}\n    timeout: 30s\n` +
      `  b:\n    url: ${upstreamB.url}\n    timeout: 30s\n` +
      `routes:\n  - name: main\n    match: {path: '${options.path ?? '/v1/*'}'}\n    upstream: ${options.upstream ?? 'a'}\n` +
      (options.extra ?? ''),
  );
  if (options.listen) yaml = yaml.replace('  listen: 127.0.0.1:0\n', `  listen: ${options.listen}\n`);
  return yaml;
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One GET on a fresh connection (no keep-alive pool in the test process that could mask refused connections). */
function get(url: string, timeoutMs = 10_000): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`GET ${url}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** Which test upstream answers `GET url`, or the status when the gateway itself answered (e.g. 404 ROUTE_NOT_FOUND). */
async function servedBy(url: string): Promise<string> {
  const reply = await get(url);
  if (reply.status !== 200) return `status ${reply.status}`;
  return (JSON.parse(reply.body) as { server: string }).server;
}

async function reloadCount(gw: CliGateway, result: 'success' | 'error'): Promise<number | undefined> {
  const metrics = await get(`${gw.adminUrl}/metrics`);
  assert.equal(metrics.status, 200);
  const match = new RegExp(`^agentgate_config_reloads_total\\{result="${result}"\\} (\\d+)$`, 'm').exec(metrics.body);
  return match ? Number(match[1]) : undefined;
}

async function expectReloads(gw: CliGateway, counts: { success: number; error: number }): Promise<void> {
  assert.deepEqual({ success: await reloadCount(gw, 'success'), error: await reloadCount(gw, 'error') }, counts);
}

/** Starts the CLI and makes sure it is killed when the test ends, however it ends. */
async function startCli(t: TestContext, configFile: string): Promise<CliGateway> {
  const gw = await startCliGateway(configFile);
  t.after(async () => {
    if (gw.child.exitCode === null && gw.child.signalCode === null) {
      gw.child.kill('SIGKILL');
      await gw.exited;
    }
  });
  return gw;
}

async function configDir(t: TestContext): Promise<string> {
  const tmp = await tempDir('agentgate-lifecycle');
  t.after(() => tmp.remove());
  return tmp.dir;
}

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to completion (bounded: a hung process is killed and the test fails). */
function runCli(args: string[], env: NodeJS.ProcessEnv = withoutConfigEnv()): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`agentgate ${args.join(' ')} did not exit within 15 s; stdout:\n${stdout}\nstderr:\n${stderr}`));
    }, 15_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The test runner's environment minus AGENTGATE_CONFIG, so a developer's own setting cannot leak into a test. */
function withoutConfigEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  if (!('AGENTGATE_CONFIG' in extra)) delete env.AGENTGATE_CONFIG;
  return env;
}

/**
 * Starts `GET url` and resolves once the upstream has received it, i.e. once it is truly in flight inside the gateway.
 * The reply is wrapped in an object because an async function returning a bare promise would wait for it.
 */
async function startInFlight(url: string, upstream: TestUpstream, upstreamPath: string): Promise<{ reply: Promise<Reply> }> {
  const before = upstream.received.filter((r) => r.url === upstreamPath).length;
  const reply = get(url, 20_000);
  reply.catch(() => undefined); // observed by the caller; keeps an early failure from being an unhandled rejection
  await until(async () => upstream.received.filter((r) => r.url === upstreamPath).length > before, 5000, () => `the upstream never received ${upstreamPath}`);
  return { reply };
}

async function exitWithin(gw: CliGateway, ms: number, what: string): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: the process did not exit within ${ms} ms; stdout:\n${gw.stdout()}\nstderr:\n${gw.stderr()}`)), ms);
  });
  try {
    return await Promise.race([gw.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function connectionRefused(url: string): Promise<boolean> {
  return get(url, 2000).then(
    () => false,
    (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED',
  );
}

/**
 * Waits (bounded) until new connections to `url` are refused, and checks that happened while `inFlight` was still running.
 * Polled rather than checked once after the shutdown log line: pino writes asynchronously on a worker thread,
 * so that line can reach the test a moment before the gateway's main thread has closed its listener.
 */
async function expectRefusedDuringDrain(url: string, inFlight: Promise<unknown>): Promise<void> {
  let settled = false;
  void inFlight.then(
    () => (settled = true),
    () => (settled = true),
  );
  await until(() => connectionRefused(url), 3000, () => 'new connections were still accepted after the shutdown began');
  assert.equal(settled, false, 'connections must be refused while the in-flight request is still draining, not only after it ended');
}

// ---------- 1. validate, exit codes ----------

// Line numbers below are asserted exactly, so these files are written out literally.
const SCHEMA_BROKEN = (upstream: string) => `version: 1
server:
  listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
upstreams:
  orders:
    url: ${upstream}
    timeot: 5s
routes:
  - name: get-order
    match: {path: /orders/*}
    upstream: orders
    timeout: soon
`;

const REFERENCES_BROKEN = (upstream: string) => `version: 1
server:
  listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
upstreams:
  orders:
    url: ${upstream}
routes:
  - name: a
    match: {path: /a}
    upstream: ordrs
  - name: a
    match: {path: /b}
    upstream: orders
`;

function stderrLines(run: CliRun): string[] {
  return run.stderr.split('\n').filter((l) => l.trim() !== '');
}

test('validate: a good config prints "config OK" and exits 0', async (t) => {
  const dir = await configDir(t);
  const file = path.join(dir, 'good.yaml');
  await writeFile(file, config());
  const run = await runCli(['validate', '--config', file]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, 'config OK\n');
  assert.equal(run.stderr, '');
});

test('validate: schema problems exit 1 with one file:line:col: key.path: message line each', async (t) => {
  const dir = await configDir(t);
  const file = path.join(dir, 'bad.yaml');
  await writeFile(file, SCHEMA_BROKEN(upstreamA.url));
  const run = await runCli(['validate', '--config', file]);
  assert.equal(run.code, 1);
  assert.equal(run.stdout, '', 'nothing on stdout, in particular no "config OK"');
  const lines = stderrLines(run);
  assert.equal(lines.length, 2, `one line per problem, got:\n${run.stderr}`);
  assert.match(lines[0]!, /^.*bad\.yaml:8:5: upstreams\.orders\.timeot: unknown key 'timeot'/);
  assert.ok(lines[0]!.startsWith(`${file}:8:5: `), lines[0]);
  assert.match(lines[1]!, /bad\.yaml:13:5: routes\[0\]\.timeout: .*duration.*'soon'/);
});

test('validate: cross-reference problems (unknown upstream, duplicate route name) exit 1 with exact positions', async (t) => {
  const dir = await configDir(t);
  const file = path.join(dir, 'refs.yaml');
  await writeFile(file, REFERENCES_BROKEN(upstreamA.url));
  const run = await runCli(['validate', '--config', file]);
  assert.equal(run.code, 1);
  const lines = stderrLines(run);
  assert.equal(lines.length, 2, `one line per problem, got:\n${run.stderr}`);
  assert.match(lines[0]!, /refs\.yaml:11:5: routes\[0\]\.upstream: unknown upstream 'ordrs'/);
  assert.match(lines[1]!, /refs\.yaml:12:5: routes\[1\]\.name: duplicate route name 'a'/);
});

test('validate: schema and cross-reference problems in one file are all reported at once', async (t) => {
  const dir = await configDir(t);
  const file = path.join(dir, 'both.yaml');
  await writeFile(file, SCHEMA_BROKEN(upstreamA.url).replace('    upstream: orders\n', '    upstream: ordrs\n'));
  const run = await runCli(['validate', '--config', file]);
  assert.equal(run.code, 1);
  const lines = stderrLines(run);
  assert.ok(lines.some((l) => /both\.yaml:8:5: upstreams\.orders\.timeot: unknown key/.test(l)), run.stderr);
  assert.ok(lines.some((l) => /both\.yaml:12:5: routes\[0\]\.upstream: unknown upstream 'ordrs'/.test(l)), run.stderr);
});

test('validate: an unreadable file exits 1 and names the file', async (t) => {
  const dir = await configDir(t);
  const file = path.join(dir, 'missing.yaml');
  const run = await runCli(['validate', '--config', file]);
  assert.equal(run.code, 1);
  assert.match(run.stderr, /missing\.yaml: cannot read the file/);
});

test('AGENTGATE_CONFIG is the fallback for --config, and --config wins over it', async (t) => {
  const dir = await configDir(t);
  const good = path.join(dir, 'good.yaml');
  const bad = path.join(dir, 'bad.yaml');
  await writeFile(good, config());
  await writeFile(bad, SCHEMA_BROKEN(upstreamA.url));

  const fromEnv = await runCli(['validate'], withoutConfigEnv({ AGENTGATE_CONFIG: good }));
  assert.equal(fromEnv.code, 0, fromEnv.stderr);
  assert.equal(fromEnv.stdout, 'config OK\n');

  const badFromEnv = await runCli(['validate'], withoutConfigEnv({ AGENTGATE_CONFIG: bad }));
  assert.equal(badFromEnv.code, 1);
  assert.match(badFromEnv.stderr, /bad\.yaml:8:5: /);

  const flagWins = await runCli(['validate', '--config', good], withoutConfigEnv({ AGENTGATE_CONFIG: bad }));
  assert.equal(flagWins.code, 0, flagWins.stderr);

  // Serving from the environment variable alone, too.
  const child = spawn(process.execPath, [CLI], { env: withoutConfigEnv({ AGENTGATE_CONFIG: good }), stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  await until(async () => out.includes('"agentgate listening"'), 10_000, () => `the CLI did not start from AGENTGATE_CONFIG; stdout:\n${out}`);
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
});

test('no config at all exits 2 with usage', async () => {
  for (const args of [[], ['validate']]) {
    const run = await runCli(args);
    assert.equal(run.code, 2, `agentgate ${args.join(' ')}`);
    assert.match(run.stderr, /no config file/);
    assert.match(run.stderr, /Usage:/);
    assert.equal(run.stdout, '');
  }
});

test('serving with an invalid config exits 1 and says why', async (t) => {
  const dir = await configDir(t);
  const file = path.join(dir, 'refs.yaml');
  await writeFile(file, REFERENCES_BROKEN(upstreamA.url));
  const run = await runCli(['--config', file]);
  assert.equal(run.code, 1);
  assert.match(run.stderr, /invalid config, not starting/);
  assert.match(run.stderr, /refs\.yaml:11:5: routes\[0\]\.upstream: unknown upstream 'ordrs'/);
  assert.doesNotMatch(run.stdout, /agentgate listening/);
});

test('a listen address already taken exits 1 and says so, also with a Redis connection open', { skip: withoutRedis }, async (t) => {
  const dir = await configDir(t);
  const file = path.join(dir, 'taken.yaml');
  const taken = new URL(upstreamA.url).port;
  const redis = `store:\n  type: redis\n  url: ${REDIS_URL}\n  key_prefix: ${uniquePrefix('lifecycle')}\n`;
  await writeFile(file, config({ listen: `127.0.0.1:${taken}`, extra: redis }));
  // runCli fails the test when the process does not exit on its own: the store's connection once kept it running.
  const run = await runCli(['--config', file]);
  assert.equal(run.code, 1);
  assert.match(run.stderr, new RegExp(`agentgate: cannot listen: listen EADDRINUSE: address already in use 127\\.0\\.0\\.1:${taken}; not starting`));
});

// ---------- 2. draining shutdown ----------

test('SIGTERM drains: the in-flight request completes, new connections are refused, exit code 0', async (t) => {
  const dir = await configDir(t);
  const file = path.join(dir, 'gateway.yaml');
  await writeFile(file, config({ path: '/*' }));
  const gw = await startCli(t, file);

  const { reply: inFlight } = await startInFlight(`${gw.url}/slow`, upstreamA, '/slow');
  gw.child.kill('SIGTERM');
  await gw.waitForLog((l) => l.msg === 'shutting down: draining in-flight requests');
  await expectRefusedDuringDrain(`${gw.url}/v1/x`, inFlight);
  const ready = await get(`${gw.adminUrl}/readyz`);
  assert.equal(ready.status, 503, 'a draining gateway is not ready');
  assert.equal(gw.child.exitCode, null, 'the process must wait for the in-flight request');

  const reply = await inFlight;
  assert.equal(reply.status, 200);
  const body = JSON.parse(reply.body) as { server: string; slow: boolean; padding: string };
  assert.equal(body.slow, true);
  assert.equal(body.padding.length, 64 * 1024, 'the whole body arrives');

  assert.equal(await exitWithin(gw, 10_000, 'after SIGTERM'), 0);
  assert.ok(gw.stdout().includes('"msg":"stopped"'), 'the gateway logs that it stopped');
  assert.doesNotMatch(gw.stdout(), /drain timeout reached/);
});

test('SIGINT drains the same way', async (t) => {
  const dir = await configDir(t);
  const file = path.join(dir, 'gateway.yaml');
  await writeFile(file, config({ path: '/*' }));
  const gw = await startCli(t, file);

  const { reply: inFlight } = await startInFlight(`${gw.url}/medium`, upstreamA, '/medium');
  gw.child.kill('SIGINT');
  await gw.waitForLog((l) => l.msg === 'signal received' && l.signal === 'SIGINT');
  await expectRefusedDuringDrain(`${gw.url}/v1/x`, inFlight);

  const reply = await inFlight;
  assert.equal(reply.status, 200);
  assert.equal((JSON.parse(reply.body) as { medium: boolean }).medium, true);
  assert.equal(await exitWithin(gw, 10_000, 'after SIGINT'), 0);
});

test('the drain is bounded by server.shutdown_timeout: a request that never ends does not keep the process alive', async (t) => {
  const dir = await configDir(t);
  const file = path.join(dir, 'gateway.yaml');
  await writeFile(file, config({ path: '/*', server: '  shutdown_timeout: 500ms\n' }));
  const gw = await startCli(t, file);

  const { reply: inFlight } = await startInFlight(`${gw.url}/hang`, upstreamA, '/hang');
  gw.child.kill('SIGTERM');
  assert.equal(await exitWithin(gw, 5000, 'shutdown_timeout 500ms with a hanging upstream'), 0);
  await gw.waitForLog((l) => l.msg === 'drain timeout reached; closing remaining connections');
  // The client sees its connection closed (not a hang until its own timeout).
  await assert.rejects(inFlight, (err: NodeJS.ErrnoException) => err.code === 'ECONNRESET' || err.message === 'socket hang up');
});

// ---------- 3-7. reloads ----------

test('SIGHUP reloads: the new route serves and the success is counted', async (t) => {
  const dir = await configDir(t);
  // The served path is a symlink to a file in another folder: the gateway watches only the config's own folder,
  // so editing the target there fires no watcher event, and the reload below can only come from SIGHUP.
  const targetDir = path.join(dir, 'elsewhere');
  const watchedDir = path.join(dir, 'watched');
  await mkdir(targetDir);
  await mkdir(watchedDir);
  const target = path.join(targetDir, 'real.yaml');
  await writeFile(target, config({ path: '/v1/*' }));
  const file = path.join(watchedDir, 'gateway.yaml');
  await symlink(target, file);
  const gw = await startCli(t, file);

  assert.equal(await servedBy(`${gw.url}/v1/x`), 'A');
  assert.equal(await servedBy(`${gw.url}/v2/x`), 'status 404');
  await expectReloads(gw, { success: 0, error: 0 });

  await writeFile(target, config({ path: '/v2/*', upstream: 'b' }));
  gw.child.kill('SIGHUP');
  await until(async () => (await servedBy(`${gw.url}/v2/x`)) === 'B', 5000, () => `the new route did not serve after SIGHUP; stdout:\n${gw.stdout()}`);
  assert.equal(await servedBy(`${gw.url}/v1/x`), 'status 404', 'the old route is gone');
  const reloaded = await gw.waitForLog((l) => l.msg === 'config reloaded');
  assert.equal(reloaded.trigger, 'SIGHUP');
  await expectReloads(gw, { success: 1, error: 0 });
  assert.equal(gw.child.exitCode, null, 'SIGHUP must not end the process');
});

test('a change of the config file reloads without any signal (in-place write and editor-style rename)', async (t) => {
  const dir = await configDir(t);
  const file = path.join(dir, 'gateway.yaml');
  await writeFile(file, config({ upstream: 'a' }));
  const gw = await startCli(t, file);
  assert.equal(await servedBy(`${gw.url}/v1/x`), 'A');

  await writeFile(file, config({ upstream: 'b' }));
  await until(async () => (await servedBy(`${gw.url}/v1/x`)) === 'B', 5000, () => `the in-place edit was not picked up; stdout:\n${gw.stdout()}`);
  assert.equal((await gw.waitForLog((l) => l.msg === 'config reloaded')).trigger, 'file change');

  // Editors save by writing a temporary file and renaming it over the original (a new inode).
  const temporary = path.join(dir, '.gateway.yaml.swp');
  await writeFile(temporary, config({ upstream: 'a', path: '/v3/*' }));
  await rename(temporary, file);
  await until(async () => (await servedBy(`${gw.url}/v3/x`)) === 'A', 5000, () => `the rename-style save was not picked up; stdout:\n${gw.stdout()}`);
  await until(async () => (await reloadCount(gw, 'success')) === 2, 2000, () => 'expected exactly two successful reloads');
  assert.equal(await reloadCount(gw, 'error'), 0);
});

test('an invalid new file keeps the old config serving, is logged precisely and counted; a fixed file then reloads', async (t) => {
  const dir = await configDir(t);
  const file = path.join(dir, 'gateway.yaml');
  await writeFile(file, config({ upstream: 'a' }));
  const gw = await startCli(t, file);
  assert.equal(await servedBy(`${gw.url}/v1/x`), 'A');

  const failures = () => gw.stdout().split('\n').filter((l) => l.includes('config reload failed'));

  // Broken YAML: an unclosed flow mapping on line 9 of what config() writes (the route's match).
  const brokenYaml = config({ upstream: 'b' }).replace("match: {path: '/v1/*'}", "match: {path: '/v1/*'");
  assert.notEqual(brokenYaml, config({ upstream: 'b' }), 'the test must actually break the file');
  await writeFile(file, brokenYaml);
  const yamlError = await gw.waitForLog((l) => l.msg === 'config reload failed; the previous config keeps serving', 5000);
  assert.equal(yamlError.level, 'error');
  assert.equal(yamlError.trigger, 'file change');
  const yamlProblems = yamlError.problems as string[];
  assert.equal(yamlProblems.length, 1, JSON.stringify(yamlProblems));
  assert.match(yamlProblems[0]!, new RegExp(`^${escapeRegExp(file)}:\\d+:\\d+: not valid YAML`));
  assert.equal(await servedBy(`${gw.url}/v1/x`), 'A', 'the old config keeps serving');
  await expectReloads(gw, { success: 0, error: 1 });

  // Valid YAML with an unknown key: the problem names the exact line.
  const lines = config({ upstream: 'b' }).split('\n');
  const routeLine = lines.findIndex((l) => l.startsWith('  - name: main')) + 1;
  const unknownKey = config({ upstream: 'b' }).replace('    upstream: b\n', '    upstream: b\n    flavour: spicy\n');
  await writeFile(file, unknownKey);
  await until(async () => failures().length === 2, 5000, () => `no second reload failure logged; stdout:\n${gw.stdout()}`);
  const keyProblems = (JSON.parse(failures()[1]!) as { problems: string[] }).problems;
  assert.deepEqual(keyProblems.length, 1, JSON.stringify(keyProblems));
  assert.match(keyProblems[0]!, new RegExp(`^${escapeRegExp(file)}:${routeLine + 3}:5: routes\\[0\\]\\.flavour: unknown key 'flavour'`));
  assert.equal(await servedBy(`${gw.url}/v1/x`), 'A', 'the old config still serves');
  await expectReloads(gw, { success: 0, error: 2 });

  // Unrelated files changing in the folder (editor swap files) do not retry, re-log or re-count the same bad file.
  await writeFile(path.join(dir, '.gateway.yaml.swp'), 'x');
  await writeFile(path.join(dir, 'notes.txt'), 'y');
  await new Promise((r) => setTimeout(r, 600));
  assert.equal(failures().length, 2, 'the rejected content was tried again');
  await expectReloads(gw, { success: 0, error: 2 });

  await writeFile(file, config({ upstream: 'b' }));
  await until(async () => (await servedBy(`${gw.url}/v1/x`)) === 'B', 5000, () => `the fixed file was not applied; stdout:\n${gw.stdout()}`);
  await expectReloads(gw, { success: 1, error: 2 });
});

test('a Kubernetes ConfigMap swap (..data symlink renamed atomically) reloads without restart', async (t) => {
  const dir = await configDir(t);
  const first = '..2026_01_01_00_00_00.000';
  await mkdir(path.join(dir, first));
  await writeFile(path.join(dir, first, 'gateway.yaml'), config({ upstream: 'a' }));
  await symlink(first, path.join(dir, '..data'));
  await symlink(path.join('..data', 'gateway.yaml'), path.join(dir, 'gateway.yaml'));
  const gw = await startCli(t, path.join(dir, 'gateway.yaml'));
  assert.equal(await servedBy(`${gw.url}/v1/x`), 'A');

  // Exactly what the kubelet's atomic writer does: new timestamped dir, ..data_tmp symlink, rename over ..data, remove the old dir.
  const swap = async (from: string, to: string, yaml: string) => {
    await mkdir(path.join(dir, to));
    await writeFile(path.join(dir, to, 'gateway.yaml'), yaml);
    await symlink(to, path.join(dir, '..data_tmp'));
    await rename(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
    await rm(path.join(dir, from), { recursive: true });
  };

  await swap(first, '..2026_01_01_00_01_00.000', config({ upstream: 'b' }));
  await until(async () => (await servedBy(`${gw.url}/v1/x`)) === 'B', 5000, () => `the ConfigMap swap was not picked up; stdout:\n${gw.stdout()}`);

  // A second swap proves the watch survived the first one (its original target dir is gone).
  await swap('..2026_01_01_00_01_00.000', '..2026_01_01_00_02_00.000', config({ upstream: 'a', path: '/v2/*' }));
  await until(async () => (await servedBy(`${gw.url}/v2/x`)) === 'A', 5000, () => `the second ConfigMap swap was not picked up; stdout:\n${gw.stdout()}`);
  await expectReloads(gw, { success: 2, error: 0 });
  assert.equal(gw.child.exitCode, null);
});

test('a reload that changes server.listen or store is refused: the old config keeps serving and the log says to restart', async (t) => {
  const dir = await configDir(t);
  const file = path.join(dir, 'gateway.yaml');
  await writeFile(file, config({ upstream: 'a' }));
  const gw = await startCli(t, file);
  assert.equal(await servedBy(`${gw.url}/v1/x`), 'A');

  const failures = () =>
    gw
      .stdout()
      .split('\n')
      .filter((l) => l.includes('config reload failed'))
      .map((l) => JSON.parse(l) as { problems: string[] });

  // Also switching the upstream proves the refusal is all-or-nothing: no part of the new file is applied.
  await writeFile(file, config({ upstream: 'b', listen: '127.0.0.1:1' }));
  await until(async () => failures().length === 1, 5000, () => `the listen change was not refused; stdout:\n${gw.stdout()}`);
  assert.equal(failures()[0]!.problems.length, 1);
  assert.match(failures()[0]!.problems[0]!, /: server: .*restart/);
  assert.equal(await servedBy(`${gw.url}/v1/x`), 'A', 'the old config keeps serving');
  await expectReloads(gw, { success: 0, error: 1 });

  await writeFile(file, config({ upstream: 'b', extra: 'store:\n  type: memory\n  key_prefix: other\n' }));
  await until(async () => failures().length === 2, 5000, () => `the store change was not refused; stdout:\n${gw.stdout()}`);
  assert.equal(failures()[1]!.problems.length, 1);
  assert.match(failures()[1]!.problems[0]!, /: store: .*restart/);
  assert.equal(await servedBy(`${gw.url}/v1/x`), 'A', 'the old config keeps serving');
  await expectReloads(gw, { success: 0, error: 2 });

  // Spelling out the defaults is not a change: this reload goes through.
  await writeFile(file, config({ upstream: 'b', extra: 'store:\n  type: memory\n' }));
  await until(async () => (await servedBy(`${gw.url}/v1/x`)) === 'B', 5000, () => `a reload that only spells out store defaults was refused; stdout:\n${gw.stdout()}`);
  await expectReloads(gw, { success: 1, error: 2 });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// What a newcomer meets first, from the outside: `npm start`'s entry (dist/demo/start.js) when a port is taken, the
// first command its banner suggests and the demo keys it prints, the walk-through's agent steps (docs/getting-started.md)
// run as written, and what the log says when a refused config edit is reverted.
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
 * config/gateway.yaml with its three ports replaced, in a temporary folder with the schemas and the agents file it
 * refers to, so the demo runs beside other tests (and a developer's own `npm start`) without colliding on 3000, 8080 or
 * 9090, and edits of its agents file change nothing in config/.
 */
async function demoConfig(t: TestContext, ports: { legacy: number; proxy: number; admin: number }): Promise<string> {
  const tmp = await tempDir('agentgate-demo');
  t.after(() => tmp.remove());
  await cp(path.join(REPO, 'config/schemas'), path.join(tmp.dir, 'schemas'), { recursive: true });
  await cp(path.join(REPO, 'config/agents.yaml'), path.join(tmp.dir, 'agents.yaml'));
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
  // The demo lets no one in without a key: the command sends one of the keys the banner prints.
  const headers = Object.fromEntries([...command.matchAll(/-H '([^':]+):\s*([^']*)'/g)].map((m) => [m[1]!, m[2]!]));
  assert.match(headers.Authorization ?? '', /^Bearer agk_/, `the command sends an agent key: ${command}`);

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
  const res = await fetch(url, { headers });
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

  // The agent keys it prints are the demo's (marked as demo keys), each the key of the agent it names, with its scopes.
  assert.match(banner, /DEMO KEYS, public/);
  const keys = [...banner.matchAll(/^(?:Agent keys:)?\s+([\w.@:-]+)\s+(agk_[A-Za-z0-9_-]{43})\s+(.*?)\s*$/gm)].map((m) => ({ agent: m[1]!, key: m[2]!, scopes: m[3]!.split(' ') }));
  assert.deepEqual(keys.map((k) => k.agent), ['demo-agent', 'reporter', 'batch-agent'], banner);
  for (const { agent, key, scopes } of keys) {
    const whoami = await fetch(`${proxyUrl}/_agentgate/whoami`, { headers: { authorization: `Bearer ${key}` } });
    assert.deepEqual(await whoami.json(), { authenticated: true, agent, scopes, authenticated_with: 'api_key', expires_at: null, consumer: `agent:${agent}` });
  }
  const anonymous = await fetch(url);
  assert.equal(anonymous.status, 401, 'without a key the same request is refused');
  await anonymous.body?.cancel();
});

/** The first ```sh block after a heading of docs/getting-started.md. */
function walkThroughBlock(doc: string, heading: string): string {
  const at = doc.indexOf(`\n## ${heading}\n`);
  assert.ok(at >= 0, `docs/getting-started.md has the section '${heading}'`);
  const block = /```sh\n([\s\S]*?)```/.exec(doc.slice(at));
  assert.ok(block, `a sh block under '${heading}'`);
  return block[1]!;
}

/**
 * A block's commands (continuation lines joined), each with its trailing comment and the `#>` lines under it: the
 * output the docs say it gives.
 */
function commandsOf(block: string): { command: string; comment: string; shown: string[] }[] {
  const out: { command: string; comment: string; shown: string[] }[] = [];
  let pending = '';
  for (const line of block.split('\n')) {
    const text = pending + line;
    if (pending === '' && text.startsWith('#>') && out.length > 0) {
      out.at(-1)!.shown.push(text.replace(/^#> ?/, ''));
      continue;
    }
    if (text.trim() === '' || text.trimStart().startsWith('#')) continue;
    const { command, comment } = splitComment(text);
    if (command.endsWith('\\')) {
      pending = `${command.slice(0, -1)}`;
      continue;
    }
    pending = '';
    out.push({ command: command.trim(), comment, shown: [] });
  }
  return out;
}

/** A shell line's code and its comment: the first # outside quotes that follows a blank. */
function splitComment(line: string): { command: string; comment: string } {
  let quote = '';
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote) {
      if (c === quote) quote = '';
    } else if (c === "'" || c === '"') quote = c;
    else if (c === '#' && i > 0 && /\s/.test(line[i - 1]!)) return { command: line.slice(0, i).trimEnd(), comment: line.slice(i + 1).trim() };
  }
  return { command: line.trimEnd(), comment: '' };
}

/** What a comment promises: a JSON value at its start (object, array or number), or an HTTP status line. */
function expectation(comment: string): { json: unknown } | { status: string } | undefined {
  const status = /^HTTP\/1\.1 \d{3}/.exec(comment);
  if (status) return { status: status[0] };
  const number = /^-?\d+(?=$|[\s:,])/.exec(comment);
  if (number) return { json: Number(number[0]) };
  if (!comment.startsWith('{') && !comment.startsWith('[')) return undefined;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < comment.length; i++) {
    const c = comment[i]!;
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{' || c === '[') depth++;
    else if ((c === '}' || c === ']') && --depth === 0) return { json: JSON.parse(comment.slice(0, i + 1)) };
  }
  return undefined;
}

test("the walk-through's agent steps, run as written against the demo: keys, refusals, whoami, a rotation without a restart", async (t) => {
  const configFile = await demoConfig(t, { legacy: await freePort(), proxy: 0, admin: 0 });
  const demo = runDemo(t, configFile);
  await until(async () => /^Try: .*\n.*\n/m.test(demo.stderr()), 15_000, () => `no banner; stderr:\n${demo.stderr()}`);
  const address = (label: string) => new RegExp(`^${label}:?\\s+http://(127\\.0\\.0\\.1:\\d+)`, 'm').exec(demo.stderr())![1]!;
  const [proxy, admin, legacy] = [address('agentgate'), address('admin'), address('Demo legacy API')];
  const dir = path.dirname(configFile);
  const agentsFile = path.join(dir, 'agents.yaml');
  const original = await readFile(agentsFile, 'utf8');

  const doc = await readFile(path.join(REPO, 'docs/getting-started.md'), 'utf8');
  const commands = ['Agents and their keys', 'Rotating a key without a restart'].flatMap((h) => commandsOf(walkThroughBlock(doc, h)));
  // The demo's ports, agents file and backup here instead of 8080, 9090, 3000 and config/: nothing else is changed.
  const local = (command: string) =>
    command
      .replaceAll('localhost:8080', proxy)
      .replaceAll('localhost:9090', admin)
      .replaceAll('localhost:3000', legacy)
      .replaceAll('config/agents.yaml', agentsFile)
      .replaceAll('/tmp/agents.yaml.demo', path.join(dir, 'agents.yaml.demo'));
  for (const { command } of commands) {
    const unmapped = command.replace(/localhost:(?:8080|9090|3000)|config\/agents\.yaml|\/tmp\/agents\.yaml\.demo/g, '');
    assert.doesNotMatch(unmapped, /localhost:|config\/|\/tmp\//, `a command the test cannot point at its demo: ${command}`);
  }
  const script = commands.map(({ command }, i) => `{ ${local(command)}\n}; printf '\\n@@%s %s@@\\n' ${i} "$?"`).join('\n');

  // The script ends with a printf, so it exits 0; each command's own status is in its marker.
  const run = await promisify(execFile)('sh', ['-c', script], { cwd: REPO, timeout: 60_000, maxBuffer: 1 << 20 });
  if (/\b(curl|jq)\b.*not found/.test(run.stderr)) {
    t.skip(`curl or jq is not installed here: ${run.stderr}`);
    return;
  }
  const outputs = run.stdout.split(/\n@@(\d+) (\d+)@@\n/);
  let checked = 0;
  commands.forEach(({ command, comment }, i) => {
    const output = outputs[i * 3]!;
    assert.equal(outputs[i * 3 + 1], String(i), 'one output per command');
    assert.equal(outputs[i * 3 + 2], '0', `exit status of: ${command}\n${output}\n${run.stderr}`);
    const expected = expectation(comment);
    if (expected === undefined) return;
    checked++;
    if ('status' in expected) assert.ok(output.startsWith(expected.status), `${command}\nsays ${expected.status}, gave:\n${output}`);
    else assert.deepEqual(JSON.parse(output), expected.json, `${command}\n# ${comment}`);
  });
  assert.ok(checked >= 12, `the docs state the output of the steps that matter (${checked} checked)`);
  const reloads = commands.findIndex(({ command }) => command.includes('agentgate_agents_reloads_total'));
  assert.match(outputs[reloads * 3]!, /^agentgate_agents_reloads_total\{result="success"\} 2$/m, 'the two edits of the rotation were reloads');

  // The last step puts the demo's keys back: the file as it was, and reporter's demo key working again.
  assert.equal(await readFile(agentsFile, 'utf8'), original);
  const reporterKey = /^REPORTER_KEY=(agk_\S+)/m.exec(doc)![1]!;
  const reporterWorks = async () => {
    const res = await fetch(`http://${proxy}/_agentgate/whoami`, { headers: { authorization: `Bearer ${reporterKey}` } });
    await res.body?.cancel();
    return res.status === 200;
  };
  await until(reporterWorks, 5000, () => 'the restored file was not reloaded');
});

/** A `#>` line as a pattern: `...` stands for anything, the rest is literal. */
function shownLine(shown: string): RegExp {
  return new RegExp(`^${shown.split('...').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
}

/**
 * Runs a walk-through section's commands as written, in one shell, against a fresh demo (after the keys the first block
 * sets), and checks each command's exit status and what its comment or `#>` lines say it prints; returns its commands.
 */
async function runWalkThroughSection(t: TestContext, heading: string): Promise<{ command: string; comment: string; shown: string[] }[]> {
  const configFile = await demoConfig(t, { legacy: await freePort(), proxy: 0, admin: 0 });
  const demo = runDemo(t, configFile);
  await until(async () => /^Try: .*\n.*\n/m.test(demo.stderr()), 15_000, () => `no banner; stderr:\n${demo.stderr()}`);
  const address = (label: string) => new RegExp(`^${label}:?\\s+http://(127\\.0\\.0\\.1:\\d+)`, 'm').exec(demo.stderr())![1]!;
  const [proxy, admin, legacy] = [address('agentgate'), address('admin'), address('Demo legacy API')];

  const doc = await readFile(path.join(REPO, 'docs/getting-started.md'), 'utf8');
  // The keys the first block sets, then the section's own commands.
  const keys = commandsOf(walkThroughBlock(doc, 'Agents and their keys')).filter(({ command }) => /^[A-Z_]+=(?:\S+|"[^"]*")$/.test(command));
  assert.deepEqual(keys.map(({ command }) => command.split('=')[0]), ['DEMO_KEY', 'REPORTER_KEY', 'BATCH_KEY', 'AUTH']);
  const commands = commandsOf(walkThroughBlock(doc, heading));
  // The admin port keeps the name the docs use (localhost): without an admin token it answers only loopback names.
  const local = (command: string) =>
    command
      .replaceAll('localhost:8080', proxy)
      .replaceAll('127.0.0.1:8080', proxy)
      .replaceAll('localhost:9090', admin.replace('127.0.0.1', 'localhost'))
      .replaceAll('localhost:3000', legacy);
  for (const { command } of commands) {
    const unmapped = command.replace(/(?:localhost|127\.0\.0\.1):(?:8080|9090|3000)/g, '');
    assert.doesNotMatch(unmapped, /localhost:|127\.0\.0\.1:|config\/|\/tmp\//, `a command the test cannot point at its demo: ${command}`);
  }
  const script = [
    ...keys.map(({ command }) => command),
    ...commands.map(({ command }, i) => `{ ${local(command)}\n}; printf '\\n@@%s %s@@\\n' ${i} "$?"`),
  ].join('\n');

  const run = await promisify(execFile)('sh', ['-c', script], { cwd: REPO, timeout: 60_000, maxBuffer: 1 << 20 });
  assert.doesNotMatch(run.stderr, /\b(curl|jq)\b.*not found/, 'curl and jq are installed');
  const outputs = run.stdout.split(/\n@@(\d+) (\d+)@@\n/);
  let checked = 0;
  commands.forEach(({ command, comment, shown }, i) => {
    const output = outputs[i * 3]!;
    assert.equal(outputs[i * 3 + 1], String(i), 'one output per command');
    assert.equal(outputs[i * 3 + 2], '0', `exit status of: ${command}\n${output}\n${run.stderr}`);
    const expected = expectation(comment);
    if (expected !== undefined) {
      checked++;
      if ('status' in expected) assert.ok(output.startsWith(expected.status), `${command}\nsays ${expected.status}, gave:\n${output}`);
      else assert.deepEqual(JSON.parse(output), expected.json, `${command}\n# ${comment}`);
    }
    if (shown.length > 0) {
      checked++;
      const lines = output.replace(/\n$/, '').split('\n');
      assert.equal(lines.length, shown.length, `${command}\nprints ${shown.length} lines, gave:\n${output}`);
      shown.forEach((line, j) => assert.match(lines[j]!, shownLine(line), `${command}\nline ${j + 1}`));
    }
  });
  assert.equal(checked, commands.length - 1, 'every command but the reset says what it prints');
  return commands;
}

test("the walk-through's discovery steps, run as written against the demo: the OpenAPI document, MCP tools listed and called", async (t) => {
  const commands = await runWalkThroughSection(t, 'Discover the API: OpenAPI and MCP');
  const mcpCalls = commands.filter(({ command }) => command.startsWith('sh scripts/node.sh scripts/mcp-call.ts '));
  assert.ok(mcpCalls.length >= 4, 'the section lists the tools and calls a read and a write tool');
  assert.ok(
    mcpCalls.some(({ shown }) => shown.some((line) => line.startsWith('(replayed'))),
    'the write is called twice with one idempotency_key, and the second call is shown to be a replay',
  );
});

test("the walk-through's approval steps, run as written against the demo: 428, pending, a person approves, one execution, a used approval", async (t) => {
  const commands = await runWalkThroughSection(t, 'A destructive call waits for a person');
  const codes = commands.map(({ comment }) => /"code":"(APPROVAL_\w+)"/.exec(comment)?.[1]).filter((c) => c !== undefined);
  assert.deepEqual(codes, ['APPROVAL_REQUIRED', 'APPROVAL_PENDING', 'APPROVAL_REQUIRED'], 'asked, pending, and used up after its one execution');
  assert.ok(commands.some(({ command }) => /localhost:9090\/approvals\/\$APPROVAL\/approve/.test(command)), 'a person approves on the admin port');
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

// Client connections of the proxy port: answers stay in request order when a pipelined request is refused, refused
// connections are closed for good, head and keep-alive timeouts, max_connections, and (the built CLI under a low
// open-file limit) a flood of idle connections that never takes the admin port down.
import { test, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import path from 'node:path';
import { startUpstream, json, type TestUpstream } from './helpers/upstream.ts';
import { CLI, configYaml, startTestGateway, tempDir, type TestGateway } from './helpers/gateway.ts';
import { send, envelopeOf } from './helpers/http.ts';
import { until } from './helpers/wait.ts';
import { connectionBound } from '../src/gateway.ts';
import type { Config } from '../src/config/schema.ts';

/** Requests to /slow are held until the test answers them, so "still in flight" never depends on timing. */
const held: { url: string; answer: () => void }[] = [];
let upstream: TestUpstream;
/** request_head 30s: only what a test does closes a connection, never the head timeout. */
let gw: TestGateway;

before(async () => {
  upstream = await startUpstream({
    '/slow': (req, res) => void held.push({ url: req.url!, answer: () => json(res, 200, { url: req.url }) }),
    '*': (req, res) => json(res, 200, { url: req.url }),
  });
  gw = await startTestGateway(
    configYaml(`  timeouts: {request_head: 30s}\nupstreams: {api: {url: '${upstream.url}'}}\nroutes: [{name: all, match: {path: /*}, upstream: api}]\n`),
  );
});

after(async () => {
  for (const h of held.splice(0)) h.answer();
  await gw.close();
  await upstream.close();
});

// ---------- helpers ----------

interface RawConnection {
  socket: Socket;
  localPort: number;
  received(): string;
  /** The gateway sent FIN (it closed or half-closed its side). */
  ended(): boolean;
  write(data: string): void;
}

/**
 * A raw client connection that never closes its side by itself (allowHalfOpen): a client that keeps its descriptor
 * for as long as the gateway lets it. Destroyed when the test ends.
 */
async function openRaw(t: TestContext, url: string): Promise<RawConnection> {
  const { hostname, port } = new URL(url);
  const socket = connect({ host: hostname, port: Number(port), allowHalfOpen: true });
  t.after(() => socket.destroy());
  let data = '';
  let ended = false;
  socket.on('data', (c: Buffer) => (data += c.toString('latin1')));
  socket.on('end', () => (ended = true));
  socket.on('close', () => (ended = true));
  socket.on('error', () => {}); // writes after the gateway closed: EPIPE or ECONNRESET
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return {
    socket,
    localPort: socket.localPort!,
    received: () => data,
    ended: () => ended,
    write: (chunk) => {
      if (!socket.destroyed && socket.writable) socket.write(chunk);
    },
  };
}

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Splits a byte stream into the complete HTTP/1.1 responses in it (Content-Length or chunked), and what is left. */
function parseResponses(raw: string): { responses: RawResponse[]; rest: string } {
  const responses: RawResponse[] = [];
  let rest = raw;
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (end === -1) break;
    const lines = rest.slice(0, end).split('\r\n');
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const i = line.indexOf(':');
      headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    let body: string;
    let next: number;
    if (headers['transfer-encoding']?.includes('chunked')) {
      body = '';
      let at = end + 4;
      for (;;) {
        const lineEnd = rest.indexOf('\r\n', at);
        if (lineEnd === -1) return { responses, rest };
        const size = parseInt(rest.slice(at, lineEnd), 16);
        if (size === 0) {
          const trailerEnd = rest.indexOf('\r\n\r\n', lineEnd);
          if (trailerEnd === -1) return { responses, rest };
          next = trailerEnd + 4;
          break;
        }
        if (rest.length < lineEnd + 2 + size + 2) return { responses, rest };
        body += rest.slice(lineEnd + 2, lineEnd + 2 + size);
        at = lineEnd + 2 + size + 2;
      }
    } else {
      const length = Number(headers['content-length'] ?? 0);
      if (rest.length < end + 4 + length) break;
      body = rest.slice(end + 4, end + 4 + length);
      next = end + 4 + length;
    }
    responses.push({ status: Number(lines[0]!.split(' ')[1]), headers, body });
    rest = rest.slice(next);
  }
  return { responses, rest };
}

/**
 * Whether a process still holds the gateway's end of the connection from `clientPort` (Linux, /proc/net/tcp). Once
 * the gateway closes its socket for good, the entry is gone or an orphan (inode 0: only the kernel finishing the TCP
 * close); a half-closed socket the gateway still holds keeps its inode.
 */
function gatewayHolds(gatewayUrl: string, clientPort: number): boolean {
  const gatewayPort = Number(new URL(gatewayUrl).port);
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!existsSync(file)) continue;
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10) continue;
      const local = parseInt(fields[1]!.split(':')[1]!, 16);
      const remote = parseInt(fields[2]!.split(':')[1]!, 16);
      if (local === gatewayPort && remote === clientPort && fields[9] !== '0') return true;
    }
  }
  return false;
}

const invalidRequestLines = (g: TestGateway) => g.logs.requestLines().filter((l) => l.outcome === 'invalid_request').length;

/**
 * Writes `payload` (valid requests to /slow followed by a malformed one) on one connection, waits until the gateway
 * has refused the malformed one while every /slow request is still held upstream, then lets the upstream answer.
 * Returns the responses in the order the client read them, once the gateway has closed the connection.
 */
async function pipelineBehindSlow(t: TestContext, packets: string[], slowCount: number): Promise<RawResponse[]> {
  held.splice(0);
  const refusedBefore = invalidRequestLines(gw);
  const conn = await openRaw(t, gw.url);
  conn.write(packets[0]!);
  await until(async () => held.length === slowCount, 10_000, () => `upstream holds ${held.length} of ${slowCount} /slow requests`);
  for (const packet of packets.slice(1)) conn.write(packet);
  await until(async () => invalidRequestLines(gw) > refusedBefore, 10_000, () => 'the malformed request was never refused');
  // The refusal must not have been written ahead of the answers still owed (it would be read as the first of them).
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(conn.received(), '', 'nothing may be written before the answer to the first request');
  for (const h of held.splice(0)) h.answer();
  await until(async () => conn.ended(), 10_000, () => `the gateway never closed the connection; received:\n${conn.received()}`);
  const { responses, rest } = parseResponses(conn.received());
  assert.equal(rest, '', 'nothing after the last complete response');
  return responses;
}

function assertSlowAnswer(response: RawResponse | undefined, url: string): void {
  assert.ok(response, `no answer for ${url}`);
  assert.equal(response.status, 200, `the answer to ${url}: ${response.body}`);
  assert.equal(JSON.parse(response.body).url, url);
}

function assertRefusal(response: RawResponse | undefined, status = 400, code = 'INVALID_REQUEST'): Record<string, any> {
  assert.ok(response, 'no refusal after the answers');
  assert.equal(response.status, status);
  assert.equal(response.headers.connection, 'close');
  const body = envelopeOf(response);
  assert.equal(body.code, code);
  return body;
}

const upstreamSaw = (url: string) => upstream.received.filter((r) => r.url === url).length;

// ---------- answers stay in order ----------

test('a malformed request pipelined behind a slow valid one is refused after the valid one is answered, then the connection closes', async (t) => {
  const responses = await pipelineBehindSlow(t, ['GET /slow?n=1 HTTP/1.1\r\nHost: a\r\n\r\nGARBAGE\r\n\r\n'], 1);
  assert.equal(responses.length, 2, JSON.stringify(responses));
  assertSlowAnswer(responses[0], '/slow?n=1');
  assertRefusal(responses[1]);
  assert.equal(upstreamSaw('/slow?n=1'), 1, 'the valid request reached the upstream exactly once');
});

test('two valid requests then a malformed one: both answers in order, then the refusal', async (t) => {
  const responses = await pipelineBehindSlow(
    t,
    ['GET /slow?n=2 HTTP/1.1\r\nHost: a\r\n\r\nGET /slow?n=3 HTTP/1.1\r\nHost: a\r\n\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde'],
    2,
  );
  assert.equal(responses.length, 3, JSON.stringify(responses));
  assertSlowAnswer(responses[0], '/slow?n=2');
  assertSlowAnswer(responses[1], '/slow?n=3');
  assertRefusal(responses[2]);
  assert.equal(upstreamSaw('/slow?n=2'), 1);
  assert.equal(upstreamSaw('/slow?n=3'), 1);
});

test('a head that only becomes malformed in a later packet still waits for the answer before it', async (t) => {
  const responses = await pipelineBehindSlow(
    t,
    ['GET /slow?n=4 HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\nX-Fine: yes\r\n', 'This is no header\r\n\r\n'],
    1,
  );
  assert.equal(responses.length, 2, JSON.stringify(responses));
  assertSlowAnswer(responses[0], '/slow?n=4');
  assertRefusal(responses[1]);
  assert.equal(upstreamSaw('/slow?n=4'), 1);
  assert.equal(upstreamSaw('/next'), 0, 'the refused request never reached the upstream');
});

// ---------- refused connections are closed for good ----------

test('a refused connection is closed by the gateway, not only half-closed, even when the client never closes it', async (t) => {
  if (!existsSync('/proc/net/tcp')) return t.skip('needs /proc/net/tcp (Linux)');
  const conns = await Promise.all(Array.from({ length: 6 }, () => openRaw(t, gw.url)));
  for (const conn of conns) conn.write('GARBAGE\r\n\r\n');
  // Half of them keep sending bytes after the refusal, which the gateway must read and drop, not hold on to.
  const chatter = setInterval(() => conns.slice(0, 3).forEach((c) => c.write('more garbage\r\n')), 100);
  t.after(() => clearInterval(chatter));
  await until(async () => conns.every((c) => c.ended()), 10_000, () => 'not every refused connection got its answer and FIN');
  for (const conn of conns) {
    const { responses } = parseResponses(conn.received());
    assert.equal(responses.length, 1);
    assertRefusal(responses[0]);
  }
  await until(
    async () => conns.every((c) => !gatewayHolds(gw.url, c.localPort)),
    10_000,
    () => `the gateway still holds ${conns.filter((c) => gatewayHolds(gw.url, c.localPort)).length} of ${conns.length} refused connections open`,
  );
  assert.equal((await send(`${gw.url}/after-refusals`)).status, 200);
});

// ---------- timeouts ----------

test('server.timeouts: a silent connection is closed after request_head, a slow head gets 408 REQUEST_TIMEOUT, an idle keep-alive connection is closed after keep_alive', async (t) => {
  const fast = await startTestGateway(
    configYaml(`  timeouts: {request_head: 500ms, keep_alive: 1s}\nupstreams: {api: {url: '${upstream.url}'}}\nroutes: [{name: all, match: {path: /*}, upstream: api}]\n`),
  );
  t.after(() => fast.close());

  const started = Date.now();
  const silent = await openRaw(t, fast.url);
  const slowHead = await openRaw(t, fast.url);
  slowHead.write('GET /never-finished HTTP/1.1\r\nHost: a\r\n');
  const keepAlive = await openRaw(t, fast.url);
  keepAlive.write('GET /kept HTTP/1.1\r\nHost: a\r\n\r\n');

  await until(async () => silent.ended(), 5000, () => 'a connection that sent nothing was not closed');
  assert.ok(Date.now() - started >= 400, `closed after ${Date.now() - started} ms, before request_head (500ms)`);
  assert.equal(silent.received(), '', 'no answer to a connection that asked nothing');

  await until(async () => slowHead.ended(), 5000, () => 'a connection with a slow head was not answered and closed');
  const { responses, rest } = parseResponses(slowHead.received());
  assert.equal(rest, '');
  assert.equal(responses.length, 1);
  const body = assertRefusal(responses[0], 408, 'REQUEST_TIMEOUT');
  assert.equal(body.retryable, true);
  assert.match(body.detail, /500ms/);
  assert.ok(
    fast.logs.requestLines().some((l) => l.code === 'REQUEST_TIMEOUT' && l.status === 408 && l.outcome === 'request_timeout'),
    'the refusal is logged with its code',
  );

  await until(async () => parseResponses(keepAlive.received()).responses.length === 1, 5000, () => 'no answer to the keep-alive request');
  const answered = Date.now();
  const kept = parseResponses(keepAlive.received()).responses[0]!;
  assert.equal(kept.status, 200);
  assert.equal(kept.headers['keep-alive'], 'timeout=1');
  await until(async () => keepAlive.ended(), 4500, () => 'an idle keep-alive connection was not closed after keep_alive (1s)');
  assert.ok(Date.now() - answered >= 800, `an idle keep-alive connection was closed after ${Date.now() - answered} ms, before keep_alive`);
});

// ---------- max_connections ----------

test('server.limits.max_connections: connections beyond it are closed on arrival, and the port serves again once one closes', async (t) => {
  const limited = await startTestGateway(
    configYaml(`  limits: {max_connections: 3}\n  timeouts: {request_head: 30s, keep_alive: 30s}\nupstreams: {api: {url: '${upstream.url}'}}\nroutes: [{name: all, match: {path: /*}, upstream: api}]\n`),
  );
  t.after(() => limited.close());
  const holders = [await openRaw(t, limited.url), await openRaw(t, limited.url), await openRaw(t, limited.url)];
  // Once a held connection is answered, the gateway has accepted all three (the kernel hands them over in order).
  holders[2]!.write('GET /third HTTP/1.1\r\nHost: a\r\n\r\n');
  await until(async () => parseResponses(holders[2]!.received()).responses.length === 1, 5000, () => 'the third connection was not served');

  const extra = await openRaw(t, limited.url);
  extra.write('GET /fourth HTTP/1.1\r\nHost: a\r\n\r\n');
  await until(async () => extra.ended(), 5000, () => 'a connection beyond max_connections was kept open');
  assert.equal(extra.received(), '', 'a connection beyond the bound is closed without an answer');
  assert.equal(upstreamSaw('/fourth'), 0);
  assert.ok(holders.every((h) => !h.ended()), 'the connections within the bound stay open');
  await until(
    async () => limited.logs.lines.some((l) => l.msg === 'connection limit reached: new connections to the proxy port are closed on arrival' && l.max_connections === 3),
    5000,
    () => 'the limit being reached was not logged',
  );

  holders[0]!.socket.destroy();
  await until(async () => (await send(`${limited.url}/after-limit`)).status === 200, 5000, () => 'the port did not serve again after a connection closed');
});

test('max_connections is lowered to leave room for the upstream pools, the admin port and the rest under the open-file limit', () => {
  const config = (maxConnections: number, upstreams: Record<string, { url: string; max_sockets: number }>) =>
    ({ server: { limits: { max_connections: maxConnections } }, upstreams }) as unknown as Config;
  const one = { api: { url: 'http://127.0.0.1:3000', max_sockets: 256 } };
  // Room enough: kept as configured.
  assert.deepEqual(connectionBound(config(10_000, one), 20_000), { maxConnections: 10_000, lowered: false, openFileLimit: 20_000, reserved: 128 + 64 + 256 });
  assert.equal(connectionBound(config(10_000, one), undefined).lowered, false, 'no /proc: nothing to fit');
  // ulimit -n 1024: 1024 - 128 - 64 - 256.
  assert.deepEqual(connectionBound(config(10_000, one), 1024), { maxConnections: 576, lowered: true, openFileLimit: 1024, reserved: 448 });
  // Two upstreams on one origin with one pool size share a pool; another size is another pool.
  const shared = { a: { url: 'http://api:80/v1', max_sockets: 100 }, b: { url: 'http://api:80/v2', max_sockets: 100 }, c: { url: 'http://api:80', max_sockets: 50 } };
  assert.equal(connectionBound(config(10_000, shared), 1024).reserved, 128 + 64 + 150);
  // A limit too low even for the reserve still leaves the proxy port a quarter of it.
  assert.equal(connectionBound(config(10_000, one), 256).maxConnections, 64);
  // Never raised above what was configured.
  assert.deepEqual(connectionBound(config(50, one), 256), { maxConnections: 50, lowered: false, openFileLimit: 256, reserved: 448 });
});

// ---------- a flood of idle connections under a low open-file limit (the built CLI) ----------

/** Starts `node dist/cli.js --config FILE` under `ulimit -n <openFiles>`; resolves once it logs that it listens. */
async function startLimitedCli(t: TestContext, configFile: string, openFiles: number) {
  const child: ChildProcess = spawn('sh', ['-c', `ulimit -n ${openFiles} && exec "$0" "$@"`, process.execPath, CLI, '--config', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const lines = () =>
    stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, any>);
  await until(async () => lines().some((l) => l.msg === 'agentgate listening'), 15_000, () => `the CLI did not start; stdout:\n${stdout}\nstderr:\n${stderr}`);
  const listening = lines().find((l) => l.msg === 'agentgate listening')!;
  return { child, exited, lines, proxyUrl: String(listening.proxy), adminUrl: String(listening.admin), output: () => `stdout:\n${stdout}\nstderr:\n${stderr}` };
}

/** One GET on a fresh connection, bounded; resolves with the status or the error's code. */
function probe(url: string, timeoutMs = 5000): Promise<number | string> {
  return new Promise((resolve) => {
    const req = request(url, { agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
      res.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    });
    req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error('no answer'), { code: 'TIMEOUT' })));
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    req.end();
  });
}

test('a flood of idle connections under a low open-file limit: the admin port keeps answering, idle ones are closed after request_head, then the proxy serves', async (t) => {
  const OPEN_FILES = 256;
  const FLOOD = 400;
  const tmp = await tempDir('agentgate-connections');
  t.after(() => tmp.remove());
  const configFile = path.join(tmp.dir, 'gateway.yaml');
  await writeFile(
    configFile,
    configYaml(
      `  timeouts: {request_head: 500ms}\nupstreams: {api: {url: '${upstream.url}', max_sockets: 16}}\nroutes: [{name: all, match: {path: /*}, upstream: api}]\n`,
    ),
  );
  const cli = await startLimitedCli(t, configFile, OPEN_FILES);

  // max_connections (10000) cannot fit in 256 descriptors: lowered, and said once at start.
  const lowered = cli.lines().filter((l) => typeof l.msg === 'string' && l.msg.startsWith('server.limits.max_connections lowered'));
  assert.equal(lowered.length, 1, cli.output());
  assert.equal(lowered[0]!.open_file_limit, OPEN_FILES);
  assert.ok(lowered[0]!.effective > 0 && lowered[0]!.effective < OPEN_FILES - 128, `effective bound ${lowered[0]!.effective}`);

  // The admin port's own head timeout closes an idle connection to it too.
  const idleAdmin = await openRaw(t, cli.adminUrl);

  // More idle connections than the process has descriptors, replaced as the gateway closes them, for 2 seconds.
  const { hostname, port } = new URL(cli.proxyUrl);
  let flooding = true;
  const open = new Set<Socket>();
  const floodOne = () => {
    const socket = connect({ host: hostname, port: Number(port) });
    open.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => {
      open.delete(socket);
      if (flooding) setTimeout(floodOne, 100);
    });
  };
  t.after(() => {
    flooding = false;
    for (const socket of open) socket.destroy();
  });
  for (let i = 0; i < FLOOD; i++) floodOne();
  const deadline = Date.now() + 2000;
  while (Date.now() < deadline) {
    assert.equal(await probe(`${cli.adminUrl}/healthz`), 200, `/healthz during the flood; ${cli.output()}`);
    assert.equal(await probe(`${cli.adminUrl}/metrics`), 200, '/metrics during the flood');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  flooding = false;

  // Every flood connection ends: held ones after request_head (500ms), the ones beyond the bound at once.
  await until(async () => open.size === 0, 10_000, () => `${open.size} idle connections are still open`);

  // Idle connections within the bound are closed by the gateway after request_head, without an answer.
  const started = Date.now();
  const idle = await Promise.all(Array.from({ length: 10 }, () => openRaw(t, cli.proxyUrl)));
  await until(async () => idle.every((c) => c.ended()), 5000, () => `${idle.filter((c) => !c.ended()).length} of 10 idle connections still open`);
  assert.ok(Date.now() - started >= 400, `idle connections closed after ${Date.now() - started} ms, before request_head (500ms)`);
  assert.ok(idle.every((c) => c.received() === ''));

  assert.equal(await probe(`${cli.proxyUrl}/after-flood`), 200, 'the proxy port serves once the flood is gone');
  assert.equal(upstreamSaw('/after-flood'), 1);

  await until(async () => idleAdmin.ended(), 15_000, () => 'an idle connection to the admin port was never closed');

  cli.child.kill('SIGTERM');
  assert.equal(await cli.exited, 0, cli.output());
});

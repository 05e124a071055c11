// Upstreams that refuse, hang, reset, lie about Content-Length or send 50 MB: the agent gets a clean answer and the gateway stays up.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request, createServer } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { startUpstream, json, type TestUpstream } from './helpers/upstream.ts';
import { startTestGateway, startCliGateway, configYaml, tempDir, type TestGateway } from './helpers/gateway.ts';
import { send, envelopeOf } from './helpers/http.ts';

let upstream: TestUpstream;
let closedPort: number;
let gw: TestGateway;
const FIFTY_MB = 50 * 1024 * 1024;

let countedSent = 0;

function fiftyMegabytes(res: import('node:http').ServerResponse, status: number, onWrite: (bytes: number) => void = () => {}): void {
  const chunk = Buffer.alloc(64 * 1024, 'x');
  let sent = 0;
  res.writeHead(status, { 'content-type': 'application/octet-stream', 'content-length': FIFTY_MB });
  const pump = () => {
    while (sent < FIFTY_MB) {
      sent += chunk.length;
      onWrite(chunk.length);
      if (!res.write(chunk)) return void res.once('drain', pump);
    }
    res.end();
  };
  pump();
}

before(async () => {
  upstream = await startUpstream({
    '/ok': (_req, res) => json(res, 200, { ok: true }),
    '/hang': () => {},
    '/slow-but-within': (_req, res) => setTimeout(() => json(res, 200, { ok: true }), 300),
    '/hang-after-headers': (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
      res.write('{"partial":');
    },
    '/reset-before-answer': (req) => req.socket.destroy(),
    '/reset-mid-body': (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('some bytes');
      setTimeout(() => req.socket.destroy(), 50);
    },
    '/short-content-length': (req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
      res.write('{"only":"a few bytes"}');
      setTimeout(() => req.socket.destroy(), 50);
    },
    '/fifty-mb': (_req, res) => fiftyMegabytes(res, 200),
    '/counted-fifty-mb': (_req, res) => {
      countedSent = 0;
      fiftyMegabytes(res, 200, (n) => (countedSent += n));
    },
  });
  // A port that refuses connections: bind one, then close it.
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  closedPort = (probe.address() as AddressInfo).port;
  await new Promise((r) => probe.close(r));

  gw = await startTestGateway(
    configYaml(`upstreams:
  live: {url: '${upstream.url}', timeout: 600ms}
  dead: {url: 'http://127.0.0.1:${closedPort}'}
routes:
  - {name: dead, match: {path: /dead/*}, upstream: dead}
  - {name: patient, match: {path: /slow-but-within}, upstream: live, timeout: 2s}
  - {name: live, match: {path: /*}, upstream: live}
`),
  );
});

after(async () => {
  await gw.close();
  await upstream.close();
});

async function stillServing(): Promise<void> {
  const reply = await send(`${gw.url}/ok`);
  assert.equal(reply.status, 200, 'the gateway must keep serving after an upstream failure');
}

/** Resolves with how a streamed response ended for the client: 'complete' or 'broken'. */
function receive(url: string): Promise<{ status: number; outcome: 'complete' | 'broken'; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('error', () => {});
      res.on('close', () => resolve({ status: res.statusCode!, outcome: res.complete ? 'complete' : 'broken', bytes }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('an upstream that refuses the connection is UPSTREAM_UNAVAILABLE 503 with Retry-After', async () => {
  const reply = await send(`${gw.url}/dead/x`);
  assert.equal(reply.status, 503);
  const body = envelopeOf(reply);
  assert.equal(body.code, 'UPSTREAM_UNAVAILABLE');
  assert.equal(body.retryable, true);
  assert.equal(reply.headers['retry-after'], '2');
  assert.equal(body.retry_after_seconds, 2);
  assert.match(body.suggestion, /Wait 2 seconds/);
  assert.match(body.detail, /ECONNREFUSED/);
  await stillServing();
});

test('an upstream that never answers is a real UPSTREAM_TIMEOUT 504 after the configured timeout', async () => {
  const started = Date.now();
  const reply = await send(`${gw.url}/hang`);
  const elapsed = Date.now() - started;
  assert.equal(reply.status, 504);
  const body = envelopeOf(reply);
  assert.equal(body.code, 'UPSTREAM_TIMEOUT');
  assert.equal(body.retryable, true);
  assert.ok(elapsed >= 550, `answered after ${elapsed} ms, before the 600 ms timeout`);
  await stillServing();
});

test('a route timeout overrides the upstream timeout', async () => {
  assert.equal((await send(`${gw.url}/slow-but-within`)).status, 200);
});

test('an upstream that hangs after its headers: the client sees a broken response, not a short success', async () => {
  const result = await receive(`${gw.url}/hang-after-headers`);
  assert.equal(result.outcome, 'broken');
  await stillServing();
  assert.equal(gw.logs.requestLines().find((l) => l.path === '/hang-after-headers')?.outcome, 'upstream_timeout');
});

test('an upstream that resets before answering is an UPSTREAM_ERROR 502 envelope', async () => {
  const reply = await send(`${gw.url}/reset-before-answer`);
  assert.equal(reply.status, 502);
  assert.equal(envelopeOf(reply).code, 'UPSTREAM_ERROR');
  await stillServing();
});

test('a pooled connection the upstream closed is retried once on a fresh one for a safe bodiless request, never for a write', async () => {
  // An upstream that drops each connection at its second request, before answering: what a keep-alive race looks like.
  const seen: string[] = [];
  const flaky = createServer((req, res) => {
    const socket = req.socket as typeof req.socket & { served?: number };
    socket.served = (socket.served ?? 0) + 1;
    seen.push(`${req.method} #${socket.served}`);
    if (socket.served > 1) return void socket.destroy();
    req.resume();
    req.on('end', () => json(res, 200, { ok: true }));
  }).listen(0, '127.0.0.1');
  await once(flaky, 'listening');
  const port = (flaky.address() as AddressInfo).port;
  const gateway = await startTestGateway(configYaml(`upstreams:\n  flaky: {url: 'http://127.0.0.1:${port}'}\nroutes:\n  - {name: flaky, match: {path: /*}, upstream: flaky}\n`));
  try {
    assert.equal((await send(`${gateway.url}/first`)).status, 200);
    const read = await send(`${gateway.url}/second`);
    assert.equal(read.status, 200, 'the read is answered from a fresh connection');
    assert.deepEqual(seen, ['GET #1', 'GET #2', 'GET #1']);
    // The fresh connection is pooled now; a write sent on it is not sent again when it drops: it may have run.
    seen.length = 0;
    const write = await send(`${gateway.url}/third`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    assert.equal(write.status, 502);
    assert.equal(envelopeOf(write).code, 'UPSTREAM_ERROR');
    assert.deepEqual(seen, ['POST #2']);
    // A read that fails on a fresh connection is not sent again: only a reused connection can have gone stale.
    seen.length = 0;
    flaky.removeAllListeners('request');
    flaky.on('request', (req) => {
      seen.push(req.method!);
      req.socket.destroy();
    });
    const broken = await send(`${gateway.url}/fourth`);
    assert.equal(broken.status, 502);
    assert.deepEqual(seen, ['GET']);
  } finally {
    await gateway.close();
    flaky.closeAllConnections();
    await new Promise((resolve) => flaky.close(resolve));
  }
});

test('an upstream that resets mid-body, or sends less than its Content-Length, never looks complete to the client', async () => {
  for (const path of ['/reset-mid-body', '/short-content-length']) {
    const result = await receive(`${gw.url}${path}`);
    assert.equal(result.outcome, 'broken', `${path} was delivered as complete`);
  }
  await stillServing();
  const aborted = gw.logs.requestLines().filter((l) => l.outcome === 'upstream_aborted').map((l) => l.path);
  assert.ok(aborted.includes('/short-content-length') && aborted.includes('/reset-mid-body'), `logged: ${aborted.join(', ')}`);
});

test('a 50 MB response streams through the built gateway, complete and byte-exact', async () => {
  const tmp = await tempDir();
  const configFile = path.join(tmp.dir, 'gateway.yaml');
  await writeFile(configFile, configYaml(`upstreams: {live: {url: '${upstream.url}'}}\nroutes: [{name: live, match: {path: /*}, upstream: live}]\n`));
  const cli = await startCliGateway(configFile);
  try {
    const result = await receive(`${cli.url}/fifty-mb`);
    assert.equal(result.outcome, 'complete');
    assert.equal(result.bytes, FIFTY_MB);
    assert.equal((await send(`${cli.url}/ok`)).status, 200);
  } finally {
    cli.child.kill('SIGTERM');
    await cli.exited;
    await tmp.remove();
  }
});

test('a client that stops reading stops the upstream too: the gateway holds a few MB at most, never the whole body', async () => {
  const reply = request(`${gw.url}/counted-fifty-mb`);
  reply.end();
  const [res] = (await once(reply, 'response')) as [import('node:http').IncomingMessage];
  await once(res, 'data');
  res.pause();
  await new Promise((r) => setTimeout(r, 1000));
  const sentWhileStalled = countedSent;
  assert.ok(sentWhileStalled < 16 * 1024 * 1024, `the upstream got to write ${(sentWhileStalled / 1048576).toFixed(1)} MB to a stalled client`);
  let bytes = 0;
  res.on('data', (c: Buffer) => (bytes += c.length));
  res.resume();
  await once(res, 'end');
  assert.ok(res.complete);
  assert.equal(countedSent, FIFTY_MB);
});

// server.workers: the built CLI as a primary with two cluster workers on Redis, driven from outside: the shared port,
// shared state, one admin port for all, reloads, a worker killed and replaced, draining, and an orphaned worker.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { configYaml, startCliGateway, tempDir, type CliGateway } from './helpers/gateway.ts';
import { send } from './helpers/http.ts';
import { cleanupPrefix, REDIS_URL, skipWithoutRedis, uniquePrefix } from './helpers/redis.ts';
import { json, startUpstream, type TestUpstream } from './helpers/upstream.ts';
import { until } from './helpers/wait.ts';

const WORKERS = 2;
/** How long the slow endpoint takes: a SIGTERM surely lands while it is in flight. */
const SLOW_MS = 800;

let upstream: TestUpstream;
let executed = 0;
const prefix = uniquePrefix('workers');

before(async () => {
  upstream = await startUpstream({
    'POST /orders': (_req, res) => {
      executed++;
      // Slow enough that concurrent duplicates find the first one still in flight.
      setTimeout(() => json(res, 201, { order: executed }), 200);
    },
    '/slow': (_req, res) => void setTimeout(() => json(res, 200, { slow: true }), SLOW_MS),
    '*': (req, res) => json(res, 200, { url: req.url }),
  });
});

after(async () => {
  await upstream.close();
  await cleanupPrefix(REDIS_URL, prefix);
});

function config(routePath = '/v1/*', store = `store:\n  type: redis\n  url: ${REDIS_URL}\n  key_prefix: ${prefix}\n`): string {
  return configYaml(
    `  workers: ${WORKERS}\n  shutdown_timeout: 5s\n${store}` +
      `upstreams:\n  up:\n    url: ${upstream.url}\n    timeout: 10s\n` +
      `routes:\n` +
      `  - name: orders\n    match: {methods: [POST], path: /orders}\n    upstream: up\n    idempotency: {required: true, ttl: 1h}\n` +
      `  - name: main\n    match: {path: '${routePath}'}\n    upstream: up\n`,
  );
}

async function startWorkers(yaml = config()): Promise<CliGateway & { configFile: string; remove: () => Promise<void> }> {
  const tmp = await tempDir('agentgate-workers');
  const configFile = path.join(tmp.dir, 'gateway.yaml');
  await writeFile(configFile, yaml);
  const gateway = await startCliGateway(configFile);
  return { ...gateway, configFile, remove: tmp.remove };
}

/** The primary's child processes, read from /proc: the workers. */
function workerPids(primaryPid: number): number[] {
  return readFileSync(`/proc/${primaryPid}/task/${primaryPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
}

/** Running: not gone, and not a zombie that ended but was not reaped yet (an orphan's new parent may never reap it). */
function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

async function metricValue(adminUrl: string, series: string): Promise<number> {
  const text = (await send(`${adminUrl}/metrics`)).text;
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? Number.NaN : Number(line.slice(series.length + 1));
}

function accessLines(gw: CliGateway): { worker: number; route: string }[] {
  return gw
    .stdout()
    .split('\n')
    .slice(0, -1) // the last piece is an unfinished line, or empty
    .filter((l) => l.includes('"msg":"request"'))
    .map((l) => JSON.parse(l) as { worker: number; route: string });
}

/** The replies, or a failure naming how many were never answered: a stranded connection would otherwise hang the test. */
async function answeredWithin<T>(ms: number, pending: Promise<T>[]): Promise<T[]> {
  let answered = 0;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${pending.length - answered} of ${pending.length} requests got no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([Promise.all(pending.map((p) => p.finally(() => answered++))), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

async function stop(gateway: CliGateway & { remove: () => Promise<void> }): Promise<number | null> {
  if (gateway.child.exitCode === null && gateway.child.signalCode === null) gateway.child.kill('SIGTERM');
  const code = await gateway.exited;
  await gateway.remove();
  return code;
}

describe('server.workers: 2 on Redis', { skip: await skipWithoutRedis() }, () => {
  test('both workers serve the one port, share idempotency state, and the admin port adds up all of them', async () => {
    const gw = await startWorkers();
    try {
      assert.equal(workerPids(gw.child.pid!).length, WORKERS);
      // Each request on a fresh connection; the workers accept from one socket, so the kernel picks which.
      let sent = 0;
      const servedBy = () => new Set(accessLines(gw).map((l) => l.worker));
      for (let round = 0; round < 10 && servedBy().size < WORKERS; round++) {
        const replies = await Promise.all(Array.from({ length: 40 }, (_, i) => send(`${gw.url}/v1/item/${i}`)));
        sent += replies.length;
        assert.deepEqual([...new Set(replies.map((r) => r.status))], [200]);
        await until(async () => accessLines(gw).length >= sent, 5000, () => 'the access lines did not appear');
      }
      assert.deepEqual(servedBy(), new Set([1, 2]), 'both workers should have served');

      // 30 duplicates at once, each on its own connection: the upstream runs the write once.
      const headers = { 'idempotency-key': `dup-${prefix}`, 'content-type': 'application/json' };
      const before = executed;
      const duplicates = await Promise.all(Array.from({ length: 30 }, () => send(`${gw.url}/orders`, { method: 'POST', headers, body: '{"n":1}' })));
      assert.equal(executed - before, 1, 'the write ran more than once');
      for (const reply of duplicates) assert.ok(reply.status === 201 || reply.status === 409, `unexpected ${reply.status}: ${reply.text}`);
      const replay = await send(`${gw.url}/orders`, { method: 'POST', headers, body: '{"n":1}' });
      assert.equal(replay.status, 201);
      assert.equal(replay.headers['idempotent-replayed'], 'true');

      const admin = gw.adminUrl;
      assert.equal(await metricValue(admin, 'agentgate_requests_total{route="main",method="GET",status_code="200",outcome="ok"}'), sent);
      assert.equal(await metricValue(admin, 'agentgate_workers{state="reporting"}'), WORKERS);
      assert.equal((await send(`${admin}/readyz`)).status, 200);
      assert.equal((await send(`${admin}/healthz`)).status, 200);
    } finally {
      assert.equal(await stop(gw), 0);
    }
  });

  test('SIGHUP reaches every worker, and a killed worker is replaced while the others keep serving', async () => {
    const gw = await startWorkers();
    try {
      await writeFile(gw.configFile, config('/v2/*'));
      gw.child.kill('SIGHUP');
      // Each worker also watches the file; the SIGHUP-triggered reload of each shows the primary passed it on.
      for (const worker of [1, 2]) await gw.waitForLog((l) => l.msg === 'config reloaded' && l.trigger === 'SIGHUP' && l.worker === worker);
      const afterReload = await Promise.all(Array.from({ length: 10 }, () => send(`${gw.url}/v2/x`)));
      assert.deepEqual([...new Set(afterReload.map((r) => r.status))], [200]);

      const [victim, survivor] = workerPids(gw.child.pid!);
      process.kill(victim!, 'SIGKILL');
      // Served throughout: the surviving worker takes every connection while the replacement starts.
      const during = await answeredWithin(5000, Array.from({ length: 10 }, () => send(`${gw.url}/v2/x`)));
      assert.deepEqual([...new Set(during.map((r) => r.status))], [200]);
      await gw.waitForLog((l) => l.msg === 'worker exited unexpectedly; starting a new one');
      await until(async () => workerPids(gw.child.pid!).length === WORKERS && (await send(`${gw.adminUrl}/readyz`)).status === 200, 10_000, () => 'no replacement worker');
      const pids = workerPids(gw.child.pid!);
      assert.ok(pids.includes(survivor!) && !pids.includes(victim!));
      assert.equal(await metricValue(gw.adminUrl, 'agentgate_worker_restarts_total'), 1);
    } finally {
      assert.equal(await stop(gw), 0);
    }
  });

  test('a replacement worker refuses a store changed since the start, and is retried until the file is back', async () => {
    const gw = await startWorkers();
    try {
      const original = config();
      await writeFile(gw.configFile, original.replace(`key_prefix: ${prefix}`, `key_prefix: ${prefix}-moved`));
      // The running workers refuse the change, as a reload always does.
      for (const worker of [1, 2]) await gw.waitForLog((l) => l.msg === 'config reload failed; the previous config keeps serving' && l.worker === worker);
      const [victim] = workerPids(gw.child.pid!);
      process.kill(victim!, 'SIGKILL');
      await gw.waitForLog((l) => l.msg === 'worker exited unexpectedly; starting a new one' && l.signal === 'SIGKILL');
      // The replacement reads the changed file and stops; the surviving worker serves; the admin port says why.
      await until(async () => /changed since agentgate started/.test(gw.stderr()), 10_000, () => `no refusal on stderr:\n${gw.stderr()}`);
      const readiness = await send(`${gw.adminUrl}/readyz`);
      assert.equal(readiness.status, 503);
      assert.match(readiness.json().reason, /worker \d is not running/);
      const served = await answeredWithin(5000, Array.from({ length: 10 }, () => send(`${gw.url}/v1/x`)));
      assert.deepEqual([...new Set(served.map((r) => r.status))], [200]);

      await writeFile(gw.configFile, original);
      await until(async () => (await send(`${gw.adminUrl}/readyz`)).status === 200, 15_000, () => 'the replacement never started once the file was back');
      assert.equal(workerPids(gw.child.pid!).length, WORKERS);
    } finally {
      assert.equal(await stop(gw), 0);
    }
  });

  test('SIGTERM drains the requests in flight on every worker, then the primary exits 0 with no worker left', async () => {
    const gw = await startWorkers();
    const pids = workerPids(gw.child.pid!);
    const inFlight = Promise.all(Array.from({ length: 6 }, () => send(`${gw.url}/v1/slow`)));
    await until(async () => upstream.received.filter((r) => r.url === '/v1/slow').length >= 6, 5000, () => 'the slow requests did not reach the upstream');
    gw.child.kill('SIGTERM');
    const replies = await inFlight;
    assert.deepEqual(replies.map((r) => r.status), [200, 200, 200, 200, 200, 200]);
    assert.equal(await gw.exited, 0);
    await gw.remove();
    for (const pid of pids) assert.equal(alive(pid), false, `worker ${pid} outlived its primary`);
  });

  test('workers whose primary is killed exit too, rather than serve on unsupervised', async () => {
    const gw = await startWorkers();
    const pids = workerPids(gw.child.pid!);
    gw.child.kill('SIGKILL');
    await until(async () => pids.every((pid) => !alive(pid)), 10_000, () => `workers still running: ${pids.filter(alive).join(', ')}`);
    await gw.remove();
  });

  test('a worker that cannot listen stops the whole start: the primary exits 1 and says why', async () => {
    const blocker = await startUpstream({});
    try {
      const tmp = await tempDir('agentgate-workers');
      const configFile = path.join(tmp.dir, 'gateway.yaml');
      await writeFile(configFile, config().replace('listen: 127.0.0.1:0\n', `listen: 127.0.0.1:${blocker.port}\n`));
      const gw = startCliGateway(configFile);
      await assert.rejects(gw, /exited \(1\)[\s\S]*cannot listen: bind EADDRINUSE[\s\S]*worker \d exited \(code 1\) before it listened; not starting/);
      await tmp.remove();
    } finally {
      await blocker.close();
    }
  });
});

// Throughput per core (issue 23): the gateway pinned to cores of its own (taskset), the load generator (this process)
// and the upstream pinned to the others, so that what is measured is the gateway, not the cores it shares. For each
// proxy and method: req/s at saturation (closed loop), the cores the gateway's processes used, and so req/s per core
// used; the generator's own cores are reported so a saturated generator (a lower bound, not a figure) shows.
// Asserts nothing; needs taskset (util-linux) and at least two cores.
//
//   sh scripts/node.sh test/bench/cores.ts [--gateway-cores 1] [--other-cores 0] [--duration 10] [--warmup 5] [--rounds 2]
//
// With 2 cores (the test machine) the gateway gets core 1 and everything else core 0: one worker, and two workers
// (a primary and two workers, on Redis as workers need it; Redis pinned with the others) on that one core, which shows
// what a second process costs but cannot show scaling. With 4 or more cores the gateway gets the upper half of them.
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import autocannon from 'autocannon';
import { cleanupPrefix } from '../helpers/redis.ts';
import { writeGatewayConfig } from './configs.ts';
import { ORDER } from './payloads.ts';
import { childPids, cpuSeconds, freePort, GATEWAY_CLI, option, ProcessGroup, shippedNodeFlags, waitForGateway } from './procs.ts';

const HERE = import.meta.dirname;
const cores = os.availableParallelism();
if (cores < 2) {
  console.error('cores.ts: needs at least two cores (one for the gateway, one for the rest)');
  process.exit(2);
}
// By default the gateway gets the upper half of the cores and everything else the lower half: 1 and 0 on two cores.
const half = Math.floor(cores / 2);
const span = (from: number, to: number) => (from === to ? String(from) : `${from}-${to}`);
const gatewayCores = option('gateway-cores', span(cores - half, cores - 1));
const otherCores = option('other-cores', span(0, cores - half - 1));
const duration = Number(option('duration', '10'));
const warmup = Number(option('warmup', '5'));
const rounds = Number(option('rounds', '2'));

/** Pins every thread of a running process (and so what it forks later) to a set of cores. */
function pin(pid: number, set: string): void {
  execFileSync('taskset', ['-a', '-p', '-c', set, String(pid)], { stdio: 'ignore' });
}

pin(process.pid, otherCores);
// Redis (for the workers, which need it) is one of "the others" too; its affinity is given back at the end.
const redisPid = Number(execFileSync('sh', ['-c', 'pidof redis-server || true'], { encoding: 'utf8' }).trim().split(/\s+/)[0]) || undefined;
if (redisPid) pin(redisPid, otherCores);
process.on('exit', () => {
  if (redisPid) execFileSync('taskset', ['-a', '-p', '-c', `0-${cores - 1}`, String(redisPid)], { stdio: 'ignore' });
});
const procs = new ProcessGroup();
process.on('exit', () => procs.killAllSync());
const dir = mkdtempSync(path.join(os.tmpdir(), 'agentgate-cores-'));
const { child: upstream, port: upstreamPort } = await procs.spawnNodeWithPort(path.join(HERE, 'upstream.ts'), []);
pin(upstream.pid!, otherCores);
const upstreamUrl = `http://127.0.0.1:${upstreamPort}`;

interface Target {
  name: string;
  method: 'GET' | 'POST';
  start(): Promise<{ url: string; pids: () => number[]; stop(): Promise<void> }>;
}

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const keyPrefix = `agentgate-cores-${process.pid}`;

function agentgate(name: string, profile: 'passthrough' | 'full', store: 'memory' | 'redis', workers: number, method: 'GET' | 'POST'): Target {
  return {
    name,
    method,
    async start() {
      const proxyPort = await freePort();
      const adminPort = await freePort();
      const config = writeGatewayConfig(dir, `cores-${profile}-${store}-${workers}`, {
        profile,
        upstreamUrl,
        store: store === 'memory' ? { type: 'memory' } : { type: 'redis', url: REDIS_URL, keyPrefix },
        proxyPort,
        adminPort,
        logLevel: 'info',
        workers,
      });
      const child = procs.spawn('taskset', ['-c', gatewayCores, process.execPath, ...shippedNodeFlags(), GATEWAY_CLI, '--config', config], ['ignore', 'ignore', 'inherit']);
      await waitForGateway(child, adminPort, name);
      // taskset execs node in place: the child's pid is the gateway's (the primary's, with workers).
      return { url: `http://127.0.0.1:${proxyPort}`, pids: () => [child.pid!, ...childPids(child.pid!)], stop: () => procs.stop(child) };
    },
  };
}

function bare(method: 'GET' | 'POST'): Target {
  return {
    name: 'bare http-proxy-3',
    method,
    async start() {
      const { child, port } = await procs.spawnNodeWithPort(path.join(HERE, 'bare-proxy.ts'), [upstreamUrl]);
      pin(child.pid!, gatewayCores);
      return { url: `http://127.0.0.1:${port}`, pids: () => [child.pid!], stop: () => procs.stop(child) };
    },
  };
}

function load(url: string, method: 'GET' | 'POST', seconds: number): Promise<autocannon.Result> {
  return autocannon({
    url: `${url}/bench/item`,
    connections: 32,
    duration: seconds,
    idReplacement: true,
    requests: [
      method === 'GET'
        ? { method: 'GET' }
        : { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': 'cores-[<id>]' }, body: JSON.stringify(ORDER) },
    ],
  });
}

const cpuOf = (pids: number[]) => pids.reduce((sum, pid) => sum + (cpuSeconds(pid) ?? 0), 0);

const targets: Target[] = (['GET', 'POST'] as const).flatMap((method) => [
  bare(method),
  agentgate('agentgate, passthrough, 1 process', 'passthrough', 'memory', 1, method),
  agentgate('agentgate, every policy, memory store, 1 process', 'full', 'memory', 1, method),
  // More than one worker needs the Redis store, so the pair to compare is on Redis.
  agentgate('agentgate, every policy, Redis, 1 process', 'full', 'redis', 1, method),
  agentgate('agentgate, every policy, Redis, server.workers: 2', 'full', 'redis', 2, method),
]);

console.log(`gateway on cores ${gatewayCores}; load generator and upstream on ${otherCores}; ${cores} cores; node ${process.version}; flags ${shippedNodeFlags().join(' ')}`);
const rows: string[][] = [];
for (const target of targets) {
  const readings: { rps: number; gatewayCores: number; otherCores: number; bad: number }[] = [];
  for (let round = 0; round < rounds; round++) {
    const running = await target.start();
    await load(running.url, target.method, warmup);
    const pids = running.pids();
    const gatewayBefore = cpuOf(pids);
    const otherBefore = cpuOf([process.pid, upstream.pid!]);
    const started = performance.now();
    const result = await load(running.url, target.method, duration);
    const seconds = (performance.now() - started) / 1000;
    const gatewayCpu = cpuOf(pids) - gatewayBefore;
    const otherCpu = cpuOf([process.pid, upstream.pid!]) - otherBefore;
    // Over the wall time the CPU was read across (autocannon runs a little past its duration), not the nominal duration.
    readings.push({ rps: result.requests.total / seconds, gatewayCores: gatewayCpu / seconds, otherCores: otherCpu / seconds, bad: result.non2xx + result.errors + result.timeouts });
    await running.stop();
  }
  const best = readings.reduce((a, b) => (b.rps > a.rps ? b : a));
  rows.push([
    `${target.name} ${target.method}`,
    best.rps.toFixed(0),
    best.gatewayCores.toFixed(2),
    (best.rps / best.gatewayCores).toFixed(0),
    ((best.gatewayCores * 1e6) / best.rps).toFixed(0),
    best.otherCores.toFixed(2),
    String(readings.reduce((n, r) => n + r.bad, 0)),
  ]);
  console.log(`  ${rows.at(-1)!.join('  ')}`);
}
const header = ['target', 'req/s', 'gateway cores used', 'req/s per core used', 'CPU µs/req', 'generator + upstream cores', 'non-2xx'];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
console.log(`\nbest of ${rounds} rounds, ${duration} s each after ${warmup} s, 32 connections`);
console.log(header.map((h, i) => (i === 0 ? h.padEnd(widths[i]!) : h.padStart(widths[i]!))).join(' | '));
for (const row of rows) console.log(row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | '));
await procs.stopAll();
await cleanupPrefix(REDIS_URL, keyPrefix).catch(() => undefined);
rmSync(dir, { recursive: true, force: true });

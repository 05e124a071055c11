// The trade of V8's heap sizing for the gateway (issue 23): for each set of node flags, RSS idle and under a steady
// 1,000 req/s with every policy on (GET and POST half each, memory store, default bounds), the gateway's CPU and GC
// per request at that rate, then its CPU per request and req/s at saturation (32 connections, closed loop). The
// variants run one after another in rounds, in a rotated order each round, so a slow stretch of the machine falls on
// each of them in turn; each variant's figures are the median of its rounds. Prints a table; asserts nothing.
//
//   sh scripts/node.sh test/bench/heap-flags.ts [--variants 'default;--max-semi-space-size=8'] [--rounds 3]
//                                               [--seconds 20] [--warmup 5] [--rate 1000] [--saturate 5]
import path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';
import { writeGatewayConfig } from './configs.ts';
import { ORDER } from './payloads.ts';
import { cpuSeconds, freePort, GATEWAY_CLI, gatewayGc, option, ProcessGroup, procStatusKiB, shippedNodeFlags, waitForGateway } from './procs.ts';

const HERE = import.meta.dirname;
/** Node's defaults, the shipped flags (the Dockerfile's CMD) and their neighbours. */
const DEFAULT_VARIANTS = [
  'default',
  '--max-semi-space-size=8',
  shippedNodeFlags().join(' '),
  '--max-semi-space-size=8 --heap-growing-percent=10',
  '--max-semi-space-size=4 --heap-growing-percent=20',
].join(';');
const variants = option('variants', DEFAULT_VARIANTS).split(';').map((v) => v.trim());
const rounds = Number(option('rounds', '3'));
const seconds = Number(option('seconds', '20'));
const warmupSeconds = Number(option('warmup', '5'));
const rate = Number(option('rate', '1000'));
const saturateSeconds = Number(option('saturate', '5'));

interface Reading {
  idleMiB: number;
  loadedMiB: number;
  peakMiB: number;
  steadyCpuUs: number;
  steadyGcUs: number;
  majors: number;
  saturatedCpuUs: number;
  saturatedRps: number;
  bad: number;
}

function load(url: string, method: 'GET' | 'POST', durationSeconds: number, requestsPerSecond?: number): Promise<autocannon.Result> {
  return autocannon({
    url: `${url}/bench/item`,
    connections: requestsPerSecond === undefined ? 32 : 16,
    ...(requestsPerSecond === undefined ? {} : { overallRate: requestsPerSecond }),
    duration: durationSeconds,
    idReplacement: true,
    requests: [
      method === 'GET'
        ? { method: 'GET' }
        : { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': 'bench-[<id>]' }, body: JSON.stringify(ORDER) },
    ],
  });
}

/** Both methods at once, half the rate each; undefined rate: saturation. */
async function mixed(url: string, durationSeconds: number, requestsPerSecond?: number): Promise<{ requests: number; bad: number }> {
  const half = requestsPerSecond === undefined ? undefined : requestsPerSecond / 2;
  const results = await Promise.all([load(url, 'GET', durationSeconds, half), load(url, 'POST', durationSeconds, half)]);
  return {
    requests: results.reduce((n, r) => n + r.requests.total, 0),
    bad: results.reduce((n, r) => n + r.non2xx + r.errors + r.timeouts, 0),
  };
}

const procs = new ProcessGroup();
process.on('exit', () => procs.killAllSync());
const dir = mkdtempSync(path.join(os.tmpdir(), 'agentgate-heap-flags-'));
const { port: upstreamPort } = await procs.spawnNodeWithPort(path.join(HERE, 'upstream.ts'), []);

async function measure(variant: string, index: number): Promise<Reading> {
  const proxyPort = await freePort();
  const adminPort = await freePort();
  const config = writeGatewayConfig(dir, `heap-${index}`, {
    profile: 'full',
    upstreamUrl: `http://127.0.0.1:${upstreamPort}`,
    store: { type: 'memory', defaultBounds: true },
    proxyPort,
    adminPort,
    logLevel: 'info',
    workers: 1,
  });
  const flags = variant === 'default' ? [] : variant.split(/\s+/);
  const child = procs.spawn(process.execPath, [...flags, GATEWAY_CLI, '--config', config], ['ignore', 'ignore', 'inherit']);
  const url = `http://127.0.0.1:${proxyPort}`;
  await waitForGateway(child, adminPort, variant);
  await sleep(1000);
  const idleKiB = procStatusKiB(child.pid!, 'VmRSS')!;
  await mixed(url, warmupSeconds, rate);
  const cpuBefore = cpuSeconds(child.pid!)!;
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  // An unreadable /metrics leaves the GC columns NaN rather than failing the sweep.
  const gcBefore = (await gatewayGc(adminUrl)) ?? { seconds: NaN, majors: NaN };
  const steady = await mixed(url, seconds, rate);
  const steadyCpu = cpuSeconds(child.pid!)! - cpuBefore;
  const gcAfter = (await gatewayGc(adminUrl)) ?? { seconds: NaN, majors: NaN };
  const loadedKiB = procStatusKiB(child.pid!, 'VmRSS')!;
  const peakKiB = procStatusKiB(child.pid!, 'VmHWM')!;
  let saturatedCpuUs = NaN;
  let saturatedRps = NaN;
  let bad = steady.bad;
  if (saturateSeconds > 0) {
    const satBefore = cpuSeconds(child.pid!)!;
    const saturated = await mixed(url, saturateSeconds);
    saturatedCpuUs = ((cpuSeconds(child.pid!)! - satBefore) / saturated.requests) * 1e6;
    saturatedRps = saturated.requests / saturateSeconds;
    bad += saturated.bad;
  }
  await procs.stop(child);
  return {
    idleMiB: idleKiB / 1024,
    loadedMiB: loadedKiB / 1024,
    peakMiB: peakKiB / 1024,
    steadyCpuUs: (steadyCpu / steady.requests) * 1e6,
    steadyGcUs: ((gcAfter.seconds - gcBefore.seconds) / steady.requests) * 1e6,
    majors: gcAfter.majors - gcBefore.majors,
    saturatedCpuUs,
    saturatedRps,
    bad,
  };
}

console.log(
  `every policy, memory store with default bounds; ${rate} req/s (GET and POST half each) for ${seconds} s after ${warmupSeconds} s, ` +
    `then ${saturateSeconds} s at saturation (32 connections per method); ${rounds} rounds, node ${process.version}`,
);
const readings = variants.map((): Reading[] => []);
for (let round = 0; round < rounds; round++) {
  for (let k = 0; k < variants.length; k++) {
    const index = (k + round) % variants.length;
    const reading = await measure(variants[index]!, index);
    readings[index]!.push(reading);
    console.log(`  round ${round + 1}: ${variants[index]}: loaded ${reading.loadedMiB.toFixed(0)} MiB, ${reading.steadyCpuUs.toFixed(0)} µs/req at ${rate} req/s, ${reading.saturatedCpuUs.toFixed(0)} µs/req saturated`);
  }
}

function median(values: number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const header = ['node flags', 'idle MiB', `RSS at ${rate}/s`, 'peak MiB', 'CPU µs/req', 'GC µs/req', 'major GCs', 'saturated CPU µs/req', 'saturated req/s', 'non-2xx'];
const rows = variants.map((variant, i) => {
  const r = readings[i]!;
  const m = (pick: (x: Reading) => number, digits = 0) => median(r.map(pick)).toFixed(digits);
  return [variant, m((x) => x.idleMiB), m((x) => x.loadedMiB), m((x) => x.peakMiB), m((x) => x.steadyCpuUs), m((x) => x.steadyGcUs, 1), m((x) => x.majors), m((x) => x.saturatedCpuUs), m((x) => x.saturatedRps), String(r.reduce((n, x) => n + x.bad, 0))];
});
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ');
console.log(`\nmedian of ${rounds} rounds per variant`);
console.log(line(header));
for (const row of rows) console.log(line(row));
await procs.stopAll();
rmSync(dir, { recursive: true, force: true });

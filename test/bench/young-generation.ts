// The trade of V8's young generation for the gateway (issue 23): RSS idle and under a steady 1,000 req/s with every
// policy on (GET and POST half each, memory store, default bounds), against the gateway's CPU per request, for each
// --max-semi-space-size. Prints a table; asserts nothing.
//
//   sh scripts/node.sh test/bench/young-generation.ts [--sizes 1,2,4,8,16] [--seconds 20] [--rate 1000]
import path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';
import { writeGatewayConfig } from './configs.ts';
import { ORDER } from './payloads.ts';
import { cpuSeconds, procStatusKiB, ProcessGroup } from './procs.ts';

const HERE = import.meta.dirname;
const CLI = path.resolve(HERE, '../../dist/cli.js');

function option(name: string, fallback: string): string {
  const at = process.argv.indexOf(`--${name}`);
  return at === -1 ? fallback : process.argv[at + 1]!;
}

const sizes = option('sizes', 'default,16,8,4,2,1').split(',');
const seconds = Number(option('seconds', '20'));
const rate = Number(option('rate', '1000'));
const warmupSeconds = Number(option('warmup', '5'));

/** A steady rate: autocannon's overallRate across connections enough to never be the limit at this rate. */
function steady(url: string, method: 'GET' | 'POST', requestsPerSecond: number, durationSeconds: number): Promise<autocannon.Result> {
  return autocannon({
    url: `${url}/bench/item`,
    connections: 16,
    overallRate: requestsPerSecond,
    duration: durationSeconds,
    idReplacement: true,
    requests: [
      method === 'GET'
        ? { method: 'GET' }
        : { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': 'bench-[<id>]' }, body: JSON.stringify(ORDER) },
    ],
  });
}

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

const procs = new ProcessGroup();
process.on('exit', () => procs.killAllSync());
const dir = mkdtempSync(path.join(os.tmpdir(), 'agentgate-young-'));
const { port: upstreamPort } = await procs.spawnNodeWithPort(path.join(HERE, 'upstream.ts'), []);
const rows: string[] = [];
const spaces: string[] = [];
console.log(`every policy, memory store with default bounds, ${rate} req/s (GET and POST half each) for ${seconds} s after ${warmupSeconds} s; node ${process.version}`);
for (const size of sizes) {
  const proxyPort = await freePort();
  const adminPort = await freePort();
  const config = writeGatewayConfig(dir, `young-${size}`, {
    profile: 'full',
    upstreamUrl: `http://127.0.0.1:${upstreamPort}`,
    store: { type: 'memory', defaultBounds: true },
    proxyPort,
    adminPort,
    logLevel: 'info',
    workers: 1,
  });
  const flags = size === 'default' ? [] : [`--max-semi-space-size=${size}`];
  const child = procs.spawn(process.execPath, [...flags, CLI, '--config', config], ['ignore', 'ignore', 'inherit']);
  const url = `http://127.0.0.1:${proxyPort}`;
  for (let i = 0; i < 100; i++) {
    if (await fetch(`http://127.0.0.1:${adminPort}/readyz`).then((r) => r.ok, () => false)) break;
    await sleep(100);
  }
  await sleep(1000);
  const idleKiB = procStatusKiB(child.pid!, 'VmRSS')!;
  await Promise.all([steady(url, 'GET', rate / 2, warmupSeconds), steady(url, 'POST', rate / 2, warmupSeconds)]);
  const cpuBefore = cpuSeconds(child.pid!)!;
  const [get, post] = await Promise.all([steady(url, 'GET', rate / 2, seconds), steady(url, 'POST', rate / 2, seconds)]);
  const cpu = cpuSeconds(child.pid!)! - cpuBefore;
  const loadedKiB = procStatusKiB(child.pid!, 'VmRSS')!;
  const metrics = await fetch(`http://127.0.0.1:${adminPort}/metrics`).then((r) => r.text(), () => '');
  const space = (name: string) => Number(new RegExp(`^nodejs_heap_space_size_used_bytes\\{space="${name}"\\} (\\S+)`, 'm').exec(metrics)?.[1] ?? NaN) / 1048576;
  const external = Number(/^nodejs_external_memory_bytes (\S+)/m.exec(metrics)?.[1] ?? NaN) / 1048576;
  spaces.push(`${size.padStart(8)} | new ${space('new').toFixed(1)} old ${space('old').toFixed(1)} large ${space('large_object').toFixed(1)} code ${space('code').toFixed(1)} external ${external.toFixed(1)} (MiB used, at the end of the load)`);
  const peakKiB = procStatusKiB(child.pid!, 'VmHWM')!;
  const requests = get.requests.total + post.requests.total;
  const non2xx = get.non2xx + post.non2xx + get.errors + post.errors;
  rows.push(
    `${size.padStart(8)} | ${(idleKiB / 1024).toFixed(0).padStart(9)} | ${(loadedKiB / 1024).toFixed(0).padStart(11)} | ${(peakKiB / 1024).toFixed(0).padStart(8)} | ${((cpu / requests) * 1e6).toFixed(0).padStart(11)} | ${(requests / seconds).toFixed(0).padStart(5)} | ${non2xx}`,
  );
  await procs.stop(child);
}
console.log(`semi MiB | idle MiB | loaded MiB | peak MiB | CPU µs/req | req/s | non-2xx`);
for (const row of rows) console.log(row);
for (const line of spaces) console.log(line);
await procs.stopAll();
rmSync(dir, { recursive: true, force: true });

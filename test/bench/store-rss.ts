// What the memory store's entries really cost in RSS (issue 23): the gateway (the image's node flags, every policy,
// room for a million records) takes fresh-key POSTs at a steady rate until the records it holds are counted at
// --fill MiB, while RSS and the store's own count (agentgate_memory_store_bytes) are read every few seconds. After the
// warm-up, RSS and the count grow together; the least-squares slope of RSS over the count is how many bytes of RSS
// one counted byte takes. Counting is right when it is about 1; src/store/memory.ts's HEAP_TO_RSS is set from it.
// Prints the samples and the slope; asserts nothing.
//
//   sh scripts/node.sh test/bench/store-rss.ts [--rate 1000] [--fill 96] [--warmup 10]
import path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';
import { writeGatewayConfig } from './configs.ts';
import { ORDER } from './payloads.ts';
import { freePort, GATEWAY_CLI, option, ProcessGroup, procStatusKiB, shippedNodeFlags, waitForGateway } from './procs.ts';

const HERE = import.meta.dirname;
const rate = Number(option('rate', '1000'));
const fillMiB = Number(option('fill', '96'));
const warmupSeconds = Number(option('warmup', '10'));
const flags = process.env.BENCH_NODE_FLAGS?.split(/\s+/).filter(Boolean) ?? shippedNodeFlags();

const procs = new ProcessGroup();
process.on('exit', () => procs.killAllSync());
const dir = mkdtempSync(path.join(os.tmpdir(), 'agentgate-store-rss-'));
const { port: upstreamPort } = await procs.spawnNodeWithPort(path.join(HERE, 'upstream.ts'), []);
const proxyPort = await freePort();
const adminPort = await freePort();
const config = writeGatewayConfig(dir, 'store-rss', {
  profile: 'full',
  upstreamUrl: `http://127.0.0.1:${upstreamPort}`,
  store: { type: 'memory' },
  proxyPort,
  adminPort,
  logLevel: 'info',
  workers: 1,
});
const child = procs.spawn(process.execPath, [...flags, GATEWAY_CLI, '--config', config], ['ignore', 'ignore', 'inherit']);
await waitForGateway(child, adminPort, 'store-rss');

async function counted(): Promise<number> {
  const text = await fetch(`http://127.0.0.1:${adminPort}/metrics`).then((r) => r.text());
  return Number(/^agentgate_memory_store_bytes\{part="records"\} (\S+)/m.exec(text)?.[1] ?? NaN) / 2 ** 20;
}

const load = autocannon({
  url: `http://127.0.0.1:${proxyPort}/bench/item`,
  connections: 16,
  overallRate: rate,
  duration: 3600,
  idReplacement: true,
  requests: [{ method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': 'store-rss-[<id>]' }, body: JSON.stringify(ORDER) }],
}, () => {});
console.log(`node flags: ${flags.join(' ') || '(node defaults)'}; ${rate} fresh-key POST/s until ${fillMiB} MiB counted; node ${process.version}`);
console.log('   s | counted MiB | RSS MiB');
const samples: [number, number][] = [];
const started = performance.now();
for (;;) {
  await sleep(5000);
  const seconds = (performance.now() - started) / 1000;
  const count = await counted();
  const rss = procStatusKiB(child.pid!, 'VmRSS')! / 1024;
  console.log(`${seconds.toFixed(0).padStart(4)} | ${count.toFixed(1).padStart(11)} | ${rss.toFixed(1).padStart(7)}`);
  if (seconds >= warmupSeconds) samples.push([count, rss]);
  if (count >= fillMiB) break;
}
load.stop();
const n = samples.length;
const mx = samples.reduce((a, [x]) => a + x, 0) / n;
const my = samples.reduce((a, [, y]) => a + y, 0) / n;
const slope = samples.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0) / samples.reduce((a, [x]) => a + (x - mx) ** 2, 0);
console.log(`\nRSS grew ${slope.toFixed(2)} MiB per MiB counted (least squares over ${n} samples after ${warmupSeconds} s): counting is ${slope > 1.1 ? 'too low' : slope < 0.9 ? 'too high' : 'about right'}`);
await procs.stopAll();
rmSync(dir, { recursive: true, force: true });

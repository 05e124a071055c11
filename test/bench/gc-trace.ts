// What the gateway allocates and keeps per request, read from V8's own account of every collection (--trace-gc-nvp):
// bytes allocated and promoted (survived two young collections, so freed only by a major one) per young collection
// and per request, the young collections' pause, and how many major collections the load caused. The bench's GC
// µs/req says that collection costs; this says why. A gateway's per-request objects should die young: a promotion
// of more than a few KiB per young collection means something keeps them past the next one (docs/performance.md,
// "What a request keeps alive"). GET on one route, at a fixed rate or at saturation; prints a summary, asserts nothing.
//
//   sh scripts/node.sh test/bench/gc-trace.ts [--profile passthrough|full] [--rate 1000 | --rate 0 (saturation)]
//                                             [--connections 8] [--seconds 10] [--bare] [--flags '...']
import path from 'node:path';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import autocannon from 'autocannon';
import { writeGatewayConfig, type GatewayProfile } from './configs.ts';
import { freePort, GATEWAY_CLI, option, ProcessGroup, shippedNodeFlags, waitForGateway } from './procs.ts';

const HERE = import.meta.dirname;
const profile = option('profile', 'passthrough') as GatewayProfile;
const rate = Number(option('rate', '1000'));
const connections = Number(option('connections', '8'));
const seconds = Number(option('seconds', '10'));
const warmupSeconds = Number(option('warmup', '3'));
/** B instead of agentgate: the bare http-proxy-3 proxy, for what node's HTTP machinery alone keeps. */
const bare = process.argv.includes('--bare');
const flags = option('flags', shippedNodeFlags().join(' ')).split(/\s+/).filter(Boolean);

interface Collection {
  atMs: number;
  kind: string;
  pauseMs: number;
  allocated: number;
  promoted: number;
}

/** One --trace-gc-nvp line: `[pid:isolate:0]   1234 ms: pause=0.4 ... gc=s ... allocated=N promoted=N ...`. */
function parseLine(line: string): Collection | undefined {
  const at = /\s(\d+) ms: /.exec(line);
  const fields = new Map(line.split(' ').map((pair) => pair.split('=') as [string, string]));
  const kind = fields.get('gc');
  if (!at || !kind) return undefined;
  return { atMs: Number(at[1]), kind, pauseMs: Number(fields.get('pause')), allocated: Number(fields.get('allocated')), promoted: Number(fields.get('promoted')) };
}

const procs = new ProcessGroup();
process.on('exit', () => procs.killAllSync());
const dir = mkdtempSync(path.join(os.tmpdir(), 'agentgate-gc-trace-'));
const trace = path.join(dir, 'gc.txt');
const { port: upstreamPort } = await procs.spawnNodeWithPort(path.join(HERE, 'upstream.ts'), []);
const upstreamUrl = `http://127.0.0.1:${upstreamPort}`;
const traceFlags = [...flags, '--trace-gc', '--trace-gc-nvp'];

let url: string;
let child;
if (bare) {
  child = procs.spawn(process.execPath, [...traceFlags, path.join(HERE, 'bare-proxy.ts'), upstreamUrl], ['ignore', openSync(trace, 'w'), 'inherit', 'ipc']);
  const port = await new Promise<number>((resolve) => child!.once('message', (message: { port: number }) => resolve(message.port)));
  url = `http://127.0.0.1:${port}`;
} else {
  const proxyPort = await freePort();
  const adminPort = await freePort();
  const config = writeGatewayConfig(dir, 'gateway', { profile, upstreamUrl, store: { type: 'memory', defaultBounds: true }, proxyPort, adminPort, logLevel: 'warn', workers: 1 });
  child = procs.spawn(process.execPath, [...traceFlags, GATEWAY_CLI, '--config', config], ['ignore', openSync(trace, 'w'), 'inherit']);
  await waitForGateway(child, adminPort, 'gc-trace');
  url = `http://127.0.0.1:${proxyPort}`;
}

const load = (duration: number) =>
  autocannon({ url: `${url}/bench/item`, connections, duration, ...(rate > 0 ? { overallRate: rate } : {}) });
/** Every collection the trace holds so far, in order. */
const traced = (): Collection[] => readFileSync(trace, 'utf8').split('\n').map(parseLine).filter((c): c is Collection => c !== undefined);
await load(warmupSeconds);
const startMs = traced().at(-1)?.atMs ?? 0;
const result = await load(seconds);
// Read before the gateway is stopped: its shutdown is not part of the load.
const collections = traced().filter((c) => c.atMs > startMs);
await procs.stop(child);

const young = collections.filter((c) => c.kind === 's');
const majors = collections.filter((c) => c.kind !== 's').length;
const requests = result.requests.total;
const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
const allocated = sum(young.map((c) => c.allocated));
const promoted = sum(young.map((c) => c.promoted));
const kib = (bytes: number) => (bytes / 1024).toFixed(1);

console.log(
  `${bare ? 'bare http-proxy-3' : `agentgate, ${profile}`}; GET ${rate > 0 ? `at ${rate} req/s` : 'at saturation'}, ${connections} connections, ` +
    `${seconds} s after ${warmupSeconds} s; node ${process.version} ${flags.join(' ')}`,
);
console.log(`requests                      ${requests} (${(requests / seconds).toFixed(0)} req/s), bad ${result.non2xx + result.errors}`);
console.log(`young collections             ${young.length}, pause ${(sum(young.map((c) => c.pauseMs)) / Math.max(1, young.length)).toFixed(2)} ms each`);
console.log(`major collections             ${majors}`);
console.log(`allocated per young / request ${kib(allocated / Math.max(1, young.length))} KiB / ${kib(allocated / Math.max(1, requests))} KiB`);
console.log(`promoted per young / request  ${kib(promoted / Math.max(1, young.length))} KiB / ${kib(promoted / Math.max(1, requests))} KiB`);
rmSync(dir, { recursive: true, force: true });
process.exit(0);

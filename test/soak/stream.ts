// Streaming: a large response and a large upload through a passthrough route, neither held in memory by anyone. Each side
// hashes what it sent or received; the gateway's RSS is sampled every 20 ms (and its VmHWM peak, reset before each
// transfer) to measure how much it grew while the bytes went through.
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { resetPeakRss } from '../bench/procs.ts';
import { HERE, killOnExit, logProblems, mib, procStatusKiB, ProcessGroup, round, sleep, spawnGateway } from './common.ts';
import { patternChunks } from './pattern.ts';

export interface StreamOptions {
  /** Bytes of the download and of the upload. */
  bytes: number;
  /** Most the gateway's RSS may grow during one transfer. */
  limitMib: number;
  /** Also move the bytes through a bare http-proxy-3 proxy (the library agentgate builds on), for comparison. */
  baseline?: boolean;
  keep?: boolean;
  progress?: (line: string) => void;
}

export interface TransferResult {
  direction: 'download' | 'upload';
  bytes: number;
  /** Bytes the receiving side counted, and whether its SHA-256 equals the sender's. */
  received: number;
  intact: boolean;
  seconds: number;
  mib_per_second: number;
  rss_before_mib: number;
  rss_peak_mib: number;
  rss_growth_mib: number;
  error?: string;
}

export interface StreamResult {
  bytes: number;
  limit_mib: number;
  transfers: TransferResult[];
  /** The same transfers through the bare http-proxy-3 proxy (test/bench/bare-proxy.ts), when asked for. */
  baseline_transfers?: TransferResult[];
  crashed: boolean;
  exit_code: number | null;
  log_problems: Record<string, number>;
  ok: boolean;
}

export async function runStream(options: StreamOptions): Promise<StreamResult> {
  const say = options.progress ?? (() => {});
  const procs = new ProcessGroup();
  const unregister = killOnExit(() => procs.killAllSync());
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'agentgate-stream-'));
  try {
    const { port } = await procs.spawnNodeWithPort(path.join(HERE, 'upstream.ts'), []);
    const upstreamUrl = `http://127.0.0.1:${port}`;
    mkdirSync(path.join(tmp, 'config'));
    const configFile = path.join(tmp, 'config', 'gateway.yaml');
    writeFileSync(
      configFile,
      `version: 1
server: {listen: 127.0.0.1:0, admin_listen: 127.0.0.1:0}
upstreams:
  files: {url: '${upstreamUrl}', timeout: 30s}
routes:
  - {name: passthrough, match: {path: /stream/*}, upstream: files}
`,
    );
    const gw = await spawnGateway(procs, { label: 'gateway', configFile, dir: tmp, waitReady: true });
    const transfers = await transfersThrough({ pid: gw.pid, url: gw.url }, 'gateway', upstreamUrl, options, say);
    let baseline: TransferResult[] | undefined;
    if (options.baseline) {
      const bare = await procs.spawnNodeWithPort(path.join(HERE, '../bench/bare-proxy.ts'), [upstreamUrl]);
      baseline = await transfersThrough({ pid: bare.child.pid!, url: `http://127.0.0.1:${bare.port}` }, 'bare http-proxy-3', upstreamUrl, options, say);
    }
    const crashed = !gw.alive();
    const exit = crashed ? await gw.exited : await gw.stop();
    const problems = await logProblems(gw.logFile);
    const errorLines = problems.unexpected_errors;
    return {
      bytes: options.bytes,
      limit_mib: options.limitMib,
      transfers,
      ...(baseline ? { baseline_transfers: baseline } : {}),
      crashed,
      exit_code: exit.code,
      log_problems: problems.counts,
      ok: !crashed && exit.code === 0 && errorLines === 0 && transfers.every((t) => t.intact && t.rss_growth_mib < options.limitMib),
    };
  } finally {
    await procs.stopAll();
    procs.killAllSync();
    unregister();
    if (!options.keep) rmSync(tmp, { recursive: true, force: true });
  }
}

interface Proxy {
  pid: number;
  url: string;
}

/** A warm-up, then the download and the upload, each measured. */
async function transfersThrough(proxy: Proxy, label: string, upstreamUrl: string, options: StreamOptions, say: (line: string) => void): Promise<TransferResult[]> {
  // Warm-up: code paths compiled, pools and buffers allocated, so the measurement sees only what a transfer holds.
  for (let i = 0; i < 2; i++) {
    await download(proxy, upstreamUrl, 8 * 2 ** 20);
    await upload(proxy, 8 * 2 ** 20);
  }
  const transfers: TransferResult[] = [];
  for (const direction of ['download', 'upload'] as const) {
    const result = await measured(proxy, direction, options.bytes, () => (direction === 'download' ? download(proxy, upstreamUrl, options.bytes) : upload(proxy, options.bytes)));
    transfers.push(result);
    say(
      `${direction.padEnd(8)} ${mib(result.bytes)} MiB in ${result.seconds} s (${result.mib_per_second} MiB/s), ${result.intact ? 'intact' : `NOT INTACT (${result.received} bytes received${result.error ? `, ${result.error}` : ''})`}; ` +
        `${label} RSS ${result.rss_before_mib} → peak ${result.rss_peak_mib} MiB: +${result.rss_growth_mib} MiB${label === 'gateway' ? ` (limit ${options.limitMib})` : ''}`,
    );
  }
  return transfers;
}

interface Transfer {
  received: number;
  intact: boolean;
  error?: string;
}

/** Runs one transfer while sampling the proxy's RSS; the peak is the larger of the samples and VmHWM (reset before). */
async function measured(gw: Proxy, direction: 'download' | 'upload', bytes: number, run: () => Promise<Transfer>): Promise<TransferResult> {
  await sleep(200);
  const before = procStatusKiB(gw.pid, 'VmRSS') ?? NaN;
  const hwmReset = resetPeakRss(gw.pid);
  let peak = before;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      peak = Math.max(peak, procStatusKiB(gw.pid, 'VmRSS') ?? 0);
      await sleep(20);
    }
  })();
  const started = process.hrtime.bigint();
  let transfer: Transfer;
  try {
    transfer = await run();
  } catch (err) {
    transfer = { received: 0, intact: false, error: (err as Error).message };
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  sampling = false;
  await sampler;
  if (hwmReset) peak = Math.max(peak, procStatusKiB(gw.pid, 'VmHWM') ?? 0);
  return {
    direction,
    bytes,
    received: transfer.received,
    intact: transfer.intact,
    seconds: round(seconds, 2),
    mib_per_second: round(transfer.received / 2 ** 20 / seconds, 0),
    rss_before_mib: round(before / 1024, 1),
    rss_peak_mib: round(peak / 1024, 1),
    rss_growth_mib: round((peak - before) / 1024, 1),
    ...(transfer.error ? { error: transfer.error } : {}),
  };
}

/** GETs `bytes` through the gateway, hashing them as they arrive, then asks the upstream what it sent. */
function download(gw: Proxy, upstreamUrl: string, bytes: number): Promise<Transfer> {
  const id = randomBytes(8).toString('hex');
  return new Promise<Transfer>((resolve, reject) => {
    const req = request(`${gw.url}/stream/download?bytes=${bytes}&id=${id}`, { agent: false }, (res) => {
      const hash = createHash('sha256');
      let received = 0;
      res.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        received += chunk.length;
      });
      res.on('error', reject);
      res.on('end', () => {
        const digest = hash.digest('hex');
        if (res.statusCode !== 200 || !res.complete) return resolve({ received, intact: false, error: `status ${res.statusCode}, complete ${res.complete}` });
        fetch(`${upstreamUrl}/__transfer/${id}`)
          .then((r) => r.json() as Promise<{ bytes: number; sha256: string }>)
          .then((sent) => resolve({ received, intact: sent.bytes === bytes && received === bytes && sent.sha256 === digest }), reject);
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** POSTs `bytes` (chunked, generated as they go) through the gateway; the upstream answers with what it counted and hashed. */
async function upload(gw: Proxy, bytes: number): Promise<Transfer> {
  const hash = createHash('sha256');
  const body = Readable.from(
    (function* () {
      for (const chunk of patternChunks(bytes)) {
        hash.update(chunk);
        yield chunk;
      }
    })(),
    { objectMode: false },
  );
  let answer = '';
  let status = 0;
  const req = request(`${gw.url}/stream/upload?id=${randomBytes(8).toString('hex')}`, { method: 'POST', agent: false, headers: { 'content-type': 'application/octet-stream' } });
  const response = new Promise<void>((resolve, reject) => {
    req.on('response', (res) => {
      status = res.statusCode ?? 0;
      res.setEncoding('utf8');
      res.on('data', (c: string) => (answer += c));
      res.on('end', resolve);
      res.on('error', reject);
    });
    req.on('error', reject);
  });
  await pipeline(body, req);
  await response;
  const sent = hash.digest('hex');
  if (status !== 200) return { received: 0, intact: false, error: `status ${status}: ${answer.slice(0, 200)}` };
  const got = JSON.parse(answer) as { bytes: number; sha256: string };
  return { received: got.bytes, intact: got.bytes === bytes && got.sha256 === sent };
}

// `npm run bench`: agentgate against the upstream itself, a bare http-proxy-3 proxy and nginx (issue 7) and the
// do-it-yourself fastify and express stacks (issue 23), plus the rate limiter's cost (issue 4) and the
// response-inspection layer's cost (issue 5); and, with --open-loop, the latency agentgate adds at a fixed request rate
// (issue 23). Prints a report and writes bench-results/latest.json. Targets are printed, never asserted: the exit code
// is 0 unless a scenario could not run.
//
//   npm run bench                   every scenario, 5 s warm-up + 5 s measured, 32 connections
//   npm run bench -- --quick        every scenario for ~1 s (smoke check)
//   npm run bench -- --only 'B|D'   scenarios whose id matches the regular expression
//   npm run bench -- --open-loop    open-loop latency at 1,000 req/s (upstream, agentgate on memory and on Redis)
//   npm run bench -- --help         all options and their environment variables
//   npm run bench -- --baseline DIR another build (sh scripts/bench-baseline.sh REF) against this one, side by side
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { credentialHeaders, writeGatewayConfig, type GatewayProfile } from './configs.ts';
import { runLoad, stopLoad, type LoadResult } from './load.ts';
import { findNginx, nginxVersion, readErrorLog, writeNginxConfig } from './nginx.ts';
import { ORDER } from './payloads.ts';
import { childPids, cpuSeconds, machineFacts, machineCpu, mainThreadCpuSeconds, tcpActiveOpens, peakRssKiB, procStatusKiB, ProcessGroup, resetPeakRss, shippedNodeFlags, freePort, gatewayGc } from './procs.ts';
import { runOpenLoop, stopOpenLoop, type Quantiles } from './open-loop.ts';
import {
  analyse,
  analyseOpenLoop,
  compareBuilds,
  formatBuildComparison,
  formatIssue4,
  formatIssue5,
  formatOpenLoop,
  formatRatios,
  formatResults,
  formatSliceRatios,
  formatTargets,
  median,
  type BuildComparison,
  type LatencyQuantiles,
  type OpenLoopScenarioResult,
  type ScenarioResult,
  type TargetResult,
} from './report.ts';
import { BLOB_SIZES_KIB, OPEN_LOOP_SCENARIOS, SCENARIOS, TARGETS, type Scenario } from './scenarios.ts';
import { calibrateSchemaCheck } from './calibrate.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
/** The node flags of the image's CMD (Dockerfile), read from there so the two cannot drift. */
const SHIPPED_NODE_FLAGS = shippedNodeFlags();
const CLI = path.join(ROOT, 'dist/cli.js');
const HERE = import.meta.dirname;

const HELP = `Usage: npm run bench [-- options]

  --quick               every scenario for ~1 s (0.5 s warm-up)            BENCH_QUICK=1
  --duration SECONDS    measured time per scenario (default 5)              BENCH_DURATION
  --warmup SECONDS      load before each measurement (default 5: a fresh Node process needs about that long at
                        full load to compile its hot code and size its heap; see docs/performance.md)   BENCH_WARMUP
  --connections N       concurrent connections (default 32)                 BENCH_CONNECTIONS
  --rounds N            run the whole list N times and report each scenario's fastest round, with the
                        req/s of every round (default 1; use 3-5 on a noisy machine)   BENCH_ROUNDS
  --only REGEX          run only scenarios whose id matches, e.g. 'B|D'     BENCH_ONLY
  --out FILE            JSON results (default bench-results/latest.json)    BENCH_OUT
  --cpu-prof DIR        run agentgate, the bare proxy and the stacks under node --cpu-prof, profiles into DIR
                        (summarise one: sh scripts/node.sh test/bench/cpuprofile-top.ts FILE)   BENCH_CPU_PROF
  --log-level LEVEL     agentgate's logging.level (default info, as issue 7 asks; silent isolates the cost of logs)  BENCH_LOG_LEVEL
  --interleave N        the targets only (issues 7 and 23): the two scenarios of each target run side by side and are
                        measured in N alternating slices of --duration/N seconds (over, of, of, over, ...), so the
                        machine's drift falls on both alike (e.g. --interleave 10 --duration 10)   BENCH_INTERLEAVE
  --open-loop [RATE]    open-loop latency (issue 23): requests sent on a fixed schedule of RATE per second (default
                        1000), whether or not earlier ones were answered, latency measured from each request's scheduled
                        time (so queueing behind a slow answer is counted, not omitted), to the upstream directly (A) and
                        to agentgate with every policy on the memory store, default bounds (D) and on Redis (E), GET then
                        POST: each one --warmup seconds at the same rate, then --duration seconds measured (a longer
                        --duration steadies p99.9: at 5 s only 5 of 5,000 samples lie above it). Reports p50, p90, p99,
                        p99.9 and max, the latency added over A at p50 and p99, agentgate's RSS idle, at its peak while
                        measured and at the end, and CPU µs/req, against issue 23's targets. The generator runs in this
                        process, on the same cores as the process under test; its own lateness is reported (send lag).
                        On its own it runs only this; with --interleave N, after the targets, in the same report and
                        JSON. --only picks among ${OPEN_LOOP_SCENARIOS.map((s) => s.id).join(' ')}.   BENCH_OPEN_LOOP=RATE
  --baseline DIR        prove a change is not slower: DIR is another checkout with its dist/ built (make one with
                        sh scripts/bench-baseline.sh REF); its gateway and this checkout's run side by side on the same
                        config, load and upstream, measured in --interleave alternating slices (default 10 slices of a
                        20 s --duration), and the report gives old and new req/s and CPU µs/req with new/old ratios.
                        Scenarios: C and D (passthrough, every policy), or the agentgate ones --only picks   BENCH_BASELINE
  REDIS_URL             Redis for E and the Redis rate-limit figure (default redis://127.0.0.1:6379)
  BENCH_NGINX           the nginx binary (default /usr/sbin/nginx, then nginx on PATH); G is skipped without one
  AGENTGATE_REQUIRE_REDIS=1   a missing Redis fails the run instead of skipping E and the Redis rate-limit figure

Scenarios: ${SCENARIOS.map((s) => s.id).join(' ')}
  (H and X: the fastify and the express stack of issue 23, test/bench/stacks/; docs/performance.md describes the rest)`;

interface Options {
  durationSeconds: number;
  warmupSeconds: number;
  connections: number;
  rounds: number;
  quick: boolean;
  /** --interleave: slices per scenario; 0 runs every scenario once after another. */
  interleave: number;
  /** --baseline: the other checkout (its dist/cli.js is the old build), measured against this one. */
  baseline: string | undefined;
  /** --open-loop: requests per second of the open-loop latency run; 0 runs none. */
  openLoop: number;
  only: RegExp | undefined;
  out: string;
  cpuProfDir: string | undefined;
  logLevel: string;
  redisUrl: string;
}

function parseOptions(argv: string[], env: NodeJS.ProcessEnv): Options {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') {
      process.stdout.write(`${HELP}\n`);
      process.exit(0);
    }
    if (arg === '--quick') {
      flags.set('quick', '1');
      continue;
    }
    // --open-loop takes an optional rate: --open-loop, --open-loop 2000, --open-loop=2000.
    if (arg === '--open-loop') {
      const rate = argv[i + 1];
      flags.set('open-loop', rate !== undefined && /^\d+(\.\d+)?$/.test(rate) ? argv[++i]! : String(DEFAULT_OPEN_LOOP_RATE));
      continue;
    }
    const match = /^--(duration|warmup|connections|rounds|only|out|cpu-prof|log-level|interleave|baseline|open-loop)(?:=(.*))?$/.exec(arg);
    if (!match) throw new Error(`unknown argument '${arg}' (see --help)`);
    const value = match[2] ?? argv[++i];
    if (value === undefined) throw new Error(`${arg} needs a value`);
    flags.set(match[1]!, value);
  }
  const pick = (flag: string, envName: string) => flags.get(flag) ?? (env[envName] || undefined);
  const quick = pick('quick', 'BENCH_QUICK') === '1';
  const number = (flag: string, envName: string, fallback: number, min: number): number => {
    const raw = pick(flag, envName);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!Number.isFinite(value) || value < min) throw new Error(`--${flag} must be a number ≥ ${min}, got '${raw}'`);
    return value;
  };
  const only = pick('only', 'BENCH_ONLY');
  const cpuProf = pick('cpu-prof', 'BENCH_CPU_PROF');
  const baseline = pick('baseline', 'BENCH_BASELINE');
  // Builds compared side by side need many slices for a spread, each long enough for /proc's 10 ms CPU ticks: by
  // default 10 slices of 2 s (the duration's default below).
  const interleave = Math.round(number('interleave', 'BENCH_INTERLEAVE', baseline === undefined ? 0 : 10, 0));
  if (baseline !== undefined && interleave < 1) throw new Error('--baseline measures in alternating slices: --interleave must be at least 1');
  const openLoop = number('open-loop', 'BENCH_OPEN_LOOP', 0, 0);
  if (openLoop > 0 && baseline !== undefined) throw new Error('--open-loop and --baseline cannot be combined');
  return {
    quick,
    durationSeconds: number('duration', 'BENCH_DURATION', quick ? 1 : baseline === undefined ? 5 : 20, 0.2),
    warmupSeconds: number('warmup', 'BENCH_WARMUP', quick ? 0.5 : 5, 0),
    connections: Math.round(number('connections', 'BENCH_CONNECTIONS', 32, 1)),
    rounds: Math.round(number('rounds', 'BENCH_ROUNDS', 1, 1)),
    only: only === undefined ? (baseline === undefined ? undefined : BASELINE_SCENARIOS) : new RegExp(only),
    out: path.resolve(ROOT, pick('out', 'BENCH_OUT') ?? 'bench-results/latest.json'),
    cpuProfDir: cpuProf === undefined ? undefined : path.resolve(cpuProf),
    logLevel: pick('log-level', 'BENCH_LOG_LEVEL') ?? 'info',
    redisUrl: env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    interleave,
    baseline: baseline === undefined ? undefined : path.resolve(baseline),
    openLoop,
  };
}

/** --open-loop without a rate: issue 23's realistic load. */
const DEFAULT_OPEN_LOOP_RATE = 1000;

/** --baseline without --only: the passthrough route (C) and the route with every policy (D), GET and POST. */
const BASELINE_SCENARIOS = /^[CD]-(GET|POST)$/;

// ---------------------------------------------------------------------------------------------------------------
// Redis

function redisClient(url: string): Redis {
  const client = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 1000, enableOfflineQueue: false });
  client.on('error', () => {});
  return client;
}

async function redisVersion(url: string): Promise<string | undefined> {
  const client = redisClient(url);
  try {
    await client.connect();
    const info = await client.info('server');
    return /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
  } catch {
    return undefined;
  } finally {
    client.disconnect();
  }
}

/** Redis's own CPU seconds (INFO cpu), to show how busy it was during a scenario. */
async function redisCpuSeconds(url: string): Promise<number | undefined> {
  const client = redisClient(url);
  try {
    await client.connect();
    const info = await client.info('cpu');
    const user = Number(/used_cpu_user:([\d.]+)/.exec(info)?.[1]);
    const sys = Number(/used_cpu_sys:([\d.]+)/.exec(info)?.[1]);
    return Number.isFinite(user + sys) ? user + sys : undefined;
  } catch {
    return undefined;
  } finally {
    client.disconnect();
  }
}

async function deleteRedisPrefix(url: string, prefix: string): Promise<number> {
  const client = redisClient(url);
  let deleted = 0;
  try {
    await client.connect();
    const match = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}:*`;
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', match, 'COUNT', 1000);
      if (keys.length > 0) deleted += await client.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    client.disconnect();
  }
  return deleted;
}

// ---------------------------------------------------------------------------------------------------------------
// The processes under test

interface Running {
  url: string;
  /** The processes whose RSS and CPU are measured, added up (nginx: its worker; agentgate with workers: primary and workers). */
  pids(): number[];
  adminUrl?: string;
  /** Redis key prefix this process writes under, deleted after the scenario. */
  redisPrefix?: string;
  /** agentgate's log file. */
  logFile?: string;
  describeFailure(): string;
  stop(): Promise<void>;
}

/** Two scenarios measured in alternating slices: each side's combined result, and the slices it was combined from. */
interface InterleavedPair {
  of: ScenarioResult;
  over: ScenarioResult;
  /** req/s of `of` ÷ `over`, slice by slice. */
  sliceRatios: number[];
  slices: { of: ScenarioResult[]; over: ScenarioResult[] };
}

class Bench {
  readonly procs = new ProcessGroup();
  readonly tmp = mkdtempSync(path.join(os.tmpdir(), 'agentgate-bench-'));
  readonly runId = `${process.pid}-${randomBytes(3).toString('hex')}`;
  readonly redisPrefixes = new Set<string>();
  upstream: { url: string; pid: number } | undefined;
  interrupted = false;
  readonly options: Options;

  constructor(options: Options) {
    this.options = options;
  }

  async startUpstream(): Promise<void> {
    const { child, port } = await this.procs.spawnNodeWithPort(path.join(HERE, 'upstream.ts'), []);
    this.upstream = { url: `http://127.0.0.1:${port}`, pid: child.pid! };
  }

  async start(s: Scenario): Promise<Running> {
    const upstream = this.upstream!;
    switch (s.target.kind) {
      case 'upstream':
        return { url: upstream.url, pids: () => [upstream.pid], describeFailure: () => '', stop: async () => {} };
      case 'bare': {
        const args = s.target.gatewayHeaders ? [upstream.url, '--gateway-headers'] : [upstream.url];
        const { child, port } = await this.procs.spawnNodeWithPort(path.join(HERE, 'bare-proxy.ts'), args, this.cpuProfArgs('bare-proxy', s));
        return { url: `http://127.0.0.1:${port}`, pids: () => [child.pid!], describeFailure: () => '', stop: () => this.procs.stop(child) };
      }
      case 'nginx':
        return this.startNginx(s);
      case 'stack': {
        const script = path.join(HERE, 'stacks', `${s.target.stack}.ts`);
        const { child, port } = await this.procs.spawnNodeWithPort(script, [upstream.url], this.cpuProfArgs(`${s.target.stack}-stack`, s));
        return { url: `http://127.0.0.1:${port}`, pids: () => [child.pid!], describeFailure: () => '', stop: () => this.procs.stop(child) };
      }
      case 'agentgate':
        return this.startGateway(s, s.target.profile, s.target.store, s.target.workers ?? 1, s.target.cli ?? CLI);
    }
  }

  /** --cpu-prof: node flags that write the process's profile on exit (agentgate, the bare proxy B, the stacks H and X). */
  private cpuProfArgs(label: string, s: Scenario): string[] {
    const dir = this.options.cpuProfDir;
    return dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${label}-${s.id}-${Date.now()}.cpuprofile`] : [];
  }

  private async startNginx(s: Scenario): Promise<Running> {
    const binary = findNginx()!;
    const port = await freePort();
    const upstreamPort = Number(new URL(this.upstream!.url).port);
    const { prefix, conf, errorLog } = writeNginxConfig(path.join(this.tmp, s.id), port, upstreamPort);
    let stderr = '';
    const child = this.procs.spawn(binary, ['-p', prefix, '-c', conf, '-e', errorLog], ['ignore', 'ignore', 'pipe']);
    child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    const describeFailure = () => `${stderr}${readErrorLog(errorLog)}`;
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`nginx exited (${child.exitCode}) at start:\n${describeFailure()}`);
      const workers = childPids(child.pid!);
      if (workers.length > 0 && (await answers(`${url}/bench/item`))) {
        return { url, pids: () => [workers[0]!], describeFailure, stop: () => this.procs.stop(child) };
      }
      if (Date.now() > deadline) throw new Error(`nginx did not answer within 10 s:\n${describeFailure()}`);
      await sleep(50);
    }
  }

  private async startGateway(s: Scenario, profile: GatewayProfile, storeType: 'memory' | 'redis', workers: number, cli: string): Promise<Running> {
    const dir = path.join(this.tmp, s.id);
    // The config gets a folder of its own: agentgate watches its config's folder, and the log file changes constantly.
    const configDir = path.join(dir, 'config');
    mkdirSync(configDir, { recursive: true });
    const redisPrefix = storeType === 'redis' ? `agentgate-bench-${this.runId}-${s.id}` : undefined;
    if (redisPrefix) this.redisPrefixes.add(redisPrefix);
    // Fixed free ports rather than port 0, so readiness does not depend on reading the logs (--log-level silent).
    const proxyPort = await freePort();
    const adminPort = await freePort();
    const configFile = writeGatewayConfig(configDir, 'gateway', {
      profile,
      upstreamUrl: this.upstream!.url,
      store: {
        type: storeType,
        url: this.options.redisUrl,
        ...(redisPrefix ? { keyPrefix: redisPrefix } : {}),
        ...(s.target.kind === 'agentgate' && s.target.defaultStoreBounds ? { defaultBounds: true } : {}),
      },
      proxyPort,
      adminPort,
      logLevel: this.options.logLevel,
      workers,
    });
    // Info logs go to a file, as they would in production (JSON lines on stdout, redirected).
    const logFile = path.join(dir, 'gateway.log');
    const errFile = path.join(dir, 'gateway.err');
    const out = openSync(logFile, 'w');
    const err = openSync(errFile, 'w');
    // The node flags agentgate ships with (the image's CMD), so the bench measures what users run; BENCH_NODE_FLAGS
    // (space-separated) replaces them, e.g. to weigh another young-generation size.
    const nodeArgs = [...(process.env.BENCH_NODE_FLAGS?.split(' ').filter(Boolean) ?? SHIPPED_NODE_FLAGS), ...this.cpuProfArgs('agentgate', s)];
    const child = this.procs.spawn(process.execPath, [...nodeArgs, cli, '--config', configFile], ['ignore', out, err]);
    closeSync(out);
    closeSync(err);
    const describeFailure = () =>
      `${readText(errFile)}${readText(logFile)
        .split('\n')
        .filter((l) => /"level":"(error|fatal|warn)"/.test(l))
        .slice(0, 20)
        .join('\n')}`;
    const url = `http://127.0.0.1:${proxyPort}`;
    const adminUrl = `http://127.0.0.1:${adminPort}`;
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`agentgate exited (${child.exitCode}) at start:\n${describeFailure()}`);
      const ready = await fetch(`${adminUrl}/readyz`).then(
        async (r) => (await r.arrayBuffer(), r.status === 200),
        () => false,
      );
      if (ready && (await answers(`${url}/_agentgate/errors`))) break;
      if (Date.now() > deadline) throw new Error(`agentgate did not become ready within 15 s (${adminUrl}/readyz):\n${describeFailure()}`);
      await sleep(50);
    }
    return {
      url,
      pids: () => [child.pid!, ...childPids(child.pid!)],
      adminUrl,
      logFile,
      ...(redisPrefix ? { redisPrefix } : {}),
      describeFailure,
      stop: () => this.procs.stop(child, 10_000),
    };
  }

  // -------------------------------------------------------------------------------------------------------------

  async run(s: Scenario): Promise<ScenarioResult> {
    const result = freshResult(s);
    const running = await this.start(s);
    try {
      await this.measure(s, running, result, this.options);
    } catch (err) {
      throw withDetail(err, running);
    } finally {
      await this.finish(s, running, result);
    }
    return result;
  }

  /**
   * --interleave: the two scenarios of one target run side by side, both warmed up, then measured in `slices`
   * alternating slices (over, of, of, over, over, ...), so that whatever the machine does over seconds or minutes (CPU
   * stolen by the hypervisor, other tenants) falls on both alike. Each side's figures add up its slices; the slices
   * themselves are returned too (--baseline compares them pair by pair).
   */
  async runInterleaved(of: Scenario, over: Scenario, slices: number): Promise<InterleavedPair> {
    const sides = [over, of].map((s) => ({ s, result: freshResult(s), slices: [] as ScenarioResult[], running: undefined as Running | undefined }));
    const { warmupSeconds, durationSeconds, connections } = this.options;
    let current: Running | undefined;
    try {
      for (const side of sides) {
        // A start that fails has no process of its own to describe; the other side's would mislead.
        current = undefined;
        side.running = current = await this.start(side.s);
        if (warmupSeconds > 0) await this.measure(side.s, current, freshResult(side.s), { warmupSeconds: 0, durationSeconds: warmupSeconds, connections });
      }
      for (let i = 0; i < slices && !this.interrupted; i++) {
        for (const side of i % 2 === 0 ? sides : [...sides].reverse()) {
          current = side.running!;
          side.slices.push(await this.measure(side.s, current, freshResult(side.s), { warmupSeconds: 0, durationSeconds: durationSeconds / slices, connections }));
        }
      }
    } catch (err) {
      throw current ? withDetail(err, current) : err;
    } finally {
      for (const side of sides) {
        Object.assign(side.result, combineSlices(side.slices));
        if (side.running) await this.finish(side.s, side.running, side.result);
      }
    }
    const [overSide, ofSide] = sides as [(typeof sides)[0], (typeof sides)[0]];
    // Only slices both sides measured: a failed slice (0 req/s) is left out of the combined figures too.
    const sliceRatios = ofSide.slices.map((r, i) => (r.rps || NaN) / (overSide.slices[i]?.rps || NaN)).filter(Number.isFinite);
    return { of: ofSide.result, over: overSide.result, sliceRatios, slices: { of: ofSide.slices, over: overSide.slices } };
  }

  /**
   * --open-loop: the scenario's process started fresh, its idle RSS read, then requests sent at `rate` per second on a
   * fixed schedule: --warmup seconds, then --duration seconds measured (open-loop.ts).
   */
  async runOpenLoop(s: Scenario, rate: number): Promise<OpenLoopScenarioResult> {
    const result = freshOpenLoopResult(s, rate);
    const running = await this.start(s);
    try {
      await this.measureOpenLoop(s, running, result, rate);
    } catch (err) {
      throw withDetail(err, running);
    } finally {
      await this.finish(s, running, result);
    }
    return result;
  }

  private async measureOpenLoop(s: Scenario, running: Running, result: OpenLoopScenarioResult, rate: number): Promise<void> {
    const { warmupSeconds, durationSeconds, redisUrl } = this.options;
    const pids = running.pids();
    const upstreamPid = this.upstream!.pid;
    const rssKiB = (pid: number) => procStatusKiB(pid, 'VmRSS');
    // A fresh agentgate, ready and not yet asked anything: what it holds idle. (The upstream has served before.)
    if (s.target.kind === 'agentgate') {
      const idle = sumOver(pids, rssKiB);
      if (idle !== undefined) result.idle_rss_mib = idle / 1024;
    }
    const { headers, body } = this.requestFor(s, '');
    delete headers['idempotency-key'];
    const redis = s.target.kind === 'agentgate' && s.target.store === 'redis';
    let before:
      | {
          at: number;
          cpu: number | undefined;
          upstreamCpu: number | undefined;
          self: NodeJS.CpuUsage;
          machine: ReturnType<typeof machineCpu>;
          redisCpu: Promise<number | undefined> | undefined;
          gc: Promise<{ seconds: number; majors: number } | undefined> | undefined;
        }
      | undefined;
    const load = await runOpenLoop(
      {
        url: running.url,
        method: s.method,
        path: s.path,
        headers,
        ...(body === undefined ? {} : { body }),
        ...(s.method === 'POST' && s.body === undefined ? { freshHeader: { name: 'idempotency-key', prefix: `bench-${this.runId}-open-${s.id}` } } : {}),
        rate,
        warmupSeconds,
        durationSeconds,
        // The warm-up is over: the measured window starts now (synchronous reads of /proc only).
        onMeasureStart: () => {
          for (const pid of pids) resetPeakRss(pid);
          before = {
            at: performance.now(),
            cpu: sumOver(pids, cpuSeconds),
            upstreamCpu: cpuSeconds(upstreamPid),
            self: process.cpuUsage(),
            machine: machineCpu(),
            redisCpu: redis ? redisCpuSeconds(redisUrl) : undefined,
            gc: running.adminUrl ? gatewayGc(running.adminUrl) : undefined,
          };
        },
      },
      s.expectedStatus,
    );
    const after = {
      at: performance.now(),
      cpu: sumOver(pids, cpuSeconds),
      upstreamCpu: cpuSeconds(upstreamPid),
      self: before ? process.cpuUsage(before.self) : undefined,
      machine: machineCpu(),
      redisCpu: redis ? await redisCpuSeconds(redisUrl) : undefined,
      gc: running.adminUrl ? await gatewayGc(running.adminUrl) : undefined,
    };
    if (this.interrupted) throw new Error('interrupted');
    const peak = sumOver(pids, peakRssKiB);
    const end = sumOver(pids, rssKiB);
    const expected = load.statusCounts[String(s.expectedStatus)] ?? 0;
    const asQuantiles = (q: Quantiles | undefined): LatencyQuantiles | undefined => q && { p50: q.p50, p90: q.p90, p99: q.p99, p99_9: q.p999, max: q.max, mean: q.mean };
    Object.assign(result, {
      scheduled: load.scheduled,
      responses: load.responses,
      sent_rate: load.sentRate,
      status_counts: load.statusCounts,
      unexpected_responses: load.responses - expected,
      errors: load.errors,
      timeouts: load.timeouts,
      latency_ms: asQuantiles(load.latency),
      service_time_ms: asQuantiles(load.serviceTime),
      send_lag_ms: asQuantiles(load.sendLag),
      max_in_flight: load.maxInFlight,
      sockets_opened: load.socketsOpened,
      ...(peak === undefined ? {} : { peak_rss_mib: peak / 1024 }),
      ...(end === undefined ? {} : { end_rss_mib: end / 1024 }),
    } satisfies Partial<OpenLoopScenarioResult>);
    if (before) {
      const seconds = (after.at - before.at) / 1000;
      const redisBefore = await before.redisCpu;
      const gcBefore = await before.gc;
      if (gcBefore && after.gc && load.responses > 0) {
        result.gc_us_per_request = ((after.gc.seconds - gcBefore.seconds) * 1e6) / load.responses;
        result.major_gcs = after.gc.majors - gcBefore.majors;
      }
      if (before.cpu !== undefined && after.cpu !== undefined && load.responses > 0) {
        result.cpu_us_per_request = ((after.cpu - before.cpu) * 1e6) / load.responses;
        result.cpu_cores = (after.cpu - before.cpu) / seconds;
      }
      if (s.target.kind !== 'upstream' && before.upstreamCpu !== undefined && after.upstreamCpu !== undefined) result.upstream_cpu_cores = (after.upstreamCpu - before.upstreamCpu) / seconds;
      if (after.self) result.loadgen_cpu_cores = (after.self.user + after.self.system) / 1e6 / seconds;
      if (redisBefore !== undefined && after.redisCpu !== undefined) result.redis_cpu_cores = (after.redisCpu - redisBefore) / seconds;
      if (before.machine && after.machine && after.machine.total > before.machine.total) {
        const total = after.machine.total - before.machine.total;
        const idle = after.machine.idle - before.machine.idle;
        const steal = after.machine.steal - before.machine.steal;
        result.machine_steal_pct = (100 * steal) / total;
        const busyCores = ((total - idle - steal) / total) * os.cpus().length;
        const ours = (result.cpu_cores ?? 0) + (result.upstream_cpu_cores ?? 0) + (result.loadgen_cpu_cores ?? 0) + (result.redis_cpu_cores ?? 0);
        result.machine_other_cores = Math.max(0, busyCores - ours);
        if (result.machine_steal_pct > 10) result.notes.push(`${result.machine_steal_pct.toFixed(0)}% of the machine's CPU time was stolen by the hypervisor during this scenario`);
        if (result.machine_other_cores > 0.25) result.notes.push(`other processes used ${result.machine_other_cores.toFixed(2)} cores during this scenario`);
      }
    }
    if (load.sendLag && load.sendLag.p99 > 1000 / rate + 1) {
      result.notes.push(`the generator sent 1% of the requests more than ${load.sendLag.p99.toFixed(1)} ms late: the bench process could not keep the schedule`);
    }
    // Anything but the expected answer to every scheduled request flags the scenario.
    if (load.responses === 0) result.problems.push('no responses at all');
    if (result.unexpected_responses! > 0) result.problems.push(`${result.unexpected_responses} of ${load.responses} responses were not ${s.expectedStatus}: ${JSON.stringify(load.statusCounts)}`);
    if (load.errors > 0) result.problems.push(`${load.errors} requests failed (${load.firstError ?? 'no message'})`);
    if (load.timeouts > 0) result.problems.push(`${load.timeouts} requests got no answer within 10 s`);
    const unanswered = load.scheduled - load.responses - load.errors - load.timeouts;
    if (unanswered > 0) result.problems.push(`${unanswered} scheduled requests were never sent or answered`);
    if (running.adminUrl) {
      const outcomes = await gatewayOutcomes(running.adminUrl);
      if (outcomes) {
        result.gateway_outcomes = outcomes;
        const other = Object.entries(outcomes).filter(([o]) => o !== s.expectedOutcome && o !== 'client_closed');
        if (other.length > 0) result.problems.push(`the gateway reports other outcomes than '${s.expectedOutcome}': ${JSON.stringify(Object.fromEntries(other))}`);
      } else result.problems.push('could not read the gateway metrics');
    }
    if (result.problems.length > 0) result.status = 'flagged';
  }

  /** Stops the process and cleans up after it, with the evidence that its logs and store were really written to. */
  private async finish(s: Scenario, running: Running, result: { responses?: number; log_bytes?: number; redis_keys_left?: number }): Promise<void> {
    await running.stop();
    // Whole process life, warm-up included.
    if (running.logFile && result.responses) result.log_bytes = fileSize(running.logFile);
    if (running.redisPrefix) {
      const deleted = await deleteRedisPrefix(this.options.redisUrl, running.redisPrefix).catch(() => undefined);
      if (deleted !== undefined) result.redis_keys_left = deleted;
      this.redisPrefixes.delete(running.redisPrefix);
    }
    rmSync(path.join(this.tmp, s.id), { recursive: true, force: true });
  }

  /**
   * A scenario's request: its headers and body. A POST of the order carries an Idempotency-Key: F's fixed one, or
   * `keyTemplate`, which the load generator turns into a fresh key per request.
   */
  private requestFor(s: Scenario, keyTemplate: string): { headers: Record<string, string>; body: string | undefined } {
    const headers: Record<string, string> = {
      'x-agent-id': 'bench-agent',
      accept: 'application/json',
      ...(s.target.kind === 'agentgate' ? credentialHeaders(s.target.profile) : {}),
    };
    let body: string | undefined;
    if (s.body !== undefined) {
      body = s.body;
      Object.assign(headers, s.headers);
    } else if (s.method === 'POST') {
      body = JSON.stringify(ORDER);
      headers['content-type'] = 'application/json';
      headers['idempotency-key'] = s.fixedKey ?? keyTemplate;
    }
    return { headers, body };
  }

  private async measure(s: Scenario, running: Running, result: ScenarioResult, timing: Pick<Options, 'warmupSeconds' | 'durationSeconds' | 'connections'>): Promise<ScenarioResult> {
    const options = { ...this.options, ...timing };
    // [<id>] becomes a fresh unique id on every request (see load.ts); F reuses one key.
    const { headers, body } = this.requestFor(s, `bench-${this.runId}-[<id>]`);
    if (s.fixedKey) await this.prime(s, running.url, headers, body!);

    const spec = { url: running.url, method: s.method, path: s.path, headers, connections: options.connections, ...(body === undefined ? {} : { body }) };
    if (s.target.kind === 'upstream') resetPeakRss(this.upstream!.pid);
    if (options.warmupSeconds > 0) await runLoad({ ...spec, durationSeconds: options.warmupSeconds }, s.expectedStatus);
    if (this.interrupted) throw new Error('interrupted');

    const redis = s.target.kind === 'agentgate' && s.target.store === 'redis';
    const before = {
      cpu: sumOver(running.pids(), cpuSeconds),
      mainCpu: sumOver(running.pids(), mainThreadCpuSeconds),
      upstreamCpu: cpuSeconds(this.upstream!.pid),
      self: process.cpuUsage(),
      redisCpu: redis ? await redisCpuSeconds(options.redisUrl) : undefined,
      upstream: await upstreamStats(this.upstream!.url),
      machine: machineCpu(),
      tcpOpens: tcpActiveOpens(),
      gc: running.adminUrl ? await gatewayGc(running.adminUrl) : undefined,
    };
    const load: LoadResult = await runLoad({ ...spec, durationSeconds: options.durationSeconds }, s.expectedStatus);
    const after = {
      tcpOpens: tcpActiveOpens(),
      gc: running.adminUrl ? await gatewayGc(running.adminUrl) : undefined,
      cpu: sumOver(running.pids(), cpuSeconds),
      mainCpu: sumOver(running.pids(), mainThreadCpuSeconds),
      upstreamCpu: cpuSeconds(this.upstream!.pid),
      self: process.cpuUsage(before.self),
      redisCpu: redis ? await redisCpuSeconds(options.redisUrl) : undefined,
      upstream: await upstreamStats(this.upstream!.url),
      machine: machineCpu(),
    };
    if (this.interrupted) throw new Error('interrupted');
    const peak = sumOver(running.pids(), peakRssKiB);
    const seconds = load.durationSeconds;

    const expected = load.statusCounts[String(s.expectedStatus)] ?? 0;
    Object.assign(result, {
      responses: load.responses,
      rps: load.rps,
      p50_ms: load.p50,
      p99_ms: load.p99,
      mean_ms: load.mean,
      status_counts: load.statusCounts,
      unexpected_responses: load.responses - expected,
      errors: load.errors,
      timeouts: load.timeouts,
      ...(peak === undefined ? {} : { peak_rss_mib: peak / 1024 }),
      ...(before.cpu !== undefined && after.cpu !== undefined && load.responses > 0
        ? { cpu_us_per_request: ((after.cpu - before.cpu) * 1e6) / load.responses, cpu_cores: (after.cpu - before.cpu) / seconds }
        : {}),
      ...(before.mainCpu !== undefined && after.mainCpu !== undefined && load.responses > 0
        ? { main_thread_cpu_us_per_request: ((after.mainCpu - before.mainCpu) * 1e6) / load.responses }
        : {}),
      ...(before.upstreamCpu !== undefined && after.upstreamCpu !== undefined && s.target.kind !== 'upstream'
        ? { upstream_cpu_cores: (after.upstreamCpu - before.upstreamCpu) / seconds }
        : {}),
      loadgen_cpu_cores: (after.self.user + after.self.system) / 1e6 / seconds,
      ...(before.redisCpu !== undefined && after.redisCpu !== undefined ? { redis_cpu_cores: (after.redisCpu - before.redisCpu) / seconds } : {}),
      ...(before.upstream && after.upstream && load.responses > 0
        ? {
            upstream_calls_per_response: (after.upstream.calls - before.upstream.calls) / load.responses,
            // The stats request itself opens one connection.
            upstream_new_connections: Math.max(0, after.upstream.connections - before.upstream.connections - 1),
          }
        : {}),
      ...(before.tcpOpens !== undefined && after.tcpOpens !== undefined ? { tcp_connections_opened: after.tcpOpens - before.tcpOpens } : {}),
      ...(before.gc && after.gc && load.responses > 0
        ? { gc_us_per_request: ((after.gc.seconds - before.gc.seconds) * 1e6) / load.responses, major_gcs: after.gc.majors - before.gc.majors }
        : {}),
    } satisfies Partial<ScenarioResult>);
    if (before.machine && after.machine && after.machine.total > before.machine.total) {
      const total = after.machine.total - before.machine.total;
      result.machine_idle_pct = (100 * (after.machine.idle - before.machine.idle)) / total;
      result.machine_steal_pct = (100 * (after.machine.steal - before.machine.steal)) / total;
      // Not flags (the responses were right), but the figures are less trustworthy: the hypervisor took CPU away, or
      // processes outside the benchmark (a test run, say) competed for it.
      if (result.machine_steal_pct > 10) result.notes.push(`${result.machine_steal_pct.toFixed(0)}% of the machine's CPU time was stolen by the hypervisor during this scenario`);
      const cores = os.cpus().length;
      const busyCores = ((total - (after.machine.idle - before.machine.idle) - (after.machine.steal - before.machine.steal)) / total) * cores;
      const ours = (result.cpu_cores ?? 0) + (result.upstream_cpu_cores ?? 0) + (result.loadgen_cpu_cores ?? 0) + (result.redis_cpu_cores ?? 0);
      result.machine_other_cores = Math.max(0, busyCores - ours);
      if (result.machine_other_cores > 0.25) result.notes.push(`other processes used ${result.machine_other_cores.toFixed(2)} cores during this scenario`);
    }

    // A benchmark of error pages is meaningless: anything but the expected answer flags the scenario.
    if (load.responses === 0) result.problems.push('no responses at all');
    if (result.unexpected_responses! > 0) {
      result.problems.push(`${result.unexpected_responses} of ${load.responses} responses were not ${s.expectedStatus}: ${JSON.stringify(load.statusCounts)}`);
    }
    if (load.errors > 0) result.problems.push(`${load.errors} connection errors (${load.timeouts} timeouts)`);
    if (running.adminUrl) {
      const outcomes = await gatewayOutcomes(running.adminUrl);
      if (outcomes) {
        result.gateway_outcomes = outcomes;
        // Requests in flight when the load generator stops are logged as client_closed: expected, not a problem.
        // F's priming request executed once (outcome ok) before every later one was replayed.
        const allowed = new Set([s.expectedOutcome, 'client_closed']);
        const other = Object.entries(outcomes).filter(([o, n]) => !allowed.has(o) && !(s.fixedKey && o === 'ok' && n <= 1));
        if (other.length > 0) result.problems.push(`the gateway reports other outcomes than '${s.expectedOutcome}': ${JSON.stringify(Object.fromEntries(other))}`);
      } else result.problems.push('could not read the gateway metrics');
    }
    if (s.fixedKey && result.upstream_calls_per_response !== undefined && result.upstream_calls_per_response > 0) {
      result.problems.push(`replays reached the upstream (${result.upstream_calls_per_response.toFixed(3)} calls per response)`);
    }
    if (result.problems.length > 0) result.status = 'flagged';
    return result;
  }

  /** F: the key is used once, so every measured request is a replay of that stored answer. */
  private async prime(s: Scenario, url: string, headers: Record<string, string>, body: string): Promise<void> {
    for (let attempt = 1; attempt <= 2; attempt++) {
      const res = await fetch(`${url}${s.path}`, { method: s.method, headers, body });
      await res.arrayBuffer();
      const replayed = res.headers.get('idempotent-replayed') === 'true';
      if (res.status !== s.expectedStatus) throw new Error(`priming the replay key: got ${res.status}, expected ${s.expectedStatus}`);
      if (attempt === 2 && !replayed) throw new Error('priming the replay key: the second request was not a replay');
    }
  }

  async cleanup(): Promise<void> {
    await this.procs.stopAll();
    for (const prefix of this.redisPrefixes) await deleteRedisPrefix(this.options.redisUrl, prefix).catch(() => 0);
    this.redisPrefixes.clear();
    rmSync(this.tmp, { recursive: true, force: true });
  }
}

/** `read` of every process added up; undefined when any of them cannot be read (gone). */
function sumOver(pids: number[], read: (pid: number) => number | undefined): number | undefined {
  let sum = 0;
  for (const pid of pids) {
    const value = read(pid);
    if (value === undefined) return undefined;
    sum += value;
  }
  return sum;
}

function fileSize(file: string): number | undefined {
  try {
    return statSync(file).size;
  } catch {
    return undefined;
  }
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

async function answers(url: string): Promise<boolean> {
  try {
    const res = await fetch(url);
    await res.arrayBuffer();
    return res.status < 500;
  } catch {
    return false;
  }
}

/**
 * Requests the upstream served so far (its /__stats calls aside) and connections it accepted. Asked over a fresh
 * connection each time (agent: false), so every call adds exactly one connection of its own.
 */
async function upstreamStats(url: string): Promise<{ calls: number; connections: number } | undefined> {
  const { get } = await import('node:http');
  try {
    const text = await new Promise<string>((resolve, reject) => {
      get(`${url}/__stats`, { agent: false }, (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (data += c));
        res.on('end', () => resolve(data));
        res.on('error', reject);
      }).on('error', reject);
    });
    const stats = JSON.parse(text) as Record<string, number>;
    const calls = Object.entries(stats).reduce((sum, [kind, n]) => (kind.startsWith('GET ') || kind === 'POST' ? sum + n : sum), 0);
    return { calls, connections: stats.connections ?? 0 };
  } catch {
    return undefined;
  }
}

/** agentgate_requests_total summed by outcome, gateway endpoints left out. */
async function gatewayOutcomes(adminUrl: string): Promise<Record<string, number> | undefined> {
  try {
    const text = await (await fetch(`${adminUrl}/metrics`)).text();
    const outcomes: Record<string, number> = {};
    for (const line of text.split('\n')) {
      if (!line.startsWith('agentgate_requests_total{') || line.includes('route="_agentgate"')) continue;
      const outcome = /outcome="([^"]*)"/.exec(line)?.[1];
      const value = Number(line.slice(line.lastIndexOf(' ') + 1));
      if (outcome !== undefined && Number.isFinite(value)) outcomes[outcome] = (outcomes[outcome] ?? 0) + value;
    }
    return outcomes;
  } catch {
    return undefined;
  }
}

function freshResult(s: Scenario): ScenarioResult {
  return { id: s.id, title: s.title, group: s.group, method: s.method, path: s.path, status: 'ok', problems: [], notes: [], expected_status: s.expectedStatus };
}

function freshOpenLoopResult(s: Scenario, rate: number): OpenLoopScenarioResult {
  return { id: s.id, title: s.title, method: s.method, path: s.path, status: 'ok', problems: [], notes: [], expected_status: s.expectedStatus, rate };
}

/** A failure with what the process under test said about it (its stderr, its warnings and errors). */
function withDetail(err: unknown, running: Running): Error {
  const detail = running.describeFailure();
  return new Error(`${(err as Error).message}${detail ? `\n${detail}` : ''}`);
}

/**
 * One scenario's interleaved slices as one result: counts and CPU time add up, so req/s and the per-request figures are
 * over all the slices together; p50 and p99 are the median of the slices' own (the samples are not kept); peak RSS is
 * the largest slice's; the gateway's outcomes are the last slice's, which already cover the whole life of the process.
 */
function combineSlices(slices: ScenarioResult[]): Partial<ScenarioResult> {
  const measured = slices.filter((r) => r.responses !== undefined && r.rps !== undefined && r.rps > 0);
  if (measured.length === 0) return slices.length === 0 ? {} : { status: 'flagged', problems: ['no slice measured anything'] };
  const responses = measured.reduce((sum, r) => sum + r.responses!, 0);
  const seconds = measured.reduce((sum, r) => sum + r.responses! / r.rps!, 0);
  const perRequest = (field: 'cpu_us_per_request' | 'main_thread_cpu_us_per_request' | 'gc_us_per_request' | 'mean_ms' | 'upstream_calls_per_response') =>
    measured.every((r) => r[field] !== undefined) ? measured.reduce((sum, r) => sum + r[field]! * r.responses!, 0) / responses : undefined;
  const perSecond = (field: 'cpu_cores' | 'upstream_cpu_cores' | 'loadgen_cpu_cores' | 'redis_cpu_cores' | 'machine_steal_pct' | 'machine_idle_pct' | 'machine_other_cores') =>
    measured.every((r) => r[field] !== undefined) ? measured.reduce((sum, r) => sum + (r[field]! * r.responses!) / r.rps!, 0) / seconds : undefined;
  const sum = (field: 'unexpected_responses' | 'errors' | 'timeouts' | 'major_gcs' | 'upstream_new_connections' | 'tcp_connections_opened') =>
    measured.reduce((total, r) => total + (r[field] ?? 0), 0);
  const last = measured[measured.length - 1]!;
  const problems = slices.flatMap((r, i) => r.problems.map((p) => `slice ${i + 1}: ${p}`));
  const noted = slices.filter((r) => r.notes.length > 0);
  const notes = noted.length > 0 ? [`${noted.length} of ${slices.length} slices have notes, the first: ${noted[0]!.notes.join('; ')}`] : [];
  const statusCounts: Record<string, number> = {};
  for (const r of measured) for (const [code, n] of Object.entries(r.status_counts ?? {})) statusCounts[code] = (statusCounts[code] ?? 0) + n;
  const result: Partial<ScenarioResult> = {
    status: problems.length > 0 ? 'flagged' : 'ok',
    problems,
    notes,
    responses,
    rps: responses / seconds,
    p50_ms: median(measured.map((r) => r.p50_ms!))!,
    p99_ms: median(measured.map((r) => r.p99_ms!))!,
    status_counts: statusCounts,
    unexpected_responses: sum('unexpected_responses'),
    errors: sum('errors'),
    timeouts: sum('timeouts'),
    rps_slices: measured.map((r) => r.rps!),
    ...(measured.every((r) => r.peak_rss_mib !== undefined) ? { peak_rss_mib: Math.max(...measured.map((r) => r.peak_rss_mib!)) } : {}),
    ...(last.gateway_outcomes === undefined ? {} : { gateway_outcomes: last.gateway_outcomes }),
  };
  for (const field of ['cpu_us_per_request', 'main_thread_cpu_us_per_request', 'gc_us_per_request', 'mean_ms', 'upstream_calls_per_response'] as const) {
    const value = perRequest(field);
    if (value !== undefined) result[field] = value;
  }
  for (const field of ['cpu_cores', 'upstream_cpu_cores', 'loadgen_cpu_cores', 'redis_cpu_cores', 'machine_steal_pct', 'machine_idle_pct', 'machine_other_cores'] as const) {
    const value = perSecond(field);
    if (value !== undefined) result[field] = value;
  }
  for (const field of ['major_gcs', 'upstream_new_connections', 'tcp_connections_opened'] as const) {
    if (measured.every((r) => r[field] !== undefined)) result[field] = sum(field);
  }
  return result;
}

/**
 * One result per scenario. With several rounds: the round with the highest req/s — interference (CPU stolen by the
 * hypervisor, other processes) only ever slows a run down, so the fastest round is the least disturbed one, and its
 * figures stay consistent with each other — plus the req/s of every round and the problems and notes of all rounds;
 * a scenario that failed or was flagged in any round is reported so.
 */
function combineRounds(rounds: ScenarioResult[][]): ScenarioResult[] {
  if (rounds.length === 1) return rounds[0]!;
  const ids = [...new Set(rounds.flat().map((r) => r.id))];
  return ids.map((id) => {
    const all = rounds.map((round) => round.find((r) => r.id === id)).filter((r): r is ScenarioResult => r !== undefined);
    const failed = all.find((r) => r.status === 'failed');
    if (failed) return failed;
    const measured = all.filter((r) => r.rps !== undefined).sort((a, b) => b.rps! - a.rps!);
    if (measured.length === 0) return all[0]!;
    const best = measured[0]!;
    const rpsRounds = all.map((r) => r.rps).filter((v): v is number => v !== undefined);
    const problems = all.flatMap((r, i) => r.problems.map((p) => `round ${i + 1}: ${p}`));
    const notes = all.flatMap((r, i) => r.notes.map((n) => `round ${i + 1}: ${n}`));
    return {
      ...best,
      status: problems.length > 0 ? 'flagged' : 'ok',
      problems,
      notes,
      rps_rounds: rpsRounds,
      rps_spread_pct: (100 * (Math.max(...rpsRounds) - Math.min(...rpsRounds))) / best.rps!,
    };
  });
}

function describeResult(r: ScenarioResult): string {
  if (r.status === 'skipped' || r.status === 'failed') return `${r.status.toUpperCase()}: ${r.reason}`;
  const line = `${Math.round(r.rps ?? 0).toLocaleString('en-US')} req/s  p50 ${r.p50_ms?.toFixed(2)} ms  p99 ${r.p99_ms?.toFixed(2)} ms  peak RSS ${r.peak_rss_mib?.toFixed(1) ?? '—'} MiB  ${r.cpu_us_per_request?.toFixed(0) ?? '—'} CPU µs/req`;
  const notes = r.notes.map((n) => `\n         note: ${n}`).join('');
  return r.status === 'flagged' ? `${line}\n    !!! FLAGGED — ${r.problems.join('; ')}${notes}` : `${line}${notes}`;
}

// ---------------------------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(process.argv.slice(2), process.env);
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n`);
    return 2;
  }
  if (!existsSync(CLI)) {
    process.stderr.write(`bench: ${CLI} is missing: run 'sh scripts/setup.sh' first (npm run bench does it)\n`);
    return 2;
  }
  if (options.baseline && !existsSync(path.join(options.baseline, 'dist/cli.js'))) {
    process.stderr.write(`bench: --baseline ${options.baseline} has no dist/cli.js: make it with 'sh scripts/bench-baseline.sh REF'\n`);
    return 2;
  }
  // Only agentgate has a build to compare.
  const scenarios = SCENARIOS.filter((s) => (!options.only || options.only.test(s.id)) && (!options.baseline || s.target.kind === 'agentgate'));
  if (scenarios.length === 0) {
    process.stderr.write(`bench: no ${options.baseline ? 'agentgate ' : ''}scenario matches --only ${options.only}; scenarios: ${SCENARIOS.map((s) => s.id).join(' ')}\n`);
    return 2;
  }
  const openLoopScenarios = options.openLoop ? OPEN_LOOP_SCENARIOS.filter((s) => !options.only || options.only.test(s.id)) : [];
  if (options.openLoop && openLoopScenarios.length === 0) {
    process.stderr.write(`bench: --open-loop: no open-loop scenario matches --only ${options.only}; they are ${OPEN_LOOP_SCENARIOS.map((s) => s.id).join(' ')}\n`);
    return 2;
  }
  if (options.cpuProfDir) mkdirSync(options.cpuProfDir, { recursive: true });

  const redis = await redisVersion(options.redisUrl);
  const nginxBinary = findNginx();
  const nginx = nginxBinary ? (nginxVersion(nginxBinary) ?? nginxBinary) : undefined;
  const machine = machineFacts(redis, nginx);
  const bench = new Bench(options);

  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(130); // a second Ctrl-C: the exit handler still kills the children
    stopping = true;
    bench.interrupted = true;
    process.stderr.write(`\nbench: ${signal}: stopping, cleaning up...\n`);
    stopLoad();
    stopOpenLoop();
    void bench.cleanup().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', () => {
    bench.procs.killAllSync();
    rmSync(bench.tmp, { recursive: true, force: true });
  });

  const perScenario = options.warmupSeconds + options.durationSeconds;
  const pairs = interleavedPairs(scenarios);
  const openLoopPlan = `open loop at ${options.openLoop.toLocaleString('en-US')} req/s: ${openLoopScenarios.length} scenarios (${openLoopScenarios.map((s) => s.id).join(' ')}) × (${options.warmupSeconds} s warm-up + ${options.durationSeconds} s measured) ≈ ${Math.ceil((openLoopScenarios.length * (perScenario + 2)) / 60)} min`;
  console.log(`agentgate benchmark — ${machine.cpu_model}, ${machine.cores} cores, Node ${machine.node}, ${new Date().toISOString()}`);
  console.log(
    options.openLoop && !options.interleave
      ? `${openLoopPlan}${options.quick ? ' (quick mode: figures are rough)' : ''}`
      : options.baseline
      ? `${scenarios.length} scenarios (${scenarios.map((s) => s.id).join(' ')}), each run by the old build (${options.baseline}) and by this checkout's side by side: 2 × ${options.warmupSeconds} s warm-up + 2 × ${options.durationSeconds} s measured in ${options.interleave} alternating slices, at ${options.connections} connections ≈ ${Math.ceil((scenarios.length * (2 * perScenario + 3 + options.interleave * 0.3)) / 60)} min`
      : options.interleave
      ? `${pairs.length} targets, each two scenarios side by side: 2 × ${options.warmupSeconds} s warm-up + 2 × ${options.durationSeconds} s measured in ${options.interleave} alternating slices, at ${options.connections} connections ≈ ${Math.ceil((pairs.length * (2 * perScenario + 3 + options.interleave * 0.3)) / 60)} min`
      : `${scenarios.length} scenarios${options.rounds > 1 ? ` × ${options.rounds} rounds` : ''} × (${options.warmupSeconds} s warm-up + ${options.durationSeconds} s measured) at ${options.connections} connections ≈ ${Math.ceil((options.rounds * scenarios.length * (perScenario + 1.5)) / 60)} min${options.quick ? ' (quick mode: figures are rough)' : ''}`,
  );
  if (options.openLoop && options.interleave) console.log(`then ${openLoopPlan}`);
  console.log(
    `Redis: ${redis ? `${redis} at ${options.redisUrl}` : `not reachable at ${options.redisUrl}: Redis scenarios are skipped`}; nginx: ${nginx ?? 'not found: G is skipped (apt-get install nginx, or set BENCH_NGINX)'}\n`,
  );

  try {
    await bench.startUpstream();
  } catch (err) {
    process.stderr.write(`bench: the upstream did not start: ${(err as Error).message}\n`);
    await bench.cleanup();
    return 1;
  }
  /** Why a scenario cannot run on this machine (no Redis, no nginx), as its result; undefined when it can. */
  const unavailable = (s: Scenario): ScenarioResult | undefined => {
    if (s.target.kind === 'agentgate' && s.target.store === 'redis' && !redis) {
      const required = process.env.AGENTGATE_REQUIRE_REDIS === '1';
      return { ...freshResult(s), status: required ? 'failed' : 'skipped', reason: `Redis not reachable at ${options.redisUrl}${required ? ' (AGENTGATE_REQUIRE_REDIS=1)' : ''}` };
    }
    if (s.target.kind === 'nginx' && !nginxBinary) {
      const reason = process.env.BENCH_NGINX ? `BENCH_NGINX=${process.env.BENCH_NGINX} is not an executable` : 'nginx is not installed (apt-get install nginx, or set BENCH_NGINX)';
      return { ...freshResult(s), status: 'skipped', reason };
    }
    return undefined;
  };
  if (options.baseline) return baselineMain(bench, scenarios, options, machine, unavailable);
  if (options.interleave) return interleavedMain(bench, pairs, options, machine, unavailable, openLoopScenarios);
  if (options.openLoop) return openLoopMain(bench, openLoopScenarios, options, machine, unavailable);

  const rounds: ScenarioResult[][] = [];
  for (let round = 1; round <= options.rounds && !bench.interrupted; round++) {
    if (options.rounds > 1) console.log(`— round ${round} of ${options.rounds} —`);
    const results: ScenarioResult[] = [];
    for (const s of scenarios) {
      if (bench.interrupted) break;
      process.stdout.write(`${s.id.padEnd(8)} ${s.title}\n         `);
      let result = unavailable(s);
      if (!result) {
        try {
          result = await bench.run(s);
        } catch (err) {
          if (bench.interrupted) break;
          result = { ...freshResult(s), status: 'failed', reason: (err as Error).message.trim() };
        }
      }
      results.push(result);
      process.stdout.write(`${describeResult(result)}\n`);
    }
    rounds.push(results);
  }
  if (bench.interrupted) return 130;
  await bench.cleanup();

  const results = combineRounds(rounds);
  const fatal = results.some((r) => r.status === 'failed');
  const analysis = analyse(results);
  const issue5Ran = results.some((r) => r.group === 'issue-5' && r.rps !== undefined);
  // The response_schema check alone, in this process, now that nothing else runs: a steady reference for issue 5.
  if (issue5Ran) analysis.issue5.response_schema.in_process = calibrateSchemaCheck(BLOB_SIZES_KIB, options.quick ? 100 : 300);
  const flagged = results.filter((r) => r.status === 'flagged' || r.status === 'failed');
  console.log(`\nResults (${options.connections} connections, ${options.durationSeconds} s each${options.rounds > 1 ? `, fastest of ${options.rounds} rounds` : ''}; CPU µs/req and cores: the process under test, all its threads; steal %: the machine's CPU taken by the hypervisor; other cores: CPU used by processes outside the benchmark; bad/err: non-expected responses + connection errors)\n`);
  console.log(formatResults(results));
  console.log(`\n${formatTargets(analysis.targets)}`);
  console.log(
    '  Verdicts are on requests/s, as issues 7 and 23 define the targets. "same by CPU µs/req" asks the same of CPU time per request\n' +
      '  (e.g. B\'s ÷ C\'s for C/B), which CPU stolen by the hypervisor or other processes disturbs much less. Never asserted.',
  );
  console.log(`\n${formatRatios(analysis.ratios)}`);
  // The issue sections only when some of their scenarios ran (--only may leave them out).
  if (results.some((r) => r.group === 'issue-4' && r.rps !== undefined)) console.log(`\n${formatIssue4(analysis.issue4)}`);
  if (issue5Ran) console.log(`\n${formatIssue5(analysis.issue5)}`);
  console.log(
    `\nThe machine has ${machine.cores} cores shared by the load generator, the upstream and the process under test; ratios from one run are comparable, absolute figures are not.`,
  );
  warnFlagged(flagged);
  writeJson(options, machine, { rounds: options.rounds, quick: options.quick }, {
    scenarios: results,
    targets: analysis.targets,
    ratios: analysis.ratios,
    issue4_rate_limit_cost: analysis.issue4,
    issue5_inspection_cost: analysis.issue5,
  });
  if (options.cpuProfDir) console.log(`CPU profiles: ${options.cpuProfDir}`);
  return fatal ? 1 : 0;
}

/** --interleave: the pairs of scenarios the targets (issues 7 and 23) compare, among those selected, each pair once. */
function interleavedPairs(scenarios: Scenario[]): { of: Scenario; over: Scenario }[] {
  const byId = new Map(scenarios.map((s) => [s.id, s]));
  const seen = new Set<string>();
  return TARGETS.flatMap((t) => {
    const of = byId.get(t.of);
    const over = byId.get(t.over);
    if (!of || !over || seen.has(`${t.of}/${t.over}`)) return [];
    seen.add(`${t.of}/${t.over}`);
    return [{ of, over }];
  });
}

/**
 * --interleave: every target's two scenarios measured side by side in alternating slices, then judged like a plain
 * run. B is measured anew with each scenario compared with it: its figures come from the same minutes as theirs.
 */
async function interleavedMain(
  bench: Bench,
  pairs: { of: Scenario; over: Scenario }[],
  options: Options,
  machine: Record<string, unknown>,
  unavailable: (s: Scenario) => ScenarioResult | undefined,
  openLoopScenarios: Scenario[],
): Promise<number> {
  if (pairs.length === 0) {
    process.stderr.write('bench: --interleave measures the targets (issues 7 and 23): --only must leave both scenarios of at least one (e.g. C-GET and B-GET)\n');
    await bench.cleanup();
    return 2;
  }
  const measured: { of: ScenarioResult; over: ScenarioResult; slice_ratios: number[]; targets: TargetResult[] }[] = [];
  for (const { of, over } of pairs) {
    if (bench.interrupted) break;
    process.stdout.write(`${`${of.id} / ${over.id}`.padEnd(18)} ${of.title} / ${over.title}\n`);
    const pair = await measurePair(bench, of, over, options.interleave, unavailable);
    if (!pair) break;
    const targets = analyse([pair.of, pair.over]).targets.filter((t) => t.of === of.id && t.over === over.id);
    measured.push({ of: pair.of, over: pair.over, slice_ratios: pair.sliceRatios, targets });
    for (const r of [pair.of, pair.over]) process.stdout.write(`  ${r.id.padEnd(8)} ${describeResult(r)}\n`);
  }
  if (bench.interrupted) return 130;
  const openLoop = options.openLoop ? await openLoopSection(bench, openLoopScenarios, options, unavailable) : undefined;
  if (bench.interrupted) return 130;
  await bench.cleanup();

  const results = measured.flatMap((m) => [m.of, m.over]);
  console.log(`\nResults (${options.connections} connections; each scenario ${options.durationSeconds} s in ${options.interleave} slices, alternating with the one it is compared with; p50/p99: median of the slices')\n`);
  console.log(formatResults(results));
  console.log(`\n${formatTargets(measured.flatMap((m) => m.targets))}`);
  console.log(
    '  Each target from its own pair of processes, measured in alternating slices over the same minutes. "slice ratios" below\n' +
      '  are the req/s ratios of adjacent slices: their spread is what the machine did in between. Never asserted.\n',
  );
  console.log(formatSliceRatios(measured.map((m) => ({ name: `${m.of.id} / ${m.over.id}`, ratios: m.slice_ratios }))));
  if (openLoop) console.log(`\n${formatOpenLoop(options.openLoop, openLoop.results, openLoop.analysis)}`);
  warnFlagged([...results, ...(openLoop?.results.map((r) => ({ ...r, id: `${r.id} (open loop)` })) ?? [])].filter((r) => r.status === 'flagged' || r.status === 'failed'));
  writeJson(options, machine, { interleave: options.interleave }, {
    pairs: measured,
    targets: measured.flatMap((m) => m.targets),
    ...(openLoop ? { open_loop: openLoopJson(options, openLoop) } : {}),
  });
  return results.some((r) => r.status === 'failed') || openLoop?.results.some((r) => r.status === 'failed') ? 1 : 0;
}

/** --open-loop: each scenario in its own fresh process, one after another (open-loop.ts). */
async function openLoopSection(
  bench: Bench,
  scenarios: Scenario[],
  options: Options,
  unavailable: (s: Scenario) => ScenarioResult | undefined,
): Promise<{ results: OpenLoopScenarioResult[]; analysis: ReturnType<typeof analyseOpenLoop> }> {
  const results: OpenLoopScenarioResult[] = [];
  for (const s of scenarios) {
    if (bench.interrupted) break;
    process.stdout.write(`${`${s.id} open loop`.padEnd(18)} ${s.title}, ${options.openLoop.toLocaleString('en-US')} req/s\n         `);
    const missing = unavailable(s);
    let result: OpenLoopScenarioResult;
    if (missing) result = { ...freshOpenLoopResult(s, options.openLoop), status: missing.status, ...(missing.reason ? { reason: missing.reason } : {}) };
    else {
      try {
        result = await bench.runOpenLoop(s, options.openLoop);
      } catch (err) {
        if (bench.interrupted) break;
        result = { ...freshOpenLoopResult(s, options.openLoop), status: 'failed', reason: (err as Error).message.trim() };
      }
    }
    results.push(result);
    process.stdout.write(`${describeOpenLoopResult(result)}\n`);
  }
  return { results, analysis: analyseOpenLoop(results) };
}

function openLoopJson(options: Options, openLoop: { results: OpenLoopScenarioResult[]; analysis: ReturnType<typeof analyseOpenLoop> }): Record<string, unknown> {
  return {
    rate_per_second: options.openLoop,
    warmup_seconds: options.warmupSeconds,
    duration_seconds: options.durationSeconds,
    generator: 'test/bench/open-loop.ts, in the bench process (latency from the scheduled send time)',
    scenarios: openLoop.results,
    added_latency: openLoop.analysis.added,
    targets: openLoop.analysis.targets,
  };
}

/** --open-loop on its own: only the open-loop run. */
async function openLoopMain(
  bench: Bench,
  scenarios: Scenario[],
  options: Options,
  machine: Record<string, unknown>,
  unavailable: (s: Scenario) => ScenarioResult | undefined,
): Promise<number> {
  const openLoop = await openLoopSection(bench, scenarios, options, unavailable);
  if (bench.interrupted) return 130;
  await bench.cleanup();
  console.log(`\n${formatOpenLoop(options.openLoop, openLoop.results, openLoop.analysis)}`);
  console.log(
    `\nThe machine has ${machine.cores} cores shared by the load generator, the upstream and the process under test; ratios from one run are comparable, absolute figures are not.`,
  );
  warnFlagged(openLoop.results.filter((r) => r.status === 'flagged' || r.status === 'failed'));
  writeJson(options, machine, { open_loop_rate: options.openLoop }, { open_loop: openLoopJson(options, openLoop) });
  return openLoop.results.some((r) => r.status === 'failed') ? 1 : 0;
}

function describeOpenLoopResult(r: OpenLoopScenarioResult): string {
  if (r.status === 'skipped' || r.status === 'failed') return `${r.status.toUpperCase()}: ${r.reason}`;
  const l = r.latency_ms;
  const line = `p50 ${l?.p50.toFixed(2) ?? '—'} ms  p99 ${l?.p99.toFixed(2) ?? '—'} ms  p99.9 ${l?.p99_9.toFixed(2) ?? '—'} ms  max ${l?.max.toFixed(1) ?? '—'} ms  peak RSS ${r.peak_rss_mib?.toFixed(1) ?? '—'} MiB  ${r.cpu_us_per_request?.toFixed(0) ?? '—'} CPU µs/req`;
  const notes = r.notes.map((n) => `\n         note: ${n}`).join('');
  return r.status === 'flagged' ? `${line}\n    !!! FLAGGED — ${r.problems.join('; ')}${notes}` : `${line}${notes}`;
}

/**
 * Two scenarios side by side in alternating slices (Bench.runInterleaved). A side that cannot run leaves its partner
 * unmeasured too, and says why, rather than an 'ok' without figures. Undefined when the run was interrupted.
 */
async function measurePair(
  bench: Bench,
  of: Scenario,
  over: Scenario,
  slices: number,
  unavailable: (s: Scenario) => ScenarioResult | undefined,
): Promise<InterleavedPair | undefined> {
  const unmeasured = (s: Scenario, status: 'skipped' | 'failed', reason: string): ScenarioResult => ({ ...freshResult(s), status, reason });
  const noSlices = { sliceRatios: [], slices: { of: [], over: [] } };
  const missing = unavailable(of) ?? unavailable(over);
  if (missing) {
    return {
      of: unavailable(of) ?? unmeasured(of, 'skipped', `${over.id}: ${missing.reason}`),
      over: unavailable(over) ?? unmeasured(over, 'skipped', `${of.id}: ${missing.reason}`),
      ...noSlices,
    };
  }
  try {
    return await bench.runInterleaved(of, over, slices);
  } catch (err) {
    if (bench.interrupted) return undefined;
    const reason = (err as Error).message.trim();
    return { of: unmeasured(of, 'failed', reason), over: unmeasured(over, 'failed', `measured with ${of.id}, which failed: ${reason}`), ...noSlices };
  }
}

/** --baseline: the scenario as one build runs it; the id says which, so processes, logs and Redis keys stay apart. */
function asBuild(s: Scenario, build: 'old' | 'new', cli: string): Scenario {
  if (s.target.kind !== 'agentgate') throw new Error(`${s.id} does not run agentgate: it has no build to compare`);
  return { ...s, id: `${s.id}@${build}`, title: `${s.title} (${build} build)`, target: { ...s.target, cli } };
}

/**
 * --baseline: every scenario run by the old build (DIR/dist/cli.js) and by this checkout's side by side, on the same
 * generated config, upstream and load, in alternating slices. Between runs this machine's figures move by up to 2x,
 * far more than a refactor's cost; within a pair of adjacent slices they move little, so each pair gives one new/old
 * ratio and the spread of those ratios shows how far to trust their median. The old build is `over`, as B is in a
 * target pair: it is started, warmed up and measured first.
 */
async function baselineMain(
  bench: Bench,
  scenarios: Scenario[],
  options: Options,
  machine: Record<string, unknown>,
  unavailable: (s: Scenario) => ScenarioResult | undefined,
): Promise<number> {
  const baseline = options.baseline!;
  // A folder made by scripts/bench-baseline.sh names its commit (the bench itself may run from one: a clean build of
  // HEAD while someone edits the checkout); a git checkout, by git.
  const madeBy = (dir: string) => readText(path.join(dir, '.baseline-commit')).trim() || undefined;
  const builds = {
    old: { dir: baseline, commit: madeBy(baseline) ?? null },
    new: { dir: ROOT, commit: madeBy(ROOT) ?? machine.git_commit ?? null, uncommitted_changes: madeBy(ROOT) ? false : (machine.git_dirty ?? null) },
  };
  const stamps = [buildStamp(baseline), buildStamp(ROOT)];
  const measured: { old: ScenarioResult; new: ScenarioResult; comparison: BuildComparison }[] = [];
  for (const s of scenarios) {
    if (bench.interrupted) break;
    process.stdout.write(`${s.id.padEnd(8)} ${s.title}: the old and the new build side by side\n`);
    const pair = await measurePair(bench, asBuild(s, 'new', CLI), asBuild(s, 'old', path.join(baseline, 'dist/cli.js')), options.interleave, unavailable);
    if (!pair) break;
    measured.push({ old: pair.over, new: pair.of, comparison: compareBuilds(s.id, pair.slices.over, pair.slices.of) });
    for (const r of [pair.over, pair.of]) process.stdout.write(`  ${r.id.padEnd(12)} ${describeResult(r)}\n`);
  }
  if (bench.interrupted) return 130;
  await bench.cleanup();

  const results = measured.flatMap((m) => [m.old, m.new]);
  console.log(`\nResults (${options.connections} connections; each build ${options.durationSeconds} s per scenario in ${options.interleave} slices, alternating with the other build; p50/p99: median of the slices')\n`);
  console.log(formatResults(results));
  const commit = (c: unknown) => (typeof c === 'string' ? c.slice(0, 7) : 'commit unknown');
  console.log(`\nold: ${builds.old.dir} (${commit(builds.old.commit)}); new: ${ROOT} (${commit(builds.new.commit)}${builds.new.uncommitted_changes ? ', with uncommitted changes' : ''})\n`);
  console.log(formatBuildComparison(measured.map((m) => m.comparison)));
  warnFlagged(results.filter((r) => r.status === 'flagged' || r.status === 'failed'));
  // Someone building either checkout mid-run (npm test, npm start do) would have the later scenarios run other code.
  const rebuilt = [baseline, ROOT].filter((dir, i) => buildStamp(dir) !== stamps[i]);
  if (rebuilt.length > 0) console.log(`\n!!! dist/ WAS REBUILT DURING THE RUN in ${rebuilt.join(' and ')}: the scenarios may not all have run the same build; run again`);
  writeJson(options, machine, { interleave: options.interleave, baseline }, { builds, comparisons: measured.map((m) => m.comparison), scenarios: results });
  return results.some((r) => r.status === 'failed') ? 1 : 0;
}

/** The newest modification time in DIR/dist: it changes when that checkout is built again. */
function buildStamp(dir: string): number {
  let newest = 0;
  const walk = (folder: string) => {
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      const file = path.join(folder, entry.name);
      if (entry.isDirectory()) walk(file);
      else newest = Math.max(newest, statSync(file).mtimeMs);
    }
  };
  try {
    walk(path.join(dir, 'dist'));
  } catch {
    // gone: a stamp of 0 differs from any build's
  }
  return newest;
}

function warnFlagged(flagged: Pick<ScenarioResult, 'id' | 'status' | 'reason' | 'problems'>[]): void {
  if (flagged.length === 0) return;
  console.log('\n!!! SOME SCENARIOS DID NOT MEASURE WHAT THEY WERE MEANT TO:');
  for (const r of flagged) console.log(`!!!   ${r.id}: ${r.status === 'failed' ? `could not run: ${r.reason}` : r.problems.join('; ')}`);
}

/** The JSON results: the machine, the settings both modes share plus `settings`, then the mode's own figures. */
function writeJson(options: Options, machine: unknown, settings: Record<string, unknown>, figures: Record<string, unknown>): void {
  const json = {
    date: new Date().toISOString(),
    machine,
    settings: {
      duration_seconds: options.durationSeconds,
      warmup_seconds: options.warmupSeconds,
      connections: options.connections,
      ...settings,
      only: options.only?.source ?? null,
      agentgate_log_level: options.logLevel,
    },
    ...figures,
  };
  mkdirSync(path.dirname(options.out), { recursive: true });
  writeFileSync(options.out, `${JSON.stringify(json, null, 2)}\n`);
  console.log(`\nWritten: ${path.relative(process.cwd(), options.out) || options.out}`);
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);


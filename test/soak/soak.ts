// The soak: the built gateway (rate limits + idempotency, memory or Redis store) under hours-like load from a separate
// process, with 100k consumers and a fresh Idempotency-Key per write. Samples RSS, measures the live heap after a forced
// full GC every window (over the inspector), keeps p99 per time window, takes two heap snapshots (40% of the way in,
// the load paused, and at the end) and compares them, and judges plateau, leak and p99.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { cleanupPrefix } from '../helpers/redis.ts';
import { HERE, killOnExit, logProblems, median, metricSum, mib, procStatusKiB, ProcessGroup, round, scrapeMetrics, sleep, spawnGateway, type GatewayProcess } from './common.ts';
import { heapGrowth, summarizeHeapSnapshot, type HeapGrowth, type HeapSummary } from './heap-snapshot.ts';
import { Inspector } from './inspector.ts';
import { cpuSeconds, shippedMemoryLimitMiB, shippedNodeFlags } from '../bench/procs.ts';
import type { LoadPlan, Stopped, WindowStats } from './loader.ts';

export interface SoakOptions {
  /** The run lasts at least this long... */
  durationSeconds: number;
  /** ...and sends at least this many requests... */
  requests: number;
  /** ...but never runs longer than this. */
  maxDurationSeconds: number;
  connections: number;
  consumers: number;
  store: 'memory' | 'redis';
  redisUrl: string;
  windowSeconds: number;
  sampleSeconds: number;
  /** Take the two heap snapshots (each blocks the gateway for a moment, so the load is paused around the first). */
  snapshots: boolean;
  /** How often the live heap is measured (a forced full GC, over the inspector). */
  gcSeconds: number;
  /** Judge plateau, leak and p99 (false for runs too short for them: the bounded store is not even full). */
  judgeTrends: boolean;
  logLevel: string;
  /** Keep the temp dir (logs, snapshots). */
  keep?: boolean;
  progress?: (line: string) => void;
}

export interface MemorySample {
  /** Seconds since the load started. */
  t: number;
  rss_mib: number;
  heap_used_mib: number | null;
  heap_total_mib: number | null;
  external_mib: number | null;
  requests: number;
  /** Taken while the load was paused for a heap snapshot (left out of every verdict). */
  paused?: true;
}

export interface SoakWindow extends WindowStats {
  segment: number;
  /** The machine's 1-minute load average at the window's end (2 cores: above ~3, something else competes for the CPU). */
  load_average: number;
  /** CPU the gateway used during the window, in cores. */
  gateway_cores: number | null;
  /** Seconds since the load started, at the window's end. */
  t: number;
  rps: number;
}

/**
 * RSS in two stretches: before the first heap snapshot (the gateway as it runs in production: its steady level) and
 * after it (writing a snapshot mallocs several times the heap, which glibc keeps as RSS once freed: a step up, not a
 * trend). The plateau is judged after it, the longer stretch; the one before is reported for information.
 */
export interface RssAnalysis {
  start_mib: number;
  peak_mib: number;
  /** The peak before the first snapshot (what a pod that never writes one would see); the peak of the run without one. */
  peak_before_snapshot_mib: number;
  end_mib: number;
  /** Median RSS over the second half of the stretch before the first snapshot (or of the whole run without one). */
  steady_mib: number;
  before_snapshot: Trend | null;
  /** After the first snapshot; the whole run when none was taken. */
  after_snapshot: Trend;
}

/** A quantity late in a stretch of the run against the same earlier: medians over 60-70% and over 90-100% of the stretch, and the slope over 60-100%. */
export interface Trend {
  mid_mib: number;
  last_mib: number;
  growth_mib: number;
  growth_pct: number;
  slope_mib_per_min: number;
}

export interface SoakVerdict {
  ok: boolean;
  /** False when the run was too short for the rule to mean anything (--quick): reported, not held against the run. */
  judged: boolean;
  rule: string;
  detail: string;
}

export interface SoakResult {
  settings: Record<string, unknown>;
  duration_seconds: number;
  requests: number;
  rps: number;
  statuses: Record<string, number>;
  kinds: Record<string, number>;
  client_errors: number;
  unexpected_statuses: number;
  gateway_outcomes: Record<string, number>;
  idempotency_events: Record<string, number>;
  upstream: { executions: number; gets: number } | null;
  crashed: boolean;
  exit: { code: number | null; signal: string | null } | null;
  log_problems: Record<string, number>;
  log_unexpected_errors: number;
  log_examples: string[];
  samples: MemorySample[];
  /** The live heap after a forced full GC, over time. */
  live_heap: { t: number; mib: number }[];
  windows: SoakWindow[];
  rss: RssAnalysis;
  live_heap_trend: Trend;
  heap_snapshots: { a: Omit<HeapSummary, 'groups'> & { t: number }; b: Omit<HeapSummary, 'groups'> & { t: number }; growth_mib: number; growth_pct: number; top_growth: HeapGrowth[] } | null;
  p99: { first_third_median_ms: number; last_third_median_ms: number; ratio: number; max_window_ms: number };
  verdicts: { plateau: SoakVerdict; no_leak: SoakVerdict; rss_ceiling: SoakVerdict; p99_flat: SoakVerdict; answers: SoakVerdict };
  ok: boolean;
}

const EXPECTED_STATUSES = new Set(['200', '201']);

export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const say = options.progress ?? (() => {});
  const procs = new ProcessGroup();
  const unregister = killOnExit(() => procs.killAllSync());
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'agentgate-soak-'));
  const runId = `${process.pid}-${randomBytes(3).toString('hex')}`;
  const redisPrefix = `agentgate-soak-${runId}`;
  let gateway: GatewayProcess | undefined;
  let loader: ChildProcess | undefined;
  let inspector: Inspector | undefined;
  try {
    const { child: upstreamChild, port } = await procs.spawnNodeWithPort(path.join(HERE, 'upstream.ts'), []);
    const upstreamUrl = `http://127.0.0.1:${port}`;
    const configDir = path.join(tmp, 'config');
    const snapDir = path.join(tmp, 'snapshots');
    for (const dir of [configDir, snapDir]) mkdirSync(dir, { recursive: true });
    const configFile = path.join(configDir, 'gateway.yaml');
    writeFileSync(configFile, soakConfig(upstreamUrl, options, redisPrefix));
    gateway = await spawnGateway(procs, {
      label: 'gateway',
      configFile,
      dir: tmp,
      // The image's heap flags: the RSS judged against the shipped limit is the RSS of the gateway as it ships.
      nodeArgs: [...shippedNodeFlags(), '--inspect=127.0.0.1:0'],
      waitReady: true,
    });
    const gw = gateway;
    inspector = await Inspector.connect(gw.errFile);
    const devtools = inspector;
    say(`gateway pid ${gw.pid} at ${gw.url} (${options.store} store), upstream pid ${upstreamChild.pid}`);

    loader = procs.spawn(process.execPath, [path.join(HERE, 'loader.ts')], ['ignore', 'inherit', 'inherit', 'ipc']);
    const loaderProc = loader;
    const messages: { type: string }[] = [];
    let wake: (() => void) | undefined;
    loaderProc.on('message', (m: { type: string }) => {
      messages.push(m);
      wake?.();
    });
    const next = async (type: string, timeoutMs: number): Promise<unknown> => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const i = messages.findIndex((m) => m.type === type);
        if (i !== -1) return messages.splice(i, 1)[0];
        if (loaderProc.exitCode !== null) throw new Error('the load generator exited');
        if (Date.now() > deadline) throw new Error(`the load generator sent no '${type}' within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 200);
        });
      }
    };
    await next('ready', 10_000);

    const windows: SoakWindow[] = [];
    const samples: MemorySample[] = [];
    const liveHeap: { t: number; mib: number }[] = [];
    let requests = 0;
    let loadStart = 0;
    let segment = 0;
    const statuses: Record<string, number> = {};
    const kinds: Record<string, number> = {};
    let clientErrors = 0;
    let lastCpu = cpuSeconds(gw.pid);
    loaderProc.on('message', (m: { type: string } & WindowStats) => {
      if (m.type !== 'window' || m.requests + m.errors === 0) return;
      const seconds = (m.end - m.start) / 1000;
      const cpu = cpuSeconds(gw.pid);
      const gatewayCores = cpu !== undefined && lastCpu !== undefined ? round((cpu - lastCpu) / Math.max(seconds, 0.001), 2) : null;
      lastCpu = cpu;
      const w: SoakWindow = {
        ...m,
        segment,
        t: round((m.end - loadStart) / 1000, 1),
        rps: round(m.requests / Math.max(seconds, 0.001), 0),
        load_average: round(os.loadavg()[0]!, 2),
        gateway_cores: gatewayCores,
      };
      windows.push(w);
      requests += m.requests;
      clientErrors += m.errors;
      for (const [s, n] of Object.entries(m.statuses)) statuses[s] = (statuses[s] ?? 0) + n;
      for (const [k, n] of Object.entries(m.kinds)) kinds[k] = (kinds[k] ?? 0) + n;
      const last = samples.at(-1);
      const live = liveHeap.at(-1);
      say(
        `t=${String(Math.round(w.t)).padStart(5)}s  ${requests.toLocaleString('en-US').padStart(11)} requests  ${String(w.rps).padStart(6)} req/s  p99 ${w.p99_ms.toFixed(1).padStart(6)} ms` +
          (last ? `  RSS ${last.rss_mib.toFixed(0)} MiB` : '') +
          (live ? `  live heap ${live.mib.toFixed(1)} MiB` : '') +
          `  load ${w.load_average.toFixed(1)}` +
          (m.errors ? `  ${m.errors} client errors` : '') +
          (Object.keys(m.statuses).some((s) => !EXPECTED_STATUSES.has(s)) ? `  statuses ${JSON.stringify(m.statuses)}` : ''),
      );
    });

    // Memory samples, also while the load pauses for a snapshot (marked: the snapshot itself takes memory).
    let sampling = true;
    let paused = false;
    const sampler = (async () => {
      while (sampling) {
        const rss = procStatusKiB(gw.pid, 'VmRSS');
        if (rss !== undefined && loadStart > 0) {
          const metrics = await scrapeMetrics(gw.adminUrl);
          const m = (name: string) => (metrics ? round(metricSum(metrics, name) / 2 ** 20, 1) : null);
          samples.push({
            t: round((Date.now() - loadStart) / 1000, 1),
            rss_mib: round(rss / 1024, 1),
            heap_used_mib: m('nodejs_heap_size_used_bytes'),
            heap_total_mib: m('nodejs_heap_size_total_bytes'),
            external_mib: m('nodejs_external_memory_bytes'),
            requests,
            ...(paused ? { paused: true as const } : {}),
          });
        }
        await sleep(options.sampleSeconds * 1000);
      }
    })();
    // The live heap: a forced full GC (a pause of a few tens of ms), then what V8 still holds.
    const gcLoop = (async () => {
      while (sampling) {
        await sleep(options.gcSeconds * 1000);
        if (!sampling || paused || loadStart === 0 || !gw.alive()) continue;
        const bytes = await devtools.liveHeapBytes().catch(() => undefined);
        if (bytes !== undefined) liveHeap.push({ t: round((Date.now() - loadStart) / 1000, 1), mib: round(bytes / 2 ** 20, 2) });
      }
    })();

    let nextN = 0;
    const runSegment = async (untilDone: () => boolean) => {
      const plan: LoadPlan = { url: gw.url, connections: options.connections, consumers: options.consumers, runId, windowMs: options.windowSeconds * 1000, firstN: nextN };
      loaderProc.send({ cmd: 'start', ...plan });
      while (!untilDone()) {
        if (!gw.alive()) break;
        await sleep(250);
      }
      loaderProc.send({ cmd: 'stop' });
      const stopped = (await next('stopped', 30_000)) as Stopped;
      nextN = stopped.nextN;
      segment++;
    };

    loadStart = Date.now();
    const elapsed = () => (Date.now() - loadStart) / 1000;
    const capped = () => elapsed() >= options.maxDurationSeconds;
    // The first snapshot 40% of the way in (by time and by requests), when the bounded store has long been full; the
    // verdicts compare later parts of the run only, which the snapshot's own memory use cannot touch.
    await runSegment(() => (elapsed() >= 0.4 * options.durationSeconds && requests >= 0.4 * options.requests) || capped());

    let snapA: (HeapSummary & { t: number }) | undefined;
    if (options.snapshots && gw.alive()) {
      paused = true;
      snapA = { ...(await heapSnapshot(devtools, snapDir, say)), t: round(elapsed(), 1) };
      paused = false;
    }

    await runSegment(() => (elapsed() >= options.durationSeconds && requests >= options.requests) || capped());
    const loadSeconds = elapsed();
    sampling = false;
    await Promise.all([sampler, gcLoop]);

    let snapB: (HeapSummary & { t: number }) | undefined;
    if (options.snapshots && gw.alive()) snapB = { ...(await heapSnapshot(devtools, snapDir, say)), t: round(elapsed(), 1) };
    devtools.close();

    const crashed = !gw.alive();
    const metrics = crashed ? undefined : await scrapeMetrics(gw.adminUrl);
    const upstream = await fetch(`${upstreamUrl}/__stats`).then((r) => r.json() as Promise<{ executions: number; gets: number }>, () => null);
    const exit = crashed ? await gw.exited : await gw.stop();
    loaderProc.disconnect();
    const problems = await logProblems(gw.logFile);

    const gatewayOutcomes = metrics ? byLabel(metrics, 'agentgate_requests_total', 'outcome', (l) => !l.includes('route="_agentgate"')) : {};
    const idempotencyEvents = metrics ? byLabel(metrics, 'agentgate_idempotency_events_total', 'event') : {};
    const unexpected = Object.entries(statuses).reduce((sum, [s, n]) => (EXPECTED_STATUSES.has(s) ? sum : sum + n), 0);

    const result: SoakResult = {
      settings: { ...options, progress: undefined, redisUrl: options.store === 'redis' ? options.redisUrl : undefined, node_flags: shippedNodeFlags() },
      duration_seconds: round(loadSeconds, 1),
      requests,
      rps: round(requests / loadSeconds, 0),
      statuses,
      kinds,
      client_errors: clientErrors,
      unexpected_statuses: unexpected,
      gateway_outcomes: gatewayOutcomes,
      idempotency_events: idempotencyEvents,
      upstream,
      crashed,
      exit: { code: exit.code, signal: exit.signal },
      log_problems: problems.counts,
      log_unexpected_errors: problems.unexpected_errors,
      log_examples: problems.examples,
      samples,
      live_heap: liveHeap,
      windows,
      rss: rssAnalysis(samples, loadSeconds, snapA?.t),
      live_heap_trend: trend(liveHeap.map((h) => [h.t, h.mib]), 0, loadSeconds),
      heap_snapshots: snapA && snapB ? compareSnapshots(snapA, snapB) : null,
      p99: p99Analysis(windows, options.windowSeconds),
      verdicts: undefined as unknown as SoakResult['verdicts'],
      ok: false,
    };
    result.verdicts = verdicts(result, options.judgeTrends);
    result.ok = Object.values(result.verdicts).every((v) => v.ok);
    return result;
  } finally {
    inspector?.close();
    if (loader?.connected) loader.disconnect();
    await procs.stopAll();
    procs.killAllSync();
    unregister();
    if (options.store === 'redis') await cleanupPrefix(options.redisUrl, redisPrefix).catch(() => undefined);
    if (!options.keep) rmSync(tmp, { recursive: true, force: true });
    else say(`kept ${tmp}`);
  }
}

function soakConfig(upstreamUrl: string, options: SoakOptions, redisPrefix: string): string {
  const store = options.store === 'redis' ? `{type: redis, url: '${options.redisUrl}', key_prefix: '${redisPrefix}'}` : '{type: memory}';
  return `version: 1
server: {listen: 127.0.0.1:0, admin_listen: 127.0.0.1:0}
# memory: the default bounds. Budgets (100,000 consumers) fill their part and are evicted least recently used first;
# idempotency records are never evicted and a full records part answers 503, so their ttl is what keeps this load
# inside it: at the 2,000+ fresh writes a second of the 2-core machine, 15 s of records take about half of its 64 MiB
# (a longer ttl would measure a gateway refusing writes, not one serving them; the lease shortened to fit the ttl).
store: ${store}
logging: {level: ${options.logLevel}}
consumers: {identify: [{header: x-agent-id}]}
upstreams:
  api: {url: '${upstreamUrl}', timeout: 10s}
rate_limits:
  agents: {capacity: 600, per: 1m}
defaults: {rate_limit: agents, cost: 1}
routes:
  - name: items
    match: {methods: [GET], path: '/soak/items/{id}'}
    upstream: api
  - name: orders
    match: {methods: [POST], path: /soak/orders}
    upstream: api
    cost: 5
    idempotency: {required: true, ttl: 15s, lease: 5s}
    silent_failure: {empty_body: true}
`;
}

/** A heap snapshot over the inspector (V8 runs a full GC first), summarized, then deleted. */
async function heapSnapshot(devtools: Inspector, dir: string, say: (line: string) => void): Promise<HeapSummary> {
  await sleep(1000);
  const started = Date.now();
  const file = path.join(dir, `heap-${started}.heapsnapshot`);
  await devtools.heapSnapshot(file);
  const summary = summarizeHeapSnapshot(file);
  say(`heap snapshot: ${mib(summary.self_bytes)} MiB live in ${summary.nodes.toLocaleString('en-US')} objects (${mib(summary.file_bytes)} MiB file, ${((Date.now() - started) / 1000).toFixed(1)} s)`);
  rmSync(file, { force: true });
  return summary;
}

function compareSnapshots(a: HeapSummary & { t: number }, b: HeapSummary & { t: number }): NonNullable<SoakResult['heap_snapshots']> {
  const strip = ({ groups: _groups, ...rest }: HeapSummary & { t: number }) => rest;
  return {
    a: strip(a),
    b: strip(b),
    growth_mib: round((b.self_bytes - a.self_bytes) / 2 ** 20, 2),
    growth_pct: round((100 * (b.self_bytes - a.self_bytes)) / a.self_bytes, 1),
    top_growth: heapGrowth(a, b, 10),
  };
}

export function rssAnalysis(all: MemorySample[], seconds: number, snapshotAt: number | undefined): RssAnalysis {
  const samples = all.filter((s) => !s.paused);
  const points = samples.map((s): [number, number] => [s.t, s.rss_mib]);
  const rss = samples.map((s) => s.rss_mib);
  const split = snapshotAt ?? 0;
  const before = snapshotAt === undefined ? null : trend(points, 0, split);
  const steadyFrom = snapshotAt === undefined ? seconds / 2 : split / 2;
  const steadyTo = snapshotAt ?? seconds;
  return {
    start_mib: rss[0] ?? NaN,
    peak_mib: Math.max(...rss),
    peak_before_snapshot_mib: Math.max(...samples.filter((s) => snapshotAt === undefined || s.t <= snapshotAt).map((s) => s.rss_mib)),
    end_mib: rss.at(-1) ?? NaN,
    steady_mib: round(median(points.filter(([t]) => t >= steadyFrom && t <= steadyTo).map(([, v]) => v)), 1),
    before_snapshot: before,
    after_snapshot: trend(points, split, seconds),
  };
}

/** Medians over 60-70% and 90-100% of the stretch [from, to] (seconds), and the slope over its 60-100%, of (seconds, MiB) points. */
export function trend(points: [number, number][], from: number, to: number): Trend {
  const at = (f: number) => from + f * (to - from);
  const between = (a: number, b: number) => points.filter(([t]) => t >= at(a) && t <= at(b));
  const median_ = (list: [number, number][]) => median(list.map(([, v]) => v));
  const midPoints = between(0.6, 0.7);
  const lastPoints = between(0.9, 1);
  const mid = midPoints.length ? median_(midPoints) : NaN;
  const last = lastPoints.length ? median_(lastPoints) : NaN;
  return {
    mid_mib: round(mid, 1),
    last_mib: round(last, 1),
    growth_mib: round(last - mid, 2),
    growth_pct: round((100 * (last - mid)) / mid, 1),
    slope_mib_per_min: round(slope(between(0.6, 1).map(([t, v]) => [t / 60, v])), 3),
  };
}

/** Least-squares slope of y over x. */
function slope(points: [number, number][]): number {
  if (points.length < 2) return NaN;
  const n = points.length;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}

export function p99Analysis(windows: SoakWindow[], windowSeconds: number): SoakResult['p99'] {
  // The first window is warm-up (JIT, pools filling); windows cut short by a pause hold too few samples to rank.
  const full = windows.slice(1).filter((w) => (w.end - w.start) / 1000 >= windowSeconds / 2);
  const third = Math.max(1, Math.floor(full.length / 3));
  const first = median(full.slice(0, third).map((w) => w.p99_ms));
  const last = median(full.slice(-third).map((w) => w.p99_ms));
  return {
    first_third_median_ms: round(first),
    last_third_median_ms: round(last),
    ratio: round(last / first),
    max_window_ms: round(Math.max(...full.map((w) => w.p99_ms))),
  };
}

/** The criteria, stated once (the report prints them). */
export const CRITERIA = {
  plateau:
    'RSS plateau: after the first heap snapshot (the longer part of the run; the snapshot leaves its own malloc\'d memory in RSS, a step, not a trend), the median RSS over the last 10% exceeds the median over 60-70% of that stretch by at most 5% or 8 MiB, whichever is larger (without snapshots: of the whole run)',
  no_leak:
    'no leak: the live heap after a forced full GC (measured every window) over the last 10% of the run exceeds that over 60-70% by at most 5% or 4 MiB, whichever is larger, and so does the heap snapshot at the end against the one 40% of the way in',
  rss_ceiling:
    'RSS ceiling: the peak RSS before the first heap snapshot (the whole run without snapshots) is at most 60% of the memory limit deploy/kubernetes/deployment.yaml gives the agentgate container, with the image\'s node flags',
  p99_flat: 'p99 flat: the median per-window p99 of the last third of the windows is at most 1.5 times that of the first third (the first window, warm-up, left out)',
  answers: 'answers: every answer 200/201, no client errors, the gateway alive throughout and exiting 0 on SIGTERM, no error/fatal log line',
};

export function verdicts(r: SoakResult, judgeTrends = true): SoakResult['verdicts'] {
  const stretch = (name: string, t: Trend | null) => {
    if (!t) return { ok: true, text: '' };
    const allowed = Math.max(0.05 * t.mid_mib, 8);
    const ok = Number.isFinite(t.growth_mib) && t.growth_mib <= allowed;
    return { ok, text: `${name}: ${t.mid_mib} → ${t.last_mib} MiB, ${signed(t.growth_mib)} MiB (allowed ${round(allowed, 1)}), slope ${t.slope_mib_per_min} MiB/min` };
  };
  const before = stretch('before the first snapshot (for information)', r.rss.before_snapshot);
  const after = stretch(r.rss.before_snapshot ? 'after the first snapshot' : 'whole run', r.rss.after_snapshot);
  const plateau: SoakVerdict = {
    judged: judgeTrends,
    ok: after.ok || !judgeTrends,
    rule: CRITERIA.plateau,
    detail: `steady RSS ${r.rss.steady_mib} MiB${r.rss.before_snapshot ? ' before the first snapshot' : ''}; ${[before.text, after.text].filter(Boolean).join('; ')}; start ${r.rss.start_mib}, peak ${r.rss.peak_mib} MiB`,
  };
  const live = r.live_heap_trend;
  const liveAllowed = Math.max(0.05 * live.mid_mib, 4);
  const h = r.heap_snapshots;
  const snapAllowed = h ? Math.max(0.05 * (h.a.self_bytes / 2 ** 20), 4) : 0;
  const liveOk = Number.isFinite(live.growth_mib) ? live.growth_mib <= liveAllowed : false;
  const snapOk = h ? h.growth_mib <= snapAllowed : true;
  const noLeak: SoakVerdict = {
    judged: judgeTrends,
    ok: (liveOk && snapOk) || !judgeTrends,
    rule: CRITERIA.no_leak,
    detail:
      `live heap after full GC ${live.mid_mib} MiB at 60-70%, ${live.last_mib} MiB at the end: ${signed(live.growth_mib)} MiB (allowed ${round(liveAllowed, 1)}), slope ${live.slope_mib_per_min} MiB/min; ` +
      (h
        ? `snapshots ${mib(h.a.self_bytes)} MiB at t=${Math.round(h.a.t)}s → ${mib(h.b.self_bytes)} MiB at t=${Math.round(h.b.t)}s: ${signed(h.growth_mib)} MiB (allowed ${round(snapAllowed, 1)}), objects ${h.a.nodes.toLocaleString('en-US')} → ${h.b.nodes.toLocaleString('en-US')}`
        : 'no snapshots taken'),
  };
  const p99Flat: SoakVerdict = {
    judged: judgeTrends,
    ok: (Number.isFinite(r.p99.ratio) && r.p99.ratio <= 1.5) || !judgeTrends,
    rule: CRITERIA.p99_flat,
    detail: `p99 ${r.p99.first_third_median_ms} ms (first third) → ${r.p99.last_third_median_ms} ms (last third): ×${r.p99.ratio}; worst window ${r.p99.max_window_ms} ms`,
  };
  const errorLines = r.log_unexpected_errors;
  const answers: SoakVerdict = {
    judged: true,
    ok: r.unexpected_statuses === 0 && r.client_errors === 0 && !r.crashed && r.exit?.code === 0 && errorLines === 0 && r.requests > 0,
    rule: CRITERIA.answers,
    detail: `${r.requests.toLocaleString('en-US')} answers ${JSON.stringify(r.statuses)}, ${r.client_errors} client errors, ${r.crashed ? 'CRASHED' : `exit ${r.exit?.code ?? r.exit?.signal}`}, ${errorLines} error log lines`,
  };
  const limitMiB = shippedMemoryLimitMiB();
  const ceiling = 0.6 * limitMiB;
  const peak = r.rss.before_snapshot ? r.rss.peak_before_snapshot_mib : r.rss.peak_mib;
  const rssCeiling: SoakVerdict = {
    judged: judgeTrends,
    ok: peak <= ceiling || !judgeTrends,
    rule: CRITERIA.rss_ceiling,
    detail: `peak RSS ${peak} MiB${r.rss.before_snapshot ? ' before the first snapshot' : ''} against ${round(ceiling, 1)} MiB (60% of the shipped ${limitMiB} MiB limit): ${round((100 * peak) / limitMiB, 1)}% of it; node flags ${JSON.stringify(r.settings.node_flags ?? [])}`,
  };
  return { plateau, no_leak: noLeak, rss_ceiling: rssCeiling, p99_flat: p99Flat, answers };
}

function signed(v: number): string {
  return `${v >= 0 ? '+' : ''}${v}`;
}

function byLabel(text: string, metric: string, label: string, filter: (line: string) => boolean = () => true): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${metric}{`) || !filter(line)) continue;
    const value = new RegExp(`${label}="([^"]*)"`).exec(line)?.[1];
    const n = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (value !== undefined && Number.isFinite(n)) out[value] = (out[value] ?? 0) + n;
  }
  return out;
}

// Turns scenario results into the ratios, the issue-4/5 figures and the printed report.
import { BLOB_SIZES_KIB, CONTEXT_RATIOS, OPEN_LOOP_TARGETS, TARGETS, type OpenLoopTargetSpec, type TargetSpec } from './scenarios.ts';
import type { SchemaCalibration } from './calibrate.ts';

export interface ScenarioResult {
  id: string;
  title: string;
  group: string;
  method: string;
  path: string;
  /** ok: measured and every response was the expected one; flagged: measured, but some were not (or the gateway
   *  reported other outcomes): its figures describe error handling, not the path it was meant to measure. */
  status: 'ok' | 'flagged' | 'skipped' | 'failed';
  reason?: string;
  problems: string[];
  /** Caveats that do not invalidate the figures (e.g. CPU stolen by the hypervisor). */
  notes: string[];
  expected_status: number;
  responses?: number;
  rps?: number;
  p50_ms?: number;
  p99_ms?: number;
  mean_ms?: number;
  status_counts?: Record<string, number>;
  unexpected_responses?: number;
  errors?: number;
  timeouts?: number;
  /** Peak RSS (VmHWM) of the process under test, MiB. */
  peak_rss_mib?: number;
  /** CPU time (user + system) of the process under test per response during the measured window, µs. */
  cpu_us_per_request?: number;
  /** The same for its main thread alone: the rest is GC helper threads, libuv's pool (log writes), compilers. */
  main_thread_cpu_us_per_request?: number;
  /** CPU used by the process under test during the measured window, in cores (1.0 = one core busy all the time). */
  cpu_cores?: number;
  /**
   * agentgate only, from its nodejs_gc_duration_seconds over the measured window: garbage-collection time per response,
   * µs, and how many major (mark-compact) collections ran. A lower bound: prom-client records only the first of the GCs
   * a PerformanceObserver batch delivers. A proxy's per-request objects should die young: major collections under
   * steady load mean they are being promoted, which once cost a fifth of the throughput.
   */
  gc_us_per_request?: number;
  major_gcs?: number;
  upstream_cpu_cores?: number;
  loadgen_cpu_cores?: number;
  redis_cpu_cores?: number;
  /** Requests the upstream served per response the client got, during the measured window (replays: 0). */
  upstream_calls_per_response?: number;
  /**
   * Connections the upstream accepted during the measured window: a proxy that reuses its pool opens none, except to
   * replace the few it dropped when the warm-up's requests in flight were cut off.
   */
  upstream_new_connections?: number;
  /** TCP connections opened on the whole machine during the measured window (all processes; /proc/net/snmp ActiveOpens). */
  tcp_connections_opened?: number;
  /** Share of the machine's CPU time that was idle / stolen by the hypervisor during the measured window, %. */
  machine_idle_pct?: number;
  machine_steal_pct?: number;
  /** Cores busy with anything but the benchmark's own processes (and Redis) during the measured window. */
  machine_other_cores?: number;
  /** Size of agentgate's log file at the end (warm-up and measured requests). */
  log_bytes?: number;
  /** Keys the scenario left under its Redis key prefix (deleted afterwards): idempotency records and budgets. */
  redis_keys_left?: number;
  /** --rounds > 1: req/s of every round, and (max − min) / the reported (fastest) round's, %. */
  rps_rounds?: number[];
  rps_spread_pct?: number;
  /** --interleave: req/s of each slice, in the order measured. */
  rps_slices?: number[];
  /** agentgate_requests_total by outcome over the process's life (warm-up included). */
  gateway_outcomes?: Record<string, number>;
}

export interface TargetResult {
  name: string;
  /** The issue that set the bar (7 or 23). */
  issue: number;
  kind: TargetSpec['kind'];
  of: string;
  over: string;
  value: number | null;
  target: number;
  comparison: '>=' | '<=';
  stretch: boolean;
  verdict: 'met' | 'not met' | 'n/a';
  /**
   * Throughput targets only: CPU µs per request of `over` ÷ that of `of` — the same question asked of CPU time, which
   * CPU stolen by the hypervisor or other processes disturbs much less than requests/s. Informative, not the verdict.
   */
  cpu_ratio: number | null;
  note?: string;
}

export interface RatioResult {
  name: string;
  of: string;
  over: string;
  value: number | null;
  note?: string;
}

export interface PolicyCost {
  name: string;
  of: string;
  over: string;
  /** requests/s of `of` ÷ requests/s of `over`. */
  throughput_ratio: number | null;
  /** Extra CPU time of the gateway per request, µs (from /proc). */
  added_cpu_us_per_request: number | null;
  /** Extra wall time per request at the bottleneck, µs: 10^6/rps(of) − 10^6/rps(over). */
  added_wall_us_per_request: number | null;
  added_p50_ms: number | null;
  added_p99_ms: number | null;
  note?: string;
}

export interface SchemaCost {
  points: { kib: number; added_cpu_us_per_request: number | null; added_wall_us_per_request: number | null; throughput_ratio: number | null }[];
  /** Least-squares slope of the added CPU µs per request over body size: the validation cost per KiB. */
  cpu_us_per_kib: number | null;
  /** The same from the throughput differences. */
  wall_us_per_kib: number | null;
  /** The fixed part (intercept of the CPU fit): buffering and the per-response work that does not grow with size. */
  cpu_us_fixed: number | null;
  /** The gateway's own check (JSON.parse + ajv) timed alone in the bench process on the same documents. */
  in_process?: SchemaCalibration;
}

export interface Analysis {
  targets: TargetResult[];
  ratios: RatioResult[];
  issue4: PolicyCost[];
  issue5: { empty_body: PolicyCost; noise: PolicyCost; response_schema: SchemaCost };
}

type ById = Map<string, ScenarioResult>;

function usable(r: ScenarioResult | undefined): r is ScenarioResult & { rps: number; p50_ms: number; p99_ms: number } {
  return r !== undefined && (r.status === 'ok' || r.status === 'flagged') && r.rps !== undefined && r.rps > 0;
}

function noteFor(...results: (ScenarioResult | undefined)[]): string | undefined {
  const flagged = results.filter((r) => r?.status === 'flagged').map((r) => r!.id);
  return flagged.length > 0 ? `${flagged.join(', ')} flagged: not a valid measurement` : undefined;
}

function missingNote(byId: ById, ...ids: string[]): string {
  return ids
    .filter((id) => !usable(byId.get(id)))
    .map((id) => `${id} ${byId.get(id)?.status ?? 'not run'}`)
    .join(', ');
}

export function analyse(results: ScenarioResult[]): Analysis {
  const byId: ById = new Map(results.map((r) => [r.id, r]));
  const targets = TARGETS.map((t): TargetResult => {
    const of = byId.get(t.of);
    const over = byId.get(t.over);
    const comparison = t.kind === 'throughput' ? '>=' : '<=';
    const base = { name: t.name, issue: t.issue, kind: t.kind, of: t.of, over: t.over, target: t.target, comparison, stretch: t.stretch ?? false } as const;
    if (!usable(of) || !usable(over)) return { ...base, value: null, verdict: 'n/a', cpu_ratio: null, note: missingNote(byId, t.of, t.over) };
    const value = t.kind === 'throughput' ? of.rps / over.rps : of.p99_ms - over.p99_ms;
    const met = t.kind === 'throughput' ? value >= t.target : value <= t.target;
    const cpuRatio = t.kind === 'throughput' && of.cpu_us_per_request && over.cpu_us_per_request ? over.cpu_us_per_request / of.cpu_us_per_request : null;
    const note = noteFor(of, over);
    return { ...base, value, verdict: note ? 'n/a' : met ? 'met' : 'not met', cpu_ratio: cpuRatio, ...(note ? { note } : {}) };
  });
  const ratios = CONTEXT_RATIOS.map((r): RatioResult => {
    const of = byId.get(r.of);
    const over = byId.get(r.over);
    if (!usable(of) || !usable(over)) return { ...r, value: null, note: missingNote(byId, r.of, r.over) };
    const note = noteFor(of, over);
    return { ...r, value: of.rps / over.rps, ...(note ? { note } : {}) };
  });
  const cost = (name: string, ofId: string, overId: string): PolicyCost => {
    const of = byId.get(ofId);
    const over = byId.get(overId);
    if (!usable(of) || !usable(over)) {
      return { name, of: ofId, over: overId, throughput_ratio: null, added_cpu_us_per_request: null, added_wall_us_per_request: null, added_p50_ms: null, added_p99_ms: null, note: missingNote(byId, ofId, overId) };
    }
    const note = noteFor(of, over);
    return {
      name,
      of: ofId,
      over: overId,
      throughput_ratio: of.rps / over.rps,
      added_cpu_us_per_request: of.cpu_us_per_request !== undefined && over.cpu_us_per_request !== undefined ? of.cpu_us_per_request - over.cpu_us_per_request : null,
      added_wall_us_per_request: 1e6 / of.rps - 1e6 / over.rps,
      added_p50_ms: of.p50_ms - over.p50_ms,
      added_p99_ms: of.p99_ms - over.p99_ms,
      ...(note ? { note } : {}),
    };
  };
  const issue4 = [
    cost('rate limit, memory store', 'RLM-GET', 'C2-GET'),
    cost('rate limit, Redis store', 'RLR-GET', 'C2-GET'),
    cost('API key authentication', 'AK-GET', 'C2-GET'),
    cost('JWT authentication, cached', 'JWT-GET', 'C2-GET'),
    cost('MCP tools/call (same request)', 'MCP-GET', 'C2-GET'),
  ];
  const points = BLOB_SIZES_KIB.map((kib) => {
    const c = cost(`response_schema ${kib} KiB`, `S${kib}-GET`, `P${kib}-GET`);
    return { kib, added_cpu_us_per_request: c.added_cpu_us_per_request, added_wall_us_per_request: c.added_wall_us_per_request, throughput_ratio: c.throughput_ratio };
  });
  const cpuFit = fit(points.map((p) => [p.kib, p.added_cpu_us_per_request]));
  const wallFit = fit(points.map((p) => [p.kib, p.added_wall_us_per_request]));
  return {
    targets,
    ratios,
    issue4,
    issue5: {
      empty_body: cost('empty_body only', 'EB-GET', 'C2-GET'),
      noise: cost('passthrough vs passthrough (run-to-run noise)', 'C2-GET', 'C-GET'),
      response_schema: { points, cpu_us_per_kib: cpuFit?.slope ?? null, wall_us_per_kib: wallFit?.slope ?? null, cpu_us_fixed: cpuFit?.intercept ?? null },
    },
  };
}

/** Ordinary least squares over the points that have a value; undefined with fewer than two. */
function fit(points: [number, number | null][]): { slope: number; intercept: number } | undefined {
  const xy = points.filter((p): p is [number, number] => p[1] !== null);
  if (xy.length < 2) return undefined;
  const n = xy.length;
  const mx = xy.reduce((a, p) => a + p[0], 0) / n;
  const my = xy.reduce((a, p) => a + p[1], 0) / n;
  const sxx = xy.reduce((a, p) => a + (p[0] - mx) ** 2, 0);
  const sxy = xy.reduce((a, p) => a + (p[0] - mx) * (p[1] - my), 0);
  const slope = sxy / sxx;
  return { slope, intercept: my - slope * mx };
}

// ---- printing ----

const fmt = (value: number | null | undefined, digits = 2): string => (value === null || value === undefined || !Number.isFinite(value) ? '—' : value.toFixed(digits));
const fmtInt = (value: number | undefined): string => (value === undefined ? '—' : Math.round(value).toLocaleString('en-US'));
const signed = (value: number | null, digits = 1): string => (value === null || !Number.isFinite(value) ? '—' : `${value >= 0 ? '+' : ''}${value.toFixed(digits)}`);

export function table(headers: string[], rows: string[][], rightAligned: boolean[] = []): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (rightAligned[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function formatResults(results: ScenarioResult[]): string {
  const withSpread = results.some((r) => r.rps_spread_pct !== undefined);
  const rows = results.map((r) => {
    const mark = r.status === 'ok' ? '' : r.status === 'flagged' ? ' !!FLAGGED' : ` (${r.status})`;
    const unexpected = r.unexpected_responses === undefined ? '—' : String(r.unexpected_responses + (r.errors ?? 0));
    return [
      `${r.id}${mark}`,
      fmtInt(r.rps),
      fmt(r.p50_ms),
      fmt(r.p99_ms),
      fmt(r.peak_rss_mib, 1),
      fmt(r.cpu_us_per_request, 0),
      fmt(r.cpu_cores, 2),
      fmt(r.gc_us_per_request, 1),
      r.major_gcs === undefined ? '—' : String(r.major_gcs),
      fmt(r.upstream_cpu_cores, 2),
      fmt(r.loadgen_cpu_cores, 2),
      fmt(r.machine_steal_pct, 0),
      fmt(r.machine_other_cores, 2),
      ...(withSpread ? [fmt(r.rps_spread_pct, 0)] : []),
      unexpected,
      r.title,
    ];
  });
  return table(
    [
      'scenario',
      'req/s',
      'p50 ms',
      'p99 ms',
      'peak RSS MiB',
      'CPU µs/req',
      'CPU cores',
      'GC µs/req',
      'major GCs',
      'upstr. cores',
      'loadgen cores',
      'steal %',
      'other cores',
      ...(withSpread ? ['req/s spread %'] : []),
      'bad/err',
      'what',
    ],
    rows,
    [false, true, true, true, true, true, true, true, true, true, true, true, true, ...(withSpread ? [true] : []), true, false],
  );
}

export function formatTargets(targets: TargetResult[]): string {
  return table(
    ['target', 'issue', 'measured', 'wanted', 'verdict', 'same by CPU µs/req', 'note'],
    targets.map((t) => [
      `${t.name}${t.stretch ? ' (stretch)' : ''}`,
      String(t.issue),
      t.kind === 'throughput' ? fmt(t.value) : signed(t.value, 2),
      `${t.comparison} ${t.target}`,
      t.verdict,
      fmt(t.cpu_ratio),
      t.note ?? '',
    ]),
    [false, true, true, false, false, true, false],
  );
}

export function formatRatios(ratios: RatioResult[]): string {
  return table(['ratio (context)', 'req/s ratio', 'note'], ratios.map((r) => [r.name, fmt(r.value), r.note ?? '']), [false, true, false]);
}

function costRow(c: PolicyCost): string[] {
  return [c.name, `${c.of} vs ${c.over}`, fmt(c.throughput_ratio, 3), signed(c.added_cpu_us_per_request), signed(c.added_wall_us_per_request), signed(c.added_p50_ms, 2), signed(c.added_p99_ms, 2), c.note ?? ''];
}

const COST_HEADERS = ['what', 'compared', 'req/s ratio', 'CPU µs/req', 'wall µs/req', 'p50 ms', 'p99 ms', 'note'];
const COST_ALIGN = [false, false, true, true, true, true, true, false];

export function formatIssue4(costs: PolicyCost[]): string {
  return [
    'Added cost per request of a rate limit (a budget that never refuses; issue 4), of agent authentication (issue 20) and of the same GET made as an MCP tools/call (issue 21), against the same passthrough route without them:',
    table(COST_HEADERS, costs.map(costRow), COST_ALIGN),
    '  The MCP row includes the loopback HTTP request each tools/call makes to the gateway\'s own proxy port (the GET of the tool\'s route, through the whole pipeline), besides the JSON-RPC parsing.',
  ].join('\n');
}

export function formatIssue5(issue5: Analysis['issue5']): string {
  const s = issue5.response_schema;
  return [
    'Issue 5 — the response-inspection layer:',
    table(COST_HEADERS, [costRow(issue5.noise), costRow(issue5.empty_body)], COST_ALIGN),
    '  The first row is the same passthrough route measured twice: differences of that size are noise, not overhead.',
    '',
    'response_schema on N KiB JSON bodies (route with only response_schema vs the passthrough route, same body):',
    table(
      ['body', 'req/s ratio', 'added CPU µs/req', 'added wall µs/req'],
      s.points.map((p) => [`${p.kib} KiB`, fmt(p.throughput_ratio, 3), signed(p.added_cpu_us_per_request), signed(p.added_wall_us_per_request)]),
      [false, true, true, true],
    ),
    `  → ${fmt(s.cpu_us_per_kib)} µs of gateway CPU per KiB (least-squares slope of the added CPU time over body size; fixed part ${fmt(s.cpu_us_fixed, 1)} µs),`,
    `    ${fmt(s.wall_us_per_kib)} µs per KiB from the throughput differences (10^6/req/s is the time per request at the bottleneck).`,
    '  The added cost is buffering the body, JSON.parse and ajv validation; the slope is what grows with size.',
    ...(s.in_process
      ? [
          `  In isolation (the gateway's own checkBody timed in this process, no sockets): ${s.in_process.points.map((p) => `${p.kib} KiB ${p.us_per_check.toFixed(1)} µs`).join(', ')}`,
          `    → ${s.in_process.us_per_kib.toFixed(2)} µs per KiB for JSON.parse + ajv alone; what the end-to-end slope adds is buffering and the busier process.`,
        ]
      : []),
  ].join('\n');
}

/** The middle value (the mean of the two middle ones for an even count); undefined when empty. */
export function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** --interleave: each pair's req/s ratios of adjacent slices, as a spread. */
export function formatSliceRatios(pairs: { name: string; ratios: number[] }[]): string {
  return table(
    ['slice ratios', 'slices', 'min', 'median', 'max'],
    // With no slices, min and max are ±Infinity, which fmt shows as '—' like the missing median.
    pairs.map(({ name, ratios }) => [name, String(ratios.length), fmt(Math.min(...ratios)), fmt(median(ratios)), fmt(Math.max(...ratios))]),
    [false, true, true, true, true],
  );
}

/** A per-slice figure's middle value and its range over the slices. */
export interface Spread {
  median: number;
  min: number;
  max: number;
}

/** What one build measured in a --baseline comparison: the median over its slices, and every slice's figure. */
export interface BuildFigures {
  rps: number | null;
  cpu_us_per_request: number | null;
  rps_slices: number[];
  cpu_us_slices: number[];
}

/**
 * --baseline: one scenario, the old build against this checkout's, from slices measured in alternating order. Ratios
 * are new ÷ old per pair of adjacent slices (slice i of each build, measured one right after the other), so each ratio
 * compares figures of the same few seconds; their spread is what the machine did meanwhile.
 */
export interface BuildComparison {
  scenario: string;
  /**
   * Pairs of slices compared. A slice that did not measure what it should (flagged: error answers, other outcomes) or
   * measured nothing is left out with its partner: a ratio of error pages says nothing about the builds.
   */
  slices: number;
  slices_left_out: number;
  old: BuildFigures;
  new: BuildFigures;
  /** req/s new ÷ old: above 1 the new build is faster. */
  rps_ratio: Spread | null;
  /** CPU µs per request new ÷ old: above 1 the new build spends more of the gateway's CPU on each request. */
  cpu_ratio: Spread | null;
  /**
   * In how many pairs the new build did better (more req/s; less CPU per request). With no difference between the
   * builds it is a coin toss per pair, so a count near half is what noise alone gives, whatever the median says.
   */
  pairs_new_faster: number;
  pairs_new_cheaper: number;
}

function spread(values: number[]): Spread | null {
  return values.length === 0 ? null : { median: median(values)!, min: Math.min(...values), max: Math.max(...values) };
}

export function compareBuilds(scenario: string, oldSlices: ScenarioResult[], newSlices: ScenarioResult[]): BuildComparison {
  const all = oldSlices.map((old, i) => ({ old, new: newSlices[i] }));
  const paired = all.filter((p): p is { old: ScenarioResult; new: ScenarioResult } =>
    [p.old, p.new].every((r) => r !== undefined && r.status === 'ok' && (r.rps ?? 0) > 0 && r.cpu_us_per_request !== undefined),
  );
  const figures = (side: 'old' | 'new'): BuildFigures => {
    const rps = paired.map((p) => p[side].rps!);
    const cpu = paired.map((p) => p[side].cpu_us_per_request!);
    return { rps: median(rps) ?? null, cpu_us_per_request: median(cpu) ?? null, rps_slices: rps, cpu_us_slices: cpu };
  };
  const rpsRatios = paired.map((p) => p.new.rps! / p.old.rps!);
  const cpuRatios = paired.map((p) => p.new.cpu_us_per_request! / p.old.cpu_us_per_request!);
  return {
    scenario,
    slices: paired.length,
    slices_left_out: all.length - paired.length,
    old: figures('old'),
    new: figures('new'),
    rps_ratio: spread(rpsRatios),
    cpu_ratio: spread(cpuRatios),
    pairs_new_faster: rpsRatios.filter((r) => r > 1).length,
    pairs_new_cheaper: cpuRatios.filter((r) => r < 1).length,
  };
}

/**
 * The counts of a fair coin tossed n times that fall in [lo, n − lo] 95% of the time or more: how many pairs the new
 * build may win when the builds do not differ at all.
 */
export function coinTossRange(n: number): [number, number] {
  const choose = (k: number) => {
    let c = 1;
    for (let i = 1; i <= k; i++) c = (c * (n - k + i)) / i;
    return c;
  };
  let lo = 0;
  let below = 0; // outcomes with fewer than lo wins, of 2^n
  // Raise lo while both tails together (fewer than lo + 1 wins, more than n − lo − 1) stay within 5%.
  while (lo + 1 <= n / 2 && (2 * (below + choose(lo))) / 2 ** n <= 0.05) below += choose(lo++);
  return [lo, n - lo];
}

export function formatBuildComparison(comparisons: BuildComparison[]): string {
  const noise = [...new Set(comparisons.map((c) => c.slices))].filter((n) => n > 0).map((n) => {
    const [lo, hi] = coinTossRange(n);
    return `${lo}–${hi} of ${n}`;
  });
  const ratio = (s: Spread | null) => (s === null ? '—' : `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`);
  return [
    table(
      ['scenario', 'slice pairs', 'old req/s', 'new req/s', 'new/old req/s (min–max)', 'new faster', 'old CPU µs/req', 'new CPU µs/req', 'new/old CPU (min–max)', 'new cheaper'],
      comparisons.map((c) => [
        c.scenario,
        c.slices_left_out > 0 ? `${c.slices} (${c.slices_left_out} left out)` : String(c.slices),
        fmtInt(c.old.rps ?? undefined),
        fmtInt(c.new.rps ?? undefined),
        ratio(c.rps_ratio),
        `${c.pairs_new_faster}/${c.slices}`,
        fmt(c.old.cpu_us_per_request, 1),
        fmt(c.new.cpu_us_per_request, 1),
        ratio(c.cpu_ratio),
        `${c.pairs_new_cheaper}/${c.slices}`,
      ]),
      [false, true, true, true, true, true, true, true, true, true],
    ),
    '  old and new: medians over the slices. new/old: the median of the ratios of adjacent slices (measured one right',
    '  after the other), min–max over them; req/s above 1 and CPU below 1 favour the new build. "new faster/cheaper": in',
    `  how many pairs it did better; were the builds the same, each pair would be a coin toss (${noise.join(', ') || 'no pairs'}`,
    "  95% of the time). CPU µs/req is the gateway process's, all its threads. Nothing is asserted.",
  ].join('\n');
}

// ---- the open-loop run (issue 23) ----

/** Latency quantiles in ms. */
export interface LatencyQuantiles {
  p50: number;
  p90: number;
  p99: number;
  p99_9: number;
  max: number;
  mean: number;
}

export interface OpenLoopScenarioResult {
  id: string;
  title: string;
  method: string;
  path: string;
  /** As ScenarioResult's: flagged when some answers were not the expected status, failed, timed out or never came. */
  status: 'ok' | 'flagged' | 'skipped' | 'failed';
  reason?: string;
  problems: string[];
  notes: string[];
  expected_status: number;
  /** The schedule's requests per second. */
  rate: number;
  /** Requests scheduled in the measured window, and the answers they got. */
  scheduled?: number;
  responses?: number;
  /** The measured requests per second really sent (first to last send). */
  sent_rate?: number;
  status_counts?: Record<string, number>;
  unexpected_responses?: number;
  errors?: number;
  timeouts?: number;
  /** From each request's scheduled send time to the end of its answer (expected status only): the headline figures. */
  latency_ms?: LatencyQuantiles;
  /** From the actual send instead: coordinated omission left in, for comparison. */
  service_time_ms?: LatencyQuantiles;
  /** How late the generator sent each request: its own share of latency_ms, alike for every target at one rate. */
  send_lag_ms?: LatencyQuantiles;
  max_in_flight?: number;
  sockets_opened?: number;
  /** RSS of the process under test, MiB: right after it started (agentgate; before any request), the peak while measured, at the end. */
  idle_rss_mib?: number;
  peak_rss_mib?: number;
  end_rss_mib?: number;
  cpu_us_per_request?: number;
  cpu_cores?: number;
  /** agentgate only, as ScenarioResult's: GC time per response (a lower bound) and major collections, while measured. */
  gc_us_per_request?: number;
  major_gcs?: number;
  upstream_cpu_cores?: number;
  loadgen_cpu_cores?: number;
  redis_cpu_cores?: number;
  machine_steal_pct?: number;
  machine_other_cores?: number;
  gateway_outcomes?: Record<string, number>;
  log_bytes?: number;
  redis_keys_left?: number;
}

export interface AddedLatency {
  name: string;
  of: string;
  over: string;
  /** Each quantile of `of` minus the same quantile of `over`, ms; null when either did not measure. */
  added_ms: Record<'p50' | 'p90' | 'p99' | 'p99_9' | 'max', number | null>;
  note?: string;
}

export interface OpenLoopTargetResult {
  name: string;
  kind: OpenLoopTargetSpec['kind'];
  of: string;
  over: string | null;
  value: number | null;
  target: number;
  comparison: '<=';
  verdict: 'met' | 'not met' | 'n/a';
  note?: string;
}

const QUANTILE_KEYS = ['p50', 'p90', 'p99', 'p99_9', 'max'] as const;

function usableOpenLoop(r: OpenLoopScenarioResult | undefined): r is OpenLoopScenarioResult & { latency_ms: LatencyQuantiles } {
  return r !== undefined && (r.status === 'ok' || r.status === 'flagged') && r.latency_ms !== undefined;
}

function openLoopNote(byId: Map<string, OpenLoopScenarioResult>, ...ids: string[]): string | undefined {
  const missing = ids.filter((id) => !usableOpenLoop(byId.get(id))).map((id) => `${id} ${byId.get(id)?.status ?? 'not run'}`);
  if (missing.length > 0) return missing.join(', ');
  const flagged = ids.filter((id) => byId.get(id)?.status === 'flagged');
  return flagged.length > 0 ? `${flagged.join(', ')} flagged: not a valid measurement` : undefined;
}

/** The latency each agentgate scenario adds over the upstream's, quantile by quantile, and issue 23's targets. */
export function analyseOpenLoop(results: OpenLoopScenarioResult[]): { added: AddedLatency[]; targets: OpenLoopTargetResult[] } {
  const byId = new Map(results.map((r) => [r.id, r]));
  // B−A is not a target: it is what a bare Node proxy adds at the same rate on the same machine, the floor to read D and E by.
  const context = (['GET', 'POST'] as const).filter((m) => byId.has(`B-${m}`)).map((m) => `B-${m}|A-${m}`);
  const pairs = [...new Set([...context, ...OPEN_LOOP_TARGETS.filter((t) => t.over !== undefined).map((t) => `${t.of}|${t.over}`)])].map((p) => p.split('|') as [string, string]);
  const added = pairs.map(([ofId, overId]): AddedLatency => {
    const of = byId.get(ofId);
    const over = byId.get(overId);
    const name = `${ofId.split('-')[0]}−${overId.split('-')[0]} ${of?.method ?? ofId.split('-')[1]}`;
    const note = openLoopNote(byId, ofId, overId);
    const ok = usableOpenLoop(of) && usableOpenLoop(over);
    const added_ms = Object.fromEntries(QUANTILE_KEYS.map((q) => [q, ok ? of.latency_ms[q] - over.latency_ms[q] : null])) as AddedLatency['added_ms'];
    return { name, of: ofId, over: overId, added_ms, ...(note ? { note } : {}) };
  });
  const targets = OPEN_LOOP_TARGETS.map((t): OpenLoopTargetResult => {
    const base = { name: t.name, kind: t.kind, of: t.of, over: t.over ?? null, target: t.target, comparison: '<=' as const };
    const of = byId.get(t.of);
    const note = openLoopNote(byId, ...(t.over ? [t.of, t.over] : [t.of]));
    let value: number | null = null;
    if (t.kind === 'rss') value = usableOpenLoop(of) ? (of.peak_rss_mib ?? null) : null;
    else {
      const over = byId.get(t.over!);
      const q = t.kind === 'added-p50' ? 'p50' : 'p99';
      if (usableOpenLoop(of) && usableOpenLoop(over)) value = of.latency_ms[q] - over.latency_ms[q];
    }
    const flagged = note !== undefined;
    return { ...base, value, verdict: value === null || flagged ? 'n/a' : value <= t.target ? 'met' : 'not met', ...(note ? { note } : {}) };
  });
  return { added, targets };
}

export function formatOpenLoop(rate: number, results: OpenLoopScenarioResult[], analysis: ReturnType<typeof analyseOpenLoop>): string {
  const q = (r: OpenLoopScenarioResult, key: keyof LatencyQuantiles, digits = 2) => fmt(r.latency_ms?.[key], digits);
  const n = Math.min(...results.map((r) => r.scheduled ?? Infinity));
  const tail = Number.isFinite(n) ? { n, above: n - Math.ceil(0.999 * n) } : undefined;
  const rows = results.map((r) => {
    const mark = r.status === 'ok' ? '' : r.status === 'flagged' ? ' !!FLAGGED' : ` (${r.status})`;
    const bad = r.unexpected_responses === undefined ? '—' : String(r.unexpected_responses + (r.errors ?? 0) + (r.timeouts ?? 0));
    return [
      `${r.id}${mark}`,
      r.scheduled === undefined ? '—' : fmtInt(r.scheduled),
      fmtInt(r.sent_rate),
      q(r, 'p50'),
      q(r, 'p90'),
      q(r, 'p99'),
      q(r, 'p99_9'),
      q(r, 'max', 1),
      r.send_lag_ms ? `${fmt(r.send_lag_ms.p50)} / ${fmt(r.send_lag_ms.p99)}` : '—',
      r.service_time_ms ? `${fmt(r.service_time_ms.p50)} / ${fmt(r.service_time_ms.p99)}` : '—',
      r.max_in_flight === undefined ? '—' : String(r.max_in_flight),
      fmt(r.cpu_us_per_request, 0),
      fmt(r.cpu_cores, 2),
      fmt(r.gc_us_per_request, 1),
      r.major_gcs === undefined ? '—' : String(r.major_gcs),
      fmt(r.idle_rss_mib, 1),
      fmt(r.peak_rss_mib, 1),
      fmt(r.end_rss_mib, 1),
      fmt(r.machine_steal_pct, 0),
      fmt(r.machine_other_cores, 2),
      bad,
      r.title,
    ];
  });
  return [
    `Open-loop latency at ${rate.toLocaleString('en-US')} req/s (issue 23): requests sent on a fixed schedule whether or not earlier ones were answered;`,
    "  latency from each request's scheduled send time, so waiting behind a slow answer counts (no coordinated omission).",
    table(
      ['scenario', 'measured', 'sent/s', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'send lag p50 / p99', 'from send p50 / p99', 'max in flight', 'CPU µs/req', 'CPU cores', 'GC µs/req', 'major GCs', 'idle RSS MiB', 'peak RSS MiB', 'end RSS MiB', 'steal %', 'other cores', 'bad/err', 'what'],
      rows,
      [false, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, false],
    ),
    '  send lag: how late the generator sent the requests (a worker thread keeps the schedule to about 0.1 ms; beyond that',
    '  the bench process was busy or its CPU taken: it shares the cores with the process under test). It is part of every',
    '  latency above, alike for every target at one rate, so it mostly cancels in the added latency below. from send: the',
    '  same answers timed from the actual send (coordinated omission left in). max in flight: requests unanswered at once.',
    '  RSS: of the process under test (A: the upstream), idle = agentgate right after start, peak = while measured, end =',
    '  after the last answer. other cores: CPU used by processes outside the benchmark (the upstream, the generator and',
    '  Redis are left out; their own CPU is in the JSON).',
    '',
    'Added latency over the upstream directly (each quantile minus the same quantile of A, same rate and method):',
    table(
      ['added', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'note'],
      analysis.added.map((a) => [a.name, signed(a.added_ms.p50, 2), signed(a.added_ms.p90, 2), signed(a.added_ms.p99, 2), signed(a.added_ms.p99_9, 2), signed(a.added_ms.max, 1), a.note ?? '']),
      [false, true, true, true, true, true, false],
    ),
    '',
    table(
      ['target (issue 23, at 1,000 req/s)', 'measured', 'wanted', 'verdict', 'note'],
      analysis.targets.map((t) => [t.name, t.kind === 'rss' ? fmt(t.value, 1) : signed(t.value, 2), `≤ ${t.target}`, t.verdict, t.note ?? '']),
      [false, true, false, false, false],
    ),
    ...(rate === 1000 ? [] : [`  These targets are set at 1,000 req/s; this run's rate was ${rate.toLocaleString('en-US')}.`]),
    `  Never asserted.${tail === undefined ? '' : ` p99.9 and max rest on few samples (samples above p99.9: ${tail.above} of ${tail.n.toLocaleString("en-US")}; a longer --duration steadies the tail).`}`,
  ].join('\n');
}

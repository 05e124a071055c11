// The printed report of `npm run soak`: one section per phase, its verdicts, and the figures behind them.
import type { ChaosResult } from './chaos.ts';
import type { SoakResult } from './soak.ts';
import type { StreamResult } from './stream.ts';

const n = (v: number) => v.toLocaleString('en-US');
const verdict = (ok: boolean) => (ok ? 'OK  ' : 'FAIL');

export function formatSoak(r: SoakResult): string {
  const lines: string[] = [];
  lines.push(`${n(r.requests)} requests in ${r.duration_seconds} s (${n(r.rps)} req/s); statuses ${JSON.stringify(r.statuses)}; kinds ${JSON.stringify(r.kinds)}; ${r.client_errors} client errors`);
  lines.push(`gateway outcomes ${JSON.stringify(r.gateway_outcomes)}; idempotency events ${JSON.stringify(r.idempotency_events)}`);
  if (r.upstream) lines.push(`upstream: ${n(r.upstream.executions)} writes executed, ${n(r.upstream.gets)} reads served`);
  lines.push('');
  lines.push('  window end   req/s   p50 ms   p99 ms   max ms   RSS MiB   live heap MiB   gateway cores   load avg');
  let segment = 0;
  for (const w of r.windows) {
    if (w.segment !== segment) {
      segment = w.segment;
      const a = r.heap_snapshots?.a;
      lines.push(`  ---------- load paused: heap snapshot${a ? ` (${(a.self_bytes / 2 ** 20).toFixed(1)} MiB live); writing it leaves its malloc'd memory in RSS` : ''} ----------`);
    }
    const sample = [...r.samples].reverse().find((s) => s.t <= w.t && !s.paused);
    const live = [...r.live_heap].reverse().find((h) => h.t <= w.t);
    lines.push(
      `  ${`${Math.round(w.t)} s`.padStart(10)} ${String(w.rps).padStart(7)} ${fmt(w.p50_ms).padStart(8)} ${fmt(w.p99_ms).padStart(8)} ${fmt(w.max_ms).padStart(8)} ${(sample ? sample.rss_mib.toFixed(0) : '').padStart(9)} ${(live ? live.mib.toFixed(1) : '').padStart(15)} ${(w.gateway_cores?.toFixed(2) ?? '').padStart(15)} ${w.load_average.toFixed(1).padStart(10)}`,
    );
  }
  lines.push('  (live heap: measured after a forced full GC; load avg: the machine\'s 1-minute load average, 2 cores)');
  lines.push('');
  if (r.heap_snapshots) {
    lines.push('  heap growth between the snapshots, largest first (bytes, objects):');
    for (const g of r.heap_snapshots.top_growth.slice(0, 6)) lines.push(`    ${g.label.slice(0, 60).padEnd(60)} ${signed(g.bytes_delta).padStart(12)} B ${signed(g.count_delta).padStart(9)}`);
    lines.push('');
  }
  for (const [name, v] of Object.entries(r.verdicts)) lines.push(`${v.judged ? verdict(v.ok) : '--  '} ${name}: ${v.judged ? '' : 'not judged (--quick: too short, the bounded store is not even full) — '}${v.detail}\n       (${v.rule})`);
  if (r.log_examples.length > 0) lines.push(`log lines: ${r.log_examples.join('\n')}`);
  return lines.join('\n');
}

export function formatStream(r: StreamResult): string {
  const lines = r.transfers.map(
    (t) =>
      `${verdict(t.intact && t.rss_growth_mib < r.limit_mib)} ${t.direction.padEnd(8)} ${(t.bytes / 2 ** 20).toFixed(0)} MiB, ${t.intact ? 'every byte intact (length and SHA-256)' : `NOT INTACT: ${t.received} bytes${t.error ? `, ${t.error}` : ''}`}, ` +
      `${t.seconds} s (${t.mib_per_second} MiB/s); gateway RSS ${t.rss_before_mib} → peak ${t.rss_peak_mib} MiB: +${t.rss_growth_mib} MiB (limit ${r.limit_mib} MiB)`,
  );
  for (const t of r.baseline_transfers ?? []) {
    lines.push(`     for comparison, a bare http-proxy-3 proxy (test/bench/bare-proxy.ts): ${t.direction} RSS ${t.rss_before_mib} → peak ${t.rss_peak_mib} MiB: +${t.rss_growth_mib} MiB, ${t.mib_per_second} MiB/s${t.intact ? '' : ', NOT INTACT'}`);
  }
  lines.push(`gateway: ${r.crashed ? 'CRASHED' : `exit ${r.exit_code}`}; log problems ${JSON.stringify(r.log_problems)}`);
  return lines.join('\n');
}

export function formatChaos(r: ChaosResult): string {
  const lines: string[] = [];
  lines.push(`${verdict(r.crashes === 0)} crashes:    ${r.crashes}   (gateway processes that exited without the harness ending them, or not with 0 on SIGTERM)`);
  lines.push(`${verdict(r.malformed === 0)} malformed:  ${r.malformed}   (of ${n(r.client.attempts)} answers: a non-2xx that is no valid envelope, a 2xx with a wrong body, no X-Request-Id)`);
  lines.push(`${verdict(r.duplicates === 0)} duplicates: ${r.duplicates}   (upstream executions of a write beyond the first, over ${n(r.upstream.keys)} Idempotency-Keys executed)`);
  lines.push(`${verdict(r.lost === 0)} lost:       ${r.lost}   (requests to a replica in rotation without a complete answer)`);
  lines.push(`     in flight to the SIGKILLed replica when it died: ${r.in_flight_at_kill} (no process can answer those; writes among them were retried elsewhere)`);
  for (const e of [...r.client.lost_examples, ...r.client.malformed_examples].slice(0, 8)) lines.push(`     e.g. t=${e.t}s replica-${e.replica} ${e.kind}: ${e.detail.slice(0, 300)}`);
  lines.push('');
  const w = r.writes;
  lines.push(
    `writes: ${n(w.total)} (each with its own key, retried until final): ${n(w.created_fresh)} created, ${n(w.created_replayed)} answered by a replay, ` +
      `${n(w.outcome_unknown)} outcome unknown (${w.outcome_unknown_executed} of them executed upstream), ${w.unresolved} unresolved, other ${JSON.stringify(w.other_final)}; ` +
      `${w.attempts_mean} attempts on average, ${w.attempts_max} at most`,
  );
  const v = r.verification;
  lines.push(
    `${verdict(v.failures === 0)} replays: ${n(v.identical_replays)} of ${n(v.checked)} completed writes sent again came back as byte-identical replays; ` +
      `${v.not_recorded} answered while Redis was down, so not recorded (docs/idempotency.md: a retry then gets outcome unknown); ${v.failures} failures`,
  );
  for (const e of v.examples.slice(0, 5)) lines.push(`     ${e.slice(0, 300)}`);
  lines.push(
    `${verdict(r.reloads.ok)} reloads: expected ${r.reloads.expected.success} applied and ${r.reloads.expected.error} refused on each surviving replica: ` +
      `${r.reloads.replicas.map((c) => `${c.replica} ${c.success}/${c.error}`).join(', ')}; final item cost seen ${JSON.stringify(r.reloads.final_cost)}`,
  );
  lines.push(`${verdict(r.client.gateway_errors === 0 && r.log_unexpected_errors === 0)} gateway errors: ${r.client.gateway_errors} GATEWAY_ERROR answers, ${r.log_unexpected_errors} unexpected error log lines`);
  if (Object.keys(r.client.unexpected_codes).length > 0) lines.push(`     codes outside the expected set: ${JSON.stringify(r.client.unexpected_codes)}`);
  for (const e of r.log_examples.slice(0, 5)) lines.push(`     ${e.slice(0, 400)}`);
  lines.push(`answers: ${JSON.stringify(r.client.statuses)}; codes by kind ${JSON.stringify(r.client.codes)}`);
  lines.push(`upstream served ${JSON.stringify(r.upstream.served)}`);
  lines.push(`exits: ${r.exits.map((e) => `${e.replica} ${e.code ?? e.signal}${e.killed_by_harness ? ' (killed by the harness)' : ''}`).join(', ')}`);
  for (const c of r.crash_details) lines.push(`!!! ${c.replica} exited ${c.code ?? c.signal} at t=${c.t}: ${c.stderr.slice(-800)}`);
  return lines.join('\n');
}

function fmt(v: number): string {
  return Number.isFinite(v) ? v.toFixed(1) : '—';
}

function signed(v: number): string {
  return `${v >= 0 ? '+' : ''}${n(v)}`;
}

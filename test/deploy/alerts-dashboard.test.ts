// The Prometheus alert rules and the Grafana dashboard: every expression parses with Prometheus' PromQL grammar, and
// every metric it reads is on the /metrics of a real running gateway, with the labels it uses.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { GatewayMetrics } from '../../src/observability/metrics.ts';
import { configYaml, startCliGateway, tempDir, type CliGateway } from '../helpers/gateway.ts';
import { REPO } from './helpers/dockerfile.ts';
import { analyze } from './helpers/promql.ts';

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

const rules = parseYaml(readFileSync(path.join(REPO, 'deploy/prometheus/alerts.yml'), 'utf8')) as { groups: { name: string; rules: Rule[] }[] };
const dashboard = JSON.parse(readFileSync(path.join(REPO, 'deploy/grafana/dashboards/agentgate.json'), 'utf8')) as Record<string, any>;

/** Series names Prometheus stores, by the family's type on /metrics: a histogram is _bucket, _sum and _count. */
let series: Map<string, { family: string; type: string }>;
/** Label names each family can carry (prom-client's definitions), plus what Prometheus adds to every series. */
let labels: Map<string, Set<string>>;
let gw: CliGateway;
let tmp: { dir: string; remove: () => Promise<void> };

before(async () => {
  tmp = await tempDir('agentgate-alerts');
  const file = path.join(tmp.dir, 'gateway.yaml');
  await writeFile(file, configYaml('upstreams:\n  app: {url: "http://127.0.0.1:9"}\nroutes:\n  - {name: all, match: {path: /*}, upstream: app}\n'));
  gw = await startCliGateway(file);
  const scraped = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  series = new Map();
  for (const m of scraped.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, family, type] = m as unknown as [string, string, string];
    const names = type === 'histogram' ? ['_bucket', '_sum', '_count'] : type === 'summary' ? ['', '_sum', '_count'] : [''];
    for (const suffix of names) series.set(family + suffix, { family, type });
  }
  labels = new Map();
  for (const metric of new GatewayMetrics().registry.getMetricsAsArray() as unknown as { name: string; labelNames: string[]; type?: string }[]) {
    labels.set(metric.name, new Set(metric.labelNames));
  }
});

after(async () => {
  gw?.child.kill('SIGTERM');
  await gw?.exited;
  await tmp?.remove();
});

const PROMETHEUS_SERIES: Record<string, string[]> = { up: [] }; // written by Prometheus itself, not by the gateway

/** Checks `expr` parses and uses only series and labels that exist; returns what it references. */
function checkQuery(expr: string, where: string): ReturnType<typeof analyze> {
  const refs = analyze(expr);
  assert.deepEqual(refs.errors, [], `${where}: ${expr}`);
  assert.ok(refs.selectors.length > 0, `${where}: reads no metric`);
  const known = new Set(['job', 'instance']);
  for (const s of refs.selectors) {
    const own = PROMETHEUS_SERIES[s.metric];
    const found = series.get(s.metric);
    assert.ok(own || found, `${where}: metric ${s.metric} is not on /metrics`);
    const allowed = new Set([...known, ...(own ?? []), ...(found ? (labels.get(found.family) ?? []) : [])]);
    if (found?.type === 'histogram' && s.metric.endsWith('_bucket')) allowed.add('le');
    for (const l of s.labels) assert.ok(allowed.has(l), `${where}: ${s.metric} has no label ${l}`);
    for (const l of allowed) known.add(l);
  }
  for (const l of refs.grouping) assert.ok(known.has(l), `${where}: no metric in the expression has the label ${l} it groups by`);
  return refs;
}

test('alert rules: valid structure, every expression parses and reads only metrics and labels a running gateway exposes', () => {
  assert.ok(series.has('agentgate_requests_total'), 'the scrape worked');
  const names = new Set<string>();
  for (const group of rules.groups) {
    assert.ok(group.name);
    for (const rule of group.rules) {
      assert.ok(rule.alert, 'alerting rules only');
      assert.match(rule.alert, /^Agentgate[A-Z][A-Za-z]+$/);
      assert.ok(!names.has(rule.alert), `duplicate alert ${rule.alert}`);
      names.add(rule.alert);
      const keys = Object.keys(rule).filter((k) => !['alert', 'expr', 'for', 'keep_firing_for', 'labels', 'annotations'].includes(k));
      assert.deepEqual(keys, [], `${rule.alert}: unknown keys`);
      if (rule.for !== undefined) assert.match(rule.for, /^\d+[smhd]$/, `${rule.alert}: for`);
      assert.ok(['critical', 'warning', 'info'].includes(rule.labels?.severity ?? ''), `${rule.alert}: severity`);
      for (const a of ['summary', 'description', 'runbook']) assert.ok(rule.annotations?.[a], `${rule.alert}: annotation ${a}`);

      const refs = checkQuery(rule.expr, rule.alert);
      // {{ $labels.x }} in a message must be a label the alert's series keep, or it renders empty.
      const kept = refs.aggregated ? new Set(refs.grouping) : new Set(['job', 'instance', ...refs.selectors.flatMap((s) => [...(labels.get(series.get(s.metric)?.family ?? '') ?? [])])]);
      for (const text of Object.values(rule.annotations ?? {})) {
        for (const m of text.matchAll(/\$labels\.([A-Za-z_]\w*)/g)) assert.ok(kept.has(m[1]!), `${rule.alert}: {{ $labels.${m[1]} }} is not a label of its result`);
      }
    }
  }
});

test('alert rules: the six conditions the issue names are covered, each on the metric that measures it', () => {
  const all = rules.groups.flatMap((g) => g.rules);
  const reads = (metric: string, matcher?: RegExp) => all.filter((r) => analyze(r.expr).selectors.some((s) => s.metric === metric) && (!matcher || matcher.test(r.expr))).map((r) => r.alert);
  const required: [string, string, RegExp?][] = [
    ['silent failures', 'agentgate_silent_failures_total'],
    ['auth-failure halts', 'agentgate_auth_halts_total'],
    ['open circuits', 'agentgate_circuit_breaker_state', /== 2\b/],
    ['budgets near exhaustion', 'agentgate_rate_limit_warnings_total'],
    ['store errors', 'agentgate_store_errors_total'],
    ['config reload failures', 'agentgate_config_reloads_total', /result="error"/],
  ];
  for (const [what, metric, matcher] of required) assert.ok(reads(metric, matcher).length > 0, `an alert for ${what} (${metric})`);
  // Counters created at their first increment need the `unless (X offset W)` term, or their first event never fires.
  for (const rule of all) {
    for (const s of analyze(rule.expr).selectors) {
      if (!/_total$/.test(s.metric) || /agentgate_config_reloads_total|agentgate_rate_limit_decisions_total/.test(s.metric)) continue;
      assert.match(rule.expr, new RegExp(`${s.metric} unless \\(${s.metric} offset \\w+\\)`), `${rule.alert}: ${s.metric} appears at its first event`);
    }
  }
});

test('alert rules: the runbook (docs/operations.md) says what each alert means and what to do', () => {
  const readme = readFileSync(path.join(REPO, 'docs/operations.md'), 'utf8');
  const start = readme.indexOf('### Runbook');
  assert.ok(start > 0, 'docs/operations.md has a Runbook section');
  const end = readme.indexOf('\n## ', start);
  const runbook = readme.slice(start, end === -1 ? undefined : end);
  for (const rule of rules.groups.flatMap((g) => g.rules)) {
    assert.ok(runbook.includes(`**${rule.alert}**`), `the runbook explains ${rule.alert}`);
    assert.match(rule.annotations!.runbook!, new RegExp(`Runbook → ${rule.alert}$`));
  }
});

test('dashboard: well-formed panels; every query parses and reads existing metrics; every agentgate metric is on it', () => {
  assert.equal(dashboard.uid, 'agentgate');
  assert.equal(typeof dashboard.schemaVersion, 'number');
  const vars = dashboard.templating.list as Record<string, any>[];
  assert.ok(vars.some((v) => v.name === 'datasource' && v.type === 'datasource' && v.query === 'prometheus'));
  for (const v of vars.filter((x) => x.type === 'query')) {
    const m = /^label_values\((.+),\s*(\w+)\)$/.exec(v.definition as string);
    assert.ok(m, `variable ${v.name}: label_values(selector, label)`);
    const refs = checkQuery(m[1]!, `variable ${v.name}`);
    const family = series.get(refs.selectors[0]!.metric)!.family;
    assert.ok(['job', 'instance', ...(labels.get(family) ?? [])].includes(m[2]!), `variable ${v.name}: ${family} has no label ${m[2]}`);
  }

  const panels = dashboard.panels as Record<string, any>[];
  const ids = panels.map((p) => p.id as number);
  assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  const cells = new Set<string>();
  const used = new Set<string>();
  for (const p of panels) {
    const { x, y, w, h } = p.gridPos as { x: number; y: number; w: number; h: number };
    assert.ok(x >= 0 && w > 0 && x + w <= 24 && h > 0, `panel ${p.title}: gridPos inside the 24 columns`);
    for (let i = x; i < x + w; i++) for (let j = y; j < y + h; j++) {
      assert.ok(!cells.has(`${i},${j}`), `panel ${p.title} overlaps another`);
      cells.add(`${i},${j}`);
    }
    if (p.type === 'row') continue;
    assert.ok(p.description, `panel ${p.title}: a description`);
    assert.equal(p.datasource?.uid, '${datasource}');
    assert.ok((p.targets as unknown[]).length > 0, `panel ${p.title}: queries`);
    for (const target of p.targets as { expr: string; refId: string }[]) {
      // Grafana's interval variables, as Grafana substitutes them before Prometheus sees the query.
      const expr = target.expr.replace(/\$__(rate_interval|interval|range)\b/g, '5m');
      for (const s of checkQuery(expr, `panel ${p.title} ${target.refId}`).selectors) used.add(series.get(s.metric)?.family ?? s.metric);
    }
  }
  const agentgateMetrics = [...labels.keys()].filter((n) => n.startsWith('agentgate_'));
  assert.ok(agentgateMetrics.length >= 12);
  assert.deepEqual(agentgateMetrics.filter((n) => !used.has(n)), [], 'every agentgate metric has a panel');
});

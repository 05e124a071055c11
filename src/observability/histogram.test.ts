// SeriesHistogram must export exactly what prom-client's own Histogram exports for the same observations.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Histogram, Registry } from 'prom-client';
import { SeriesHistogram } from './histogram.ts';

const BUCKETS = [0.001, 0.01, 0.1, 1];
const CONFIG = { name: 'agentgate_test_duration_seconds', help: 'A test latency.', labelNames: ['route', 'outcome'] as const, buckets: BUCKETS };

function both() {
  const reference = new Registry();
  const ours = new Registry();
  return {
    reference,
    ours,
    referenceHistogram: new Histogram({ ...CONFIG, registers: [reference] }),
    seriesHistogram: new SeriesHistogram({ ...CONFIG, registers: [ours] }),
  };
}

test('the exposition text is prom-client\'s, byte for byte, bounds and values above every bound included', async () => {
  const { reference, ours, referenceHistogram, seriesHistogram } = both();
  const observations: [Record<'route' | 'outcome', string>, number][] = [
    [{ route: 'orders', outcome: 'ok' }, 0.0005],
    [{ route: 'orders', outcome: 'ok' }, 0.001], // on a bound: counted in that bucket (le is "less or equal")
    [{ route: 'orders', outcome: 'ok' }, 0.05],
    [{ route: 'orders', outcome: 'ok' }, 7],
    [{ route: 'orders', outcome: 'upstream_timeout' }, 30],
    [{ route: 'a "quoted"\nroute', outcome: 'ok' }, 0.2],
  ];
  for (const [labels, value] of observations) {
    referenceHistogram.observe(labels, value);
    seriesHistogram.series(labels).observe(value);
  }
  const text = await ours.metrics();
  assert.equal(text, await reference.metrics());
  assert.match(text, /agentgate_test_duration_seconds_bucket\{le="0.001",route="orders",outcome="ok"\} 2\n/);
  assert.match(text, /agentgate_test_duration_seconds_bucket\{le="\+Inf",route="orders",outcome="ok"\} 4\n/);
  // The JSON form too, but for the exemplar slot prom-client leaves empty (null or undefined) on every value.
  const withoutExemplars = (metrics: Awaited<ReturnType<Registry['getMetricsAsJSON']>>) =>
    metrics.map((m) => ({ ...m, values: m.values.map((value) => ({ ...value, exemplar: undefined })) }));
  assert.deepEqual(withoutExemplars(await ours.getMetricsAsJSON()), withoutExemplars(await reference.getMetricsAsJSON()));
});

test('reset zeroes every series and keeps it usable', async () => {
  const { ours, seriesHistogram } = both();
  const series = seriesHistogram.series({ route: 'orders', outcome: 'ok' });
  series.observe(0.5);
  ours.resetMetrics();
  assert.match(await ours.metrics(), /agentgate_test_duration_seconds_count\{route="orders",outcome="ok"\} 0\n/);
  series.observe(0.5);
  assert.match(await ours.metrics(), /agentgate_test_duration_seconds_count\{route="orders",outcome="ok"\} 1\n/);
});

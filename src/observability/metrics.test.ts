// The per-request metrics are kept outside prom-client between scrapes: every scrape must show each request exactly once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AggregatorRegistry } from 'prom-client';
import { GatewayMetrics } from './metrics.ts';

function sample(text: string, line: string): number | undefined {
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? undefined : Number(found.slice(line.length + 1));
}

test('requests recorded between scrapes are counted once, however often the metrics are read', async () => {
  const metrics = new GatewayMetrics();
  const ok = 'agentgate_requests_total{route="orders",method="GET",status_code="200",outcome="ok"}';
  const failed = 'agentgate_requests_total{route="orders",method="POST",status_code="502",outcome="upstream_error"}';
  const durations = 'agentgate_request_duration_seconds_count{route="orders",outcome="ok"}';

  metrics.recordRequest('orders', 'GET', 200, 'ok', 0.01);
  metrics.recordRequest('orders', 'GET', 200, 'ok', 0.02);
  let text = await metrics.registry.metrics();
  assert.equal(sample(text, ok), 2);
  assert.equal(sample(text, failed), undefined);
  assert.equal(sample(text, durations), 2);

  text = await metrics.registry.metrics();
  assert.equal(sample(text, ok), 2, 'reading again adds nothing');

  for (let i = 0; i < 3; i++) metrics.recordRequest('orders', 'GET', 200, 'ok', 0.5);
  metrics.recordRequest('orders', 'POST', 502, 'upstream_error', 1);
  text = await metrics.registry.metrics();
  assert.equal(sample(text, ok), 5);
  assert.equal(sample(text, failed), 1);
  assert.equal(sample(text, durations), 5);
  assert.equal(sample(text, 'agentgate_request_duration_seconds_bucket{le="0.025",route="orders",outcome="ok"}'), 2);
  assert.equal((await metrics.registry.getSingleMetric('agentgate_requests_total')!.get()).values.reduce((sum, v) => sum + v.value, 0), 6);
});

test('several workers add up as the primary aggregates them: counts and histograms summed, breaker state the most open', async () => {
  const workers = [new GatewayMetrics(), new GatewayMetrics()];
  workers[0]!.recordRequest('orders', 'GET', 200, 'ok', 0.01);
  workers[1]!.recordRequest('orders', 'GET', 200, 'ok', 0.02);
  workers[1]!.recordRequest('orders', 'GET', 200, 'ok', 0.03);
  workers[0]!.circuitBreakerState.set({ upstream: 'legacy' }, 2);
  workers[1]!.circuitBreakerState.set({ upstream: 'legacy' }, 1);
  // What src/workers/primary.ts does with each worker's answer.
  const text = await AggregatorRegistry.aggregate(await Promise.all(workers.map((w) => w.registry.getMetricsAsJSON()))).metrics();
  assert.equal(sample(text, 'agentgate_requests_total{route="orders",method="GET",status_code="200",outcome="ok"}'), 3);
  assert.equal(sample(text, 'agentgate_request_duration_seconds_count{route="orders",outcome="ok"}'), 3);
  assert.equal(sample(text, 'agentgate_request_duration_seconds_bucket{le="0.025",route="orders",outcome="ok"}'), 2);
  assert.equal(sample(text, 'agentgate_circuit_breaker_state{upstream="legacy"}'), 2, 'open on one worker is open, not 2 + 1');
});

// Endurance and chaos (issue 7) in the normal suite, with small numbers: the same harness `npm run soak` runs at full
// scale (test/soak/). Real processes (the built CLI), real sockets, a redis-server of its own that it kills.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { skipWithoutRedisServer } from './helpers/redis-cluster.ts';
import { chaosPreset, runChaos } from './soak/chaos.ts';
import { runSoak } from './soak/soak.ts';
import { runStream } from './soak/stream.ts';

const skipServer = skipWithoutRedisServer();

describe('chaos under load: three replicas, the upstream flapping, Redis restarted, ten reloads, one replica SIGKILLed', { skip: skipServer }, () => {
  test('no crash, no malformed answer, no duplicated write, no lost request', { timeout: 90_000 }, async () => {
    const r = await runChaos(chaosPreset(8, 16));
    const context = JSON.stringify({ timeline: r.timeline, lost: r.client.lost_examples, malformed: r.client.malformed_examples, crashes: r.crash_details, logs: r.log_examples }, null, 1);

    assert.equal(r.crashes, 0, `crashes: ${context}`);
    assert.equal(r.malformed, 0, `malformed answers: ${context}`);
    assert.equal(r.duplicates, 0, `duplicated writes: ${JSON.stringify(r.upstream.duplicate_keys)}`);
    assert.equal(r.lost, 0, `lost requests: ${context}`);

    // Every write ended (created, or refused as outcome-unknown after a timeout or reset), and every created one replays.
    assert.equal(r.writes.unresolved, 0, JSON.stringify(r.writes));
    assert.deepEqual(r.writes.other_final, {}, 'no write ended with another refusal');
    assert.ok(r.writes.created_fresh > 0, JSON.stringify(r.writes));
    assert.equal(r.verification.failures, 0, r.verification.examples.join('\n'));
    assert.equal(r.client.gateway_errors, 0);
    assert.deepEqual(r.client.unexpected_codes, {});
    assert.equal(r.log_unexpected_errors, 0, r.log_examples.join('\n'));

    // The faults really happened, and the gateway answered each the way the contract says.
    const events = r.timeline.map((e) => e.event);
    for (const fault of ['upstream: refuse', 'upstream: hang', 'upstream: reset', 'redis: SIGKILL', 'redis: restarted (AOF reloaded)']) {
      assert.ok(events.includes(fault), `no '${fault}' in ${events.join(', ')}`);
    }
    assert.ok(events.some((e) => e.startsWith('replica-1: SIGKILL')), events.join(', '));
    assert.equal(events.filter((e) => e.startsWith('reload ')).length, 10);
    assert.ok(r.upstream.served.hung! > 0 && r.upstream.served['reset after body']! > 0, JSON.stringify(r.upstream.served));
    const orderCodes = r.client.codes.order;
    for (const code of ['STORE_UNAVAILABLE', 'UPSTREAM_TIMEOUT', 'IDEMPOTENCY_OUTCOME_UNKNOWN']) assert.ok(orderCodes[code]! > 0, `no ${code} among ${JSON.stringify(orderCodes)}`);
    assert.ok(r.reloads.ok, JSON.stringify(r.reloads));
    assert.deepEqual(
      r.exits.map((e) => [e.replica, e.killed_by_harness ? 'killed' : e.code]),
      [['replica-0', 0], ['replica-1', 'killed'], ['replica-2', 0]],
    );
  });
});

describe('streaming through a passthrough route', () => {
  // npm run soak moves 1 GiB each way against the 64 MiB bound; here the bound only has to tell streaming from
  // holding the body (a gateway that held it would grow by at least its size).
  test('128 MiB down and 128 MiB up arrive intact, and the gateway does not hold them: its RSS grows by less than 96 MiB', { timeout: 90_000 }, async () => {
    const r = await runStream({ bytes: 128 * 2 ** 20, limitMib: 96 });
    for (const t of r.transfers) {
      assert.ok(t.intact, `${t.direction}: ${JSON.stringify(t)}`);
      assert.ok(t.rss_growth_mib < 96, `${t.direction}: the gateway's RSS grew by ${t.rss_growth_mib} MiB: ${JSON.stringify(t)}`);
    }
    assert.equal(r.crashed, false);
    assert.equal(r.exit_code, 0);
    assert.ok(r.ok, JSON.stringify(r));
  });
});

describe('a short soak', () => {
  test('every answer is right, memory is sampled, and two heap snapshots are taken and compared', { timeout: 90_000 }, async () => {
    const r = await runSoak({
      durationSeconds: 3,
      requests: 0,
      maxDurationSeconds: 20,
      connections: 8,
      consumers: 100_000,
      store: 'memory',
      redisUrl: '',
      windowSeconds: 1,
      sampleSeconds: 0.5,
      snapshots: true,
      gcSeconds: 1,
      judgeTrends: false,
      logLevel: 'info',
    });
    assert.ok(r.verdicts.answers.ok, r.verdicts.answers.detail);
    assert.equal(r.unexpected_statuses, 0, JSON.stringify(r.statuses));
    assert.equal(r.client_errors, 0);
    assert.equal(r.crashed, false);
    assert.ok(r.requests > 0 && r.kinds.get! > 0 && r.kinds.post! > 0, JSON.stringify(r.kinds));
    // Each fresh write executed once upstream, each retry of one was a replay (the store holds them all at this size);
    // requests still in flight when the load generator stops (at most one per connection, twice) may never arrive.
    const slack = 2 * 8;
    const facts = JSON.stringify({ upstream: r.upstream, kinds: r.kinds, events: r.idempotency_events });
    assert.ok(r.upstream!.executions <= r.kinds.post! && r.upstream!.executions >= r.kinds.post! - slack, facts);
    const replayed = r.idempotency_events.replayed ?? 0;
    assert.ok(replayed <= (r.kinds.replay ?? 0) && replayed >= (r.kinds.replay ?? 0) - slack, facts);
    assert.ok(r.samples.length >= 3 && r.samples.every((s) => s.rss_mib > 0 && s.heap_used_mib !== null), JSON.stringify(r.samples));
    assert.ok(r.heap_snapshots, 'two heap snapshots');
    assert.ok(r.heap_snapshots.a.nodes > 10_000 && r.heap_snapshots.b.nodes > 10_000);
    assert.ok(r.heap_snapshots.a.self_bytes > 1_000_000 && r.heap_snapshots.top_growth.length > 0);
    assert.ok(r.windows.length >= 2);
  });
});

// A config compiled into routes the way the gateway compiles it, on a small memory store, for tests of one part.
import { pino } from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import { buildRuntime, UpstreamPools, type Runtime } from '../../src/runtime.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import type { Store } from '../../src/store/store.ts';
import { GatewayMetrics } from '../../src/observability/metrics.ts';

/** `pools` holds the upstreams' keep-alive agents: destroy them when the test ends. `store` is the one the policies decide with. */
export function compileRuntime(yaml: string): { runtime: Runtime; pools: UpstreamPools; store: Store } {
  const config = parseConfig(yaml, 'f.yaml', {});
  const pools = new UpstreamPools();
  const store = new MemoryStore({ maxEntries: 10, maxBytes: 100_000 });
  const runtime = buildRuntime({ config, file: 'f.yaml', digest: '' }, pools, {
    store,
    keyPrefix: 'unit',
    requestBodyIdleMs: 10_000,
    metrics: new GatewayMetrics(),
    logger: pino({ level: 'silent' }),
  });
  return { runtime, pools, store };
}

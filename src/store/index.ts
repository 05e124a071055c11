// Builds the store the config asks for.
import type { Config } from '../config/schema.ts';
import { parseDuration, parseSize } from '../config/units.ts';
import type { GatewayMetrics } from '../observability/metrics.ts';
import { MemoryStore } from './memory.ts';
import type { Store, StoreErrorListener } from './store.ts';

/**
 * `metrics`: where a memory store's parts are shown (agentgate_memory_store_*); a Redis store adds nothing there.
 * ioredis is loaded only for a Redis store: it is about 20 MiB of a gateway's RSS that a memory store never uses.
 */
export async function createStore(config: Config['store'], onError?: StoreErrorListener, metrics?: GatewayMetrics): Promise<Store> {
  if (config.type === 'memory') {
    const { memory } = config;
    const store = new MemoryStore({
      maxEntries: memory.max_entries,
      maxBytes: parseSize(memory.max_bytes),
      records: { maxEntries: memory.records.max_entries, maxBytes: parseSize(memory.records.max_bytes) },
    });
    metrics?.observeMemoryStore(store);
    return store;
  }
  const { RedisStore } = await import('./redis.ts');
  return new RedisStore({ url: config.url, clusterNodes: config.cluster?.nodes, commandTimeoutMs: parseDuration(config.command_timeout), onError });
}

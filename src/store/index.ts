// Builds the store the config asks for.
import type { Config } from '../config/schema.ts';
import { parseDuration, parseSize } from '../config/units.ts';
import { MemoryStore } from './memory.ts';
import { RedisStore } from './redis.ts';
import type { Store, StoreErrorListener } from './store.ts';

export function createStore(config: Config['store'], onError?: StoreErrorListener): Store {
  if (config.type === 'memory') {
    return new MemoryStore({ maxEntries: config.memory.max_entries, maxBytes: parseSize(config.memory.max_bytes) });
  }
  return new RedisStore({ url: config.url, clusterNodes: config.cluster?.nodes, commandTimeoutMs: parseDuration(config.command_timeout), onError });
}

// Shared-Redis plumbing for tests: the URL, a key prefix per run, cleanup, and the skip-or-fail rule when Redis is missing.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Concurrent runs (and other projects) share one Redis, so each run writes under its own prefix. */
export function uniquePrefix(label: string): string {
  return `agtest-${label}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/**
 * The node:test `skip` value for tests needing something that may be missing: the reason when it is, else false.
 * With AGENTGATE_REQUIRE_REDIS=1 (CI) it throws instead, so a missing Redis fails the run rather than hiding.
 */
export function skipOrFail(missing: boolean, reason: string): string | false {
  if (!missing) return false;
  if (process.env.AGENTGATE_REQUIRE_REDIS === '1') throw new Error(`${reason} (AGENTGATE_REQUIRE_REDIS=1)`);
  return reason;
}

/** `describe(name, { skip: await skipWithoutRedis() }, ...)`: skipped, or failed under CI, when Redis does not answer. */
export async function skipWithoutRedis(url = REDIS_URL): Promise<string | false> {
  const answers = await withRedis(url, async (client) => (await client.ping()) === 'PONG').catch(() => false);
  return skipOrFail(!answers, `redis unavailable at ${url}`);
}

/** Every key under `prefix:` on the Redis (or the one Cluster node) at url. */
export function keysUnder(url: string, prefix: string): Promise<string[]> {
  return withRedis(url, (client) => scan(client, prefix));
}

export function cleanupPrefix(url: string, prefix: string): Promise<void> {
  return withRedis(url, async (client) => {
    const keys = await scan(client, prefix);
    for (let i = 0; i < keys.length; i += 1000) await client.del(...keys.slice(i, i + 1000));
  });
}

async function scan(client: Redis, prefix: string): Promise<string[]> {
  const match = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}:*`;
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await client.scan(cursor, 'MATCH', match, 'COUNT', 1000);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  return keys;
}

/** Runs use on a one-shot connection: no reconnecting, no queueing, so a missing server fails at once. */
export async function withRedis<T>(url: string, use: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 1000, enableOfflineQueue: false, disconnectTimeout: 100 });
  client.on('error', () => {});
  try {
    await client.connect();
    return await use(client);
  } finally {
    client.disconnect();
  }
}

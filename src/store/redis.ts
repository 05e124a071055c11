// Store shared by every replica, over ioredis (standalone or Cluster): atomic Lua scripts, Redis' clock, fail-fast while Redis is away.
import type { EventEmitter } from 'node:events';
import { Cluster, Redis } from 'ioredis';
import type { RedisOptions } from 'ioredis';
import { StoreError } from './store.ts';
import type { Store, StoreErrorListener } from './store.ts';

export interface RedisStoreOptions {
  /** Standalone Redis; exactly one of url and clusterNodes. */
  url?: string;
  /** Seed nodes of a Redis Cluster. */
  clusterNodes?: string[];
  /** Longest any one operation may take, connecting included, before it fails. */
  commandTimeoutMs: number;
  onError?: StoreErrorListener;
}

/**
 * Each script touches only KEYS[1], so it runs on Cluster too. Claim sets and, when the key is taken, reads it in
 * the same atomic step: a separate GET after a failed SET NX could find the holder's key already gone.
 */
const SCRIPTS = {
  agentgateClaim: `if redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then return false end
return redis.call('GET', KEYS[1])`,
  agentgateReplaceIf: `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`,
  agentgateDeleteIf: `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])`,
};

/** What this store uses of a Redis or Cluster client, plus the commands SCRIPTS defines on it. */
interface Client extends EventEmitter {
  readonly status: string;
  defineCommand(name: string, definition: { lua: string; numberOfKeys: number }): void;
  get(key: string): Promise<string | null>;
  time(): Promise<unknown[]>;
  ping(): Promise<unknown>;
  quit(): Promise<unknown>;
  disconnect(): void;
  agentgateClaim(key: string, value: string, ttlMs: number): Promise<string | null>;
  agentgateReplaceIf(key: string, expected: string, value: string, ttlMs: number): Promise<number>;
  agentgateDeleteIf(key: string, expected: string): Promise<number>;
}

/** Reconnect forever (a gateway outlives Redis outages), backing off to at most 2 s between attempts. */
const backoff = (attempt: number): number => Math.min(50 * 2 ** attempt, 2000);

export class RedisStore implements Store {
  readonly kind = 'redis';
  private readonly client: Client;
  private readonly commandTimeoutMs: number;
  private readonly onError: StoreErrorListener | undefined;
  private connecting: Promise<void> | undefined;

  constructor(options: RedisStoreOptions) {
    if ((options.url === undefined) === (options.clusterNodes === undefined)) throw new Error('RedisStore needs exactly one of url and clusterNodes');
    this.commandTimeoutMs = options.commandTimeoutMs;
    this.onError = options.onError;
    // A caller told an operation failed must never see it run later, so nothing waits in a queue: commands fail
    // at once while disconnected (no offline queue) and in-flight ones are dropped, not resent, when a connection breaks.
    // disconnectTimeout: ioredis arms it on close even for a socket already gone, holding the process open that long.
    const common: RedisOptions = {
      commandTimeout: options.commandTimeoutMs,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      disconnectTimeout: options.commandTimeoutMs,
    };
    const client = options.url !== undefined
      ? new Redis(options.url, { ...common, retryStrategy: backoff, enableOfflineQueue: false, enableAutoPipelining: true })
      : new Cluster(options.clusterNodes!, {
          redisOptions: { ...common, ...seedOptions(options.clusterNodes![0]!) },
          clusterRetryStrategy: backoff,
          enableOfflineQueue: false,
          enableAutoPipelining: true,
        });
    this.client = client as unknown as Client;
    // Unhandled, an 'error' event would crash the process, and connection errors repeat on every reconnect
    // attempt; failures are reported once per failed operation, through onError, instead.
    this.client.on('error', () => {});
    for (const [name, lua] of Object.entries(SCRIPTS)) this.client.defineCommand(name, { lua, numberOfKeys: 1 });
  }

  get(key: string): Promise<string | null> {
    return this.run('get', () => this.client.get(key));
  }

  claim(key: string, value: string, ttlMs: number): Promise<string | null> {
    return this.run('claim', () => this.client.agentgateClaim(key, value, pxTtl(ttlMs)));
  }

  async replaceIf(key: string, expected: string, value: string, ttlMs: number): Promise<boolean> {
    return (await this.run('replaceIf', () => this.client.agentgateReplaceIf(key, expected, value, pxTtl(ttlMs)))) === 1;
  }

  async deleteIf(key: string, expected: string): Promise<boolean> {
    return (await this.run('deleteIf', () => this.client.agentgateDeleteIf(key, expected))) === 1;
  }

  async now(): Promise<number> {
    const [seconds, micros] = await this.run('now', () => this.client.time());
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  }

  async ready(): Promise<boolean> {
    if (this.client.status !== 'ready') return false;
    try {
      await Promise.race([this.client.ping(), aborted(AbortSignal.timeout(this.commandTimeoutMs))]);
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    try {
      await Promise.race([this.client.quit(), aborted(AbortSignal.timeout(this.commandTimeoutMs))]);
    } catch {
      this.client.disconnect();
    }
  }

  /**
   * Bounds the whole operation by the command timeout, which ioredis' own does not cover: the wait for a
   * connection being set up (just after start, or mid-reconnect) and Cluster's redirection and retry delays.
   */
  private async run<T>(operation: string, send: () => Promise<T>): Promise<T> {
    const signal = AbortSignal.timeout(this.commandTimeoutMs);
    try {
      // Without an offline queue, a command sent before the connection is up would fail.
      if (this.client.status === 'connecting' || this.client.status === 'connect') await Promise.race([this.connection(), aborted(signal)]);
      else if (this.client.status !== 'ready') throw new Error(`not connected to redis (${this.client.status})`);
      return await Promise.race([send(), aborted(signal)]);
    } catch (cause) {
      const error = new StoreError(operation, cause);
      this.onError?.(error);
      throw error;
    }
  }

  /** Settles with the connection attempt under way; shared, so a burst of waiting operations adds one set of listeners, not one each. */
  private connection(): Promise<void> {
    this.connecting ??= new Promise<void>((resolve, reject) => {
      const settle = (error?: Error) => {
        this.client.off('ready', onReady).off('error', settle).off('close', onClose);
        this.connecting = undefined;
        if (error) reject(error);
        else resolve();
      };
      const onReady = () => settle();
      const onClose = () => settle(new Error('connection closed'));
      this.client.on('ready', onReady).on('error', settle).on('close', onClose);
    });
    return this.connecting;
  }
}

function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
}

/** PX takes only a positive integer: a computed TTL is rounded up rather than rejected by Redis. */
function pxTtl(ttlMs: number): number {
  return Math.max(1, Math.ceil(ttlMs));
}

/** Nodes found through CLUSTER SLOTS get only redisOptions, so the seed URL's credentials and TLS are copied there. */
function seedOptions(url: string): RedisOptions {
  const seed = new URL(url);
  return {
    ...(seed.username ? { username: decodeURIComponent(seed.username) } : {}),
    ...(seed.password ? { password: decodeURIComponent(seed.password) } : {}),
    ...(seed.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

// Store shared by every replica, over ioredis (standalone or Cluster): atomic Lua scripts, Redis' clock, fail-fast while Redis is away.
import type { EventEmitter } from 'node:events';
import { Cluster, Redis } from 'ioredis';
import type { RedisOptions } from 'ioredis';
import { StoreError } from './store.ts';
import type { Bucket, BucketState, ChargeAndClaimResult, ClaimRequest, ConsumeMode, ConsumeResult, Store, StoreErrorListener } from './store.ts';
import { CONSUME_FUNCTION_LUA, CONSUME_LUA, consumeReplyLength, hashTagOf, parseConsumeReply } from './token-bucket.ts';

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

/**
 * Store.chargeAndClaim in one EVALSHA: KEYS are the buckets and then the key to claim; ARGV as for CONSUME_LUA (mode
 * 'charge'), then the claim's value and PX. The key is claimed (SET NX, or read when taken, as agentgateClaim does)
 * only when the charge is allowed. Reply: CONSUME_LUA's, then, when allowed, 0 (claimed) or 1 and the value there.
 */
const CHARGE_AND_CLAIM_LUA = `${CONSUME_FUNCTION_LUA}
local n = #KEYS - 1
local reply = consume(n)
if reply[1] == 1 then
  local key = KEYS[n + 1]
  if redis.call('SET', key, ARGV[3 + 2 * n], 'PX', ARGV[4 + 2 * n], 'NX') then
    reply[#reply + 1] = 0
  else
    reply[#reply + 1] = 1
    reply[#reply + 1] = redis.call('GET', key)
  end
end
return reply
`;

/** Decodes CHARGE_AND_CLAIM_LUA's reply: what it appends follows consume(n)'s reply. */
function parseChargeAndClaimReply(reply: readonly (number | string | null)[], count: number): ChargeAndClaimResult {
  const consumed = parseConsumeReply(reply, count);
  const after = consumeReplyLength(count);
  return { consumed, claim: !consumed.allowed ? undefined : reply[after] === 0 ? null : (reply[after + 1] as string) };
}

/** What this store uses of a Redis or Cluster client, plus the commands SCRIPTS defines on it. */
interface Client extends EventEmitter {
  readonly status: string;
  /** Standalone only: the connection's socket (replaced on reconnect). */
  readonly stream?: { cork(): void; uncork(): void };
  defineCommand(name: string, definition: { lua: string; numberOfKeys?: number }): void;
  get(key: string): Promise<string | null>;
  time(): Promise<unknown[]>;
  ping(): Promise<unknown>;
  quit(): Promise<unknown>;
  disconnect(): void;
  agentgateClaim(key: string, value: string, ttlMs: number): Promise<string | null>;
  agentgateReplaceIf(key: string, expected: string, value: string, ttlMs: number): Promise<number>;
  agentgateDeleteIf(key: string, expected: string): Promise<number>;
  /** CONSUME_LUA: numkeys, the keys, then cost, mode and capacity/perMs per key. */
  agentgateConsume(...args: (string | number)[]): Promise<number[]>;
  /** CHARGE_AND_CLAIM_LUA: numkeys, the buckets' keys and the claimed key, then cost, mode, capacity/perMs per bucket, value and PX. */
  agentgateChargeAndClaim(...args: (string | number)[]): Promise<(number | string | null)[]>;
}

/** How often now() reads Redis's clock again; in between, local clock drift is far below a millisecond. */
const CLOCK_RESYNC_MS = 1000;

/** Reconnect forever (a gateway outlives Redis outages), backing off to at most 2 s between attempts. */
const backoff = (attempt: number): number => Math.min(50 * 2 ** attempt, 2000);

export class RedisStore implements Store {
  readonly kind = 'redis';
  private readonly client: Client;
  /** Redis's clock as last read, and when that was on the local monotonic clock (ms). */
  private clock: { redisMs: number; localMs: number } | undefined;
  private lastNow = 0;
  private readonly commandTimeoutMs: number;
  private readonly onError: StoreErrorListener | undefined;
  /** On Cluster one script may only touch keys of one slot, so consume() works hash tag by hash tag. */
  private readonly clustered: boolean;
  private connecting: Promise<void> | undefined;
  /** Set while the socket is corked until the end of this turn of the event loop. */
  private corked = false;

  constructor(options: RedisStoreOptions) {
    if ((options.url === undefined) === (options.clusterNodes === undefined)) throw new Error('RedisStore needs exactly one of url and clusterNodes');
    this.commandTimeoutMs = options.commandTimeoutMs;
    this.onError = options.onError;
    this.clustered = options.clusterNodes !== undefined;
    // A caller told an operation failed must never see it run later, so nothing waits in a queue: commands fail
    // at once while disconnected (no offline queue) and in-flight ones are dropped, not resent, when a connection breaks.
    // disconnectTimeout: ioredis arms it on close even for a socket already gone, holding the process open that long.
    // No commandTimeout: run() bounds every operation already, and ioredis's own arms a timer per command and clears
    // it with a `delete` that turns each command object into a slow dictionary (about 3.5 µs of CPU per operation).
    // The one thing it bounded that run() does not, a connection's set-up, boundSetUp() bounds.
    const common: RedisOptions = {
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      disconnectTimeout: options.commandTimeoutMs,
    };
    // Standalone: no auto-pipelining; the socket is corked for the rest of each event-loop turn instead (writeThisTurn).
    const client = options.url !== undefined
      ? new Redis(options.url, { ...common, retryStrategy: backoff, enableOfflineQueue: false })
      : new Cluster(options.clusterNodes!, {
          redisOptions: { ...common, ...seedOptions(options.clusterNodes![0]!) },
          clusterRetryStrategy: backoff,
          enableOfflineQueue: false,
          enableAutoPipelining: true,
          // Auto-pipelines are grouped by a command's first argument, which for agentgateConsume is the key count, not a
          // key: pipelined with other slots' commands it would be refused. It is sent on its own, routed by its keys.
          autoPipeliningIgnoredCommands: ['agentgateConsume'],
        });
    this.client = client as unknown as Client;
    if (client instanceof Redis) boundSetUp(client, options.commandTimeoutMs);
    else client.on('+node', (node: Redis) => boundSetUp(node, options.commandTimeoutMs));
    // Unhandled, an 'error' event would crash the process, and connection errors repeat on every reconnect
    // attempt; failures are reported once per failed operation, through onError, instead.
    this.client.on('error', () => {});
    for (const [name, lua] of Object.entries(SCRIPTS)) this.client.defineCommand(name, { lua, numberOfKeys: 1 });
    // No fixed numberOfKeys: the caller passes the key count first, as with EVALSHA.
    this.client.defineCommand('agentgateConsume', { lua: CONSUME_LUA });
    this.client.defineCommand('agentgateChargeAndClaim', { lua: CHARGE_AND_CLAIM_LUA });
  }

  get(key: string): Promise<string | null> {
    return this.run('get', () => this.client.get(key));
  }

  claim(key: string, value: string, ttlMs: number): Promise<string | null> {
    return this.removingOnFailure({ key, value }, this.run('claim', () => this.client.agentgateClaim(key, value, pxTtl(ttlMs))));
  }

  async replaceIf(key: string, expected: string, value: string, ttlMs: number): Promise<boolean> {
    return (await this.run('replaceIf', () => this.client.agentgateReplaceIf(key, expected, value, pxTtl(ttlMs)))) === 1;
  }

  async deleteIf(key: string, expected: string): Promise<boolean> {
    return (await this.run('deleteIf', () => this.client.agentgateDeleteIf(key, expected))) === 1;
  }

  /**
   * Redis's clock (TIME), so that every replica judges leases by the same time. It is read at most once per
   * CLOCK_RESYNC_MS and advanced by the local monotonic clock in between: asking on every call cost each idempotent
   * write a round trip of its own. Never goes back, also across a resync.
   */
  async now(): Promise<number> {
    if (this.clock === undefined || performance.now() - this.clock.localMs > CLOCK_RESYNC_MS) {
      const sent = performance.now();
      const [seconds, micros] = await this.run('now', () => this.client.time());
      // Redis read its clock somewhere between sending and answering: the midpoint is the best guess of when.
      this.clock = { redisMs: Number(seconds) * 1000 + Number(micros) / 1000, localMs: (sent + performance.now()) / 2 };
    }
    this.lastNow = Math.max(this.lastNow, Math.floor(this.clock.redisMs + performance.now() - this.clock.localMs));
    return this.lastNow;
  }

  async consume(buckets: readonly Bucket[], cost: number, mode: ConsumeMode = 'charge'): Promise<ConsumeResult> {
    if (buckets.length === 0) return { allowed: true, now: await this.now(), buckets: [] };
    // Standalone Redis runs one script over any keys; Cluster needs one script per slot.
    const groups = this.clustered ? groupByHashTag(buckets) : [buckets.map((_, i) => i)];
    if (groups.length === 1) return this.consumeGroup(buckets, cost, mode);
    return this.consumeAcrossSlots(buckets, groups, cost, mode);
  }

  /**
   * Cluster, buckets under several hash tags (a consumer's own and a pool shared by all consumers): charged group by
   * group in the order given; when a later group refuses, the groups already charged are refunded. Between the two
   * steps other requests may briefly see the earlier groups charged: they can be refused for a moment, never let
   * through beyond a budget. A refund that fails (store error) leaves that charge in place.
   */
  private async consumeAcrossSlots(buckets: readonly Bucket[], groups: number[][], cost: number, mode: ConsumeMode): Promise<ConsumeResult> {
    const states: BucketState[] = new Array(buckets.length);
    const pick = (group: number[]) => group.map((i) => buckets[i]!);
    const fill = (group: number[], result: ConsumeResult) => group.forEach((index, j) => (states[index] = result.buckets[j]!));
    if (mode !== 'charge' || cost <= 0) {
      // Nothing to undo: report (dry run), force or refund every group, together.
      const results = await Promise.all(groups.map((group) => this.consumeGroup(pick(group), cost, mode)));
      results.forEach((result, g) => fill(groups[g]!, result));
      return { allowed: results.every((r) => r.allowed), now: results[0]!.now, buckets: states };
    }
    const charged: number[][] = [];
    let now = 0;
    const refund = (done: number[]) => this.consumeGroup(pick(done), -cost, 'force').catch(() => undefined);
    for (const [g, group] of groups.entries()) {
      let result: ConsumeResult;
      try {
        result = await this.consumeGroup(pick(group), cost, mode);
      } catch (error) {
        await Promise.all(charged.map(refund));
        throw error;
      }
      now ||= result.now;
      fill(group, result);
      if (result.allowed) {
        charged.push(group);
        continue;
      }
      const rest = groups.slice(g + 1);
      await Promise.all([
        ...charged.map(async (done) => {
          const refunded = await refund(done);
          // Keep each bucket's wait (it fitted) and report its refunded level.
          if (refunded) done.forEach((index, j) => (states[index] = { ...refunded.buckets[j]!, waitMs: states[index]!.waitMs }));
        }),
        ...rest.map(async (later) => fill(later, await this.consumeGroup(pick(later), cost, 'dry_run'))),
      ]);
      return { allowed: false, now, buckets: states };
    }
    return { allowed: true, now, buckets: states };
  }

  async chargeAndClaim(buckets: readonly Bucket[], cost: number, claim: ClaimRequest): Promise<ChargeAndClaimResult> {
    // Cluster: the claimed key has a hash tag of its own, so one script cannot touch it with the buckets.
    if (this.clustered || buckets.length === 0) {
      const consumed = await this.consume(buckets, cost);
      if (!consumed.allowed) return { consumed, claim: undefined };
      // The charge stands; a claim that failed is left to the caller to make again, whose own failure handling decides.
      return { consumed, claim: await this.claim(claim.key, claim.value, claim.ttlMs).catch(() => undefined) };
    }
    const args: (string | number)[] = [buckets.length + 1];
    for (const b of buckets) args.push(b.key);
    args.push(claim.key, cost, 'charge');
    for (const b of buckets) args.push(b.capacity, b.perMs);
    args.push(claim.value, pxTtl(claim.ttlMs));
    const reply = await this.removingOnFailure(claim, this.run('chargeAndClaim', () => this.client.agentgateChargeAndClaim(...args)));
    return parseChargeAndClaimReply(reply, buckets.length);
  }

  /**
   * An operation that claims and fails (a timeout above all) may have been applied by Redis all the same. Its value is
   * unique to the attempt, so the claim is removed again (best effort; sent after it on the same connection) rather than
   * left to look like a request in flight, and later like one whose gateway died.
   */
  private async removingOnFailure<T>(claim: Pick<ClaimRequest, 'key' | 'value'>, operation: Promise<T>): Promise<T> {
    try {
      return await operation;
    } catch (err) {
      this.deleteIf(claim.key, claim.value).catch(() => {});
      throw err;
    }
  }

  private async consumeGroup(buckets: readonly Bucket[], cost: number, mode: ConsumeMode): Promise<ConsumeResult> {
    const args: (string | number)[] = [buckets.length, ...buckets.map((b) => b.key), cost, mode];
    for (const b of buckets) args.push(b.capacity, b.perMs);
    const reply = await this.run('consume', () => this.client.agentgateConsume(...args));
    return parseConsumeReply(reply, buckets.length);
  }

  async ready(): Promise<boolean> {
    if (this.client.status !== 'ready') return false;
    try {
      await withDeadline(this.client.ping(), this.commandTimeoutMs);
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    try {
      await withDeadline(this.client.quit(), this.commandTimeoutMs);
    } catch {
      this.client.disconnect();
    }
  }

  /**
   * Bounds the whole operation by the command timeout, from the call on: the wait for a connection being set up (just
   * after start, or mid-reconnect), the wait for the turn's corked writes (standalone) or an auto-pipeline (Cluster) ahead of it, the round trip itself, and Cluster's
   * redirection and retry delays. (ioredis's own commandTimeout, not used, would start at the write.)
   */
  private async run<T>(operation: string, send: () => Promise<T>): Promise<T> {
    this.writeThisTurn();
    try {
      return await withDeadline(this.client.status === 'ready' ? send() : this.sendOnceConnected(send), this.commandTimeoutMs);
    } catch (cause) {
      const error = new StoreError(operation, cause);
      this.onError?.(error);
      throw error;
    }
  }

  /**
   * Holds the standalone socket's writes until the check phase of this turn, so the operations of one turn go out in
   * one write, as ioredis's auto-pipelining did, without the Pipeline object it builds (with its own promises and result
   * arrays) for every batch. Measured on E POST, alternating builds: about 10% less CPU per request and no major GCs;
   * writes to Redis per request the same (about 0.3). Cluster keeps auto-pipelining: its commands go to many sockets.
   */
  private writeThisTurn(): void {
    if (this.corked) return;
    const stream = this.client.stream;
    if (stream === undefined) return;
    this.corked = true;
    stream.cork();
    setImmediate(() => {
      this.corked = false;
      stream.uncork();
    });
  }

  private async sendOnceConnected<T>(send: () => Promise<T>): Promise<T> {
    // Without an offline queue, a command sent before the connection is up would fail.
    if (this.client.status !== 'connecting' && this.client.status !== 'connect') throw new Error(`not connected to redis (${this.client.status})`);
    await this.connection();
    return send();
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

/**
 * Settles as `operation` does, or fails once `ms` have passed. The timer is cleared as soon as the operation settles:
 * with AbortSignal.timeout, as before, every operation left a timer that fired later and made an exception, and kept
 * its objects alive long enough to be promoted to the old generation (a major GC every couple of seconds on Redis).
 */
async function withDeadline<T>(operation: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from redis within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([operation, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * ioredis sets a connection up in at most three round trips one after the other: its handshake (AUTH, SELECT, CLIENT
 * SETINFO, sent together), a second handshake when the server refuses RESP3, then the INFO ready check.
 */
const SET_UP_ROUND_TRIPS = 3;

/**
 * A connection that is up but not ready within SET_UP_ROUND_TRIPS command timeouts (a handshake or ready check left
 * unanswered) is dropped, and reconnects as it would after a failed ready check: otherwise it would stay 'connect'
 * for good and every operation would wait out its deadline. Each round trip gets a command timeout, as each command
 * did under ioredis's own commandTimeout, so a slow link whose replies take most of it still connects. A Redis still
 * loading its data set answers the ready check with "loading" and is asked again later; when that takes longer, the
 * connection is dropped and made again until the data is loaded (operations fail meanwhile either way).
 */
function boundSetUp(connection: Redis, ms: number): void {
  let timer: NodeJS.Timeout | undefined;
  const clear = () => {
    clearTimeout(timer);
    timer = undefined;
  };
  connection.on('connect', () => {
    clear();
    timer = setTimeout(() => {
      timer = undefined;
      if (connection.status === 'connect') connection.disconnect(true);
    }, SET_UP_ROUND_TRIPS * ms);
  });
  connection.on('ready', clear).on('close', clear);
}

/** Indexes of the buckets grouped by hash tag, groups in the order their first bucket appears. */
function groupByHashTag(buckets: readonly Bucket[]): number[][] {
  const groups = new Map<string, number[]>();
  buckets.forEach((bucket, i) => {
    const tag = hashTagOf(bucket.key);
    const group = groups.get(tag);
    if (group) group.push(i);
    else groups.set(tag, [i]);
  });
  return [...groups.values()];
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

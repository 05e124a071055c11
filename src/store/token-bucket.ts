// The token-bucket arithmetic behind Store.consume, twice: in TypeScript for the memory store and in Lua for Redis. Keep them in step.
import type { Bucket, BucketState, ConsumeMode, ConsumeResult } from './store.ts';

/*
 * Exact integer arithmetic. A bucket of `capacity` units refilled continuously over `perMs` is kept in sub-units of
 * 1/perMs of a unit: it holds capacity*perMs sub-units and refills `capacity` sub-units per millisecond, so every
 * quantity is an integer and no rounding ever lets one extra request through. Config validation keeps
 * capacity*perMs <= 2^52, so even a forced overdraft (at most one more full bucket) stays an exact double in
 * JavaScript and in Redis' Lua alike.
 *
 * Stored value: "<used sub-units>:<ms of last change>". A missing key is a full bucket; a key expires exactly when
 * its bucket would be full again, so idle consumers cost nothing.
 */

/** floor(a / b) for non-negative integers; the check after the division guards against a/b rounding across an integer near 2^53. */
export function floorDiv(a: number, b: number): number {
  let q = Math.floor(a / b);
  if (q * b > a) q -= 1;
  else if ((q + 1) * b <= a) q += 1;
  return q;
}

/** ceil(a / b) for non-negative integers, exactly. */
export function ceilDiv(a: number, b: number): number {
  let q = Math.ceil(a / b);
  if (q > 0 && (q - 1) * b >= a) q -= 1;
  else if (q * b < a) q += 1;
  return q;
}

/** Sub-units in use now, after continuous refill since the stored change. */
export function usedNow(stored: string | null, capacity: number, now: number): number {
  if (stored === null) return 0;
  const sep = stored.indexOf(':');
  const used = Number(stored.slice(0, sep));
  const at = Number(stored.slice(sep + 1));
  // A store clock that stepped back (failover to a replica) refills nothing rather than charging.
  const elapsed = Math.max(0, now - at);
  return Math.max(0, used - elapsed * capacity);
}

export interface BucketIo {
  read(key: string): string | null;
  /** Writes value with a TTL, or deletes the key when value is null. */
  write(key: string, value: string | null, ttlMs: number): void;
}

/** The whole decision for buckets that live together (one process, or one Redis slot); `io` is synchronous, so it is atomic. */
export function consumeBuckets(buckets: readonly Bucket[], cost: number, mode: ConsumeMode, now: number, io: BucketIo): ConsumeResult {
  const used = buckets.map((b) => usedNow(io.read(b.key), b.capacity, now));
  let allowed = true;
  if (cost > 0) {
    for (let i = 0; i < buckets.length; i++) if (used[i]! + cost * buckets[i]!.perMs > buckets[i]!.capacity * buckets[i]!.perMs) allowed = false;
  }
  const apply = mode !== 'dry_run' && cost !== 0 && (mode === 'force' || cost < 0 || allowed);
  const states = buckets.map((b, i): BucketState => {
    const full = b.capacity * b.perMs;
    const need = cost * b.perMs;
    let u = used[i]!;
    const waitMs = need > full ? -1 : u + need > full ? ceilDiv(u + need - full, b.capacity) : 0;
    if (apply) {
      u = Math.min(Math.max(0, u + need), 2 * full);
      io.write(b.key, u > 0 ? `${u}:${now}` : null, ceilDiv(u, b.capacity));
    }
    return { remaining: Math.max(0, floorDiv(full - u, b.perMs)), resetMs: ceilDiv(u, b.capacity), waitMs };
  });
  return { allowed: cost <= 0 || allowed, now, buckets: states };
}

/**
 * The same in Lua for Redis, as a function `consume(n)` of the first n KEYS, for CONSUME_LUA below and redis.ts's charge-and-claim script. KEYS: the buckets,
 * all in one hash slot on Cluster. ARGV: cost, mode, then capacity and perMs of each bucket. Time is Redis' own (TIME),
 * never a replica's clock. Reply: allowed (1/0), now, then remaining, resetMs, waitMs of each bucket. Numbers are
 * written with %.0f: Lua's default number format keeps 14 digits, which would round large sub-unit counts.
 */
export const CONSUME_FUNCTION_LUA = `
local function floordiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end
local function ceildiv(a, b)
  local q = math.ceil(a / b)
  if q > 0 and (q - 1) * b >= a then q = q - 1 elseif q * b < a then q = q + 1 end
  return q
end
local function consume(n)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local cost = tonumber(ARGV[1])
  local mode = ARGV[2]
  local used = {}
  local allowed = true
  for i = 1, n do
    local cap = tonumber(ARGV[1 + 2 * i])
    local per = tonumber(ARGV[2 + 2 * i])
    local u = 0
    local stored = redis.call('GET', KEYS[i])
    if stored then
      local sep = string.find(stored, ':', 1, true)
      local elapsed = math.max(0, now - tonumber(string.sub(stored, sep + 1)))
      u = math.max(0, tonumber(string.sub(stored, 1, sep - 1)) - elapsed * cap)
    end
    used[i] = u
    if cost > 0 and u + cost * per > cap * per then allowed = false end
  end
  local apply = mode ~= 'dry_run' and cost ~= 0 and (mode == 'force' or cost < 0 or allowed)
  local reply = {(cost <= 0 or allowed) and 1 or 0, now}
  for i = 1, n do
    local cap = tonumber(ARGV[1 + 2 * i])
    local per = tonumber(ARGV[2 + 2 * i])
    local full = cap * per
    local need = cost * per
    local u = used[i]
    local wait = 0
    if need > full then wait = -1 elseif u + need > full then wait = ceildiv(u + need - full, cap) end
    if apply then
      u = math.min(math.max(0, u + need), 2 * full)
      if u > 0 then
        redis.call('SET', KEYS[i], string.format('%.0f:%.0f', u, now), 'PX', string.format('%.0f', ceildiv(u, cap)))
      else
        redis.call('DEL', KEYS[i])
      end
    end
    reply[#reply + 1] = math.max(0, floordiv(full - u, per))
    reply[#reply + 1] = ceildiv(u, cap)
    reply[#reply + 1] = wait
  end
  return reply
end
`;

/** Store.consume in one EVALSHA, so atomic on the server: every KEY is a bucket. */
export const CONSUME_LUA = `${CONSUME_FUNCTION_LUA}
return consume(#KEYS)
`;

/** How many elements consume(n)'s reply has: allowed and now, then three per bucket. A script that appends to it starts there. */
export function consumeReplyLength(count: number): number {
  return 2 + 3 * count;
}

/** Decodes the Lua reply (its first consumeReplyLength(count) elements). */
export function parseConsumeReply(reply: readonly unknown[], count: number): ConsumeResult {
  const buckets: BucketState[] = [];
  for (let i = 0; i < count; i++) buckets.push({ remaining: reply[2 + 3 * i] as number, resetMs: reply[3 + 3 * i] as number, waitMs: reply[4 + 3 * i] as number });
  return { allowed: reply[0] === 1, now: reply[1] as number, buckets };
}

/** The Redis Cluster hash tag of a key (the rule Redis applies): the text in the first {...}, if non-empty, else the whole key. */
export function hashTagOf(key: string): string {
  const open = key.indexOf('{');
  if (open === -1) return key;
  const close = key.indexOf('}', open + 1);
  if (close === -1 || close === open + 1) return key;
  return key.slice(open + 1, close);
}

// The soak's load generator, in its own process so its CPU and memory are not the harness's: autocannon at fixed
// concurrency, every request generated on the fly (a consumer out of N, a fresh Idempotency-Key per write, some retries
// of recent writes that must replay), statistics per time window sent to the parent over IPC.
//
// Parent → loader: {cmd: 'start', ...LoadPlan} runs until {cmd: 'stop'}; the loader answers {type: 'stopped', ...}.
// Loader → parent: {type: 'ready'} once, {type: 'window', ...WindowStats} every plan.windowMs while running.
import autocannon from 'autocannon';
import { percentile } from './common.ts';

export interface LoadPlan {
  url: string;
  connections: number;
  consumers: number;
  runId: string;
  windowMs: number;
  /** The first request number of this segment (numbers continue across segments, so keys never repeat). */
  firstN: number;
}

export interface WindowStats {
  /** Milliseconds since the epoch at the window's start and end. */
  start: number;
  end: number;
  requests: number;
  statuses: Record<string, number>;
  /** By kind: get, post, replay (a retry of an earlier write, which must be answered 201 like the first time). */
  kinds: Record<string, number>;
  errors: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  max_ms: number;
}

export interface Stopped {
  type: 'stopped';
  nextN: number;
  requests: number;
  errors: number;
  timeouts: number;
  statuses: Record<string, number>;
}

/** Shares of the traffic: reads, fresh writes, and retries of a recent write with the same key (replays). */
const GET_SHARE = 0.6;
const POST_SHARE = 0.35;
/** A retried write is between these many writes old: finished (not "in progress"), and usually still in the store. */
const REPLAY_MIN_AGE = 500;
const REPLAY_MAX_AGE = 5000;

let instance: autocannon.Instance | undefined;

function start(plan: LoadPlan): void {
  let n = plan.firstN;
  /** Recent write numbers, a ring. */
  const posts = new Float64Array(REPLAY_MAX_AGE);
  let postCount = 0;
  let latencies: number[] = [];
  let statuses: Record<string, number> = {};
  let kinds: Record<string, number> = {};
  let errors = 0;
  let windowStart = Date.now();
  const agent = (i: number) => `agent-${i % plan.consumers}`;
  const order = (i: number) => JSON.stringify({ item: 'widget', quantity: 1 + (i % 5), n: i });
  const count = (kind: string) => (kinds[kind] = (kinds[kind] ?? 0) + 1);

  const flush = () => {
    const end = Date.now();
    const sorted = Float64Array.from(latencies).sort();
    const stats: WindowStats = {
      start: windowStart,
      end,
      requests: latencies.length,
      statuses,
      kinds,
      errors,
      p50_ms: percentile(sorted, 0.5),
      p90_ms: percentile(sorted, 0.9),
      p99_ms: percentile(sorted, 0.99),
      max_ms: sorted.length ? sorted[sorted.length - 1]! : NaN,
    };
    process.send?.({ type: 'window', ...stats });
    latencies = [];
    statuses = {};
    kinds = {};
    errors = 0;
    windowStart = end;
  };
  const timer = setInterval(flush, plan.windowMs);

  instance = autocannon(
    {
      url: plan.url,
      connections: plan.connections,
      pipelining: 1,
      duration: 7 * 24 * 3600,
      timeout: 10,
      requests: [
        {
          setupRequest: (req) => {
            const i = n++;
            const r = Math.random();
            if (r < GET_SHARE) {
              count('get');
              return { ...req, method: 'GET', path: `/soak/items/item-${i % 1000}`, headers: { 'x-agent-id': agent(i), accept: 'application/json' }, body: undefined };
            }
            let w = i;
            if (r >= GET_SHARE + POST_SHARE && postCount >= REPLAY_MAX_AGE) {
              // A retry of a recent write: same consumer, key and body as the first time.
              const age = REPLAY_MIN_AGE + Math.floor(Math.random() * (REPLAY_MAX_AGE - REPLAY_MIN_AGE));
              w = posts[(postCount - age) % REPLAY_MAX_AGE]!;
              count('replay');
            } else {
              posts[postCount++ % REPLAY_MAX_AGE] = i;
              count('post');
            }
            return {
              ...req,
              method: 'POST',
              path: '/soak/orders',
              headers: { 'x-agent-id': agent(w), 'idempotency-key': `soak-${plan.runId}-${w}`, 'content-type': 'application/json' },
              body: order(w),
            };
          },
        },
      ],
    },
    (err, result) => {
      clearInterval(timer);
      flush();
      const stopped: Stopped = {
        type: 'stopped',
        nextN: n,
        requests: result?.requests?.total ?? 0,
        errors: result?.errors ?? (err ? 1 : 0),
        timeouts: result?.timeouts ?? 0,
        statuses: {
          '2xx': result?.['2xx'] ?? 0,
          '4xx': result?.['4xx'] ?? 0,
          '5xx': result?.['5xx'] ?? 0,
        },
      };
      process.send?.(stopped);
      instance = undefined;
    },
  );
  instance.on('response', (_client, statusCode, _bytes, responseTime) => {
    latencies.push(responseTime);
    statuses[statusCode] = (statuses[statusCode] ?? 0) + 1;
  });
  instance.on('reqError', () => errors++);
}

process.on('message', (message: { cmd: string } & Partial<LoadPlan>) => {
  if (message.cmd === 'start') start(message as LoadPlan);
  else if (message.cmd === 'stop') instance?.stop();
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
process.send?.({ type: 'ready' });

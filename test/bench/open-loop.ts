// The open-loop load generator (issue 23): requests sent on a fixed schedule, whether or not earlier ones have been
// answered, with latency measured from each request's SCHEDULED send time. A closed-loop generator (autocannon: N
// connections, each sending its next request when the previous answer arrives) waits for a slow answer before sending
// more, so the requests that would have queued behind it are never sent and their wait never measured: coordinated
// omission. autocannon has no way to correct for it (its --overallRate only spaces the requests its connections send,
// and measures from the actual send), hence this generator.
//
// Node's timers have a resolution of a millisecond, as long as the interval between requests at 1,000 req/s, and would
// send each request 0–2 ms late. So a worker thread keeps the clock: it sleeps on a futex (Atomics.wait, which takes
// fractions of a millisecond and costs no CPU while waiting) until the next request is due and then wakes this thread,
// which sends every request whose time has come (catching up after any delay), each stamped with its own scheduled
// time. A late send — this thread busy with answers, the machine's CPU taken — counts against the latency like any
// other wait; how late the sends were is reported apart (send lag): the generator's own share of the latency, alike
// for every target at one rate. It runs in the bench process, on the same cores as the process under test.
import { Agent, request } from 'node:http';
import { Worker } from 'node:worker_threads';

export interface OpenLoopSpec {
  url: string;
  method: 'GET' | 'POST';
  path: string;
  headers: Record<string, string>;
  body?: string;
  /** A header set on every request to a fresh value, PREFIX-N (the Idempotency-Key of each write). */
  freshHeader?: { name: string; prefix: string };
  /** Requests per second. */
  rate: number;
  /** Sent at the same rate right before the measured ones, not recorded. */
  warmupSeconds: number;
  durationSeconds: number;
  /** Per request; a request still unanswered then is destroyed and counted as a timeout. */
  timeoutMs?: number;
  /** Called synchronously right before the first measured request is sent (read /proc counters here). */
  onMeasureStart?: () => void;
}

export interface Quantiles {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

export interface OpenLoopResult {
  rate: number;
  /** Requests scheduled in the measured window (after the warm-up). */
  scheduled: number;
  /** Their answers, by status; errors and timeouts are the requests without one. */
  responses: number;
  statusCounts: Record<string, number>;
  errors: number;
  timeouts: number;
  /** From the first measured request's scheduled time to the last answer: the window the CPU figures cover. */
  windowSeconds: number;
  /** Measured requests per second actually sent (first to last send). */
  sentRate: number;
  /** ms from each request's scheduled time to the end of its answer, expected status only: what a client waits. */
  latency: Quantiles | undefined;
  /** ms from the actual send to the end of the answer (coordinated omission left in: for comparison only). */
  serviceTime: Quantiles | undefined;
  /** ms each measured request was sent after its scheduled time: this generator's own lateness. */
  sendLag: Quantiles | undefined;
  /** The most requests in flight at once while measured (the sockets needed, with keep-alive). */
  maxInFlight: number;
  /** Connections the generator opened while measured (the warm-up opens the pool a steady rate needs). */
  socketsOpened: number;
  firstError?: string;
}

let stopping = false;
let wakeUp: (() => void) | undefined;

/** Now, in ms, on the monotonic clock both threads read (performance.now() has a different origin in each thread). */
const now = (): number => Number(process.hrtime.bigint()) / 1e6;

/**
 * The clock thread: first posts the schedule's start (once it runs: starting a thread takes tens of ms), then `i`
 * whenever request i falls due (every request up to i is then due), sleeping in between. state[0] becomes 1 to stop it.
 */
const CLOCK = `
const { parentPort, workerData } = require('node:worker_threads');
const { interval, total, state } = workerData;
const now = () => Number(process.hrtime.bigint()) / 1e6;
const start = now() + 5;
parentPort.postMessage({ start });
for (let i = 0; i < total && Atomics.load(state, 0) === 0; ) {
  const wait = start + i * interval - now();
  if (wait > 0.02) {
    Atomics.wait(state, 0, 0, wait);
    continue;
  }
  const t = now();
  while (i < total && start + i * interval <= t + 0.02) i++;
  parentPort.postMessage(i);
}
`;

/** Stops the run in progress (Ctrl-C): nothing more is sent, and what is in flight is abandoned. */
export function stopOpenLoop(): void {
  stopping = true;
  wakeUp?.();
}

export async function runOpenLoop(spec: OpenLoopSpec, expectedStatus: number): Promise<OpenLoopResult> {
  stopping = false;
  const target = new URL(spec.url);
  // Enough sockets for every request in flight: with LIFO reuse only as many stay busy as the latency needs (about
  // rate × latency); the pool grows only while answers are slow, which is what an open loop must not hide.
  const agent = new Agent({ keepAlive: true, maxSockets: 4096, maxFreeSockets: 4096, scheduling: 'lifo' });
  let socketsOpened = 0;
  const counted = new WeakSet<object>();
  const body = spec.body === undefined ? undefined : Buffer.from(spec.body);
  const baseHeaders: Record<string, string | number> = { ...spec.headers, ...(body ? { 'content-length': body.length } : {}) };
  const timeoutMs = spec.timeoutMs ?? 10_000;
  const interval = 1000 / spec.rate;
  const warmup = Math.round(spec.warmupSeconds * spec.rate);
  const measured = Math.max(1, Math.round(spec.durationSeconds * spec.rate));
  const total = warmup + measured;

  const latency = new Float64Array(measured);
  const service = new Float64Array(measured);
  const lag = new Float64Array(measured);
  let latencyCount = 0;
  const statusCounts: Record<string, number> = {};
  let responses = 0;
  let errors = 0;
  let timeouts = 0;
  let firstError: string | undefined;
  let inFlight = 0;
  let maxInFlight = 0;
  let firstSend = NaN;
  let lastSend = NaN;
  let lastAnswer = NaN;
  let next = 0; // the next request to send
  let outstanding = 0; // measured requests not yet settled
  let settledAll: () => void = () => {};
  const allSettled = new Promise<void>((resolve) => (settledAll = resolve));

  const settle = (measuredIndex: number) => {
    inFlight--;
    if (measuredIndex >= 0 && --outstanding === 0 && next === total) settledAll();
  };

  const send = (i: number, scheduledAt: number) => {
    const m = i - warmup; // < 0: warm-up
    const headers = spec.freshHeader ? { ...baseHeaders, [spec.freshHeader.name]: `${spec.freshHeader.prefix}-${i}` } : baseHeaders;
    const sentAt = now();
    if (m >= 0) {
      lag[m] = sentAt - scheduledAt;
      if (m === 0) firstSend = sentAt;
      lastSend = sentAt;
      outstanding++;
    }
    inFlight++;
    if (m >= 0 && inFlight > maxInFlight) maxInFlight = inFlight;
    let done = false;
    const fail = (err: Error) => {
      if (done) return;
      done = true;
      if (m >= 0) {
        errors++;
        firstError ??= err.message;
      }
      settle(m);
    };
    const req = request({ host: target.hostname, port: target.port, method: spec.method, path: spec.path, headers, agent }, (res) => {
      res.on('data', () => {});
      res.on('error', fail);
      res.on('end', () => {
        if (done) return;
        done = true;
        const answeredAt = now();
        if (m >= 0) {
          responses++;
          statusCounts[res.statusCode!] = (statusCounts[res.statusCode!] ?? 0) + 1;
          if (res.statusCode === expectedStatus) {
            latency[latencyCount] = answeredAt - scheduledAt;
            service[latencyCount] = answeredAt - sentAt;
            latencyCount++;
          }
          lastAnswer = answeredAt;
        }
        settle(m);
      });
    });
    req.on('socket', (socket) => {
      if (!counted.has(socket)) {
        counted.add(socket);
        if (m >= 0) socketsOpened++;
      }
    });
    req.setTimeout(timeoutMs, () => {
      if (done) return;
      done = true;
      if (m >= 0) timeouts++;
      req.destroy();
      settle(m);
    });
    req.on('error', fail);
    req.end(body);
  };

  // The schedule: request i is due at start + i × interval. Each wake-up from the clock thread sends every request due
  // by now (the clock may wake this thread a few µs early: it rounds to 20 µs).
  let start = NaN;
  const state = new Int32Array(new SharedArrayBuffer(4));
  const clock = new Worker(CLOCK, { eval: true, workerData: { interval, total, state } });
  await new Promise<void>((resolve, reject) => {
    wakeUp = resolve;
    clock.on('error', reject);
    clock.on('message', (message: number | { start: number }) => {
      if (typeof message === 'object') {
        start = message.start;
        return;
      }
      if (stopping) return resolve();
      const t = now() + 0.02;
      while (next < total && start + next * interval <= t) {
        if (next === warmup) spec.onMeasureStart?.();
        send(next, start + next * interval);
        next++;
      }
      if (next >= total) resolve();
    });
  }).finally(() => {
    wakeUp = undefined;
    Atomics.store(state, 0, 1);
    Atomics.notify(state, 0);
    void clock.terminate();
  });
  if (!stopping && outstanding > 0) await allSettled;
  agent.destroy();

  const windowEnd = Number.isFinite(lastAnswer) ? lastAnswer : now();
  return {
    rate: spec.rate,
    scheduled: measured,
    responses,
    statusCounts,
    errors,
    timeouts,
    windowSeconds: Math.max(1e-3, (windowEnd - (start + warmup * interval)) / 1000),
    sentRate: measured > 1 && lastSend > firstSend ? ((measured - 1) * 1000) / (lastSend - firstSend) : NaN,
    latency: quantiles(latency.subarray(0, latencyCount)),
    serviceTime: quantiles(service.subarray(0, latencyCount)),
    sendLag: quantiles(lag.subarray(0, Math.min(measured, Math.max(0, next - warmup)))),
    maxInFlight,
    socketsOpened,
    ...(firstError === undefined ? {} : { firstError }),
  };
}

/** Exact quantiles (nearest rank) of the samples; undefined when there are none. Sorts in place. */
export function quantiles(samples: Float64Array): Quantiles | undefined {
  if (samples.length === 0) return undefined;
  samples.sort();
  const at = (q: number) => samples[Math.min(samples.length - 1, Math.max(0, Math.ceil(q * samples.length) - 1))]!;
  let sum = 0;
  for (const v of samples) sum += v;
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), p999: at(0.999), max: samples[samples.length - 1]!, mean: sum / samples.length };
}

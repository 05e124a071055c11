// The load generator: autocannon's programmatic API, in this process, with our own exact latency record.
import autocannon from 'autocannon';

export interface LoadSpec {
  url: string;
  method: 'GET' | 'POST';
  path: string;
  headers: Record<string, string>;
  body?: string;
  connections: number;
  durationSeconds: number;
}

export interface LoadResult {
  durationSeconds: number;
  responses: number;
  /** Responses per second (every response; non-expected ones are reported separately and flag the scenario). */
  rps: number;
  /** Latency of the expected-status responses, milliseconds (exact: from every sample, not a 1 ms bucketed histogram). */
  p50: number;
  p99: number;
  mean: number;
  statusCounts: Record<string, number>;
  errors: number;
  timeouts: number;
}

let current: autocannon.Instance | undefined;

/** Stops the run in progress (Ctrl-C). */
export function stopLoad(): void {
  current?.stop();
}

/**
 * Runs autocannon for `durationSeconds` at fixed concurrency. `[<id>]` in a header value is replaced by a fresh unique
 * id on every request (autocannon's idReplacement): that is how each write gets its own Idempotency-Key. The
 * replacement runs for every scenario, also those without a placeholder, so the generator's own cost per request is
 * the same everywhere.
 */
export async function runLoad(spec: LoadSpec, expectedStatus: number): Promise<LoadResult> {
  const latencies: number[] = [];
  const statusCounts: Record<string, number> = {};
  let finished!: (err: unknown, result: autocannon.Result) => void;
  const done = new Promise<autocannon.Result>((resolve, reject) => {
    finished = (err, result) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(result));
  });
  // With a callback, autocannon returns its instance (events, stop()) rather than a promise.
  const instance = autocannon({
    url: spec.url,
    connections: spec.connections,
    pipelining: 1,
    duration: spec.durationSeconds,
    timeout: 10,
    idReplacement: true,
    requests: [{ method: spec.method, path: spec.path, headers: spec.headers, ...(spec.body === undefined ? {} : { body: spec.body }) }],
  }, (err, result) => finished(err, result));
  current = instance;
  instance.on('response', (_client, statusCode, _bytes, responseTime) => {
    statusCounts[statusCode] = (statusCounts[statusCode] ?? 0) + 1;
    if (statusCode === expectedStatus) latencies.push(responseTime);
  });
  const result = await done.finally(() => {
    current = undefined;
  });
  const sorted = Float64Array.from(latencies).sort();
  const responses = Object.values(statusCounts).reduce((a, b) => a + b, 0);
  const duration = result.duration > 0 ? result.duration : spec.durationSeconds;
  return {
    durationSeconds: duration,
    responses,
    rps: responses / duration,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    mean: sorted.length === 0 ? NaN : sorted.reduce((a, b) => a + b, 0) / sorted.length,
    statusCounts,
    errors: result.errors,
    timeouts: result.timeouts,
  };
}

/** Nearest-rank percentile of an ascending array; NaN when empty. */
function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[index]!;
}

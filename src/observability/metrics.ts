// The Prometheus metrics of the contract (prefix agentgate_, base units, labelled by route name, never raw path).
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import { SeriesHistogram, type HistogramSeries } from './histogram.ts';
import type { MemoryStorePartStats, MemoryStoreStats } from '../store/memory.ts';

/** Methods outside this set are counted as OTHER, so a client cannot grow label cardinality with made-up methods. */
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'CONNECT', 'TRACE']);

export function methodLabel(method: string | undefined): string {
  return method && KNOWN_METHODS.has(method) ? method : 'OTHER';
}

interface FinishedRequests {
  readonly counter: { inc(value: number): void };
  /** Requests finished since the metrics were last read. */
  unread: number;
  readonly duration: HistogramSeries;
}

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class GatewayMetrics {
  readonly registry = new Registry();

  readonly requests = new Counter({
    name: 'agentgate_requests_total',
    help: 'Requests answered by the gateway, by route, method, status code and outcome.',
    labelNames: ['route', 'method', 'status_code', 'outcome'] as const,
    registers: [this.registry],
    // Counts of finished requests are added when the metrics are read (see recordRequest).
    collect: () => this.addFinishedRequests(),
  });

  readonly requestDuration = new SeriesHistogram({
    name: 'agentgate_request_duration_seconds',
    help: 'Time from receiving a request to finishing its response, in seconds.',
    labelNames: ['route', 'outcome'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly upstreamDuration = new SeriesHistogram({
    name: 'agentgate_upstream_request_duration_seconds',
    help: 'Time from sending a request upstream to the end of its response, in seconds.',
    labelNames: ['upstream', 'route'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly upstreamErrors = new Counter({
    name: 'agentgate_upstream_errors_total',
    help: 'Upstream calls that failed (unreachable, timed out, reset, error status), by upstream and error code.',
    labelNames: ['upstream', 'code'] as const,
    registers: [this.registry],
  });

  readonly storeErrors = new Counter({
    name: 'agentgate_store_errors_total',
    help: 'Failed operations on the state store, by store kind and operation.',
    labelNames: ['store', 'operation'] as const,
    registers: [this.registry],
  });

  readonly idempotencyEvents = new Counter({
    name: 'agentgate_idempotency_events_total',
    help: 'Idempotency decisions, by route and event (stored, replayed, in_progress, reused, unknown_outcome, missing_key, invalid_key, blocked, released, not_replayable, fail_open, fail_closed).',
    labelNames: ['route', 'event'] as const,
    registers: [this.registry],
  });

  readonly rateLimitDecisions = new Counter({
    name: 'agentgate_rate_limit_decisions_total',
    help: 'Rate-limit decisions per policy of a request: allowed, limited (this policy lacked room), fail_open or fail_closed (the store was unreachable).',
    labelNames: ['route', 'policy', 'decision'] as const,
    registers: [this.registry],
  });

  readonly rateLimitCostUnits = new Counter({
    name: 'agentgate_rate_limit_cost_units_total',
    help: 'Cost units charged to rate-limit policies, by route and policy (settled extra cost included; refunds are not subtracted).',
    labelNames: ['route', 'policy'] as const,
    registers: [this.registry],
  });

  readonly rateLimitWarnings = new Counter({
    name: 'agentgate_rate_limit_warnings_total',
    help: "Requests that took a budget below its policy's warn_below threshold, by route and policy.",
    labelNames: ['route', 'policy'] as const,
    registers: [this.registry],
  });

  readonly silentFailures = new Counter({
    name: 'agentgate_silent_failures_total',
    help: 'Upstream 2xx answers that were failures in disguise, by route and rule (empty_body, response_schema, error_fields, content_type, truncated).',
    labelNames: ['route', 'rule'] as const,
    registers: [this.registry],
  });

  readonly circuitBreakerState = new Gauge({
    name: 'agentgate_circuit_breaker_state',
    help: 'Circuit breaker state per upstream: 0 closed, 1 half-open, 2 open.',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
    // With server.workers, the primary reports the most open of the workers' breakers, not a meaningless sum.
    aggregator: 'max',
  });

  readonly authHalts = new Counter({
    name: 'agentgate_auth_halts_total',
    help: 'Times a credential was halted after consecutive upstream 401s, by upstream.',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  });

  readonly approvals = new Counter({
    name: 'agentgate_approvals_total',
    help: 'Approvals of destructive calls, by route and outcome: requested (a 428 that asked for one), asked_again (the same request asked again while its approval is pending: the same approval), too_many (an agent past approval.max_pending: 429), pending (re-sent before a decision), approved, denied (a person\'s decisions), refused (re-sent after a denial), mismatch (another request or agent), expired (re-sent after its time, or used), executed, restored (taken for a request that was never sent, given back).',
    labelNames: ['route', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly approvalWebhooks = new Counter({
    name: 'agentgate_approval_webhooks_total',
    help: 'Approval notices POSTed to routes\' approval.notify webhooks, by route and result: delivered (a 2xx), retried (an attempt failed and another is scheduled), failed (given up: attempts exhausted, or a 4xx other than 408 and 429), dropped (not sent: too many notices pending, or the gateway shut down).',
    labelNames: ['route', 'result'] as const,
    registers: [this.registry],
  });

  readonly authFailures = new Counter({
    name: 'agentgate_auth_failures_total',
    help: 'Requests refused for who is calling (401) or what it may do (403), by reason: missing, malformed, unknown_key, expired, bad_signature, wrong_audience, missing_scope, ...',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly agentsReloads = new Counter({
    name: 'agentgate_agents_reloads_total',
    help: 'Agents file reload attempts, by result (success or error); an error keeps the previous agents.',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  readonly configReloads = new Counter({
    name: 'agentgate_config_reloads_total',
    help: 'Config reload attempts, by result (success or error).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  /**
   * The per-request metrics of each label combination, looked up once per combination instead of hashed on every
   * request. Bounded like the labels themselves: route names, known methods, status codes and outcomes.
   */
  private readonly requestSeries = new Map<string, FinishedRequests>();
  private readonly upstreamSeries = new Map<string, HistogramSeries>();

  /**
   * One finished request: agentgate_requests_total and agentgate_request_duration_seconds. The count is kept here and
   * added to the counter when the metrics are read: a prom-client label child's inc() validates and hashes its
   * labels on every call (about 0.5 µs), a number here costs nothing, and nobody sees the counter in between.
   */
  recordRequest(route: string, method: string, statusCode: number, outcome: string, seconds: number): void {
    const key = `${route}\u0000${method}\u0000${statusCode}\u0000${outcome}`;
    let finished = this.requestSeries.get(key);
    if (!finished) {
      finished = {
        counter: this.requests.labels({ route, method, status_code: String(statusCode), outcome }),
        unread: 0,
        duration: this.requestDuration.series({ route, outcome }),
      };
      this.requestSeries.set(key, finished);
    }
    finished.unread++;
    finished.duration.observe(seconds);
  }

  recordUpstreamDuration(upstream: string, route: string, seconds: number): void {
    const key = `${upstream}\u0000${route}`;
    let series = this.upstreamSeries.get(key);
    if (!series) {
      series = this.upstreamDuration.series({ upstream, route });
      this.upstreamSeries.set(key, series);
    }
    series.observe(seconds);
  }

  /**
   * The memory store's two parts (budgets, records), read from the store when the metrics are: registered only for
   * store.type memory (createStore calls this), so a gateway on Redis shows none of them.
   */
  observeMemoryStore(store: { stats(): MemoryStoreStats }): void {
    const parts = ['budgets', 'records'] as const;
    const gauge = (name: string, help: string, read: (part: MemoryStorePartStats) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['part'] as const,
        registers: [this.registry],
        collect() {
          const stats = store.stats();
          for (const part of parts) this.set({ part }, read(stats[part]));
        },
      });
    const counter = (name: string, help: string, read: (part: MemoryStorePartStats) => number) =>
      new Counter({
        name,
        help,
        labelNames: ['part'] as const,
        registers: [this.registry],
        // The store keeps the running totals; the counter takes them as they stand.
        collect() {
          const stats = store.stats();
          this.reset();
          for (const part of parts) this.inc({ part }, read(stats[part]));
        },
      });
    gauge('agentgate_memory_store_entries', 'Entries held by the memory store, by part (budgets, records); expired ones count until swept.', (p) => p.entries);
    gauge('agentgate_memory_store_bytes', 'Bytes of RSS the memory store takes as counted against its bounds (keys, values and their V8 objects, times 1.1 for the room V8 keeps to collect in, as measured with the shipped node flags), by part.', (p) => p.bytes);
    gauge('agentgate_memory_store_max_entries', 'The memory store\'s bound on entries, by part (store.memory.max_entries, store.memory.records.max_entries).', (p) => p.maxEntries);
    gauge('agentgate_memory_store_max_bytes', 'The memory store\'s bound on bytes, by part (store.memory.max_bytes, store.memory.records.max_bytes).', (p) => p.maxBytes);
    counter(
      'agentgate_memory_store_evictions_total',
      'Entries the memory store evicted to make room, by part: budgets only (an evicted budget refills early); records are never evicted.',
      (p) => p.evictions,
    );
    counter(
      'agentgate_memory_store_refusals_total',
      'Writes the memory store refused for lack of room, by part: records (a new idempotency key answered 503, or an answer kept as not replayable).',
      (p) => p.refusals,
    );
  }

  private addFinishedRequests(): void {
    for (const finished of this.requestSeries.values()) {
      if (finished.unread === 0) continue;
      finished.counter.inc(finished.unread);
      finished.unread = 0;
    }
  }

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    // Start the reload counter at zero for both results, so alerts on increase() see the first error.
    this.configReloads.inc({ result: 'success' }, 0);
    this.configReloads.inc({ result: 'error' }, 0);
  }
}

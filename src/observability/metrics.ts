// The Prometheus metrics of the contract (prefix agentgate_, base units, labelled by route name, never raw path).
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Methods outside this set are counted as OTHER, so a client cannot grow label cardinality with made-up methods. */
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'CONNECT', 'TRACE']);

export function methodLabel(method: string | undefined): string {
  return method && KNOWN_METHODS.has(method) ? method : 'OTHER';
}

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class GatewayMetrics {
  readonly registry = new Registry();

  readonly requests = new Counter({
    name: 'agentgate_requests_total',
    help: 'Requests answered by the gateway, by route, method, status code and outcome.',
    labelNames: ['route', 'method', 'status_code', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly requestDuration = new Histogram({
    name: 'agentgate_request_duration_seconds',
    help: 'Time from receiving a request to finishing its response, in seconds.',
    labelNames: ['route', 'outcome'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly upstreamDuration = new Histogram({
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
  });

  readonly authHalts = new Counter({
    name: 'agentgate_auth_halts_total',
    help: 'Times a credential was halted after consecutive upstream 401s, by upstream.',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  });

  readonly configReloads = new Counter({
    name: 'agentgate_config_reloads_total',
    help: 'Config reload attempts, by result (success or error).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  /**
   * Label children of the per-request metrics, looked up once per label combination instead of hashed on every request.
   * Bounded like the labels themselves: route names, known methods, status codes and outcomes.
   */
  private readonly requestChildren = new Map<string, { count: { inc(): void }; duration: { observe(value: number): void } }>();
  private readonly upstreamChildren = new Map<string, { observe(value: number): void }>();

  /** One finished request: agentgate_requests_total and agentgate_request_duration_seconds. */
  recordRequest(route: string, method: string, statusCode: number, outcome: string, seconds: number): void {
    const key = `${route}\u0000${method}\u0000${statusCode}\u0000${outcome}`;
    let children = this.requestChildren.get(key);
    if (!children) {
      children = {
        count: this.requests.labels({ route, method, status_code: String(statusCode), outcome }),
        duration: this.requestDuration.labels({ route, outcome }),
      };
      this.requestChildren.set(key, children);
    }
    children.count.inc();
    children.duration.observe(seconds);
  }

  recordUpstreamDuration(upstream: string, route: string, seconds: number): void {
    const key = `${upstream}\u0000${route}`;
    let child = this.upstreamChildren.get(key);
    if (!child) {
      child = this.upstreamDuration.labels({ upstream, route });
      this.upstreamChildren.set(key, child);
    }
    child.observe(seconds);
  }

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    // Start the reload counter at zero for both results, so alerts on increase() see the first error.
    this.configReloads.inc({ result: 'success' }, 0);
    this.configReloads.inc({ result: 'error' }, 0);
  }
}

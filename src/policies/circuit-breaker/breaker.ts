// Per-upstream circuit breaker: after N failures within a window, fail fast for a while, then let one probe test the water.
export type CircuitState = 'closed' | 'open' | 'half_open';

/** Gauge values of agentgate_circuit_breaker_state. */
export const CIRCUIT_STATE_VALUE: Record<CircuitState, number> = { closed: 0, half_open: 1, open: 2 };

export interface BreakerOptions {
  /** Failures within `windowMs` that open the circuit. */
  failureThreshold: number;
  windowMs: number;
  /** How long the circuit stays open before one probe is let through. */
  openMs: number;
  clock?: () => number;
  onStateChange?: (state: CircuitState) => void;
}

export type Admission = { allowed: true; probe: boolean } | { allowed: false; retryAfterMs: number };

export class CircuitBreaker {
  private stateValue: CircuitState = 'closed';
  /** Times of the most recent failures, oldest first; never longer than the threshold. */
  private readonly failures: number[] = [];
  private openedAt = 0;
  private probeInFlight = false;
  private readonly options: BreakerOptions;
  private readonly clock: () => number;

  constructor(options: BreakerOptions) {
    this.options = options;
    this.clock = options.clock ?? Date.now;
  }

  get state(): CircuitState {
    return this.stateValue;
  }

  /** Before forwarding: proceed (possibly as the one half-open probe) or fail fast with the wait until the next probe. */
  admit(): Admission {
    if (this.stateValue === 'closed') return { allowed: true, probe: false };
    const now = this.clock();
    const reopensAt = this.openedAt + this.options.openMs;
    if (this.stateValue === 'open' && now >= reopensAt) this.transition('half_open');
    if (this.stateValue === 'half_open' && !this.probeInFlight) {
      this.probeInFlight = true;
      return { allowed: true, probe: true };
    }
    // While a probe is out, others wait as long as a probe may take to settle: a full open period at most.
    return { allowed: false, retryAfterMs: Math.max(reopensAt - now, this.stateValue === 'half_open' ? this.options.openMs : 0, 1) };
  }

  /** After the upstream answered (or failed): a failure is a 5xx, a timeout or an unreachable upstream. */
  record(success: boolean, probe: boolean): void {
    const now = this.clock();
    if (probe) {
      this.probeInFlight = false;
      if (success) {
        this.failures.length = 0;
        this.transition('closed');
      } else {
        this.open(now);
      }
      return;
    }
    if (success || this.stateValue !== 'closed') return;
    this.failures.push(now);
    if (this.failures.length > this.options.failureThreshold) this.failures.shift();
    if (this.failures.length === this.options.failureThreshold && now - this.failures[0]! <= this.options.windowMs) this.open(now);
  }

  /** A probe that never reports back (client gone, gateway bug) must not hold the circuit half-open forever. */
  abandonProbe(): void {
    this.probeInFlight = false;
  }

  private open(now: number): void {
    this.openedAt = now;
    this.failures.length = 0;
    this.transition('open');
  }

  private transition(state: CircuitState): void {
    if (state === this.stateValue) return;
    this.stateValue = state;
    this.options.onStateChange?.(state);
  }
}

// Auth-failure halt: after N consecutive upstream 401s for one credential, stop sending it for a cool-down so one bad key cannot burn the fleet.

export interface AuthHaltOptions {
  /** Consecutive 401s for one credential that halt it. */
  threshold: number;
  cooldownMs: number;
  clock?: () => number;
}

interface CredentialState {
  consecutive401: number;
  haltedUntil: number;
}

/** Credentials tracked at most; the oldest are forgotten first, so a flood of random tokens cannot grow memory. */
const MAX_TRACKED_CREDENTIALS = 10_000;

export class AuthFailureHalt {
  private readonly credentials = new Map<string, CredentialState>();
  private readonly options: AuthHaltOptions;
  private readonly clock: () => number;

  constructor(options: AuthHaltOptions) {
    this.options = options;
    this.clock = options.clock ?? Date.now;
  }

  /** Milliseconds the credential stays halted, or undefined when it may be used. */
  haltedFor(credential: string): number | undefined {
    const state = this.credentials.get(credential);
    if (!state || state.haltedUntil === 0) return undefined;
    const left = state.haltedUntil - this.clock();
    if (left > 0) return left;
    // Cool-down over: the next call is a fresh try; one more 401 halts again at once.
    state.haltedUntil = 0;
    state.consecutive401 = this.options.threshold - 1;
    return undefined;
  }

  /** Records the upstream's answer for a call made with the credential; true when this answer halted it. */
  record(credential: string, status: number): boolean {
    if (status !== 401) {
      this.credentials.delete(credential);
      return false;
    }
    let state = this.credentials.get(credential);
    if (!state) {
      if (this.credentials.size >= MAX_TRACKED_CREDENTIALS) this.credentials.delete(this.credentials.keys().next().value!);
      state = { consecutive401: 0, haltedUntil: 0 };
      this.credentials.set(credential, state);
    }
    state.consecutive401++;
    if (state.consecutive401 < this.options.threshold || state.haltedUntil !== 0) return false;
    state.haltedUntil = this.clock() + this.options.cooldownMs;
    return true;
  }
}

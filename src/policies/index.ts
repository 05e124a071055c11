// The pipeline's order list: every policy, in the order each phase of a request asks them (src/pipeline.ts), and why
// each stands where it does. A fixed, named order, as Caddy's directive order, not a priority number in each policy.
import type { PolicyFactory } from './contract.ts';
import { scopes } from './scopes/policy.ts';
import { idempotency } from './idempotency/policy.ts';
import { rateLimit } from './rate-limit/policy.ts';
import { approval } from './approval/policy.ts';
import { approvalOverrideGuard } from './approval/override-guard.ts';
import { authHalt } from './auth-halt/policy.ts';
import { circuitBreaker } from './circuit-breaker/policy.ts';
import { silentFailure } from './silent-failure/policy.ts';

export const POLICIES: readonly PolicyFactory[] = [
  // First: an agent that may not call the route is refused before its body is read, anything is charged or claimed,
  // or the upstream hears of it (the agent itself was verified before any route was matched).
  scopes,
  // Next, on routes that could take a POST aimed at a path an approval route holds for other methods: a body naming
  // another method (_method) would run, through this route, what that route holds back. It reads such POSTs' bodies
  // first, so the policies after it take the body from there.
  approvalOverrideGuard,
  // Checks the Idempotency-Key and reads the body it fingerprints first: a request malformed there is refused before
  // it is charged. Its claim goes into the store batch, which makes charges first, so a refused charge claims nothing
  // and a 429 is never stored as a replay (Stripe's order); the claim is held before anything can reach the upstream.
  idempotency,
  // Prices the request (reading the body for a per-item cost, unless idempotency already did) and charges every budget
  // of the route in the batch, with the claim: a request over budget never reaches the legacy API.
  rateLimit,
  // After the budgets and the idempotency key, whose decisions come first: a call over budget asks for no approval (its
  // charge is only checked: asking costs nothing), and a retry of an approved call that already ran is replayed, not
  // run or approved again. Its refusals need no store batch (a pending, denied or mismatched approval is answered in
  // the request phase, charged nothing). Before the auth halt and the breaker: an approval is about the request, not
  // the upstream's health, and one taken for a request they then stop is given back.
  approval,
  // Right before forwarding, after the store decided (a replayed or refused request never counts): a credential the
  // upstream keeps refusing is not sent. Before the breaker, because a halted credential says nothing about the upstream.
  authHalt,
  // Fails fast while the upstream is failing; learns from every call's result. Last before forwarding, so that only a
  // request that will really be sent takes the half-open probe's slot.
  circuitBreaker,
  // Inspects a 2xx answer before any of it reaches the agent (after the upstream's errors became envelopes).
  silentFailure,
];

// The errors one operation can answer with: the gateway's own, by the policies that apply to its route, and the upstream's, normalized.
import { ERROR_CATALOG, type ErrorCode } from '../errors/catalog.ts';
import { codeForStatus } from '../errors/normalize.ts';
import type { OperationError } from './model.ts';
import type { SpecResponse } from './spec.ts';

/** What decides an operation's errors: who is checked, which policies apply to its route and method, and how its upstream's statuses read. */
export interface ErrorFacts {
  /** consumers.authenticate is on. */
  readonly authenticate: boolean;
  /** routes[].scopes. */
  readonly scopes: boolean;
  /** The route's idempotency applies to this method. */
  readonly idempotency: { readonly required: boolean; readonly failClosed: boolean } | undefined;
  /** routes[].approval: who grants it (a person's approval can also be pending or denied). */
  readonly approval: { readonly by: 'agent' | 'human' } | undefined;
  /** The route is charged against budgets. */
  readonly rateLimit: { readonly readsBody: boolean; readonly failClosed: boolean } | undefined;
  readonly silentFailure: boolean;
  /** The upstream's circuit breaker. */
  readonly circuitBreaker: boolean;
  /** The upstream's auth halt. */
  readonly authHalt: boolean;
  /** routes[].upstream_errors: statuses the route reads as another code. */
  readonly overrides: ReadonlyMap<number, ErrorCode>;
  /** The responses the spec documents for the operation (its 4xx and 5xx are described on the envelope's). */
  readonly documented: Readonly<Record<string, SpecResponse>>;
}

/** The codes an upstream status of each class can become (src/errors/normalize.ts), worked out once. */
const UPSTREAM_CODES = { '4XX': upstreamCodes(400, 499), '5XX': upstreamCodes(500, 599) } as const;

function upstreamCodes(from: number, to: number): ErrorCode[] {
  const codes = new Set<ErrorCode>();
  for (let status = from; status <= to; status++) codes.add(codeForStatus(status));
  return [...codes];
}

/** Every error the operation can answer with: each gateway code at its catalog status, upstream ones by their status. */
export function errorsOf(facts: ErrorFacts): OperationError[] {
  const gateway = new Set<ErrorCode>(gatewayCodes(facts));
  const errors: OperationError[] = [...gateway].map((code) => ({ code, status: ERROR_CATALOG[code].status, from: 'gateway' }));
  for (const [range, codes] of Object.entries(UPSTREAM_CODES) as ['4XX' | '5XX', ErrorCode[]][]) {
    for (const code of codes) errors.push({ code, status: range, from: 'upstream' });
  }
  for (const [status, code] of facts.overrides) errors.push({ code, status, from: 'upstream' });
  for (const [key, response] of Object.entries(facts.documented)) {
    if (!/^[45]\d\d$/.test(key)) continue;
    const status = Number(key);
    const code = facts.overrides.get(status) ?? codeForStatus(status);
    errors.push({ code, status, from: 'upstream', ...(response.description ? { upstreamDescription: response.description } : {}) });
  }
  return dedupe(errors);
}

/** The codes the gateway itself may raise for the operation, each for the reason given. */
function gatewayCodes(facts: ErrorFacts): ErrorCode[] {
  const codes: ErrorCode[] = [
    'INVALID_REQUEST', // a request head or target the gateway refuses (routing.md)
    'REQUEST_TIMEOUT', // a client too slow sending its request
    'GATEWAY_ERROR',
    'UPSTREAM_ERROR', // the upstream reset the connection or answered what cannot be passed on
    'UPSTREAM_UNAVAILABLE', // the upstream cannot be reached
    'UPSTREAM_TIMEOUT', // the upstream stayed silent longer than the route's timeout
  ];
  if (facts.authenticate) codes.push('UNAUTHENTICATED');
  if (facts.scopes) codes.push('UNAUTHENTICATED', 'FORBIDDEN');
  if (facts.idempotency) {
    if (facts.idempotency.required) codes.push('IDEMPOTENCY_KEY_REQUIRED');
    codes.push('IDEMPOTENCY_KEY_INVALID', 'IDEMPOTENCY_IN_PROGRESS', 'IDEMPOTENCY_KEY_REUSED', 'IDEMPOTENCY_OUTCOME_UNKNOWN', 'PAYLOAD_TOO_LARGE');
    if (facts.idempotency.failClosed) codes.push('STORE_UNAVAILABLE');
  }
  if (facts.rateLimit) {
    codes.push('RATE_LIMITED', 'COST_EXCEEDS_BUDGET');
    // A per-item cost reads the body: too large, or not the JSON the rule counts in.
    if (facts.rateLimit.readsBody) codes.push('PAYLOAD_TOO_LARGE');
    if (facts.rateLimit.failClosed) codes.push('STORE_UNAVAILABLE');
  }
  if (facts.approval) {
    // 428 until the call carries a usable Approval-Id; 422 with one of another request (or agent). A person's approval
    // can be waited for (409, alongside any other 409) or refused (403); an agent's own confirmation is neither.
    codes.push('APPROVAL_REQUIRED', 'APPROVAL_MISMATCH');
    if (facts.approval.by === 'human') codes.push('APPROVAL_PENDING', 'APPROVAL_DENIED');
    // The body is read whole to bind the approval to it (bounded by max_body_bytes), and the approval store fails closed;
    // an agent past approval.max_pending is told to wait (429).
    codes.push('PAYLOAD_TOO_LARGE', 'STORE_UNAVAILABLE', 'RATE_LIMITED');
  }
  if (facts.authHalt) codes.push('UNAUTHENTICATED');
  if (facts.circuitBreaker) codes.push('CIRCUIT_OPEN');
  if (facts.silentFailure) codes.push('SILENT_FAILURE');
  return codes;
}

/** One entry per code and status; of an upstream status given twice, the one the spec describes. */
function dedupe(errors: OperationError[]): OperationError[] {
  const byKey = new Map<string, OperationError>();
  for (const error of errors) {
    const key = `${error.code} ${error.status}`;
    const known = byKey.get(key);
    if (!known || (error.upstreamDescription && !known.upstreamDescription)) byKey.set(key, known ? { ...known, upstreamDescription: error.upstreamDescription } : error);
  }
  return [...byKey.values()];
}

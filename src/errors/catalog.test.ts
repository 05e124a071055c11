// The catalog pins each code's status and retryability (CONTRACT.md sections 3 and 4): a change of either fails here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ERROR_CATALOG } from './catalog.ts';

/** code -> [status the gateway answers with when it raises the code itself, retryable]. */
const CONTRACT: Record<string, [number, boolean]> = {
  INVALID_REQUEST: [400, false],
  UNAUTHENTICATED: [401, false],
  FORBIDDEN: [403, false],
  NOT_FOUND: [404, false],
  ROUTE_NOT_FOUND: [404, false],
  REQUEST_TIMEOUT: [408, true],
  CONFLICT: [409, false],
  VALIDATION_FAILED: [422, false],
  PAYLOAD_TOO_LARGE: [413, false],
  IDEMPOTENCY_KEY_REQUIRED: [400, false],
  IDEMPOTENCY_KEY_INVALID: [400, false],
  IDEMPOTENCY_IN_PROGRESS: [409, true],
  IDEMPOTENCY_KEY_REUSED: [422, false],
  IDEMPOTENCY_OUTCOME_UNKNOWN: [409, false],
  RATE_LIMITED: [429, true],
  // 422, not 429: got, ky, axios-retry and urllib3 retry every 429 by its status, and this request can never pass.
  COST_EXCEEDS_BUDGET: [422, false],
  UPSTREAM_RATE_LIMITED: [429, true],
  UPSTREAM_ERROR: [502, true],
  UPSTREAM_UNAVAILABLE: [503, true],
  UPSTREAM_TIMEOUT: [504, true],
  SILENT_FAILURE: [502, true],
  CIRCUIT_OPEN: [503, true],
  STORE_UNAVAILABLE: [503, true],
  GATEWAY_ERROR: [500, true],
  // Section 9: a call that needs approval is not retryable as is (it needs Approval-Id); a pending one is, later.
  APPROVAL_REQUIRED: [428, false],
  APPROVAL_PENDING: [409, true],
  APPROVAL_DENIED: [403, false],
  APPROVAL_MISMATCH: [422, false],
};

test('each code answers with its contract status and retryability', () => {
  for (const [code, [status, retryable]] of Object.entries(CONTRACT)) {
    const entry = (ERROR_CATALOG as Record<string, { status: number; retryable: boolean }>)[code];
    assert.ok(entry, `${code} is missing from the catalog`);
    assert.deepEqual([entry.status, entry.retryable], [status, retryable], code);
  }
});

test('every code of the catalog is pinned here, so a new one is a deliberate decision', () => {
  // Codes the contract adds later (sections 7-9) belong in the table above once they are in the catalog.
  assert.deepEqual(Object.keys(ERROR_CATALOG).filter((code) => !(code in CONTRACT)), []);
});

test('no code that can never succeed answers 429: status-based retry (got, ky, axios-retry, urllib3) would retry it', () => {
  for (const [code, entry] of Object.entries(ERROR_CATALOG)) {
    if (entry.status === 429) assert.equal(entry.retryable, true, code);
  }
});

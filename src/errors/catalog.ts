// The fixed catalog of error codes every gateway answer draws from; served at GET /_agentgate/errors.

export interface CatalogEntry {
  /** HTTP status the gateway answers with when it raises this code itself. */
  readonly status: number;
  readonly title: string;
  /** Whether sending the same request again can succeed without a human changing something. */
  readonly retryable: boolean;
  /** What an agent should do next; a Retry-After wait, when known, is added in front of it. */
  readonly suggestion: string;
}

export const ERROR_CATALOG = {
  INVALID_REQUEST: {
    status: 400,
    title: 'Invalid request',
    retryable: false,
    suggestion: 'Fix the request as the detail says; sending it again unchanged will fail the same way.',
  },
  UNAUTHENTICATED: {
    status: 401,
    title: 'Authentication failed',
    retryable: false,
    suggestion: 'Refresh your credentials once and retry; if it fails again, escalate to a human.',
  },
  FORBIDDEN: {
    status: 403,
    title: 'Forbidden',
    retryable: false,
    suggestion: 'Do not retry: you are not allowed to do this. Escalate to a human if you need access.',
  },
  NOT_FOUND: {
    status: 404,
    title: 'Not found',
    retryable: false,
    suggestion: 'Check the identifier in the path; the resource does not exist.',
  },
  ROUTE_NOT_FOUND: {
    status: 404,
    title: 'No route matches this request',
    retryable: false,
    suggestion: 'Check the method and path: this gateway does not expose them.',
  },
  REQUEST_TIMEOUT: {
    status: 408,
    title: 'Request not received in time',
    retryable: true,
    suggestion: 'Your client was too slow sending the request (its headers or body stalled): send it again, all at once.',
  },
  CONFLICT: {
    status: 409,
    title: 'Conflict',
    retryable: false,
    suggestion: 'Read the current state of the resource, then decide whether to send a changed request.',
  },
  VALIDATION_FAILED: {
    status: 422,
    title: 'Validation failed',
    retryable: false,
    suggestion: 'Fix the fields named in the detail, then send the corrected request.',
  },
  PAYLOAD_TOO_LARGE: {
    status: 413,
    title: 'Payload too large',
    retryable: false,
    suggestion: 'Send a smaller request, for example by splitting the work into several calls.',
  },
  IDEMPOTENCY_KEY_REQUIRED: {
    status: 400,
    title: 'Idempotency-Key header required',
    retryable: false,
    suggestion: 'Add an Idempotency-Key header with a fresh unique value (a UUID) and reuse it on every retry of this request.',
  },
  IDEMPOTENCY_KEY_INVALID: {
    status: 400,
    title: 'Idempotency-Key header is malformed',
    retryable: false,
    suggestion: 'Send exactly one Idempotency-Key of 1-255 printable ASCII characters, for example a UUID.',
  },
  IDEMPOTENCY_IN_PROGRESS: {
    status: 409,
    title: 'A request with this Idempotency-Key is still in progress',
    retryable: true,
    suggestion: 'The first request with this key is still running: retry the same request with the same key later.',
  },
  IDEMPOTENCY_KEY_REUSED: {
    status: 422,
    title: 'Idempotency-Key reused with a different request',
    retryable: false,
    suggestion: 'Use a new Idempotency-Key for a different request; a key belongs to exactly one request.',
  },
  IDEMPOTENCY_OUTCOME_UNKNOWN: {
    status: 409,
    title: 'Outcome of the original request is unknown',
    retryable: false,
    suggestion: 'The first attempt may have taken effect: check the current state before retrying with a new Idempotency-Key.',
  },
  RATE_LIMITED: {
    status: 429,
    title: 'Rate limit exceeded',
    retryable: true,
    suggestion: 'Wait until the budget refills, then send the same request again.',
  },
  COST_EXCEEDS_BUDGET: {
    // 422, not 429: generic HTTP clients (got, ky, axios-retry, urllib3) retry every 429 by its status, and this
    // request can never pass. X-Should-Retry: false says so too, but only the OpenAI and Anthropic SDKs read it.
    status: 422,
    title: 'Request costs more than the whole budget',
    retryable: false,
    suggestion: 'Do not retry: this request can never fit. Split the work into smaller requests.',
  },
  UPSTREAM_RATE_LIMITED: {
    status: 429,
    title: 'Upstream rate limit exceeded',
    retryable: true,
    suggestion: 'The API behind the gateway is rate limiting: wait, then send the same request again.',
  },
  UPSTREAM_ERROR: {
    status: 502,
    title: 'Upstream error',
    retryable: true,
    suggestion: 'The API behind the gateway failed: back off, then retry a few times before escalating.',
  },
  UPSTREAM_UNAVAILABLE: {
    status: 503,
    title: 'Upstream unavailable',
    retryable: true,
    suggestion: 'The API behind the gateway cannot be reached: wait, then retry with backoff.',
  },
  UPSTREAM_TIMEOUT: {
    status: 504,
    title: 'Upstream timed out',
    retryable: true,
    suggestion: 'The API behind the gateway did not answer in time; the request may or may not have taken effect. Retry with the same Idempotency-Key, or check state first.',
  },
  SILENT_FAILURE: {
    status: 502,
    title: 'Upstream reported success but the response shows a failure',
    retryable: true,
    suggestion: 'The API answered success without doing the work: back off, then retry; escalate if it persists.',
  },
  CIRCUIT_OPEN: {
    status: 503,
    title: 'Upstream circuit open',
    retryable: true,
    suggestion: 'The API behind the gateway is failing and calls are paused: wait, then retry.',
  },
  STORE_UNAVAILABLE: {
    status: 503,
    title: 'Gateway state store unavailable',
    retryable: true,
    suggestion: 'The gateway cannot reach its state store: wait, then retry the same request.',
  },
  APPROVAL_REQUIRED: {
    status: 428,
    title: 'Approval required',
    retryable: false,
    suggestion:
      'Nothing was executed. Read approval.by: "agent" means confirm by sending the identical request again with the header Approval-Id: <approval.id>; "human" means a person must approve first: poll approval.url, then send the identical request with that header.',
  },
  APPROVAL_PENDING: {
    status: 409,
    title: 'Approval pending',
    retryable: true,
    suggestion: 'A person has not decided yet: wait, then send the identical request again with the same Approval-Id.',
  },
  APPROVAL_DENIED: {
    status: 403,
    title: 'Approval denied',
    retryable: false,
    suggestion: 'A person refused this action: do not send it again; report the reason to whoever asked for it.',
  },
  APPROVAL_MISMATCH: {
    status: 422,
    title: 'Approval-Id belongs to another request',
    retryable: false,
    suggestion: 'An approval covers one exact request (method, path, query, body) of one agent: send exactly that request with it, or send the new request without Approval-Id to ask for its own approval.',
  },
  GATEWAY_ERROR: {
    status: 500,
    title: 'Gateway error',
    retryable: true,
    suggestion: 'The gateway itself failed: retry once; escalate with the request_id if it persists.',
  },
} as const satisfies Record<string, CatalogEntry>;

export type ErrorCode = keyof typeof ERROR_CATALOG;

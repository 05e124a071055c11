// Renders the operation model as the OpenAPI 3.1 document of GET /_agentgate/openapi.json: each operation once per config load, one document per set of operations a caller may call (kept), its servers set per request.
import { ERROR_CATALOG, type ErrorCode } from '../errors/catalog.ts';
import { MAX_KEY_LENGTH } from '../policies/idempotency/key.ts';
import { RATE_LIMIT_HEADER_NAMES } from '../policies/rate-limit/headers.ts';
import { APPROVAL_ID_PATTERN } from '../approvals/record.ts';
import type { Operation, OperationError, OperationModel, Parameter, Response } from './model.ts';

export const OPENAPI_VERSION = '3.1.0';
/** The gateway's own component schema: named so that no spec's `Problem` clashes with it (a name may hold a dot, a spec's rarely does). */
const PROBLEM = 'agentgate.Problem';
/** The envelope's `approval` member (src/approvals/view.ts), in the documents of operations that need one. */
const APPROVAL = 'agentgate.Approval';
const SCHEMA_REF = '#/components/schemas/';
const HEADER_REF = '#/components/headers/';
/** Documents kept, one per set of operations a caller may call: agents with the same scopes share one. */
const MAX_KEPT_DOCUMENTS = 64;

/**
 * The envelope's members (src/errors/problem.ts problemDocument), each as agents can rely on it; extensions (a
 * silent failure's rule, the missing scopes) may follow.
 */
export const ENVELOPE_MEMBERS = {
  type: { type: 'string', description: "the code's entry in the catalog, /_agentgate/errors/CODE" },
  title: { type: 'string', description: "the code's title in the catalog" },
  status: { type: 'integer', description: 'the HTTP status of the answer' },
  detail: { type: 'string', description: 'what happened to this request' },
  code: { type: 'string', enum: Object.keys(ERROR_CATALOG), description: 'the stable error code (GET /_agentgate/errors)' },
  retryable: { type: 'boolean', description: 'whether sending the same request again can succeed without a human changing something (also X-Should-Retry)' },
  retry_after_seconds: { type: ['integer', 'null'], minimum: 1, description: 'how long to wait before a retry, when known (also Retry-After)' },
  suggestion: { type: 'string', description: 'what to do next' },
  request_id: { type: 'string', description: 'the X-Request-Id of the answer, for logs' },
  upstream_status: { type: ['integer', 'null'], description: "the API's own status, when the error came from its answer" },
} as const;

const PROBLEM_SCHEMA = {
  type: 'object',
  description: 'Every error of the gateway and of the API behind it, as one RFC 9457 problem document',
  required: Object.keys(ENVELOPE_MEMBERS),
  properties: ENVELOPE_MEMBERS,
};

const APPROVAL_SCHEMA = {
  type: 'object',
  description: 'The approval a call waits for, as the APPROVAL_* answers carry it',
  required: ['id', 'by', 'status', 'route', 'created_at', 'expires_at', 'url'],
  properties: {
    id: { type: 'string', pattern: APPROVAL_ID_PATTERN.source, description: 'what to send as the Approval-Id header with the identical request' },
    by: { type: 'string', enum: ['agent', 'human'], description: 'agent: you confirm by sending the identical request with Approval-Id; human: a person must approve it first' },
    status: { type: 'string', enum: ['pending', 'approved', 'denied', 'executed', 'expired'] },
    route: { type: 'string' },
    created_at: { type: 'string', format: 'date-time' },
    expires_at: { type: 'string', format: 'date-time', description: 'until then a pending approval can be decided, an approved one used' },
    url: { type: 'string', format: 'uri', description: 'its status (GET, with your credential)' },
    decided_by: { type: 'string' },
    decided_at: { type: 'string', format: 'date-time' },
    reason: { type: 'string' },
    executed_at: { type: 'string', format: 'date-time' },
  },
} as const;

/** The extension members of the APPROVAL_* envelopes, by code: `approval`, and the request's `preview` or the denial's `reason`. */
const APPROVAL_MEMBERS: Partial<Record<ErrorCode, Record<string, unknown>>> = {
  APPROVAL_REQUIRED: {
    approval: { $ref: SCHEMA_REF + APPROVAL },
    preview: {
      type: 'object',
      description: 'what would be executed, for whoever approves it: method, path, query and a bounded, redacted summary of the body',
      required: ['method', 'path', 'body_bytes'],
      properties: {
        method: { type: 'string' },
        path: { type: 'string' },
        query: { type: 'string' },
        content_type: { type: 'string' },
        body_bytes: { type: 'integer', minimum: 0 },
        body: { type: 'string' },
        body_truncated: { type: 'boolean' },
      },
    },
  },
  APPROVAL_PENDING: { approval: { $ref: SCHEMA_REF + APPROVAL } },
  APPROVAL_DENIED: { approval: { $ref: SCHEMA_REF + APPROVAL }, reason: { type: 'string', description: "the person's reason, when they gave one" } },
};

const RATE_LIMIT_HEADERS: Record<(typeof RATE_LIMIT_HEADER_NAMES)[number], { name: string; description: string; schema: object }> = {
  'x-ratelimit-limit': { name: 'X-RateLimit-Limit', description: 'Capacity of the budget closest to exhaustion, in cost units', schema: { type: 'integer' } },
  'x-ratelimit-remaining': { name: 'X-RateLimit-Remaining', description: 'Units left in that budget after this request', schema: { type: 'integer' } },
  'x-ratelimit-reset': { name: 'X-RateLimit-Reset', description: 'Unix epoch seconds when that budget is full again', schema: { type: 'integer' } },
  'x-ratelimit-cost': { name: 'X-RateLimit-Cost', description: 'Units this request cost', schema: { type: 'integer' } },
  'ratelimit-policy': { name: 'RateLimit-Policy', description: "The route's budgets (draft-ietf-httpapi-ratelimit-headers)", schema: { type: 'string' } },
  ratelimit: { name: 'RateLimit', description: 'Where each budget stands, closest to exhaustion first (draft-ietf-httpapi-ratelimit-headers)', schema: { type: 'string' } },
  'x-ratelimit-warning': { name: 'X-RateLimit-Warning', description: 'The budgets running low, while any is', schema: { type: 'string' } },
};

const GATEWAY_HEADERS: Record<string, { description: string; schema: object }> = {
  'X-Request-Id': { description: "The request's id, also in the log line and any error's request_id", schema: { type: 'string' } },
  'X-Should-Retry': { description: "Whether to send the same request again: the envelope's retryable", schema: { type: 'string', enum: ['true', 'false'] } },
  'Retry-After': { description: 'Whole seconds to wait before a retry, when known', schema: { type: 'integer', minimum: 1 } },
  'Idempotent-Replayed': { description: 'true on an answer replayed for a repeated Idempotency-Key, never on a fresh one', schema: { type: 'string', enum: ['true'] } },
  ...Object.fromEntries(Object.values(RATE_LIMIT_HEADERS).map(({ name, description, schema }) => [name, { description, schema }])),
};

const NOTE =
  'Served by agentgate in front of the API: every error is an application/problem+json envelope with a stable code (GET /_agentgate/errors), ' +
  'operations that take an Idempotency-Key run once however often they are retried with it, x-agentgate-cost is what a call takes of your budget ' +
  '(GET /_agentgate/budget), and x-agent-hint is what to know before calling.';

/** A rendered part, with the component schemas it refers to. */
interface Rendered {
  readonly json: Record<string, unknown>;
  readonly uses: ReadonlySet<string>;
}

export class OpenApiDocuments {
  private readonly model: OperationModel;
  private readonly operations: readonly Rendered[];
  /** The named schemas, each written once, by name. */
  private readonly schemas: ReadonlyMap<string, Rendered>;
  private readonly kept = new Map<string, { head: string; tail: string }>();

  constructor(model: OperationModel) {
    this.model = model;
    this.schemas = new Map([...model.schemaNames].map(([schema, name]) => [name, this.rendered((uses) => this.component(schema, uses))]));
    this.operations = model.operations.map((op) => this.rendered((uses) => this.operation(op, uses)));
    // The document for a caller who may call everything, made now rather than on the first request.
    this.document(() => true);
  }

  /** The document for a caller who may call the operations `visible` takes, addressed to `serverUrl`. */
  json(visible: (op: Operation) => boolean, serverUrl: string): string {
    const { head, tail } = this.document(visible);
    return `${head}${JSON.stringify([{ url: serverUrl, description: 'agentgate, as this request reached it' }])}${tail}`;
  }

  private document(visible: (op: Operation) => boolean): { head: string; tail: string } {
    const shown = this.model.operations.map((op) => visible(op));
    const key = shown.map((s) => (s ? '1' : '0')).join('');
    let document = this.kept.get(key);
    if (document) return document;
    document = this.assemble(shown);
    // The oldest goes first: caller scope sets are few (an agents file's), but tokens may carry any.
    if (this.kept.size >= MAX_KEPT_DOCUMENTS) this.kept.delete(this.kept.keys().next().value!);
    this.kept.set(key, document);
    return document;
  }

  /** The document as two halves around `servers`, the one part that depends on the request. */
  private assemble(shown: readonly boolean[]): { head: string; tail: string } {
    const paths: Record<string, Record<string, unknown>> = {};
    const used = new Set<string>();
    this.model.operations.forEach((op, i) => {
      if (!shown[i]) return;
      const rendered = this.operations[i]!;
      (paths[op.path] ??= {})[op.method.toLowerCase()] = rendered.json;
      for (const name of rendered.uses) this.use(name, used);
    });
    const approvals = this.model.operations.some((op, i) => shown[i] && op.approval !== undefined);
    const authentication = this.model.authentication;
    const info = this.model.info;
    const head = {
      openapi: OPENAPI_VERSION,
      info: {
        title: info?.title || 'API through agentgate',
        version: info?.version || '0',
        description: info?.description ? `${info.description}\n\n${NOTE}` : NOTE,
      },
    };
    const tail = {
      ...(authentication ? { security: securityOf(this.model, []) } : {}),
      paths,
      components: {
        schemas: { [PROBLEM]: PROBLEM_SCHEMA, ...(approvals ? { [APPROVAL]: APPROVAL_SCHEMA } : {}), ...Object.fromEntries([...used].sort().map((name) => [name, this.schemas.get(name)!.json])) },
        headers: GATEWAY_HEADERS,
        ...(authentication ? { securitySchemes: securitySchemesOf(this.model) } : {}),
      },
    };
    return { head: `${JSON.stringify(head).slice(0, -1)},"servers":`, tail: `,${JSON.stringify(tail).slice(1)}` };
  }

  /** Adds a named schema and those it refers to. */
  private use(name: string, used: Set<string>): void {
    if (used.has(name)) return;
    used.add(name);
    for (const next of this.schemas.get(name)!.uses) this.use(next, used);
  }

  private rendered(render: (uses: Set<string>) => Record<string, unknown>): Rendered {
    const uses = new Set<string>();
    return { json: render(uses), uses };
  }

  /** A named schema's own body: its parts that are named schemas (itself included) refer to them. */
  private component(schema: object, uses: Set<string>): Record<string, unknown> {
    return Object.fromEntries(Object.entries(schema).map(([k, v]) => [k, this.write(v, uses)]));
  }

  /** A part of the model as JSON, each named schema in it as a $ref (its name added to `uses`). */
  private write(value: unknown, uses: Set<string>): unknown {
    if (typeof value !== 'object' || value === null) return value;
    const name = this.model.schemaNames.get(value);
    if (name !== undefined) {
      uses.add(name);
      return { $ref: SCHEMA_REF + name };
    }
    if (Array.isArray(value)) return value.map((v) => this.write(v, uses));
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, this.write(v, uses)]));
  }

  private operation(op: Operation, uses: Set<string>): Record<string, unknown> {
    const parameters = [
      ...op.parameters.map((p) => this.write(p, uses)),
      ...(op.idempotency ? [idempotencyKeyParameter(op.idempotency)] : []),
      ...(op.approval ? [approvalIdParameter(op.approval)] : []),
    ];
    const description = [op.description, op.approval && approvalSentence(op.approval)].filter(Boolean).join('\n\n');
    return {
      operationId: op.name,
      summary: op.summary,
      ...(description ? { description } : {}),
      ...(op.tags ? { tags: op.tags } : {}),
      ...(op.deprecated ? { deprecated: true } : {}),
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(op.requestBody ? { requestBody: this.write(op.requestBody, uses) } : {}),
      responses: {
        ...Object.fromEntries(op.responses.map((r) => [r.status, this.success(op, r, uses)])),
        ...Object.fromEntries(errorsByStatus(op.errors).map(([status, errors]) => [status, problemResponse(op, errors)])),
      },
      ...(this.model.authentication && op.scopes.length > 0 ? { security: securityOf(this.model, op.scopes) } : {}),
      'x-agentgate-route': op.route,
      'x-agentgate-effect': op.effect,
      'x-agentgate-cost': op.cost,
      ...(op.approval ? { 'x-agentgate-approval': { by: op.approval.by, ttl_seconds: op.approval.ttlSeconds } } : {}),
      ...(op.hint ? { 'x-agent-hint': op.hint } : {}),
    };
  }

  private success(op: Operation, response: Response, uses: Set<string>): Record<string, unknown> {
    const gateway = gatewayHeaders(['X-Request-Id', ...(op.idempotency ? ['Idempotent-Replayed'] : [])], op.rateLimits.length > 0);
    // The gateway's own headers replace the API's of the same name (it sets them on the answer).
    const own = Object.entries(response.headers ?? {}).filter(([name]) => !Object.keys(gateway).some((g) => g.toLowerCase() === name.toLowerCase()));
    return {
      description: response.description,
      headers: { ...(this.write(Object.fromEntries(own), uses) as object), ...gateway },
      ...(response.content ? { content: this.write(response.content, uses) } : {}),
    };
  }
}

function idempotencyKeyParameter({ required, ttlSeconds }: { required: boolean; ttlSeconds: number }): Parameter {
  const obligation = required
    ? 'Required here: a request without one is refused (400 IDEMPOTENCY_KEY_REQUIRED) and never reaches the API.'
    : 'Optional here: a request without one is forwarded unprotected, so a retry may run it twice.';
  return {
    name: 'Idempotency-Key',
    in: 'header',
    required,
    description:
      `A value you choose for this request (a UUID), sent again unchanged with every retry of it. The request runs once: ` +
      `for ${duration(ttlSeconds)} every retry gets the first answer again (Idempotent-Replayed: true); while the first is still running, ` +
      `a retry gets 409 IDEMPOTENCY_IN_PROGRESS; the same key with a different request gets 422 IDEMPOTENCY_KEY_REUSED. ` +
      `Keys are the calling agent's own. ${obligation}`,
    schema: { type: 'string', minLength: 1, maxLength: MAX_KEY_LENGTH, pattern: '^[\\x20-\\x7E]+$' },
  };
}

/** The sentence an operation's description gains when it needs an approval: what the first call answers, and what executes it. */
function approvalSentence({ by }: { by: 'agent' | 'human' }): string {
  return by === 'human'
    ? 'Needs a person\'s approval before it runs: a call without one executes nothing and answers 428 APPROVAL_REQUIRED with approval.id, and once a person approved it the identical request sent again with the header Approval-Id: <approval.id> executes once.'
    : 'Needs your confirmation before it runs: a call without it executes nothing and answers 428 APPROVAL_REQUIRED with a preview and approval.id, and the identical request sent again with the header Approval-Id: <approval.id> executes once.';
}

function approvalIdParameter({ by, ttlSeconds }: { by: 'agent' | 'human'; ttlSeconds: number }): Parameter {
  const when =
    by === 'human'
      ? 'Send it only once a person approved it (until then: 409 APPROVAL_PENDING, retry later; refused: 403 APPROVAL_DENIED).'
      : 'Send it to confirm the action after checking the preview.';
  return {
    name: 'Approval-Id',
    in: 'header',
    required: false,
    description:
      `The approval.id (apr_...) of the 428 APPROVAL_REQUIRED answer this operation gave; leave it out of the first call. ` +
      `It covers that one request of yours: send it again identical (method, path, query and body) with this header, and it executes once; ` +
      `another request with it gets 422 APPROVAL_MISMATCH, and one sent after it ran or expired (${duration(ttlSeconds)} after it was asked for or approved) gets a new 428. ${when}`,
    schema: { type: 'string', pattern: APPROVAL_ID_PATTERN.source },
  };
}

function duration(seconds: number): string {
  if (seconds % 3600 === 0) return `${seconds / 3600} hour${seconds === 3600 ? '' : 's'}`;
  if (seconds % 60 === 0) return `${seconds / 60} minute${seconds === 60 ? '' : 's'}`;
  return `${seconds} second${seconds === 1 ? '' : 's'}`;
}

/**
 * References to the gateway's headers on an answer: `names`, and with `budgets` the rate-limit headers. They are on
 * every answer of a rate-limited route; the document lists them where an agent plans with them (successes, budget
 * refusals), not on every error of every operation, which would make a large API's document several times larger.
 */
function gatewayHeaders(names: readonly string[], budgets: boolean): Record<string, { $ref: string }> {
  const all = [...names, ...(budgets ? Object.values(RATE_LIMIT_HEADERS).map((h) => h.name) : [])];
  return Object.fromEntries(all.map((name) => [name, { $ref: HEADER_REF + name }]));
}

const BUDGET_CODES: ReadonlySet<ErrorCode> = new Set(['RATE_LIMITED', 'COST_EXCEEDS_BUDGET']);

/** The operation's errors by response key: exact statuses in order, then the 4XX and 5XX classes. */
function errorsByStatus(errors: readonly OperationError[]): [string, OperationError[]][] {
  const byStatus = new Map<string, OperationError[]>();
  for (const error of errors) byStatus.set(String(error.status), [...(byStatus.get(String(error.status)) ?? []), error]);
  const order = (key: string) => (/^\d+$/.test(key) ? Number(key) : 1000 + key.charCodeAt(0));
  return [...byStatus].sort(([a], [b]) => order(a) - order(b));
}

function problemResponse(op: Operation, errors: readonly OperationError[]): Record<string, unknown> {
  const codes = [...new Set(errors.map((e) => e.code))];
  const range = typeof errors[0]!.status === 'string';
  const listed = codes.map((code) => `${code} (${ERROR_CATALOG[code].title})`).join(', ');
  const documented = errors.find((e) => e.upstreamDescription)?.upstreamDescription;
  const description = range
    ? `Another ${String(errors[0]!.status).toLowerCase()} answer of the API, its status kept, as ${listed}`
    : `${listed}${documented ? `. The API documents this status: ${documented}` : ''}`;
  return {
    description,
    headers: gatewayHeaders(['X-Request-Id', 'X-Should-Retry', 'Retry-After'], op.rateLimits.length > 0 && codes.some((code) => BUDGET_CODES.has(code))),
    content: {
      'application/problem+json': { schema: { allOf: [{ $ref: SCHEMA_REF + PROBLEM }, { properties: { code: { enum: codes }, ...approvalMembers(codes) } }] } },
    },
  };
}

/** The extension members the answer's APPROVAL_* codes carry (present only with those codes). */
function approvalMembers(codes: readonly ErrorCode[]): Record<string, unknown> {
  return Object.assign({}, ...codes.map((code) => APPROVAL_MEMBERS[code] ?? {}));
}

/** The ways to present a credential; with scopes, the scopes required (OpenAPI 3.1 lets any scheme list roles). */
function securityOf(model: OperationModel, scopes: readonly string[]): Record<string, string[]>[] {
  const schemes = Object.keys(securitySchemesOf(model)).map((scheme) => ({ [scheme]: [...scopes] }));
  return model.authentication!.anonymousAllowed && scopes.length === 0 ? [...schemes, {}] : schemes;
}

function securitySchemesOf(model: OperationModel): Record<string, object> {
  const { apiKeys, jwt } = model.authentication!;
  const what = [apiKeys ? 'an agent key (agk_...)' : '', jwt ? "a JWT from the gateway's identity provider" : ''].filter(Boolean).join(' or ');
  return {
    agentBearer: { type: 'http', scheme: 'bearer', description: `Authorization: Bearer with ${what}` },
    ...(apiKeys ? { agentKey: { type: 'apiKey', in: 'header', name: 'X-Agent-Key', description: 'an agent key (agk_...), leaving Authorization to the API' } } : {}),
  };
}

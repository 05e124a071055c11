// The operation model: every operation agents may call through the gateway, one per route and method (or per spec operation a route serves), with what the gateway enforces on it. The OpenAPI document is rendered from it, and so are MCP tools.
import type { ErrorCode } from '../errors/catalog.ts';
import type { ApprovalBy } from '../approvals/record.ts';
import type { CostRuleConfig } from '../policies/rate-limit/schema.ts';
import type { Effect } from './schema.ts';
import type { JsonSchema } from './json-schema.ts';

export type { Effect, JsonSchema };

/** An OpenAPI 3.1 Media Type Object: the schema, and whatever else the spec says of it (examples, encoding). */
export interface MediaType {
  readonly schema?: JsonSchema;
  readonly [more: string]: unknown;
}

/** An OpenAPI 3.1 Parameter Object (schemas already 3.1's). */
export interface Parameter {
  readonly name: string;
  readonly in: 'path' | 'query' | 'header' | 'cookie';
  readonly required?: boolean;
  readonly description?: string;
  readonly schema?: JsonSchema;
  /** Instead of schema, for a parameter serialized as a media type (rare). */
  readonly content?: Readonly<Record<string, MediaType>>;
  /** style, explode, deprecated, examples, ...: passed on as the spec wrote them. */
  readonly [more: string]: unknown;
}

export interface RequestBody {
  readonly required?: boolean;
  readonly description?: string;
  readonly content: Readonly<Record<string, MediaType>>;
}

/** An answer that is no error: a 2xx (or 3xx) the spec describes, or the generic success of an undescribed operation. */
export interface Response {
  /** '200', '201', '2XX', ... as an OpenAPI responses key. */
  readonly status: string;
  readonly description: string;
  readonly content?: Readonly<Record<string, MediaType>>;
  /** The spec's own response headers (OpenAPI Header Objects). */
  readonly headers?: Readonly<Record<string, unknown>>;
}

/**
 * One error the operation can answer with, in the envelope: raised by the gateway itself (its catalog status), or an
 * upstream 4xx/5xx made an envelope (keeping the upstream's status: a class of statuses, or one the route reinterprets
 * or the spec documents).
 */
export interface OperationError {
  readonly code: ErrorCode;
  readonly status: number | '4XX' | '5XX';
  readonly from: 'gateway' | 'upstream';
  /** What the spec says of this upstream status, when it documents it. */
  readonly upstreamDescription?: string;
}

/** A cost the route computes: a base and so much per item of an array in the request body, maybe settled afterwards. */
export type CostRule = Pick<CostRuleConfig, 'base'> & Partial<Pick<CostRuleConfig, 'items' | 'per_item' | 'settle'>>;

export interface Operation {
  /** The name agents call it by (an MCP tool name), unique in the model. */
  readonly name: string;
  /** The route that serves it. */
  readonly route: string;
  /** Upper case. */
  readonly method: string;
  /** The OpenAPI path template it is served at, e.g. /orders/{orderId}. */
  readonly path: string;
  /** Whether the spec describes it (its schemas, summary and description come from there). */
  readonly described: boolean;
  readonly operationId?: string;
  readonly summary: string;
  readonly description?: string;
  /** routes[].agent.hint, else the spec operation's x-agent-hint. */
  readonly hint?: string;
  readonly tags?: readonly string[];
  readonly deprecated?: boolean;
  /** Path, query, header and cookie parameters; the gateway's Idempotency-Key is not among them (see idempotency). */
  readonly parameters: readonly Parameter[];
  readonly requestBody?: RequestBody;
  /** The answers that are no errors. */
  readonly responses: readonly Response[];
  readonly effect: Effect;
  /** Set where the route's idempotency applies to this method: the Idempotency-Key it takes. */
  readonly idempotency?: { readonly required: boolean; readonly ttlSeconds: number };
  /**
   * Set where the route needs an approval first (routes[].approval): who grants it (the agent confirming after the
   * preview, or a person), and how long a pending or granted approval holds. The call then takes an Approval-Id.
   */
  readonly approval?: { readonly by: ApprovalBy; readonly ttlSeconds: number };
  /** What one call costs: units, or the rule; 0 where no budget applies. */
  readonly cost: number | CostRule;
  /** The rate-limit policies charged; empty where none applies. */
  readonly rateLimits: readonly string[];
  /** Scopes an agent must hold, every one. */
  readonly scopes: readonly string[];
  /** Every error it can answer with. */
  readonly errors: readonly OperationError[];
}

/** Who may call: consumers.authenticate, as agents need to know it to send a credential. */
export interface Authentication {
  /** Keys can also go in X-Agent-Key (api_keys); a bearer token always works. */
  readonly apiKeys: boolean;
  readonly jwt: boolean;
  /** A caller without a credential is served (anonymous: identify), on routes without scopes. */
  readonly anonymousAllowed: boolean;
}

export interface OperationModel {
  readonly operations: readonly Operation[];
  /** The spec's title, version and description; undefined without a spec. */
  readonly info: { readonly title: string; readonly version: string; readonly description?: string } | undefined;
  /** Undefined without consumers.authenticate. */
  readonly authentication: Authentication | undefined;
  /**
   * Names of schemas the operations share (the spec's components.schemas, and recursive schemas), by object: a renderer
   * writes each once and refers to it by name, as the spec did.
   */
  readonly schemaNames: ReadonlyMap<object, string>;
}

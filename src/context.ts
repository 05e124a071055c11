// What the pipeline knows about one request as it moves through the steps; the record step turns it into a log line and metrics.
import type { IncomingMessage } from 'node:http';
import type { Consumer } from './identity/consumer.ts';
import type { TraceContext } from './identity/request-id.ts';
import type { ErrorCode } from './errors/catalog.ts';
import type { VerifiedAgent } from './agents/registry.ts';

/**
 * How a request ended, a bounded set (it is a metric label): 'ok', 'replayed', the error code of the envelope in lower
 * case (an upstream's normalized 4xx/5xx included), 'gateway_endpoint', 'upstream_aborted' (died mid-body),
 * 'upstream_timeout' (silent mid-body) or 'client_closed'.
 */
export type Outcome = 'ok' | 'replayed' | 'gateway_endpoint' | 'upstream_aborted' | 'client_closed' | Lowercase<ErrorCode>;

/** The outcome of an answer with this error code. */
export function outcomeOf(code: ErrorCode): Outcome {
  return code.toLowerCase() as Lowercase<ErrorCode>;
}

/**
 * What a request's record and its error answers need of the route it matched. Route (src/runtime.ts) has it; naming
 * only this keeps context.ts, which every policy imports, from importing the runtime that compiles the policies.
 */
export interface MatchedRoute {
  readonly name: string;
  readonly upstream: { readonly name: string; readonly secrets: readonly string[] };
}

export interface RequestContext {
  readonly requestId: string;
  readonly trace: TraceContext;
  /**
   * Headers the gateway puts on whatever answer this request gets: its X-Request-Id, the budget headers. Kept here
   * rather than set on the response one by one, so a proxied answer is written with a single writeHead.
   */
  readonly responseHeaders: Record<string, string>;
  /** process.hrtime.bigint() when the request arrived. */
  readonly startedAt: bigint;
  /**
   * Request path without the query string (the query may carry secrets, so only this is logged): as the client sent it
   * until the target is read (pipeline step 2), then as forwarded.
   */
  path: string;
  /** What routes are matched against (src/routing/request-target.ts): decoded, without a trailing slash, lower case unless routing is case-sensitive. */
  matchPath: string;
  /** Whether the connecting peer is one of server.trusted_proxies, whose Forwarded / X-Forwarded-* headers are believed. */
  peerTrusted: boolean;
  /** The client's address: the peer's, or behind trusted proxies the one they name. */
  clientAddress: string;
  /**
   * A retry of this request is answered from a record, never executed twice (an idempotency claim holds its key), so a
   * lost answer to it may be retried even when its method is not idempotent.
   */
  retryReplays: boolean;
  route: MatchedRoute | undefined;
  consumer: Consumer | undefined;
  /** The verified agent (consumers.authenticate); undefined for a self-asserted caller. */
  agent: VerifiedAgent | undefined;
  /** Request headers that carried a credential meant for the gateway: never forwarded, however they are spelled. */
  credentialHeaders: readonly string[] | undefined;
  upstreamStatus: number | undefined;
  /** The upstream's answer once its head arrived: an answer the gateway abandons (an exception) is destroyed, never left holding a pooled socket. */
  upstreamResponse: IncomingMessage | undefined;
  upstreamStartedAt: bigint | undefined;
  upstreamEndedAt: bigint | undefined;
  /** The request body, when a policy had to read it whole (a cost rule counting items): forwarded from here, as the stream is spent. */
  requestBody?: Buffer | undefined;
  /** Set when the gateway answered with an error envelope. */
  errorCode: ErrorCode | undefined;
  /** The idempotency record's id (a hash of consumer, method, route and key) when the request carried a key; never the key itself. */
  idempotencyKeyHash?: string;
  /** How the request ended: the `outcome` label of its metrics and the field of its log line. */
  outcome: Outcome;
}

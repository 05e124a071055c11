// Cost-based rate limiting: each route's request is charged its cost on every policy it names, all or nothing, in one store round trip.
import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { Logger } from 'pino';
import type { Config, RouteConfig } from '../../config/schema.ts';
import { parseDuration } from '../../config/units.ts';
import { GatewayError, storeUnavailable } from '../../errors/problem.ts';
import type { Consumer } from '../../identity/consumer.ts';
import { storeKey } from '../../store/keys.ts';
import { StoreError, type Bucket, type ConsumeResult } from '../../store/store.ts';
import type { UpstreamResult } from '../../upstream-result.ts';
import type { PolicyDeps } from '../deps.ts';
import { CLIENT_CLOSED, CONTINUE, refuse, type ChargeReply, type CompileScope, type Exchange, type Policy, type PolicyFactory, type Verdict } from '../contract.ts';
import { CostRule } from './cost.ts';
import { byExhaustion, RATE_LIMIT_HEADER_NAMES, rateLimitHeaders, type HeaderPolicy, type PolicyView } from './headers.ts';
import type { RateLimitPolicyConfig, RateLimitRef } from './schema.ts';

export const rateLimit: PolicyFactory = {
  name: 'rate-limit',
  compile: (scope) => rateLimitsOf(scope).forRoute(scope.route),
};

/** The named policies of the config being compiled: one instance per load, shared by its routes and the budget endpoint. */
export function rateLimitsOf(scope: Pick<CompileScope, 'config' | 'deps' | 'shared'>): RateLimits {
  return scope.shared('rate-limit', () => new RateLimits(scope.config, scope.deps));
}

/** Every bucket shared by all consumers (route and global scope) lives under this one hash tag: one round trip for all of them. */
const SHARED_TAG = '_shared';

export interface RateLimitPolicy extends HeaderPolicy {
  readonly scope: RateLimitPolicyConfig['scope'];
  readonly failClosed: boolean;
  /** warn_below: the share of capacity below which a response warns. */
  readonly warnBelow: number;
}

/**
 * The policy as one consumer has it: a verified agent may have its own capacity (agents file `rate_limits`) for a
 * policy of scope consumer. Made once per agent and policy, not per request.
 */
const overridden = new WeakMap<ReadonlyMap<string, number>, Map<RateLimitPolicy, RateLimitPolicy>>();
function policyFor(policy: RateLimitPolicy, consumer: Consumer): RateLimitPolicy {
  const limits = consumer.limits;
  const capacity = limits?.get(policy.name);
  if (capacity === undefined || policy.scope !== 'consumer') return policy;
  let byPolicy = overridden.get(limits!);
  if (!byPolicy) overridden.set(limits!, (byPolicy = new Map()));
  let own = byPolicy.get(policy);
  if (!own) byPolicy.set(policy, (own = { ...policy, capacity, warnBelowUnits: policy.warnBelow * capacity }));
  return own;
}

/** A charge that went through, kept until the response so the cost can be settled. */
export interface Charge {
  readonly cost: number;
  readonly buckets: readonly Bucket[];
  readonly views: readonly PolicyView[];
}

/** One budget as the budget endpoint reports it. */
export interface BudgetEntry {
  policy: string;
  scope: RateLimitPolicy['scope'];
  capacity: number;
  per_seconds: number;
  remaining: number;
  /** Unix epoch seconds when it is full again. */
  reset: number;
  reset_after_seconds: number;
  routes: string[];
}

/** The named policies of one config, compiled once per config load. */
export class RateLimits {
  readonly policies: ReadonlyMap<string, RateLimitPolicy>;
  private readonly deps: PolicyDeps;
  private readonly defaults: { rate_limit: RateLimitRef; cost: Config['defaults']['cost'] };
  private readonly limiters: RouteRateLimiter[] = [];

  constructor(config: Config, deps: PolicyDeps) {
    this.deps = deps;
    this.defaults = config.defaults;
    const policies = new Map<string, RateLimitPolicy>();
    for (const [name, p] of Object.entries(config.rate_limits)) {
      policies.set(name, {
        name,
        capacity: p.capacity,
        perMs: parseDuration(p.per),
        scope: p.scope,
        failClosed: p.on_store_error === 'fail_closed',
        warnBelow: p.warn_below,
        warnBelowUnits: p.warn_below * p.capacity,
      });
    }
    this.policies = policies;
  }

  /** The route's limiter, from its own rate_limit and cost or the defaults; undefined when no policy applies. */
  forRoute(route: RouteConfig): RouteRateLimiter | undefined {
    const ref = route.rate_limit ?? this.defaults.rate_limit;
    const names = ref === false ? [] : typeof ref === 'string' ? [ref] : ref;
    if (names.length === 0) return undefined;
    // load.ts has checked that every name exists.
    const limiter = new RouteRateLimiter(route.name, names.map((n) => this.policies.get(n)!), new CostRule(route.cost ?? this.defaults.cost), this.deps);
    this.limiters.push(limiter);
    return limiter;
  }

  /** Every budget the consumer has, as it stands, without charging anything (one dry run). */
  async budgets(consumer: Consumer): Promise<BudgetEntry[]> {
    const entries = new Map<string, { policy: RateLimitPolicy; bucket: Bucket; routes: string[] }>();
    for (const limiter of this.limiters) {
      limiter.bucketsFor(consumer).forEach((bucket, i) => {
        const entry = entries.get(bucket.key);
        if (entry) entry.routes.push(limiter.route);
        else entries.set(bucket.key, { policy: policyFor(limiter.policies[i]!, consumer), bucket, routes: [limiter.route] });
      });
    }
    const list = [...entries.values()];
    if (list.length === 0) return [];
    const result = await this.deps.store.consume(
      list.map((e) => e.bucket),
      0,
      'dry_run',
    );
    return list.map(({ policy, routes }, i) => {
      const state = result.buckets[i]!;
      return {
        policy: policy.name,
        scope: policy.scope,
        capacity: policy.capacity,
        per_seconds: policy.perMs / 1000,
        remaining: state.remaining,
        reset: Math.ceil((result.now + state.resetMs) / 1000),
        reset_after_seconds: Math.ceil(state.resetMs / 1000),
        routes,
      };
    });
  }
}

/** The limiter of one route: its policies (in the order the route names them) and its cost rule. */
export class RouteRateLimiter implements Policy {
  readonly name = 'rate-limit';
  readonly route: string;
  readonly policies: readonly RateLimitPolicy[];
  readonly cost: CostRule;
  private readonly deps: PolicyDeps;
  private readonly logger: Logger;
  private readonly failClosed: boolean;
  /** Buckets shared by all consumers never change, so their keys and partition keys are made once. */
  private readonly sharedBuckets: readonly (Bucket | undefined)[];
  private readonly sharedPks: readonly (string | undefined)[];
  private readonly hasConsumerScope: boolean;
  /** Each policy's counters for an admitted request, looked up once rather than hashed from labels on every request. */
  private readonly admittedCounters: readonly { decisions: { inc(): void }; costUnits: { inc(value: number): void } }[];

  constructor(route: string, policies: RateLimitPolicy[], cost: CostRule, deps: PolicyDeps) {
    this.route = route;
    this.policies = policies;
    this.cost = cost;
    this.deps = deps;
    this.logger = deps.logger.child({ policy: 'rate-limit', route });
    this.failClosed = policies.some((p) => p.failClosed);
    this.hasConsumerScope = policies.some((p) => p.scope === 'consumer');
    this.sharedBuckets = policies.map((p) => {
      if (p.scope === 'consumer') return undefined;
      const id = p.scope === 'route' ? `${p.name}:${p.perMs}:route:${route}` : `${p.name}:${p.perMs}`;
      return { key: storeKey(deps.keyPrefix, 'rl', SHARED_TAG, id), capacity: p.capacity, perMs: p.perMs };
    });
    this.sharedPks = this.sharedBuckets.map((b) => b && partitionKey(b.key));
    this.admittedCounters = policies.map((p) => ({
      decisions: deps.metrics.rateLimitDecisions.labels({ route, policy: p.name, decision: 'allowed' }),
      costUnits: deps.metrics.rateLimitCostUnits.labels({ route, policy: p.name }),
    }));
  }

  /**
   * Keys are built here, above the stores, so memory and Redis scope budgets identically. A consumer's budgets share
   * its id as hash tag (one Cluster slot, one script); `per` is part of the key, so changing a policy's period starts
   * its budgets afresh while changing its capacity keeps what was spent.
   */
  bucketsFor(consumer: Consumer): Bucket[] {
    return this.policies.map(
      (p, i) =>
        this.sharedBuckets[i] ?? { key: storeKey(this.deps.keyPrefix, 'rl', consumer.id, `${p.name}:${p.perMs}`), capacity: policyFor(p, consumer).capacity, perMs: p.perMs },
    );
  }

  /** Whether a request costing `cost` would pass now, and if not how long until it would; charges nothing. */
  async quote(consumer: Consumer, cost: number): Promise<{ allowed: boolean; retry_after_seconds: number | null; limited_by: string[]; exceeds_capacity: boolean }> {
    const result = await this.deps.store.consume(this.bucketsFor(consumer), cost, 'dry_run');
    const blocking = byExhaustion(this.views(result, consumer), true).filter((v) => v.state.waitMs !== 0);
    const never = blocking.some((v) => v.state.waitMs < 0);
    return {
      allowed: result.allowed,
      retry_after_seconds: result.allowed || never ? null : Math.max(1, Math.ceil(blocking[0]!.state.waitMs / 1000)),
      limited_by: blocking.map((v) => v.policy.name),
      exceeds_capacity: never,
    };
  }

  private pksFor(consumer: Consumer): string[] {
    const own = this.hasConsumerScope ? consumerPartitionKey(consumer.id) : '';
    return this.policies.map((_, i) => this.sharedPks[i] ?? own);
  }

  /**
   * Prices the request and adds its charge on every policy of the route to the request's store batch: before the
   * idempotency key is claimed (Stripe's order: the batch makes charges first), so a 429 is never stored as a replay;
   * before forwarding, so a request over budget never reaches the legacy API. A request whose cost cannot be read is
   * refused uncharged.
   */
  async onRequest(ex: Exchange): Promise<Verdict> {
    const consumer = ex.ctx.consumer!;
    const priced = await this.cost.evaluate(ex.req, this.route, ex.ctx.requestBody, this.deps.requestBodyIdleMs);
    if (priced.kind === 'client_closed') return CLIENT_CLOSED;
    if (priced.kind === 'invalid') {
      const headers = await this.unchargedHeaders(consumer);
      if (priced.connectionClose) headers.connection = 'close';
      return refuse(new GatewayError(priced.code, priced.detail, { headers }));
    }
    // A body read whole to count its items is forwarded from memory.
    ex.ctx.requestBody = priced.body;
    const buckets = this.bucketsFor(consumer);
    ex.batch.addCharge(buckets, priced.cost, (reply) => this.decide(ex, reply, buckets, priced.cost));
    return CONTINUE;
  }

  /** A request refused before its charge was made (a malformed one) still says where its budgets stand. */
  async onSkipped(ex: Exchange): Promise<void> {
    Object.assign(ex.ctx.responseHeaders, await this.unchargedHeaders(ex.ctx.consumer!));
  }

  /** With the store's answer to the charge: refuse, or admit with the budget headers every answer then carries. */
  private decide(ex: Exchange, reply: ChargeReply, buckets: readonly Bucket[], cost: number): Verdict {
    const { ctx } = ex;
    const consumer = ctx.consumer!;
    if (reply.kind === 'failed') return this.storeUnavailable(reply.error, consumer, ctx.requestId);
    const views = this.views(reply.result, consumer);
    if (!reply.result.allowed) return refuse(this.refusal(views, cost, reply.result.now));
    if (reply.dryRun) {
      // Answered by the gateway without being forwarded (an approval asked for): admitted, and it costs nothing.
      for (const counters of this.admittedCounters) counters.decisions.inc();
      Object.assign(ctx.responseHeaders, rateLimitHeaders(views, 0, reply.result.now, false));
      return CONTINUE;
    }
    for (const counters of this.admittedCounters) {
      counters.decisions.inc();
      if (cost > 0) counters.costUnits.inc(cost);
    }
    this.noteWarnings(views, cost, consumer, ctx.requestId);
    const headers = rateLimitHeaders(views, cost, reply.result.now, false);
    Object.assign(ctx.responseHeaders, headers);
    const charge: Charge = { cost, buckets, views };
    const announced = Object.keys(headers).length > 0;
    ex.use({ onUpstreamResult: (result) => this.afterUpstream(ex, charge, announced, result) });
    return CONTINUE;
  }

  /**
   * A cost the upstream reports is settled as soon as its answer's head arrives, so the budget headers of the answer
   * show it; and the gateway's budget headers are the ones the agent must plan with, so the upstream's copies are dropped.
   */
  private async afterUpstream(ex: Exchange, charge: Charge, announced: boolean, result: UpstreamResult): Promise<void> {
    if (result.kind !== 'response') return;
    const { response } = result;
    if (this.cost.settleHeader) {
      const settled = await this.settle(charge, response.headers, ex.ctx.consumer!, ex.ctx.requestId);
      if (settled) Object.assign(ex.ctx.responseHeaders, settled);
    }
    if (announced) for (const name of RATE_LIMIT_HEADER_NAMES) delete response.headers[name];
  }

  /**
   * The budget headers of a request refused before it was charged (a malformed request): it costs nothing, and its
   * answer still says where the budgets stand, when the store can tell (a dry run).
   */
  async unchargedHeaders(consumer: Consumer): Promise<Record<string, string>> {
    const peek = await this.deps.store.consume(this.bucketsFor(consumer), 0, 'dry_run').catch(() => undefined);
    return peek ? rateLimitHeaders(this.views(peek, consumer), 0, peek.now, false) : {};
  }

  /**
   * After the upstream answered: when it reports the actual cost in the configured header, the difference is refunded
   * or charged (even past empty: the work is done). Returns the headers to answer with, or undefined to keep them.
   */
  async settle(charge: Charge, upstreamHeaders: IncomingHttpHeaders, consumer: Consumer, requestId: string): Promise<Record<string, string> | undefined> {
    const name = this.cost.settleHeader;
    if (name === undefined) return undefined;
    const raw = upstreamHeaders[name];
    const text = (Array.isArray(raw) ? raw[0] : raw)?.trim();
    if (text === undefined || !/^\d+(\.\d+)?$/.test(text)) {
      if (text !== undefined) this.logger.warn({ request_id: requestId, header: name }, 'upstream reported a cost that is not a non-negative number; the estimate stands');
      return undefined;
    }
    const actual = Math.ceil(Number(text));
    const delta = actual - charge.cost;
    if (delta === 0) return undefined;
    let result: ConsumeResult;
    try {
      result = await this.deps.store.consume(charge.buckets, delta, 'force');
    } catch (err) {
      if (!(err instanceof StoreError)) throw err;
      this.logger.warn({ request_id: requestId, err: err.message, charged: charge.cost, actual }, 'store unreachable: the cost could not be settled');
      return undefined;
    }
    if (delta > 0) for (const counters of this.admittedCounters) counters.costUnits.inc(delta);
    const views = this.views(result, consumer);
    this.noteWarnings(views, Math.max(0, delta), consumer, requestId);
    return rateLimitHeaders(views, actual, result.now, false);
  }

  private views(result: ConsumeResult, consumer: Consumer): PolicyView[] {
    const pks = this.pksFor(consumer);
    return this.policies.map((policy, i) => ({ policy: policyFor(policy, consumer), state: result.buckets[i]!, pk: pks[i]! }));
  }

  /** 429 RATE_LIMITED with the exact wait until the cost fits, or 422 COST_EXCEEDS_BUDGET when it never can. */
  private refusal(views: PolicyView[], cost: number, now: number): GatewayError {
    const headers = rateLimitHeaders(views, cost, now, true);
    const blocking = byExhaustion(views, true).filter((v) => v.state.waitMs !== 0);
    for (const v of blocking) this.deps.metrics.rateLimitDecisions.inc({ route: this.route, policy: v.policy.name, decision: 'limited' });
    const violated = blocking.map((v) => v.policy.name);
    const top = blocking[0]!;
    const { name, capacity } = top.policy;
    if (top.state.waitMs < 0) {
      return new GatewayError(
        'COST_EXCEEDS_BUDGET',
        `This request costs ${cost} units, more than budget '${name}' holds (${capacity} per ${period(top.policy.perMs)}); it can never pass.`,
        { headers, extensions: { violated_policies: violated } },
      );
    }
    return new GatewayError('RATE_LIMITED', `Budget '${name}' has ${top.state.remaining} of ${capacity} units left; this request costs ${cost}.`, {
      retryAfterSeconds: Math.max(1, Math.ceil(top.state.waitMs / 1000)),
      headers,
      extensions: { violated_policies: violated },
    });
  }

  private storeUnavailable(err: StoreError, consumer: Consumer, requestId: string): Verdict {
    const decision = this.failClosed ? 'fail_closed' : 'fail_open';
    for (const p of this.policies) this.deps.metrics.rateLimitDecisions.inc({ route: this.route, policy: p.name, decision });
    this.logger.warn(
      { request_id: requestId, consumer: consumer.id, rate_limits: this.policies.map((p) => p.name), err: err.message },
      this.failClosed ? 'store unreachable: refusing the request (fail_closed)' : 'store unreachable: forwarding without a rate limit (fail_open)',
    );
    if (!this.failClosed) return CONTINUE;
    return refuse(storeUnavailable(`The rate-limit budgets of route '${this.route}' cannot be checked: the ${this.deps.store.kind} store is unreachable.`, err));
  }

  /** Counts and logs each budget this request took below its warning threshold (a crossing, not every response below it). */
  private noteWarnings(views: readonly PolicyView[], charged: number, consumer: Consumer, requestId: string): void {
    if (charged <= 0) return;
    for (const { policy, state } of views) {
      if (!(state.remaining < policy.warnBelowUnits && state.remaining + charged >= policy.warnBelowUnits)) continue;
      this.deps.metrics.rateLimitWarnings.inc({ route: this.route, policy: policy.name });
      this.logger.warn(
        { request_id: requestId, consumer: consumer.id, rate_limit: policy.name, remaining: state.remaining, capacity: policy.capacity, reset_after_ms: state.resetMs },
        'budget below its warning threshold',
      );
    }
  }
}

/** A consumer's pk is the same on every request: recent ones are remembered (bounded, starting afresh when full). */
const MAX_REMEMBERED_PKS = 10_000;
const rememberedPks = new Map<string, string>();

function consumerPartitionKey(consumerId: string): string {
  let pk = rememberedPks.get(consumerId);
  if (pk === undefined) {
    if (rememberedPks.size >= MAX_REMEMBERED_PKS) rememberedPks.clear();
    pk = partitionKey(consumerId);
    rememberedPks.set(consumerId, pk);
  }
  return pk;
}

/** The draft's `pk`: 12 bytes of SHA-256 of the consumer's (already hashed) id or of a shared bucket's key, base64. */
function partitionKey(value: string): string {
  return createHash('sha256').update(`agentgate-pk\u0000${value}`).digest().subarray(0, 12).toString('base64');
}

function period(ms: number): string {
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000}d`;
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

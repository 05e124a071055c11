// The one contract between the pipeline (src/pipeline.ts) and every policy: what a policy's step answers, the hooks it
// keeps for the rest of a request, and the store operations it adds to the request's one round trip.
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Config, RouteConfig } from '../config/schema.ts';
import type { ResponseSchemas } from '../config/schema-helpers.ts';
import type { LegacySpec } from '../agent-contract/spec.ts';
import type { Outcome, RequestContext } from '../context.ts';
import type { GatewayError } from '../errors/problem.ts';
import { StoreError, type Bucket, type ClaimRequest, type ConsumeResult, type Store } from '../store/store.ts';
import type { UpstreamResult } from '../upstream-result.ts';
import type { PolicyDeps } from './deps.ts';

/**
 * What a policy's step answers the pipeline, as Envoy's filters answer Continue or StopIteration: go on; answer now
 * (with an error envelope, or with an answer the policy writes itself, such as a replay); or stop, the client left.
 */
export type Verdict =
  | { readonly kind: 'continue' }
  /** Answer with this envelope; nothing further runs and nothing (more) is forwarded. */
  | { readonly kind: 'refuse'; readonly error: GatewayError }
  /** Answer with what `write` writes (status, headers and body); the request's outcome is `outcome`. */
  | { readonly kind: 'respond'; readonly outcome: Outcome; write(res: ServerResponse): void }
  /** The client left while the step waited on it: there is no one to answer. */
  | { readonly kind: 'client_closed' };

export const CONTINUE: Verdict = Object.freeze({ kind: 'continue' });
export const CLIENT_CLOSED: Verdict = Object.freeze({ kind: 'client_closed' });

export function refuse(error: GatewayError): Verdict {
  return { kind: 'refuse', error };
}

/** The answer the agent gets once the upstream has answered, as a policy's onAnswer hook sees it. */
export type Answer =
  /** An upstream error status, made into the envelope the agent gets (exactly as it gets it). */
  | { readonly kind: 'upstream_error'; readonly upstreamStatus: number; readonly status: number; readonly headers: Record<string, string | string[]>; readonly body: Buffer }
  /** An answer a policy refused (a success that was none): nothing trustworthy happened upstream. */
  | { readonly kind: 'discarded'; readonly why: string }
  /** Delivered from memory, whole. */
  | { readonly kind: 'buffered'; readonly status: number; readonly headers: Record<string, string | string[]>; readonly body: Buffer }
  /** Delivered as a stream: a hook may listen to it (it must not pause, consume or end it). */
  | { readonly kind: 'stream'; readonly response: IncomingMessage };

/**
 * What one policy keeps for one request once it takes part (an idempotency claim, a charge to settle, a breaker's probe
 * slot), registered with Exchange.use(). The pipeline calls the hooks of every registered policy in the order they were
 * registered (the order of the steps), and holds to this lifecycle, which Exchange asserts:
 *   onUpstreamResult  at most once: forwarding ended (the answer's head arrived, it failed, or the client left);
 *   onAnswer          at most once, after onUpstreamResult brought a response: what the agent gets is decided;
 *   recorded          awaited before the agent's answer ends, so a retry sent the moment it arrives finds it recorded;
 *   close             exactly once, last, on every path (an answer, an error, an exception, the client leaving);
 *                     nothing is called after it: a client that leaves while its request is forwarded closes the
 *                     hooks before the result arrives, and the result then reaches none of them.
 */
export interface RequestHooks {
  onUpstreamResult?(result: UpstreamResult): void | Promise<void>;
  onAnswer?(answer: Answer): void;
  recorded?(): Promise<void>;
  /**
   * Ends whatever is still open. `forwarded`: the request may have reached the upstream. Never throws; resolves once
   * its final state is stored (or failed to be).
   */
  close?(forwarded: boolean): void | Promise<void>;
}

/**
 * A policy as compiled for one route. Each phase is asked of the route's policies in the order of src/policies/index.ts;
 * a policy implements the phases it takes part in.
 */
export interface Policy {
  /** Its folder's name, as logs and docs name it. */
  readonly name: string;
  /** Request phase: look at the request, read its body if it must (ex.ctx.requestBody), add store operations to ex.batch. */
  onRequest?(ex: Exchange): Verdict | Promise<Verdict>;
  /** An earlier policy refused the request in the request phase, so this one's onRequest never ran (it may still describe itself on the answer). */
  onSkipped?(ex: Exchange): Promise<void>;
  /**
   * Right before forwarding, after the store answered: the last chance to refuse without reaching the upstream. Answers
   * at once where it can (the pipeline awaits only a promise).
   */
  beforeForward?(ex: Exchange): Verdict | Promise<Verdict>;
  /**
   * A non-error answer's head arrived (status below 400): refuse it, or let it through, having read its body into
   * ex.responseBody if the policy had to (it is then delivered from memory).
   */
  onResponse?(ex: Exchange, response: IncomingMessage): Promise<Verdict>;
}

/** What a policy is compiled with, for one route of one config load. */
export interface CompileScope {
  readonly config: Config;
  readonly route: RouteConfig;
  readonly upstream: { readonly name: string; readonly headers: Record<string, string> | undefined };
  /** The route's timeout (its own, or its upstream's). */
  readonly timeoutMs: number;
  readonly deps: PolicyDeps;
  readonly configDir: string;
  /** Response schemas as config load compiled them, by absolute path. */
  readonly responseSchemas: ResponseSchemas;
  /** openapi.spec as config load read it; absent without one, and for a config not loaded from a file. */
  readonly spec: LegacySpec | undefined;
  /** One value per config load under `key`: a policy's state shared by several routes (an upstream's breaker, the named budgets). */
  shared<T>(key: string, make: () => T): T;
}

/** A policy as src/policies/index.ts lists it: its name and how it is compiled for a route (undefined: not on that route). */
export interface PolicyFactory {
  readonly name: string;
  compile(scope: CompileScope): Policy | undefined;
}

/**
 * One request as the policies see it, from its first step to its close: the request and its context, the store
 * operations they batch, and the hooks they registered, kept to the lifecycle above.
 */
export class Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly ctx: RequestContext;
  readonly batch = new StoreBatch();
  /** The upstream answer's body when a policy read it whole (onResponse): delivered from here, as the stream is spent. */
  responseBody: Buffer | undefined;
  /** Where the request is in the lifecycle, for the assertions. */
  private stage: 'before_upstream' | 'upstream_result' | 'answered' | 'closed' = 'before_upstream';
  private hooks: RequestHooks[] | undefined;

  constructor(req: IncomingMessage, res: ServerResponse, ctx: RequestContext) {
    this.req = req;
    this.res = res;
    this.ctx = ctx;
  }

  /** Registers a policy's hooks for the rest of this request. */
  use(hooks: RequestHooks): void {
    assert.notEqual(this.stage, 'closed', 'hooks registered on a closed exchange would never be closed');
    (this.hooks ??= []).push(hooks);
  }

  async upstreamResult(result: UpstreamResult): Promise<void> {
    if (this.stage === 'closed') return;
    assert.equal(this.stage, 'before_upstream', 'onUpstreamResult runs once, before any answer');
    this.stage = 'upstream_result';
    if (this.hooks) for (const h of this.hooks) await h.onUpstreamResult?.(result);
  }

  answer(answer: Answer): void {
    if (this.stage === 'closed') return;
    assert.equal(this.stage, 'upstream_result', 'onAnswer runs once, after onUpstreamResult');
    this.stage = 'answered';
    if (this.hooks) for (const h of this.hooks) h.onAnswer?.(answer);
  }

  /** Whether a hook must record something before the agent's answer ends (a streamed answer's last byte then waits for it). */
  get awaitsRecording(): boolean {
    return this.hooks !== undefined && this.hooks.some((h) => h.recorded !== undefined);
  }

  /** Resolves once every hook has recorded what it must before the agent's answer ends. */
  async recorded(): Promise<void> {
    if (this.hooks && this.stage !== 'closed') for (const h of this.hooks) await h.recorded?.();
  }

  /**
   * Closes every registered hook, exactly once however often it is called; resolves when all have. A close that
   * throws is logged by `onError` and keeps no other from closing.
   */
  async close(onError: (err: unknown) => void): Promise<void> {
    if (this.stage === 'closed') return;
    this.stage = 'closed';
    const hooks = this.hooks;
    if (!hooks) return;
    const forwarded = this.ctx.upstreamStartedAt !== undefined;
    const settled = await Promise.allSettled(hooks.map(async (h) => h.close?.(forwarded)));
    for (const s of settled) if (s.status === 'rejected') onError(s.reason);
  }
}

/**
 * What the store answered a charge; `failed`: the round trip failed, so nothing is known to be charged. `dryRun`: the
 * request is answered without being forwarded (StoreBatch.answerInstead), so it was only checked, not charged.
 */
export type ChargeReply =
  | { readonly kind: 'charged'; readonly result: ConsumeResult; readonly dryRun?: true }
  | { readonly kind: 'failed'; readonly error: StoreError };
/**
 * What the store answered a claim: null when it claimed the key; the value already there; undefined when it was not
 * made (no room, a Cluster claim that failed after the charge, a failed round trip): the claimant then claims itself,
 * and its own failure handling decides.
 */
export type ClaimReply = string | null | undefined;

/**
 * The store operations of one request, made together right before forwarding (one round trip: Store.chargeAndClaim for
 * a charge and a claim). Charges go first: a refused charge ends the batch, so a request over budget claims nothing.
 * Each operation's reply goes to the decision its policy attached, in that order, and the first verdict that is not
 * `continue` is the batch's.
 */
export class StoreBatch {
  /** Whether the batch had operations for the store: the request was resumed by a store reply. */
  waitedOnStore = false;
  private charge: { buckets: readonly Bucket[]; cost: number; decide: (reply: ChargeReply) => Verdict } | undefined;
  private claim: { request: ClaimRequest | undefined; decide: (reply: ClaimReply) => Promise<Verdict> } | undefined;
  private instead: (() => Promise<Verdict>) | undefined;

  addCharge(buckets: readonly Bucket[], cost: number, decide: (reply: ChargeReply) => Verdict): void {
    assert.equal(this.charge, undefined, 'one charge per request: a route charges all its budgets at once');
    this.charge = { buckets, cost, decide };
  }

  /**
   * A claim to make with the batch's charge, when there is one; `request` undefined: the claimant could not prepare it
   * (the store's clock could not be read). Without a charge the claimant claims itself (its decide is given undefined):
   * a claim is its first store call either way, and it may have to wait and claim again.
   */
  addClaim(request: ClaimRequest | undefined, decide: (reply: ClaimReply) => Promise<Verdict>): void {
    assert.equal(this.claim, undefined, 'one claim per request');
    this.claim = { request, decide };
  }

  /**
   * The request is not to be forwarded: a policy answers it itself (asks for an approval) if its budgets would let it
   * through. Its charge is then only checked (a dry run: an over-budget request is still refused, and one that passes
   * costs nothing) and its claim is not made, so a retry finds no key in use.
   */
  answerInstead(answer: () => Promise<Verdict>): void {
    assert.equal(this.instead, undefined, 'one policy answers instead of the upstream');
    this.instead = answer;
  }

  async commit(store: Store): Promise<Verdict> {
    const { charge, claim, instead } = this;
    this.charge = this.claim = this.instead = undefined;
    this.waitedOnStore = charge !== undefined || claim !== undefined;
    if (instead) {
      if (charge) {
        let reply: ChargeReply;
        try {
          reply = { kind: 'charged', result: await store.consume(charge.buckets, charge.cost, 'dry_run'), dryRun: true };
        } catch (err) {
          if (!(err instanceof StoreError)) throw err;
          reply = { kind: 'failed', error: err };
        }
        const verdict = charge.decide(reply);
        if (verdict.kind !== 'continue') return verdict;
      }
      return instead();
    }
    let claimed: ClaimReply;
    if (charge) {
      let reply: ChargeReply;
      try {
        if (claim?.request) {
          const both = await store.chargeAndClaim(charge.buckets, charge.cost, claim.request);
          reply = { kind: 'charged', result: both.consumed };
          claimed = both.claim;
        } else {
          reply = { kind: 'charged', result: await store.consume(charge.buckets, charge.cost) };
        }
      } catch (err) {
        if (!(err instanceof StoreError)) throw err;
        reply = { kind: 'failed', error: err };
      }
      const verdict = charge.decide(reply);
      if (verdict.kind !== 'continue') return verdict;
    }
    return claim ? claim.decide(claimed) : CONTINUE;
  }
}

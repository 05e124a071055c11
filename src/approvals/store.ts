// Approvals in the shared store (memory or Redis), so any replica creates, shows, decides and executes the same one.
// Every change is a compare-and-set of the whole record (Store.replaceIf), so of two replicas deciding or executing at
// once exactly one wins; times come from the store's clock. Every key lives under one hash tag ({approvals}), so on
// Redis Cluster the records and their index share a slot, and every key has a TTL.
import { hash } from 'node:crypto';
import { storeKey } from '../store/keys.ts';
import { StoreError, type Store } from '../store/store.ts';
import { newApprovalId, statusAt, type Approval, type ApprovalStatus, type ApprovalBy, type ApprovalPreview } from './record.ts';

/** How long a record is kept after it can no longer be used (decided, executed, expired): for the page's history and audit. */
export const RETAIN_MS = 60 * 60 * 1000;
/** Most approvals the index lists; past it the ones that expire first are dropped from the list (their records still work). */
export const MAX_LISTED = 1000;
/** Attempts of one compare-and-set before giving up on a record that keeps changing under it. */
const MAX_ATTEMPTS = 5;
const TAG = 'approvals';

export interface NewApproval {
  readonly route: string;
  readonly by: ApprovalBy;
  readonly agent: string;
  readonly fingerprint: string;
  readonly preview: ApprovalPreview;
  readonly requestId: string;
  readonly ttlMs: number;
  /** Most approvals this agent may ask for on this route within ttlMs (a token bucket): asking costs the agent no budget. */
  readonly maxPending: number;
}

/** The outcome of a person's decision. */
export type Decision =
  | { readonly kind: 'decided'; readonly approval: Approval }
  /** Not pending any more (decided, executed or expired), or unknown: nothing changed. */
  | { readonly kind: 'not_pending'; readonly approval: Approval | undefined; readonly status: ApprovalStatus | 'unknown' };

/** The outcome of an attempt to execute under an approval. */
export type Execution =
  /** This request holds the approval: it is now `executed` (give it back with restore() if the request is not sent). */
  | { readonly kind: 'executing'; readonly approval: Approval; readonly previous: Approval }
  /** It cannot execute now; `approval` as it stands (undefined: unknown, or gone from the store). */
  | { readonly kind: 'refused'; readonly approval: Approval | undefined; readonly status: ApprovalStatus | 'unknown'; readonly now: number }
  /** The approval is another agent's, or covers another request: it is left as it is. */
  | { readonly kind: 'mismatch'; readonly approval: Approval };

/** Who executes, and what: an approval covers one agent's one exact request. */
export interface ExecutionRequest {
  readonly agent: string;
  readonly fingerprint: string;
  /** The route's `by` as configured now: an approval made under the other rule (before a reload) no longer applies. */
  readonly by: ApprovalBy;
  readonly requestId: string;
  /** The request's Idempotency-Key record (hashed), when the route has idempotency. */
  readonly idempotency: string | undefined;
}

export class ApprovalStore {
  private readonly store: Store;
  private readonly prefix: string;

  constructor(store: Store, keyPrefix: string) {
    this.store = store;
    this.prefix = keyPrefix;
  }

  get kind(): Store['kind'] {
    return this.store.kind;
  }

  now(): Promise<number> {
    return this.store.now();
  }

  /**
   * The pending approval of this agent for this very request, when it asked already (an agent in a loop asks once, and a
   * person sees one entry); else a new one.
   */
  async ask(request: NewApproval): Promise<{ kind: 'asked'; approval: Approval; reused: boolean } | { kind: 'too_many'; waitMs: number }> {
    const pointer = storeKey(this.prefix, 'approval-ask', TAG, hash('sha256', `${request.agent}\u0000${request.route}\u0000${request.fingerprint}`, 'base64url'));
    const asked = await this.store.get(pointer);
    if (asked !== null) {
      const [existing, now] = await Promise.all([this.get(asked), this.store.now()]);
      if (existing && existing.fingerprint === request.fingerprint && existing.agent === request.agent && statusAt(existing, now) === 'pending') {
        return { kind: 'asked', approval: existing, reused: true };
      }
    }
    // Asking costs no budget, so an agent's asks are bounded on their own: a flood cannot bury other agents' approvals.
    const asks = { key: storeKey(this.prefix, 'approval-asks', TAG, hash('sha256', `${request.agent}\u0000${request.route}`, 'base64url')), capacity: request.maxPending, perMs: request.ttlMs };
    const admitted = await this.store.consume([asks], 1);
    if (!admitted.allowed) return { kind: 'too_many', waitMs: admitted.buckets[0]!.waitMs };
    const approval = await this.create(request);
    const ttl = approval.expires_at - approval.created_at;
    // Best effort: a lost race leaves two approvals for one request, each valid on its own.
    if (asked === null) await this.store.claim(pointer, approval.id, ttl);
    else await this.store.replaceIf(pointer, asked, approval.id, ttl);
    return { kind: 'asked', approval, reused: false };
  }

  async create(request: NewApproval): Promise<Approval> {
    const now = await this.store.now();
    const approval: Approval = {
      id: newApprovalId(),
      route: request.route,
      by: request.by,
      agent: request.agent,
      fingerprint: request.fingerprint,
      preview: request.preview,
      status: 'pending',
      created_at: now,
      expires_at: now + request.ttlMs,
      request_id: request.requestId,
    };
    // 128 random bits never collide; claim() (SET NX) makes sure of it anyway, and writes the record as a record.
    const taken = await this.store.claim(this.key(approval.id), encode(approval), keepMs(approval, now));
    if (taken !== null) throw new StoreError('approval create', new Error('approval id already taken'));
    await this.index(approval.id, keepUntil(approval));
    return approval;
  }

  async get(id: string): Promise<Approval | undefined> {
    const raw = await this.store.get(this.key(id));
    return raw === null ? undefined : decode(raw);
  }

  /** A person approves or denies a pending approval; an approved one may be executed for ttl from now. */
  async decide(id: string, decision: 'approve' | 'deny', by: string, reason: string | undefined, ttlMs: number): Promise<Decision> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const raw = await this.store.get(this.key(id));
      const current = raw === null ? undefined : decode(raw);
      const now = await this.store.now();
      if (current === undefined) return { kind: 'not_pending', approval: undefined, status: 'unknown' };
      const status = statusAt(current, now);
      if (status !== 'pending' || current.by !== 'human') return { kind: 'not_pending', approval: current, status };
      const next: Approval = {
        ...current,
        status: decision === 'approve' ? 'approved' : 'denied',
        decided_at: now,
        decided_by: by,
        ...(reason ? { reason } : {}),
        // A grant is valid for ttl from the moment it is given, not what was left of the wait.
        expires_at: decision === 'approve' ? now + ttlMs : current.expires_at,
      };
      if (await this.store.replaceIf(this.key(id), raw!, encode(next), keepMs(next, now))) {
        if (next.expires_at !== current.expires_at) await this.index(id, keepUntil(next));
        return { kind: 'decided', approval: next };
      }
    }
    throw new StoreError('approval decide', new Error('the approval kept changing'));
  }

  /**
   * Takes the approval for one execution: an approved one, or (by: agent) a pending one the agent confirms. Exactly one
   * of any number of concurrent attempts, on any replica, gets `executing`.
   */
  async execute(id: string, request: ExecutionRequest): Promise<Execution> {
    const { requestId, idempotency } = request;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const raw = await this.store.get(this.key(id));
      const current = raw === null ? undefined : decode(raw);
      if (current === undefined) return { kind: 'refused', approval: undefined, status: 'unknown', now: await this.store.now() };
      if (current.agent !== request.agent || current.fingerprint !== request.fingerprint) return { kind: 'mismatch', approval: current };
      const now = await this.store.now();
      // A reload that made an agent's confirmation a person's decision (or the reverse) voids what was asked before it.
      const status = current.by === request.by ? statusAt(current, now) : 'expired';
      const ready = status === 'approved' || (status === 'pending' && current.by === 'agent');
      if (!ready) return { kind: 'refused', approval: current, status, now };
      const next: Approval = { ...current, status: 'executed', executed_at: now, executed_request_id: requestId, ...(idempotency ? { idempotency } : {}) };
      if (await this.store.replaceIf(this.key(id), raw!, encode(next), keepMs(next, now))) return { kind: 'executing', approval: next, previous: current };
    }
    throw new StoreError('approval execute', new Error('the approval kept changing'));
  }

  /** Gives an approval back when its request was never sent (over budget, an open circuit, the client left first). */
  async restore(execution: Extract<Execution, { kind: 'executing' }>): Promise<boolean> {
    const now = await this.store.now();
    return this.store.replaceIf(this.key(execution.approval.id), encode(execution.approval), encode(execution.previous), keepMs(execution.previous, now));
  }

  /** The approvals still kept (pending, decided, executed or expired within RETAIN_MS), newest first. */
  async list(): Promise<{ approvals: Approval[]; now: number }> {
    const now = await this.store.now();
    const index = decodeIndex(await this.store.get(this.indexKey()));
    const live = index.filter(([, until]) => until > now);
    const raws = await Promise.all(live.map(([id]) => this.store.get(this.key(id))));
    const approvals = raws.flatMap((raw) => (raw === null ? [] : [decode(raw)]));
    approvals.sort((a, b) => b.created_at - a.created_at);
    return { approvals, now };
  }

  /** Adds (or moves) an id in the index: one record of [id, keep-until] pairs, changed by compare-and-set, pruned as it goes. */
  private async index(id: string, until: number): Promise<void> {
    const key = this.indexKey();
    for (let attempt = 0; attempt < MAX_ATTEMPTS * 4; attempt++) {
      const raw = await this.store.get(key);
      const now = await this.store.now();
      const entries = decodeIndex(raw).filter(([other, keep]) => other !== id && keep > now);
      entries.push([id, until]);
      entries.sort((a, b) => b[1] - a[1]);
      const kept = entries.slice(0, MAX_LISTED);
      const ttl = Math.max(...kept.map(([, keep]) => keep)) - now;
      const text = JSON.stringify(kept);
      if (raw === null ? (await this.store.claim(key, text, ttl)) === null : await this.store.replaceIf(key, raw, text, ttl)) return;
    }
    throw new StoreError('approval index', new Error('the index kept changing'));
  }

  private key(id: string): string {
    return storeKey(this.prefix, 'approval', TAG, id);
  }

  private indexKey(): string {
    return storeKey(this.prefix, 'approval-index', TAG);
  }
}

function keepUntil(approval: Approval): number {
  return approval.expires_at + RETAIN_MS;
}

/** A record's TTL from now: until it can no longer be used, and then RETAIN_MS more. */
function keepMs(approval: Approval, now: number): number {
  return Math.max(1000, keepUntil(approval) - now);
}

function encode(approval: Approval): string {
  return JSON.stringify(approval);
}

function decode(raw: string): Approval {
  return JSON.parse(raw) as Approval;
}

function decodeIndex(raw: string | null): [string, number][] {
  if (raw === null) return [];
  try {
    const parsed = JSON.parse(raw) as unknown;
    return Array.isArray(parsed) ? (parsed as [string, number][]) : [];
  } catch {
    return [];
  }
}

// The agents of an agents file, indexed for the request path: by the hash of each of their keys.
import type { Consumer } from '../identity/consumer.ts';
import type { AgentEntry } from './schema.ts';

/** An agent the gateway has verified, as the rest of the request sees it. */
export interface VerifiedAgent {
  readonly id: string;
  readonly scopes: ReadonlySet<string>;
  /** How it proved who it is. */
  readonly via: 'api_key' | 'jwt';
  /** When its token expires, epoch seconds (JWT). */
  readonly expiresAt: number | undefined;
  /** What budgets, records and logs know it as: `agent:<id>`, with its own capacities. */
  readonly consumer: Consumer;
}

/**
 * What budgets, records and logs know an agent as, with its budget overrides (capacity by named rate-limit policy).
 * A key's agent is `agent:<id>`, a token's `jwt:<subject>`: a token whose subject happens to equal an agents-file id is
 * not that agent (whoever the identity provider names so would otherwise spend its budget and replay its answers). No
 * hashed identity (base64url, no colon) can equal either, so an agent and a self-asserted caller never share state.
 */
export function agentConsumer(id: string, via: VerifiedAgent['via'], limits: ReadonlyMap<string, number> | undefined): Consumer {
  return { id: `${via === 'jwt' ? 'jwt' : 'agent'}:${id}`, source: via, ...(limits && limits.size > 0 ? { limits } : {}) };
}

export class AgentRegistry {
  /** By `sha256:<hex>` of each key. */
  private readonly byKeyHash = new Map<string, VerifiedAgent>();
  /** Budget overrides of token agents, by the subject an entry names with `token_subject`. */
  private readonly limitsBySubject = new Map<string, ReadonlyMap<string, number>>();
  readonly size: number;

  constructor(entries: readonly AgentEntry[]) {
    for (const entry of entries) {
      const limits = limitsOf(entry);
      if (limits && entry.token_subject !== undefined) this.limitsBySubject.set(entry.token_subject, limits);
      const agent: VerifiedAgent = {
        id: entry.id,
        scopes: new Set(entry.scopes),
        via: 'api_key',
        expiresAt: undefined,
        consumer: agentConsumer(entry.id, 'api_key', limits),
      };
      for (const hash of entry.keys) this.byKeyHash.set(hash, agent);
    }
    this.size = entries.length;
  }

  /** The agent a key hash belongs to. A Map lookup on the hash: nothing about the key's own characters is compared. */
  byKey(hash: string): VerifiedAgent | undefined {
    return this.byKeyHash.get(hash);
  }

  /** Budget overrides for the agent a token names (an entry with that token_subject; none: the policies' own figures). */
  limitsForSubject(subject: string): ReadonlyMap<string, number> | undefined {
    return this.limitsBySubject.get(subject);
  }
}

function limitsOf(entry: AgentEntry): ReadonlyMap<string, number> | undefined {
  if (!entry.rate_limits) return undefined;
  return new Map(Object.entries(entry.rate_limits).map(([policy, o]) => [policy, o.capacity]));
}

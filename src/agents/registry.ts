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
 * An agent's budget overrides: capacity by named rate-limit policy. The consumer id is `agent:<id>`, which no hashed
 * identity (base64url, no colon) can equal, so an agent and a self-asserted caller never share state.
 */
export function agentConsumer(id: string, via: VerifiedAgent['via'], limits: ReadonlyMap<string, number> | undefined): Consumer {
  return { id: `agent:${id}`, source: via, ...(limits && limits.size > 0 ? { limits } : {}) };
}

export class AgentRegistry {
  /** By `sha256:<hex>` of each key. */
  private readonly byKeyHash = new Map<string, VerifiedAgent>();
  /** Budget overrides by agent id: what a JWT's agent claim finds them under. */
  private readonly limitsById = new Map<string, ReadonlyMap<string, number>>();
  readonly size: number;

  constructor(entries: readonly AgentEntry[]) {
    for (const entry of entries) {
      const limits = limitsOf(entry);
      if (limits) this.limitsById.set(entry.id, limits);
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

  /** Budget overrides for an agent a JWT names (it need not be listed: then it has the policies' own figures). */
  limitsFor(id: string): ReadonlyMap<string, number> | undefined {
    return this.limitsById.get(id);
  }
}

function limitsOf(entry: AgentEntry): ReadonlyMap<string, number> | undefined {
  if (!entry.rate_limits) return undefined;
  return new Map(Object.entries(entry.rate_limits).map(([policy, o]) => [policy, o.capacity]));
}

// Tells callers apart by the first configured identity source present (header or peer IP); values are hashed and never logged or stored.
import { hash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { IdentifySourceConfig } from '../config/schema.ts';

export interface Consumer {
  /** Stable, non-reversible id: the source and a hash of its value. Safe for keys, logs and the pk header parameter. */
  readonly id: string;
  /** Which source identified the caller, e.g. 'header:x-agent-id' or 'ip'; for a verified agent, 'api_key' or 'jwt'. */
  readonly source: string;
  /** A verified agent's own capacities, by named rate-limit policy (agents file `rate_limits`). */
  readonly limits?: ReadonlyMap<string, number>;
}

/** `clientAddress`: the peer's address, or behind server.trusted_proxies the client's they name. */
export type ConsumerIdentifier = (req: IncomingMessage, clientAddress: string) => Consumer;

export function hashIdentity(value: string): string {
  return hash('sha256', value, 'base64url').slice(0, 22);
}

/**
 * Callers repeat themselves, and a SHA-256 per request was a visible share of the gateway's time: recent identities are
 * remembered. Bounded: when full it starts afresh, which costs one hash per caller and never grows memory.
 */
const MAX_REMEMBERED = 10_000;
const remembered = new Map<string, Consumer>();

function consumerOf(source: string, value: string): Consumer {
  const key = `${source}\u0000${value}`;
  let consumer = remembered.get(key);
  if (consumer === undefined) {
    if (remembered.size >= MAX_REMEMBERED) remembered.clear();
    consumer = { id: hashIdentity(key), source };
    remembered.set(key, consumer);
  }
  return consumer;
}

export function createConsumerIdentifier(sources: readonly IdentifySourceConfig[]): ConsumerIdentifier {
  const compiled = sources.map((s) => (s.header ? { header: s.header.toLowerCase(), label: `header:${s.header.toLowerCase()}` } : { header: undefined, label: 'ip' }));
  return (req, clientAddress) => {
    for (const source of compiled) {
      if (source.header === undefined) return consumerOf('ip', clientAddress);
      const value = req.headers[source.header];
      const text = Array.isArray(value) ? value.join(',') : value;
      if (text) return consumerOf(source.label, text);
    }
    // No configured source was present and the list has no ip fallback: all such callers share one identity.
    return { id: 'anonymous', source: 'anonymous' };
  };
}


// Tells callers apart by the first configured identity source present (header or peer IP); values are hashed, never kept raw.
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { IdentifySourceConfig } from '../config/schema.ts';

export interface Consumer {
  /** Stable, non-reversible id: the source and a hash of its value. Safe for keys, logs and the pk header parameter. */
  readonly id: string;
  /** Which source identified the caller, e.g. 'header:x-agent-id' or 'ip'. */
  readonly source: string;
}

export type ConsumerIdentifier = (req: IncomingMessage) => Consumer;

export function hashIdentity(value: string): string {
  return createHash('sha256').update(value).digest('base64url').slice(0, 22);
}

export function createConsumerIdentifier(sources: readonly IdentifySourceConfig[]): ConsumerIdentifier {
  const compiled = sources.map((s) => (s.header ? { header: s.header.toLowerCase() } : { header: undefined }));
  return (req) => {
    for (const source of compiled) {
      if (source.header === undefined) return fromIp(req);
      const value = req.headers[source.header];
      const text = Array.isArray(value) ? value.join(',') : value;
      if (text) {
        const label = `header:${source.header}`;
        return { id: hashIdentity(`${label}\u0000${text}`), source: label };
      }
    }
    // No configured source was present and the list has no ip fallback: all such callers share one identity.
    return { id: 'anonymous', source: 'anonymous' };
  };
}

function fromIp(req: IncomingMessage): Consumer {
  return { id: hashIdentity(`ip\u0000${req.socket.remoteAddress ?? 'unknown'}`), source: 'ip' };
}

// Who the client is and how it reached the gateway, as the upstream is told: the proxy-trust headers, believed only from trusted peers.
import { BlockList, isIP } from 'node:net';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';

/**
 * RFC 9110 Host: a name, an IPv4 address or a bracketed IPv6 one, and an optional port (no user info, no path). What a
 * Host header (pipeline step 2) and a trusted proxy's X-Forwarded-Host must be before anything builds a URL from them.
 */
export const HOST_PATTERN = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:\d{1,5})?$/;

/**
 * The chain a proxy extends: RFC 7239 Forwarded and the de-facto X-Forwarded-*. A client can write any of them, so from
 * an untrusted peer they are removed and the gateway's own written instead; from a trusted proxy they are kept and
 * extended.
 */
export const FORWARDING_CHAIN_HEADERS: ReadonlySet<string> = new Set([
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'x-forwarded-server',
  'x-forwarded-ssl',
  'x-forwarded-scheme',
]);

/**
 * Headers that name one client address, which upstream frameworks read and allow-list by. They are removed whoever
 * sent them, a trusted proxy included (a load balancer passes on what the client wrote in them): the gateway writes
 * X-Real-IP itself, with the client address it settled on, so an upstream never reads an address the agent chose.
 */
export const CLIENT_ADDRESS_HEADERS: ReadonlySet<string> = new Set([
  'x-real-ip',
  'x-original-forwarded-for',
  'x-client-ip',
  'client-ip',
  'true-client-ip',
  'cf-connecting-ip',
  'fastly-client-ip',
  'x-cluster-client-ip',
  'x-proxyuser-ip',
]);

/** The peers whose proxy-trust headers are believed (server.trusted_proxies); none by default. */
export class TrustedProxies {
  private readonly list: BlockList | undefined;

  constructor(entries: readonly string[]) {
    if (entries.length === 0) return;
    this.list = new BlockList();
    for (const entry of entries) {
      const { address, prefix, family } = parseAddressOrRange(entry)!;
      if (prefix === undefined) this.list.addAddress(address, family);
      else this.list.addSubnet(address, prefix, family);
    }
  }

  /** Whether the connecting peer is a trusted proxy. */
  trusts(peer: string | undefined): boolean {
    if (!this.list || !peer) return false;
    // A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d; ranges are written as a.b.c.d.
    const address = peer.startsWith('::ffff:') && isIP(peer.slice(7)) === 4 ? peer.slice(7) : peer;
    return this.list.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4');
  }

  /**
   * The client's address: the peer itself, or, behind trusted proxies, the last X-Forwarded-For entry that is not one of
   * them (the left-most entries are whatever the client wrote, so they are never believed).
   */
  clientAddress(req: IncomingMessage): string {
    const peer = req.socket.remoteAddress ?? 'unknown';
    if (!this.trusts(peer)) return peer;
    const chain = commaList(req.headers['x-forwarded-for']);
    for (let i = chain.length - 1; i >= 0; i--) {
      const hop = chain[i]!;
      if (isIP(hop) === 0) return peer; // a malformed chain names nobody we can believe
      if (!this.trusts(hop)) return hop;
    }
    return chain[0] ?? peer;
  }
}

/** An IP address or a CIDR range as server.trusted_proxies takes it; undefined when it is neither. */
export function parseAddressOrRange(entry: string): { address: string; prefix: number | undefined; family: 'ipv4' | 'ipv6' } | undefined {
  const [address = '', bits, ...rest] = entry.split('/');
  const version = isIP(address);
  if (version === 0 || rest.length > 0) return undefined;
  const family = version === 6 ? 'ipv6' : 'ipv4';
  if (bits === undefined) return { address, prefix: undefined, family };
  const prefix = /^\d{1,3}$/.test(bits) ? Number(bits) : -1;
  if (prefix < 0 || prefix > (version === 6 ? 128 : 32)) return undefined;
  return { address, prefix, family };
}

/**
 * Writes the gateway's own proxy-trust headers onto the upstream request's headers (which hold none of the client's
 * unless the peer is trusted): X-Forwarded-For, -Proto, -Host, RFC 7239 Forwarded and X-Real-IP.
 */
export function writeForwardedHeaders(headers: IncomingHttpHeaders, req: IncomingMessage, host: string | undefined, encrypted: boolean, trusted: boolean, client: string): void {
  const peer = req.socket.remoteAddress ?? '';
  const proto = encrypted ? 'https' : 'http';
  const forwardedFor = trusted && headers['x-forwarded-for'] ? `${String(headers['x-forwarded-for'])}, ${peer}` : peer;
  headers['x-forwarded-for'] = forwardedFor;
  if (!trusted || headers['x-forwarded-proto'] === undefined) headers['x-forwarded-proto'] = proto;
  if (host !== undefined && (!trusted || headers['x-forwarded-host'] === undefined)) headers['x-forwarded-host'] = host;
  headers['x-real-ip'] = client;
  // The Host was checked to be host[:port] (pipeline checkRequestHead), so it needs no escaping inside the quotes.
  const element = `for=${forwardedNode(peer)};proto=${proto}${host !== undefined ? `;host="${host}"` : ''}`;
  headers['forwarded'] = trusted && headers['forwarded'] ? `${String(headers['forwarded'])}, ${element}` : element;
}

/** RFC 7239 §6: an IPv6 node is quoted and bracketed. */
function forwardedNode(address: string): string {
  return isIP(address) === 6 ? `"[${address}]"` : address || 'unknown';
}

function commaList(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  const text = Array.isArray(value) ? value.join(',') : value;
  return text
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '');
}

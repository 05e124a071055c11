// The gateway's own URL as a caller reached it, for the links it gives (the OpenAPI document's servers, approval status URLs).
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { HOST_PATTERN } from './forwarded.ts';

/**
 * The gateway's URL as the caller reached it: its Host and scheme, or behind a trusted proxy (server.trusted_proxies)
 * what that proxy says the client used (X-Forwarded-Host, -Proto). Anyone else could name any host there.
 */
export function gatewayUrl(req: IncomingMessage, peerTrusted: boolean): string {
  const forwardedProto = peerTrusted ? firstValue(req.headers['x-forwarded-proto'])?.toLowerCase() : undefined;
  const forwardedHost = peerTrusted ? firstValue(req.headers['x-forwarded-host']) : undefined;
  const scheme = forwardedProto === 'http' || forwardedProto === 'https' ? forwardedProto : (req.socket as TLSSocket).encrypted ? 'https' : 'http';
  const host = forwardedHost !== undefined && HOST_PATTERN.test(forwardedHost) ? forwardedHost : (req.headers.host ?? localHost(req));
  return `${scheme}://${host}`;
}

/** A proxy adds its value after the client's: the first is what the client used. */
function firstValue(header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  const first = value?.split(',')[0]?.trim();
  return first === '' ? undefined : first;
}

/** An HTTP/1.0 request may come without Host: the address it reached. */
function localHost(req: IncomingMessage): string {
  const address = req.socket.localAddress ?? '127.0.0.1';
  return `${address.includes(':') ? `[${address}]` : address}:${req.socket.localPort ?? 80}`;
}

// The client address of an MCP request, carried to the gateway's own proxy listener with the tool call it makes: without
// it every tool call would come from 127.0.0.1, and callers identified by address (consumers.identify: ip) would share
// one budget and one set of idempotency records.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** Header of the loopback request; the pipeline strips it before anything else reads the request (step 2). */
export const CLIENT_ADDRESS_HEADER = 'x-agentgate-mcp-client';

/** Proves a request came from this process: random per process, never logged, never leaves the host. */
export class InternalSecret {
  private readonly secret = randomBytes(32);
  private readonly hex = this.secret.toString('hex');

  /** The header value that carries `address`. */
  header(address: string): string {
    return `${this.hex} ${address}`;
  }

  /**
   * The client address a request of this process's MCP endpoint carries, or undefined. The header is removed whatever
   * it holds, so that no caller's copy of it reaches a policy or the upstream. Believed only from a peer on this host
   * (loopback, or the listener's own address when it is bound to one) and only with the secret, compared in constant time.
   */
  take(req: IncomingMessage): string | undefined {
    const value = req.headers[CLIENT_ADDRESS_HEADER];
    if (value === undefined) return undefined;
    delete req.headers[CLIENT_ADDRESS_HEADER];
    if (typeof value !== 'string' || !fromThisHost(req)) return undefined;
    const space = value.indexOf(' ');
    const presented = Buffer.from(space === -1 ? value : value.slice(0, space));
    const expected = Buffer.from(this.hex);
    if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) return undefined;
    const address = value.slice(space + 1);
    return address === '' ? undefined : address;
  }
}

function fromThisHost(req: IncomingMessage): boolean {
  const peer = req.socket.remoteAddress;
  if (peer === undefined) return false;
  return peer === '::1' || peer.startsWith('127.') || peer.startsWith('::ffff:127.') || peer === req.socket.localAddress;
}

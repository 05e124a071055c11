// What forwarding a request ended with: a neutral module, so that the forwarder, the upstream guard and the policies
// that settle on it (idempotency) share the type without importing one another.
import type { IncomingMessage } from 'node:http';
import type { GatewayError } from './errors/problem.ts';

export type UpstreamResult =
  | { kind: 'response'; response: IncomingMessage }
  /** reachedUpstream: the request may have taken effect (timeout or reset after sending), which idempotency must treat as unknown. */
  | {
      kind: 'failed';
      error: GatewayError;
      reachedUpstream: boolean;
      /** The client is to blame (it stopped sending its request): no reason to think less of the upstream. */
      clientFault?: boolean;
    }
  /** reachedUpstream: false when the client left before anything was sent, so nothing can have happened upstream. */
  | { kind: 'client_closed'; reachedUpstream: boolean };

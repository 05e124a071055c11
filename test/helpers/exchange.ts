// A request's Exchange without a server, for the unit tests of one policy: the hooks it registers run as the pipeline runs them.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestContext } from '../../src/context.ts';
import { Exchange } from '../../src/policies/contract.ts';

export function exchange(headers: Record<string, string> = {}, requestId = 'r'): Exchange {
  const ctx = { requestId, responseHeaders: {}, outcome: 'ok' } as unknown as RequestContext;
  return new Exchange({ headers, method: 'GET' } as unknown as IncomingMessage, {} as ServerResponse, ctx);
}

/** For Exchange.close(): a hook that fails to close fails the test. */
export function rethrow(err: unknown): never {
  throw err;
}

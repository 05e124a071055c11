// GET /_agentgate/openapi.json on the proxy port: the OpenAPI 3.1 document of the operations the caller may call, addressed to the gateway as the caller reached it.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestContext } from '../context.ts';
import type { Runtime } from '../runtime.ts';
import { sendJson } from './json.ts';
import { gatewayUrl } from '../proxy/gateway-url.ts';

export function serveOpenApi(req: IncomingMessage, res: ServerResponse, runtime: Runtime, ctx: RequestContext): void {
  // The caller was settled before (consumers.authenticate: a verified agent); an operation whose route needs a scope it
  // lacks would only answer 403, so it is not listed.
  const scopes = ctx.agent?.scopes;
  const body = runtime.openapi.json((op) => op.scopes.every((scope) => scopes?.has(scope) === true), gatewayUrl(req, ctx.peerTrusted));
  sendJson(res, 200, body);
}

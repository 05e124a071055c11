// GET /_agentgate/whoami on the proxy port: who the gateway takes the caller for, and what it may do.
import type { ServerResponse } from 'node:http';
import type { RequestContext } from '../context.ts';
import { sendJson } from './json.ts';

export function serveWhoami(res: ServerResponse, ctx: RequestContext): void {
  const agent = ctx.agent;
  const body = agent
    ? {
        authenticated: true,
        agent: agent.id,
        scopes: [...agent.scopes].sort(),
        authenticated_with: agent.via,
        expires_at: agent.expiresAt === undefined ? null : new Date(agent.expiresAt * 1000).toISOString(),
        consumer: ctx.consumer!.id,
      }
    : {
        // Without consumers.authenticate (or an anonymous caller under anonymous: identify): what the caller asserted, hashed.
        authenticated: false,
        agent: null,
        scopes: [],
        authenticated_with: null,
        expires_at: null,
        consumer: ctx.consumer!.id,
        identified_by: ctx.consumer!.source,
      };
  sendJson(res, 200, JSON.stringify(body));
}

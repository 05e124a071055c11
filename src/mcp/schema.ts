// The MCP endpoint's config: top-level `mcp:` (CONTRACT §8), and the rule that its path is no route's and not the gateway's own.
import { Type, type Static } from '@sinclair/typebox';
import { isRecord, quote, type CheckProblem, type ConfigCheck } from '../config/schema-helpers.ts';

export function mcpSchema() {
  return Type.Object(
    {
      path: Type.String({
        pattern: '^/[A-Za-z0-9._~/-]*$',
        description:
          'the path on the proxy port that speaks the Model Context Protocol (Streamable HTTP, stateless): one tool per operation the caller may call, each call run through the same pipeline as an HTTP request from the same agent',
      }),
    },
    { additionalProperties: false, description: 'serve the operations agents may call as MCP tools; without it, no MCP endpoint' },
  );
}

export type McpConfig = Static<ReturnType<typeof mcpSchema>>;

/** The MCP path is answered before routing: under /_agentgate/ it would never be reached, and a route's path would be shadowed. */
export const check: ConfigCheck = (config) => {
  const problems: CheckProblem[] = [];
  const path = isRecord(config.mcp) ? config.mcp.path : undefined;
  if (typeof path !== 'string') return problems;
  if (path === '/' || path.startsWith('/_agentgate') || path.endsWith('/')) {
    problems.push({ keyPath: ['mcp', 'path'], message: `${quote(path)} cannot be the MCP path: use a path of its own such as /mcp, not / nor under /_agentgate, without a trailing slash` });
  }
  return problems;
};

/** Whether the request is for the MCP endpoint: its path as routes see it (pipeline step 2), spelled as routes are matched. */
export function isMcpPath(matchPath: string, runtime: { readonly config: { readonly mcp?: McpConfig }; readonly caseSensitivePaths: boolean }): boolean {
  const path = runtime.config.mcp?.path;
  if (path === undefined) return false;
  return matchPath === (runtime.caseSensitivePaths ? path : path.toLowerCase());
}

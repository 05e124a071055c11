// The agent-facing contract's config: top-level `openapi:` (the legacy API's own spec) and `routes[].agent:` (what agents are told about a route), and the rule that tool names are unique.
import { Type, type Static } from '@sinclair/typebox';
import { isRecord, quote, type CheckProblem, type ConfigCheck } from '../config/schema-helpers.ts';

/** MCP's rule for a tool name: 1-128 characters of letters, digits, `_`, `-` and `.`. */
export const TOOL_NAME_PATTERN = '^[A-Za-z0-9_.-]{1,128}$';

export const EFFECTS = ['read', 'write', 'destructive'] as const;
export type Effect = (typeof EFFECTS)[number];

export function openapiSchema() {
  return Type.Object(
    {
      spec: Type.String({
        minLength: 1,
        description:
          "the legacy API's own OpenAPI 3.0 or 3.1 document (YAML or JSON; $refs to other files resolved), relative to this config; read and checked with the config, so a problem in it is a config error. Its operations describe the routes that serve them in GET /_agentgate/openapi.json",
      }),
    },
    {
      additionalProperties: false,
      description: 'the OpenAPI document agents read at GET /_agentgate/openapi.json; without it, the document is made from the routes alone',
    },
  );
}

export function agentSchema() {
  return Type.Object(
    {
      summary: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: "one line saying what the route does; replaces the spec's summary" })),
      hint: Type.Optional(
        Type.String({
          minLength: 1,
          maxLength: 2000,
          description: "what an agent should know before calling it (x-agent-hint in the OpenAPI document); replaces the spec operation's own x-agent-hint",
        }),
      ),
      tool: Type.Optional(
        Type.String({
          pattern: TOOL_NAME_PATTERN,
          description:
            "the name agents call the route's operation by (an MCP tool name: 1-128 letters, digits, _ - .), unique across routes; default: the spec's operationId, else the route name with - as _ (a route serving several operations gets _<method> after it)",
        }),
      ),
      effect: Type.Optional(
        Type.Union(
          EFFECTS.map((e) => Type.Literal(e)),
          { description: 'read, write or destructive (x-agentgate-effect); default from the method: GET, HEAD and OPTIONS read, DELETE destroys, the others write' },
        ),
      ),
    },
    { additionalProperties: false, description: 'what agents are told about this route in the OpenAPI document (and as an MCP tool)' },
  );
}

export type AgentSettings = Static<ReturnType<typeof agentSchema>>;

/**
 * Tool names given in routes[].agent.tool are unique: a name is how an agent picks what to call, and two routes under
 * one name would make it call either. Names the gateway derives never clash with a given one (operations.ts).
 */
export const check: ConfigCheck = (config) => {
  const problems: CheckProblem[] = [];
  const first = new Map<string, number>();
  (Array.isArray(config.routes) ? config.routes : []).forEach((route: unknown, i) => {
    const tool = isRecord(route) && isRecord(route.agent) ? route.agent.tool : undefined;
    if (typeof tool !== 'string') return;
    const earlier = first.get(tool);
    if (earlier !== undefined) problems.push({ keyPath: ['routes', i, 'agent', 'tool'], message: `tool name ${quote(tool)} is already routes[${earlier}]'s: give each route its own` });
    else first.set(tool, i);
  });
  return problems;
};

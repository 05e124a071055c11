// The operation model as MCP tools (tools/list): one per operation, made once per config load and shared by every request.
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import type { JsonSchema, Operation, OperationModel, Parameter } from '../agent-contract/model.ts';
import { isObject, jsonMediaTypeOf, selfContained } from '../agent-contract/json-schema.ts';
import { APPROVAL_ID_PATTERN } from '../approvals/record.ts';

/** The tool arguments the gateway itself adds beside the operation's parameters. */
export const BODY_ARGUMENT = 'body';
export const IDEMPOTENCY_ARGUMENT = 'idempotency_key';
/** Sent as the Approval-Id header: the approval a refused call of the tool gave. */
export const APPROVAL_ARGUMENT = 'approval_id';

/** A tool, with what tools/call needs to turn its arguments back into an HTTP request. */
export interface McpTool {
  readonly definition: Tool;
  readonly operation: Operation;
  /** The path and query parameters, by argument name. */
  readonly pathParameters: readonly string[];
  readonly queryParameters: readonly string[];
  /** Whether the tool declares an outputSchema: its successes must then carry structuredContent, its errors must not. */
  readonly structured: boolean;
}

const made = new WeakMap<OperationModel, readonly McpTool[]>();

/** The tools of a config's operation model, made on first use and kept as long as the model is. */
export function toolsOf(model: OperationModel): readonly McpTool[] {
  let tools = made.get(model);
  if (tools === undefined) {
    tools = model.operations.map((op) => toolOf(op, model.schemaNames));
    made.set(model, tools);
  }
  return tools;
}

function toolOf(op: Operation, names: ReadonlyMap<object, string>): McpTool {
  const pathParameters = op.parameters.filter((p) => p.in === 'path');
  const queryParameters = op.parameters.filter((p) => p.in === 'query');
  const properties: Record<string, unknown> = {};
  const required: string[] = [];
  for (const parameter of [...pathParameters, ...queryParameters]) {
    properties[parameter.name] = parameterSchema(parameter);
    if (parameter.in === 'path' || parameter.required) required.push(parameter.name);
  }
  if (op.requestBody || !['GET', 'HEAD', 'DELETE', 'OPTIONS'].includes(op.method)) {
    properties[BODY_ARGUMENT] = bodySchema(op);
    if (op.requestBody?.required) required.push(BODY_ARGUMENT);
  }
  if (op.idempotency) {
    properties[IDEMPOTENCY_ARGUMENT] = {
      type: 'string',
      // What the gateway accepts in an Idempotency-Key header (CONTRACT §3): a CR or LF here would otherwise fail deep
      // in the HTTP client as an internal error instead of as the caller's bad argument.
      minLength: 1,
      maxLength: 255,
      pattern: '^[\\x20-\\x7E]+$',
      description: 'A unique key for this one intended effect: sent again with the same arguments, the call runs once and the first answer is replayed.',
    };
    if (op.idempotency.required) required.push(IDEMPOTENCY_ARGUMENT);
  }
  if (op.approval) {
    const when =
      op.approval.by === 'human'
        ? 'once a person approved it (before that, the call only tells you it is still pending)'
        : 'to confirm it after checking its preview';
    properties[APPROVAL_ARGUMENT] = {
      type: 'string',
      pattern: APPROVAL_ID_PATTERN.source,
      description:
        `Leave it out of the first call. The approval id (apr_...) that a refused call of this tool gave you, sent ${when}. ` +
        'It covers exactly that call: every other argument must be exactly the same as in the call that was refused, or nothing runs (a mismatch). It can be used once.',
    };
  }
  const input = { type: 'object', properties, required, additionalProperties: false };
  const output = outputSchemaOf(op);
  const definition: Tool = {
    name: op.name,
    title: op.summary,
    description: describe(op),
    inputSchema: selfContained(input, names) as Tool['inputSchema'],
    ...(output && { outputSchema: selfContained(output, names) as Tool['outputSchema'] }),
    annotations: {
      title: op.summary,
      readOnlyHint: op.effect === 'read',
      destructiveHint: op.effect === 'destructive',
      // A write with a required key runs once however often it is sent: as safe to repeat as a read.
      idempotentHint: op.effect === 'read' || op.idempotency?.required === true,
      openWorldHint: true,
    },
  };
  return {
    definition,
    operation: op,
    pathParameters: pathParameters.map((p) => p.name),
    queryParameters: queryParameters.map((p) => p.name),
    structured: output !== undefined,
  };
}

/** What an agent reads before calling: what the operation does, what to know, what it costs, whether it needs a key. */
function describe(op: Operation): string {
  const parts = [op.description ?? op.summary];
  if (op.hint) parts.push(op.hint);
  const cost = typeof op.cost === 'number' ? (op.cost > 0 ? `${op.cost} unit${op.cost === 1 ? '' : 's'}` : undefined) : costRule(op.cost);
  if (cost) parts.push(`Cost: ${cost} of your budget.`);
  if (op.idempotency?.required) parts.push('Requires idempotency_key: a retry with the same key runs once and replays the first answer.');
  else if (op.idempotency) parts.push('Send idempotency_key to make a retry safe: with the same key it runs once.');
  if (op.approval?.by === 'human') {
    parts.push('Needs approval by a person: the first call executes nothing and returns an approval id; once the person approved, call again with the same arguments plus approval_id.');
  } else if (op.approval) {
    parts.push('Needs your own confirmation: the first call executes nothing and returns a preview and an approval id; to go ahead, call again with exactly the same arguments plus approval_id.');
  }
  if (op.effect === 'destructive') parts.push('Destructive.');
  return parts.join('\n\n');
}

function costRule(rule: Exclude<Operation['cost'], number>): string {
  return rule.per_item && rule.items ? `${rule.base} units plus ${rule.per_item} per item of ${rule.items}` : `${rule.base} units`;
}

function parameterSchema(parameter: Parameter): JsonSchema {
  const schema = parameter.schema ?? { type: 'string' };
  const description = parameter.description ?? `the ${parameter.in} parameter ${parameter.name}`;
  return isObject(schema) && schema.description === undefined ? { ...schema, description } : schema;
}

function bodySchema(op: Operation): JsonSchema {
  const json = op.requestBody && jsonMediaTypeOf(op.requestBody.content);
  if (json?.schema !== undefined) {
    const described = op.requestBody?.description;
    return described && isObject(json.schema) && json.schema.description === undefined ? { ...json.schema, description: described } : json.schema;
  }
  return { type: 'object', additionalProperties: true, description: 'The JSON request body (the API does not describe it).' };
}

/** The 2xx answer's schema, when exactly one 2xx answer is described, as JSON, and as an object (MCP's structuredContent is one). */
function outputSchemaOf(op: Operation): Record<string, unknown> | undefined {
  const successes = op.responses.filter((r) => r.status.startsWith('2'));
  if (successes.length !== 1) return undefined;
  const schema = successes[0]!.content && jsonMediaTypeOf(successes[0]!.content)?.schema;
  if (!isObject(schema) || schema.type !== 'object') return undefined;
  return schema;
}

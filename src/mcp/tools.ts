// The operation model as MCP tools (tools/list): one per operation, made once per config load and shared by every request.
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import type { JsonSchema, Operation, OperationModel, Parameter } from '../agent-contract/model.ts';
import { isObject, recursiveSchemas } from '../agent-contract/json-schema.ts';

/** The tool arguments the gateway itself adds beside the operation's parameters. */
export const BODY_ARGUMENT = 'body';
export const IDEMPOTENCY_ARGUMENT = 'idempotency_key';

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

/** Keywords of OpenAPI or of JSON Schema 2020-12 that a draft-07 compiler (the official client's) rejects or misreads. */
const DROPPED_KEYWORDS = new Set(['$schema', '$id', '$anchor', '$dynamicAnchor', '$dynamicRef', 'discriminator', 'xml', 'externalDocs']);

/** Keywords whose value maps names to schemas. */
const NAMED_SUBSCHEMAS = new Set(['properties', 'patternProperties', 'dependentSchemas', '$defs', 'definitions']);

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
  const input = { type: 'object', properties, required, additionalProperties: false };
  const output = outputSchemaOf(op);
  const definition: Tool = {
    name: op.name,
    title: op.summary,
    description: describe(op),
    inputSchema: withDefs(input, names) as Tool['inputSchema'],
    ...(output && { outputSchema: withDefs(output, names) as Tool['outputSchema'] }),
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
  const json = op.requestBody && jsonMediaType(op.requestBody.content);
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
  const schema = successes[0]!.content && jsonMediaType(successes[0]!.content)?.schema;
  if (!isObject(schema) || schema.type !== 'object') return undefined;
  return schema;
}

function jsonMediaType(content: Readonly<Record<string, { schema?: JsonSchema }>>): { schema?: JsonSchema } | undefined {
  const type = Object.keys(content).find((t) => t === 'application/json' || /^application\/[^;]*\+json/.test(t));
  return type === undefined ? undefined : content[type];
}

/**
 * A copy of `root` a client compiles on its own: every schema the operations share by name (and every one that contains
 * itself) is written once under $defs and referred to there, keywords a draft-07 compiler refuses are dropped.
 */
function withDefs(root: Record<string, unknown>, names: ReadonlyMap<object, string>): Record<string, unknown> {
  const recursive = recursiveSchemas([root], names);
  const defs: Record<string, unknown> = {};
  const defNames = new Map<object, string>();
  const taken = new Set<string>();
  const refTo = (schema: object): { $ref: string } => {
    let name = defNames.get(schema);
    if (name === undefined) {
      name = uniqueName(names.get(schema) ?? 'schema', taken);
      defNames.set(schema, name);
      defs[name] = {}; // claimed before its parts are copied, so that a part that is this schema refers to it
      defs[name] = copy(schema, true);
    }
    return { $ref: `#/$defs/${name}` };
  };
  const copy = (value: unknown, defining = false): unknown => {
    if (Array.isArray(value)) return value.map((v) => copy(v));
    if (!isObject(value)) return value;
    if (!defining && (names.has(value) || recursive.has(value))) return refTo(value);
    const out: Record<string, unknown> = {};
    for (const [keyword, v] of Object.entries(value)) {
      if (DROPPED_KEYWORDS.has(keyword) || keyword.startsWith('x-')) continue;
      // A property may be called anything, x-trace or $id included: the names of a map are data, not keywords.
      out[keyword] = NAMED_SUBSCHEMAS.has(keyword) && isObject(v) ? Object.fromEntries(Object.entries(v).map(([name, s]) => [name, copy(s)])) : copy(v);
    }
    return out;
  };
  const out = copy(root, true) as Record<string, unknown>;
  if (Object.keys(defs).length > 0) out.$defs = defs;
  return out;
}

/** A $defs key that needs no escaping in a JSON pointer or a URI fragment, and is not taken yet. */
function uniqueName(wanted: string, taken: Set<string>): string {
  const base = wanted.replace(/[^A-Za-z0-9_.-]/g, '_') || 'schema';
  let name = base;
  for (let i = 2; taken.has(name); i++) name = `${base}_${i}`;
  taken.add(name);
  return name;
}

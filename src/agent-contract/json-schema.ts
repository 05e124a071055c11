// OpenAPI 3.0 schemas rewritten as the JSON Schema 2020-12 of OpenAPI 3.1 (nullable, boolean exclusive bounds, example), keeping shared schemas shared and recursive ones recursive.

/** A JSON Schema as plain data. Objects may be shared between operations (one component used twice) and may contain themselves. */
export type JsonSchema = { [keyword: string]: unknown } | boolean;

/** Keywords whose value is one schema. */
const SUBSCHEMA = new Set(['additionalProperties', 'items', 'not', 'if', 'then', 'else', 'contains', 'propertyNames', 'unevaluatedItems', 'unevaluatedProperties', 'contentSchema', 'additionalItems']);
/** Keywords whose value is a list of schemas. */
const SUBSCHEMA_LIST = new Set(['allOf', 'anyOf', 'oneOf', 'prefixItems']);
/** Keywords whose value maps names to schemas (the names themselves are data: a property may be called `nullable`). */
const SUBSCHEMA_MAP = new Set(['properties', 'patternProperties', 'dependentSchemas', '$defs', 'definitions']);
/** Keywords of OpenAPI or of JSON Schema 2020-12 that a draft-07 compiler (the official MCP client's) rejects or misreads. */
const DROPPED_KEYWORDS = new Set(['$schema', '$id', '$anchor', '$dynamicAnchor', '$dynamicRef', 'discriminator', 'xml', 'externalDocs']);

/** The JSON media type of an OpenAPI content map (application/json, or a +json type), if it has one. */
export function jsonMediaTypeOf<M>(content: Readonly<Record<string, M>>): M | undefined {
  const type = Object.keys(content).find((t) => t === 'application/json' || /^application\/[^;]*\+json/.test(t));
  return type === undefined ? undefined : content[type];
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Converts an OpenAPI 3.0 Schema Object; 3.1 documents get the same treatment, as they often still write 3.0's keywords
 * (nullable, boolean exclusive bounds), which 2020-12 ignores or refuses and ajv-based clients choke on. `memo` maps each
 * schema already converted to its result: give the same map for every schema of one document, so that a schema used in
 * several places (a component) stays one object, which the document renderer shares by name again, and a schema that
 * contains itself converts to one that does.
 */
export function schema31(schema: unknown, memo: Map<object, JsonSchema>): JsonSchema {
  if (!isObject(schema)) return schema as JsonSchema;
  const known = memo.get(schema);
  if (known !== undefined) return known;
  const out: Record<string, unknown> = {};
  // Registered before its parts are converted, so a part that is this very schema finds it.
  memo.set(schema, out);
  for (const [keyword, value] of Object.entries(schema)) {
    if (SUBSCHEMA.has(keyword) && isObject(value)) out[keyword] = schema31(value, memo);
    else if (SUBSCHEMA_LIST.has(keyword) && Array.isArray(value)) out[keyword] = value.map((s) => schema31(s, memo));
    else if (SUBSCHEMA_MAP.has(keyword) && isObject(value)) out[keyword] = Object.fromEntries(Object.entries(value).map(([name, s]) => [name, schema31(s, memo)]));
    else out[keyword] = value;
  }
  rewriteExclusiveBound(out, 'exclusiveMinimum', 'minimum');
  rewriteExclusiveBound(out, 'exclusiveMaximum', 'maximum');
  rewriteExample(out);
  rewriteNullable(out);
  return out;
}

/** 3.0's `minimum: 0, exclusiveMinimum: true` is 2020-12's `exclusiveMinimum: 0`; `false` said nothing. */
function rewriteExclusiveBound(schema: Record<string, unknown>, exclusive: string, inclusive: string): void {
  const flag = schema[exclusive];
  if (typeof flag !== 'boolean') return;
  delete schema[exclusive];
  if (flag && typeof schema[inclusive] === 'number') {
    schema[exclusive] = schema[inclusive];
    delete schema[inclusive];
  }
}

/** 3.1 deprecates a schema's `example` for JSON Schema's `examples`, a list. */
function rewriteExample(schema: Record<string, unknown>): void {
  if (!('example' in schema)) return;
  if (!('examples' in schema)) schema.examples = [schema.example];
  delete schema.example;
}

/**
 * 3.0's `nullable: true` is "null" among the types. An enum lists null too, as the author meant (3.0.3's letter would
 * keep null out of it). A schema without a type, such as `allOf: [{$ref}]` made nullable (the common way to make a
 * reference nullable in 3.0), becomes "null, or the schema".
 */
function rewriteNullable(schema: Record<string, unknown>): void {
  const nullable = schema.nullable;
  delete schema.nullable;
  if (nullable !== true) return;
  if (Array.isArray(schema.enum) && !schema.enum.includes(null)) schema.enum = [...schema.enum, null];
  if (typeof schema.type === 'string') {
    if (schema.type !== 'null') schema.type = [schema.type, 'null'];
    return;
  }
  if (Array.isArray(schema.type)) {
    if (!schema.type.includes('null')) schema.type = [...schema.type, 'null'];
    return;
  }
  // The object itself must stay the converted schema (others may already point at it): its keywords move inside.
  const rest = { ...schema };
  for (const keyword of Object.keys(schema)) delete schema[keyword];
  schema.anyOf = [rest, { type: 'null' }];
}

/**
 * The objects reachable from `roots` that contain themselves other than through a named one (`named` are written once
 * and referred to by name, which ends a cycle), found in one depth-first walk: an object met again while still being
 * walked is one.
 */
export function recursiveSchemas(roots: Iterable<unknown>, named: ReadonlyMap<object, string>): Set<object> {
  const recursive = new Set<object>();
  const walking = new Set<object>();
  const done = new Set<object>();
  const walk = (value: unknown, root: boolean): void => {
    if (typeof value !== 'object' || value === null || (!root && named.has(value))) return;
    if (walking.has(value)) {
      recursive.add(value);
      return;
    }
    if (done.has(value)) return;
    walking.add(value);
    for (const child of Array.isArray(value) ? value : Object.values(value)) walk(child, false);
    walking.delete(value);
    done.add(value);
  };
  for (const root of roots) walk(root, true);
  return recursive;
}

/**
 * A copy of `root` that compiles on its own (in an MCP client, or in ajv): every schema the operations share by name (and
 * every one that contains itself) is written once under $defs and referred to there, keywords a draft-07 compiler
 * refuses or misreads are dropped.
 */
export function selfContained(root: Record<string, unknown>, names: ReadonlyMap<object, string>): Record<string, unknown> {
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
      out[keyword] = SUBSCHEMA_MAP.has(keyword) && isObject(v) ? Object.fromEntries(Object.entries(v).map(([name, s]) => [name, copy(s)])) : copy(v);
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

// OpenAPI 3.0 schemas rewritten as the JSON Schema 2020-12 of OpenAPI 3.1 (nullable, boolean exclusive bounds, example), keeping shared schemas shared and recursive ones recursive.

/** A JSON Schema as plain data. Objects may be shared between operations (one component used twice) and may contain themselves. */
export type JsonSchema = { [keyword: string]: unknown } | boolean;

/** Keywords whose value is one schema. */
const SUBSCHEMA = new Set(['additionalProperties', 'items', 'not', 'if', 'then', 'else', 'contains', 'propertyNames', 'unevaluatedItems', 'unevaluatedProperties', 'contentSchema', 'additionalItems']);
/** Keywords whose value is a list of schemas. */
const SUBSCHEMA_LIST = new Set(['allOf', 'anyOf', 'oneOf', 'prefixItems']);
/** Keywords whose value maps names to schemas (the names themselves are data: a property may be called `nullable`). */
const SUBSCHEMA_MAP = new Set(['properties', 'patternProperties', 'dependentSchemas', '$defs', 'definitions']);

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

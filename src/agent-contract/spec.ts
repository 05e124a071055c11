// Reads the legacy API's own OpenAPI document (openapi.spec) once per config load: parsed, $refs across files resolved, validated, dereferenced, its schemas made OpenAPI 3.1's (JSON Schema 2020-12).
import path from 'node:path';
// @apidevtools/swagger-parser rather than @scalar/openapi-parser: it validates against the official OpenAPI 3.0 and
// 3.1 schemas with ajv 8 (already ours), resolves $refs across files with json-schema-ref-parser, whose resolvers can
// be limited to files, and is a stable (13.x) library of some 17 million downloads a month, where Scalar's is 0.x and
// brings a larger tree of its own packages. (Its rules beyond the schemas are Swagger 2.0's only: an undeclared path
// parameter is made up for by the operation model.)
import { stat } from 'node:fs/promises';
import type { ErrorObject } from 'ajv';
import { isObject, schema31, type JsonSchema } from './json-schema.ts';
import type { MediaType, Parameter, RequestBody } from './model.ts';

/** The methods an OpenAPI Path Item holds operations under. */
const PATH_ITEM_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;
/** Most schema problems reported for one file: the rest are usually the same mistake seen through another $ref. */
const MAX_PROBLEMS = 10;

/** A response the spec documents (schemas already 3.1's). */
export interface SpecResponse {
  readonly description: string;
  readonly content?: Readonly<Record<string, MediaType>>;
  readonly headers?: Readonly<Record<string, unknown>>;
}

/** One operation of the spec, dereferenced: what the operation model takes from it. */
export interface SpecOperation {
  /** Upper case. */
  readonly method: string;
  /** As the spec writes it, e.g. /orders/{orderId}. */
  readonly path: string;
  readonly operationId?: string;
  readonly summary?: string;
  readonly description?: string;
  /** The operation's own x-agent-hint. */
  readonly hint?: string;
  readonly tags?: readonly string[];
  readonly deprecated?: boolean;
  /** The path item's parameters with the operation's own (which win). */
  readonly parameters: readonly Parameter[];
  readonly requestBody?: RequestBody;
  /** By status key as written: '200', '404', '2XX', 'default'. */
  readonly responses: Readonly<Record<string, SpecResponse>>;
}

export interface LegacySpec {
  /** Absolute path. */
  readonly file: string;
  readonly info: { readonly title: string; readonly version: string; readonly description?: string };
  readonly operations: readonly SpecOperation[];
  /** components.schemas by object (after conversion), so they can be written once and referred to by name again. */
  readonly schemaNames: ReadonlyMap<object, string>;
  /** A name for any other schema reached by $ref (the file's name, or the pointer's last token), by object. */
  readonly schemaHints: ReadonlyMap<object, string>;
}

/** What is wrong with a spec: where in it (a JSON Pointer, or '' for the whole file) and what. */
export interface SpecProblem {
  readonly pointer: string;
  readonly message: string;
}

export type SpecReading = { readonly kind: 'loaded'; readonly spec: LegacySpec } | { readonly kind: 'invalid'; readonly problems: readonly SpecProblem[] };

/**
 * Specs larger than this are refused unread. Large real APIs publish a few MB (GitHub's, the largest common one, is
 * about 12 MB as JSON); parsing and dereferencing cost many times the file's size in memory, at every load.
 */
export const MAX_SPEC_BYTES = 32 * 1024 * 1024;

/** Reads, checks and dereferences the spec at `file`; its problems are returned, never thrown. */
export async function readLegacySpec(file: string): Promise<SpecReading> {
  const absolute = path.resolve(file);
  const size = await stat(absolute).then(
    (s) => s.size,
    () => undefined,
  );
  if (size !== undefined && size > MAX_SPEC_BYTES) {
    return { kind: 'invalid', problems: [{ pointer: '', message: `is ${size} bytes; a spec may be at most ${MAX_SPEC_BYTES}` }] };
  }
  const rawHints = new Map<object, string>();
  let document: Record<string, unknown>;
  try {
    // Loaded only for a config with openapi.spec: it is the largest of the gateway's dependencies to load.
    const { default: SwaggerParser } = await import('@apidevtools/swagger-parser');
    document = (await new SwaggerParser().validate(absolute, {
      // Files only: loading a config must neither depend on another host nor let a $ref steer the gateway to one.
      resolve: { http: false },
      dereference: { onDereference: (ref: string, value: unknown) => recordHint(rawHints, ref, value) },
    })) as unknown as Record<string, unknown>;
  } catch (err) {
    return { kind: 'invalid', problems: problemsOf(err) };
  }
  if (typeof document.openapi !== 'string' || !document.openapi.startsWith('3.')) {
    return { kind: 'invalid', problems: [{ pointer: '', message: 'is a Swagger 2.0 document: convert it to OpenAPI 3.0 or 3.1 first (for example with swagger2openapi)' }] };
  }
  return { kind: 'loaded', spec: specOf(absolute, document, rawHints) };
}

function specOf(file: string, document: Record<string, unknown>, rawHints: ReadonlyMap<object, string>): LegacySpec {
  // Schemas are rewritten once, into one memo, so a schema shared by several operations stays one object.
  const memo = new Map<object, JsonSchema>();
  const convert = (schema: unknown) => schema31(schema, memo);
  const schemaNames = new Map<object, string>();
  const components = isObject(document.components) && isObject(document.components.schemas) ? document.components.schemas : {};
  for (const [name, schema] of Object.entries(components)) {
    const converted = convert(schema);
    if (isObject(converted) && !schemaNames.has(converted)) schemaNames.set(converted, name);
  }
  const operations = operationsOf(document, convert);
  const schemaHints = new Map<object, string>();
  for (const [raw, hint] of rawHints) {
    const converted = memo.get(raw);
    if (isObject(converted)) schemaHints.set(converted, hint);
  }
  const info = isObject(document.info) ? document.info : {};
  return {
    file,
    info: { title: String(info.title ?? ''), version: String(info.version ?? ''), ...(typeof info.description === 'string' ? { description: info.description } : {}) },
    operations,
    schemaNames,
    schemaHints,
  };
}

function operationsOf(document: Record<string, unknown>, convert: (schema: unknown) => JsonSchema): SpecOperation[] {
  const operations: SpecOperation[] = [];
  for (const [template, item] of Object.entries(isObject(document.paths) ? document.paths : {})) {
    if (!isObject(item)) continue;
    const shared = parametersOf(item.parameters, convert);
    for (const method of PATH_ITEM_METHODS) {
      const op = item[method];
      if (!isObject(op)) continue;
      const own = parametersOf(op.parameters, convert);
      const parameters = [...shared.filter((p) => !own.some((o) => o.name === p.name && o.in === p.in)), ...own];
      operations.push({
        method: method.toUpperCase(),
        path: template,
        ...optionalString('operationId', op.operationId),
        ...optionalString('summary', op.summary ?? item.summary),
        ...optionalString('description', op.description ?? item.description),
        ...optionalString('hint', op['x-agent-hint']),
        ...(Array.isArray(op.tags) ? { tags: op.tags.filter((t): t is string => typeof t === 'string') } : {}),
        ...(op.deprecated === true ? { deprecated: true } : {}),
        parameters,
        ...(isObject(op.requestBody) ? { requestBody: requestBodyOf(op.requestBody, convert) } : {}),
        responses: Object.fromEntries(Object.entries(isObject(op.responses) ? op.responses : {}).filter(([, r]) => isObject(r)).map(([status, r]) => [status, responseOf(r as Record<string, unknown>, convert)])),
      });
    }
  }
  return operations;
}

function optionalString<K extends string>(key: K, value: unknown): { [k in K]?: string } {
  return typeof value === 'string' && value !== '' ? ({ [key]: value } as { [k in K]: string }) : {};
}

function parametersOf(list: unknown, convert: (schema: unknown) => JsonSchema): Parameter[] {
  if (!Array.isArray(list)) return [];
  return list.filter(isObject).map((p) => {
    const { schema, content, ...rest } = p;
    return {
      ...(rest as unknown as Parameter),
      ...(schema !== undefined ? { schema: convert(schema) } : {}),
      ...(isObject(content) ? { content: contentOf(content, convert) } : {}),
    };
  });
}

function requestBodyOf(body: Record<string, unknown>, convert: (schema: unknown) => JsonSchema): RequestBody {
  return {
    ...(typeof body.required === 'boolean' ? { required: body.required } : {}),
    ...optionalString('description', body.description),
    content: isObject(body.content) ? contentOf(body.content, convert) : {},
  };
}

function responseOf(response: Record<string, unknown>, convert: (schema: unknown) => JsonSchema): SpecResponse {
  const headers = isObject(response.headers)
    ? Object.fromEntries(
        Object.entries(response.headers)
          .filter(([, h]) => isObject(h))
          .map(([name, h]) => {
            const { schema, ...rest } = h as Record<string, unknown>;
            return [name, schema === undefined ? rest : { ...rest, schema: convert(schema) }];
          }),
      )
    : undefined;
  return {
    description: typeof response.description === 'string' ? response.description : '',
    ...(isObject(response.content) ? { content: contentOf(response.content, convert) } : {}),
    ...(headers && Object.keys(headers).length > 0 ? { headers } : {}),
  };
}

function contentOf(content: Record<string, unknown>, convert: (schema: unknown) => JsonSchema): Record<string, MediaType> {
  return Object.fromEntries(
    Object.entries(content)
      .filter(([, m]) => isObject(m))
      .map(([type, m]) => {
        const { schema, ...rest } = m as Record<string, unknown>;
        return [type, schema === undefined ? rest : { ...rest, schema: convert(schema) }];
      }),
  );
}

/** A name for what a $ref points at, kept for the first reference that names one. */
function recordHint(hints: Map<object, string>, ref: string, value: unknown): void {
  if (!isObject(value) || hints.has(value)) return;
  const hint = hintOf(ref);
  if (hint !== undefined) hints.set(value, hint);
}

/** What a $ref names: its pointer's last token (#/components/schemas/Order, order.yaml#/NewOrder), else its file's name; `#` names nothing. */
function hintOf(ref: string): string | undefined {
  const hash = ref.indexOf('#');
  const token = hash === -1 ? '' : (ref.slice(hash + 1).split('/').pop() ?? '');
  if (token !== '') return token.replace(/~1/g, '/').replace(/~0/g, '~');
  const file = path.basename(hash === -1 ? ref : ref.slice(0, hash)).replace(/\.(ya?ml|json)$/i, '');
  return file === '' ? undefined : file;
}

/** The parser's error as problems: each schema violation at its pointer (the most specific ones), or its one message. */
function problemsOf(err: unknown): SpecProblem[] {
  const details = (err as { details?: unknown }).details;
  if (Array.isArray(details) && details.length > 0) return schemaProblems(details as ErrorObject[]);
  const message = err instanceof Error ? err.message : String(err);
  // The first line says it; a YAML error goes on with a picture of the lines around it.
  return [{ pointer: '', message: message.trim().split('\n')[0]!.trim() }];
}

/**
 * A schema violation is reported once per alternative the OpenAPI schema offers (a schema, or a $ref), and again at
 * every parent; only the deepest ones say what is wrong.
 */
function schemaProblems(errors: readonly ErrorObject[]): SpecProblem[] {
  const telling = errors.filter((e) => e.keyword !== 'oneOf' && e.keyword !== 'anyOf' && !(e.keyword === 'required' && e.params.missingProperty === '$ref'));
  const deepest = telling.filter((e) => !telling.some((other) => other.instancePath.startsWith(`${e.instancePath}/`)));
  const seen = new Set<string>();
  const problems: SpecProblem[] = [];
  for (const e of deepest.length > 0 ? deepest : errors) {
    const problem = { pointer: e.instancePath, message: `${e.message ?? 'is invalid'}${detailOf(e)}` };
    const id = `${problem.pointer}\u0000${problem.message}`;
    if (seen.has(id)) continue;
    seen.add(id);
    problems.push(problem);
  }
  if (problems.length <= MAX_PROBLEMS) return problems;
  return [...problems.slice(0, MAX_PROBLEMS), { pointer: '', message: `and ${problems.length - MAX_PROBLEMS} more problems against the OpenAPI schema` }];
}

function detailOf(e: ErrorObject): string {
  if (e.keyword === 'additionalProperties') return `: '${String(e.params.additionalProperty)}'`;
  if (e.keyword === 'enum') return `: ${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
  return '';
}

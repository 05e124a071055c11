// silent_failure.response_schema: from_openapi — the 2xx JSON schema openapi.spec describes for the operation a
// request is, at the status the upstream answered, compiled once per config load.
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import type { Config } from '../config/schema.ts';
import { compilePathTemplate, matchesTemplate, type PathTemplate } from '../routing/router.ts';
import { jsonMediaTypeOf, selfContained, isObject } from './json-schema.ts';
import { servingRoutes, specPathTemplate, SUCCESS_STATUS } from './match.ts';
import type { LegacySpec, SpecOperation } from './spec.ts';

/** One operation of the spec a route serves: how to recognise its requests, and its 2xx schemas by status key. */
interface DescribedOperation {
  readonly method: string;
  readonly template: PathTemplate;
  /** Literal segments: a request that fits several templates is the most literal one's (/orders/recent before /orders/{id}). */
  readonly literals: number;
  /** By '200', '201', ..., '2XX'. */
  readonly schemas: ReadonlyMap<string, ValidateFunction>;
}

/** The spec's response schemas of one route's operations. */
export class SpecResponseSchemas {
  private readonly operations: readonly DescribedOperation[];

  constructor(operations: readonly DescribedOperation[]) {
    this.operations = [...operations].sort((a, b) => b.literals - a.literals);
  }

  /** Whether any operation of the route has a 2xx JSON schema: without one, nothing would be checked. */
  get describesAny(): boolean {
    return this.operations.some((op) => op.schemas.size > 0);
  }

  /** The schema of the answer with this status to this request (its matchPath), or undefined when the spec gives none. */
  schemaFor(method: string, matchPath: string, status: number): ValidateFunction | undefined {
    const op = this.operations.find((o) => o.method === method && matchesTemplate(o.template, matchPath));
    return op && (op.schemas.get(String(status)) ?? op.schemas.get('2XX'));
  }
}

/** What one config load compiles for every route that uses from_openapi: which route serves which operation, each schema compiled once. */
export class SpecResponseSchemaCompiler {
  private readonly spec: LegacySpec;
  private readonly caseSensitive: boolean;
  private readonly serving: ReadonlyMap<SpecOperation, { readonly name: string } | undefined>;
  private readonly compiled = new Map<object, ValidateFunction>();
  /**
   * One per load, so that a reload's schemas do not pile up in a shared instance's cache. The spec's schemas are the
   * API's own description of its successes: checked for structure (types, required members, enums,
   * additionalProperties), not for `format`, which specs often get wrong (a date-time that is really
   * '2024-01-01 10:00') and which would turn real successes into errors.
   */
  private readonly ajv = new Ajv2020({ allErrors: true, strict: false, validateFormats: false, logger: false });

  constructor(config: Config, spec: LegacySpec) {
    this.spec = spec;
    this.caseSensitive = config.routing.case_sensitive;
    const routes = config.routes.map((r) => ({
      name: r.name,
      methods: r.match.methods ? new Set<string>(r.match.methods) : undefined,
      template: compilePathTemplate(r.match.path, this.caseSensitive),
    }));
    this.serving = servingRoutes(routes, spec.operations, this.caseSensitive);
  }

  /** The schemas of the operations `route` serves; throws, naming the operation, for a schema ajv cannot compile. */
  forRoute(route: string): SpecResponseSchemas {
    const operations: DescribedOperation[] = [];
    for (const op of this.spec.operations) {
      if (this.serving.get(op)?.name !== route) continue;
      const template = specPathTemplate(op.path, this.caseSensitive);
      if (template === undefined) continue;
      operations.push({ method: op.method, template, literals: template.segments.filter((s) => s.kind === 'literal').length, schemas: this.successSchemas(op) });
    }
    return new SpecResponseSchemas(operations);
  }

  private successSchemas(op: SpecOperation): Map<string, ValidateFunction> {
    const schemas = new Map<string, ValidateFunction>();
    for (const [status, response] of Object.entries(op.responses)) {
      const key = status.toUpperCase();
      if (!SUCCESS_STATUS.test(key) || response.content === undefined) continue;
      const schema = jsonMediaTypeOf(response.content)?.schema;
      if (schema === undefined) continue;
      schemas.set(key, this.compile(schema, `${op.method} ${op.path} ${status}`));
    }
    return schemas;
  }

  private compile(schema: object | boolean, where: string): ValidateFunction {
    if (!isObject(schema)) return this.ajv.compile(schema);
    let validate = this.compiled.get(schema);
    if (validate === undefined) {
      try {
        validate = this.ajv.compile(selfContained(schema, this.spec.schemaNames));
      } catch (err) {
        throw new Error(`${this.spec.file}: the response schema of ${where} cannot be compiled: ${(err as Error).message}`);
      }
      this.compiled.set(schema, validate);
    }
    return validate;
  }
}

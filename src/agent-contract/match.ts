// Which route serves which operation of the spec: matched by method and path template, as the router would route the operation's requests (first route in file order that takes all of them).
import path from 'node:path';
import { HTTP_METHODS } from '../config/schema-helpers.ts';
import type { Config } from '../config/schema.ts';
import { compilePathTemplate, type PathTemplate, type Routable } from '../routing/router.ts';
import { FROM_OPENAPI } from '../policies/silent-failure/schema.ts';
import { jsonMediaTypeOf } from './json-schema.ts';
import type { LegacySpec, SpecOperation } from './spec.ts';

/** A spec's responses key of a success: '200', '201', '2XX'. */
export const SUCCESS_STATUS = /^2(\d\d|XX)$/i;

/** Methods a request through the gateway can have: the pipeline refuses TRACE before any route is matched. */
const ROUTABLE_METHODS: ReadonlySet<string> = new Set(HTTP_METHODS);

/**
 * A spec path as the router reads a route's: `{name}` segments (and segments mixing text and parameters, such as
 * `{name}.{ext}`, which also stand for one segment of any value) as parameters, literals read like a request's path.
 * Undefined for a path no request can take (an empty segment, a literal `*`).
 */
export function specPathTemplate(specPath: string, caseSensitive: boolean): PathTemplate | undefined {
  let parameters = 0;
  const segments = specPath.split('/').map((segment) => (/[{}]/.test(segment) ? `{p${parameters++}}` : segment));
  if (segments.includes('*')) return undefined;
  try {
    return compilePathTemplate(segments.join('/'), caseSensitive);
  } catch {
    return undefined;
  }
}

/** Whether `route` takes every request of an operation (method, path template), as Router.match would. */
export function routeTakes(route: Routable, method: string, operation: PathTemplate): boolean {
  const { methods, template } = route;
  if (methods && !methods.has(method) && !(method === 'HEAD' && methods.has('GET'))) return false;
  if (template.segments.length > operation.segments.length) return false;
  for (let i = 0; i < template.segments.length; i++) {
    const own = template.segments[i]!;
    const theirs = operation.segments[i]!;
    // A literal takes only that literal; a {param} takes any segment, but never an empty one (the root path).
    if (own.kind === 'literal' && (theirs.kind !== 'literal' || theirs.text !== own.text)) return false;
    if (own.kind === 'param' && theirs.kind === 'literal' && theirs.text === '') return false;
  }
  return template.prefix || template.segments.length === operation.segments.length;
}

/** The route serving each operation of the spec (in file order, the first that takes all its requests), or none. */
export function servingRoutes<R extends Routable>(routes: readonly R[], operations: readonly SpecOperation[], caseSensitive: boolean): Map<SpecOperation, R | undefined> {
  const serving = new Map<SpecOperation, R | undefined>();
  for (const operation of operations) {
    const template = ROUTABLE_METHODS.has(operation.method) ? specPathTemplate(operation.path, caseSensitive) : undefined;
    serving.set(operation, template && routes.find((route) => routeTakes(route, operation.method, template)));
  }
  return serving;
}

/**
 * What `agentgate validate` warns of: routes (or methods of a route) the spec describes no operation of, and operations
 * of the spec no route serves. Warnings, not errors: a gateway often fronts only part of an API, and a spec may lag
 * behind the routes; neither stops a request from being served as configured.
 */
export function coverageWarnings(config: Config, spec: LegacySpec): string[] {
  const caseSensitive = config.routing.case_sensitive;
  const routes = config.routes.map((r) => ({
    name: r.name,
    methods: r.match.methods ? new Set<string>(r.match.methods) : undefined,
    template: compilePathTemplate(r.match.path, caseSensitive),
    listed: r.match.methods,
    path: r.match.path,
  }));
  const serving = servingRoutes(routes, spec.operations, caseSensitive);
  const file = path.basename(spec.file);
  const warnings: string[] = [];
  for (const route of routes) {
    const served = spec.operations.filter((op) => serving.get(op) === route).map((op) => op.method);
    if (route.listed === undefined) {
      if (served.length === 0) warnings.push(`route '${route.name}' (${route.path}, any method): ${file} describes no operation it serves`);
      continue;
    }
    for (const method of route.listed) {
      if (!served.includes(method)) warnings.push(`route '${route.name}' (${method} ${route.path}): ${file} describes no such operation`);
    }
  }
  for (const route of config.routes) {
    const settings = route.silent_failure ?? config.defaults.silent_failure;
    if (!settings || settings.response_schema !== FROM_OPENAPI) continue;
    const served = spec.operations.filter((op) => serving.get(op)?.name === route.name);
    // A route the spec does not describe at all is warned of above.
    if (served.length > 0 && !served.some(describesJsonSuccess)) {
      warnings.push(`route '${route.name}': silent_failure.response_schema is ${FROM_OPENAPI}, but ${file} describes no 2xx JSON schema of its operations, so no answer is checked against one`);
    }
  }
  for (const operation of spec.operations) {
    if (serving.get(operation) !== undefined) continue;
    const id = operation.operationId ? ` (${operation.operationId})` : '';
    warnings.push(`${file}: ${operation.method} ${operation.path}${id} is served by no route`);
  }
  return warnings;
}

function describesJsonSuccess(operation: SpecOperation): boolean {
  return Object.entries(operation.responses).some(([status, r]) => SUCCESS_STATUS.test(status) && r.content !== undefined && jsonMediaTypeOf(r.content)?.schema !== undefined);
}

// Builds the operation model once per config load: the routes' operations (from the spec where it describes them, else from the route itself) with what the route's policies enforce on each.
import type { Config, RouteConfig } from '../config/schema.ts';
import type { Policy } from '../policies/contract.ts';
import { IdempotencyPolicy } from '../policies/idempotency/policy.ts';
import { ApprovalPolicy } from '../policies/approval/policy.ts';
import { RouteRateLimiter } from '../policies/rate-limit/policy.ts';
import { SilentFailurePolicy } from '../policies/silent-failure/policy.ts';
import { UpstreamCircuit } from '../policies/circuit-breaker/policy.ts';
import { CredentialHalt } from '../policies/auth-halt/policy.ts';
import type { PathTemplate } from '../routing/router.ts';
import type { ErrorCode } from '../errors/catalog.ts';
import { errorsOf } from './errors.ts';
import { recursiveSchemas } from './json-schema.ts';
import { routeTakes, servingRoutes, specPathTemplate } from './match.ts';
import type { CostRule, Effect, Operation, OperationModel, Parameter, RequestBody, Response } from './model.ts';
import type { LegacySpec, SpecOperation } from './spec.ts';

/** A route as compiled for the request path: what the model needs of it. */
export interface ContractRoute {
  readonly name: string;
  readonly config: RouteConfig;
  /** Upper case; undefined takes every method. */
  readonly methods: ReadonlySet<string> | undefined;
  readonly template: PathTemplate;
  /** The policies that apply to it, compiled. */
  readonly policies: readonly Policy[];
}

/** The operations listed for a route without match.methods (and no spec operation of another method). */
const DEFAULT_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;
const BODY_METHODS: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH']);
const READ_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);
/** MCP's longest tool name. */
const MAX_NAME_LENGTH = 128;

/** One operation before it has its name: the route, the method and the spec operation (if any) it comes from. */
interface Draft {
  readonly route: ContractRoute;
  readonly method: string;
  readonly path: string;
  readonly spec: SpecOperation | undefined;
}

export function buildOperationModel(config: Config, routes: readonly ContractRoute[], spec: LegacySpec | undefined): OperationModel {
  const drafts = draftsOf(config, routes, spec);
  const names = namesOf(drafts);
  const authenticate = config.consumers.authenticate;
  const operations = drafts.map((draft, i) => operationOf(config, draft, names[i]!));
  return {
    operations,
    info: spec && { title: spec.info.title, version: spec.info.version, ...(spec.info.description ? { description: spec.info.description } : {}) },
    authentication: authenticate && { apiKeys: authenticate.api_keys !== undefined, jwt: authenticate.jwt !== undefined, anonymousAllowed: config.consumers.anonymous === 'identify' },
    schemaNames: spec ? schemaNamesOf(operations, spec) : new Map(),
  };
}

/**
 * The spec's component schemas by name, and a name for each other schema that contains itself (a $ref to a file that
 * refers back to itself): written inline, it would never end.
 */
function schemaNamesOf(operations: readonly Operation[], spec: LegacySpec): Map<object, string> {
  const names = new Map(spec.schemaNames);
  const used = new Set(names.values());
  for (const schema of recursiveSchemas([operations, ...spec.schemaNames.keys()], spec.schemaNames)) {
    const name = uniqueName(toolSafe(spec.schemaHints.get(schema) ?? '') ?? 'Schema', used);
    names.set(schema, name);
    used.add(name);
  }
  return names;
}

/**
 * Each route's operations, routes in file order: the spec operations it serves, then one of its own for each method
 * it takes that none of them has, unless an earlier route takes every request of it (those never reach this route).
 * An operation of the route's own at a path the spec (or an earlier route) writes with other parameter names takes
 * that path: OpenAPI holds one path per shape, /orders/{id} and /orders/{rest} are the same.
 */
function draftsOf(config: Config, routes: readonly ContractRoute[], spec: LegacySpec | undefined): Draft[] {
  const caseSensitive = config.routing.case_sensitive;
  const shape = (path: string) => (caseSensitive ? path : path.toLowerCase()).replace(/\{[^}]*\}/g, '{}');
  const serving = spec ? servingRoutes(routes, spec.operations, caseSensitive) : new Map<SpecOperation, ContractRoute | undefined>();
  const served = (spec?.operations ?? []).filter((op) => serving.get(op) !== undefined);
  const pathOfShape = new Map<string, string>();
  for (const op of served) if (!pathOfShape.has(shape(op.path))) pathOfShape.set(shape(op.path), op.path);
  const listed = new Set<string>();
  const drafts: Draft[] = [];
  const add = (draft: Draft) => {
    const key = `${draft.method} ${shape(draft.path)}`;
    if (listed.has(key)) return;
    listed.add(key);
    drafts.push(draft);
  };
  routes.forEach((route, index) => {
    const own = served.filter((op) => serving.get(op) === route);
    for (const op of own) add({ route, method: op.method, path: op.path, spec: op });
    const path = routePath(route.config.match.path);
    if (!pathOfShape.has(shape(path))) pathOfShape.set(shape(path), path);
    const template = specPathTemplate(path, caseSensitive);
    for (const method of route.config.match.methods ?? DEFAULT_METHODS) {
      if (own.some((op) => op.method === method)) continue;
      if (template && routes.slice(0, index).some((earlier) => routeTakes(earlier, method, template))) continue;
      add({ route, method, path: pathOfShape.get(shape(path))!, spec: undefined });
    }
  });
  return drafts;
}

/** The parameter that stands for the rest of a prefix route's path. */
const REST = 'rest';

/** A route's path template as an OpenAPI path: a trailing /* becomes one more parameter. */
function routePath(template: string): string {
  const trimmed = template.length > 1 && template.endsWith('/') ? template.slice(0, -1) : template;
  if (!isPrefix(trimmed)) return trimmed;
  let rest = REST;
  while (trimmed.includes(`{${rest}}`)) rest += '_';
  return `${trimmed.slice(0, -1)}{${rest}}`;
}

function isPrefix(template: string): boolean {
  return template === '/*' || template.endsWith('/*') || template.endsWith('/*/');
}

function operationOf(config: Config, draft: Draft, name: string): Operation {
  const { route, method, spec } = draft;
  const agent = route.config.agent;
  const idempotency = policyOf(route, IdempotencyPolicy);
  const keyed = idempotency?.settings.methods.has(method) ? idempotency : undefined;
  const limiter = policyOf(route, RouteRateLimiter);
  // An approval applies to every method of its route.
  const approval = policyOf(route, ApprovalPolicy);
  const hint = agent?.hint ?? spec?.hint;
  return {
    name,
    route: route.name,
    method,
    path: draft.path,
    described: spec !== undefined,
    ...(spec?.operationId ? { operationId: spec.operationId } : {}),
    summary: agent?.summary ?? spec?.summary ?? `${method} ${draft.path}`,
    ...descriptionOf(draft),
    ...(hint ? { hint } : {}),
    ...(spec?.tags && spec.tags.length > 0 ? { tags: spec.tags } : {}),
    ...(spec?.deprecated ? { deprecated: true } : {}),
    parameters: spec ? withPathParameters(draft.path, spec.parameters.filter((p) => !isIdempotencyKey(p))) : routeParameters(draft.path),
    ...requestBodyOf(draft),
    responses: responsesOf(spec),
    effect: agent?.effect ?? effectOf(method),
    ...(keyed ? { idempotency: { required: keyed.settings.required, ttlSeconds: keyed.settings.ttlMs / 1000 } } : {}),
    ...(approval ? { approval: { by: approval.by, ttlSeconds: approval.ttlMs / 1000 } } : {}),
    cost: limiter ? costOf(limiter) : 0,
    rateLimits: limiter ? limiter.policies.map((p) => p.name) : [],
    scopes: route.config.scopes ?? [],
    errors: errorsOf({
      authenticate: config.consumers.authenticate !== undefined,
      scopes: route.config.scopes !== undefined,
      idempotency: keyed && { required: keyed.settings.required, failClosed: keyed.settings.onStoreError === 'fail_closed' },
      approval: approval && { by: approval.by },
      rateLimit: limiter && { readsBody: limiter.cost.readsBody, failClosed: limiter.policies.some((p) => p.failClosed) },
      silentFailure: policyOf(route, SilentFailurePolicy) !== undefined,
      circuitBreaker: policyOf(route, UpstreamCircuit) !== undefined,
      authHalt: policyOf(route, CredentialHalt) !== undefined,
      overrides: new Map(Object.entries(route.config.upstream_errors ?? {}).map(([status, o]) => [Number(status), o.code as ErrorCode])),
      documented: spec?.responses ?? {},
    }),
  };
}

function policyOf<P extends Policy>(route: ContractRoute, kind: abstract new (...args: never[]) => P): P | undefined {
  for (const policy of route.policies) if (policy instanceof kind) return policy;
  return undefined;
}

function descriptionOf({ route, spec, path }: Draft): { description?: string } {
  if (spec) return spec.description ? { description: spec.description } : {};
  const under = path.slice(0, path.lastIndexOf('/') + 1);
  const prefix = isPrefix(route.config.match.path) ? ` It takes any path under ${under}, which its last parameter stands for (one segment of it here).` : '';
  return { description: `Forwarded to the API by route '${route.name}'; the API's own description of it is not known here.${prefix}` };
}

/** The spec's own Idempotency-Key header, if it has one, gives way to the gateway's (which enforces it). */
function isIdempotencyKey(parameter: Parameter): boolean {
  return parameter.in === 'header' && parameter.name.toLowerCase() === 'idempotency-key';
}

/** An undescribed operation's path parameters: one segment each. */
function routeParameters(path: string): Parameter[] {
  return [...path.matchAll(/\{([^}]+)\}/g)].map(([, name]) => ({ name: name!, in: 'path', required: true, schema: { type: 'string', minLength: 1 } }));
}

/** The spec's parameters, and one for each parameter of the path it forgot to declare (OpenAPI requires them). */
function withPathParameters(path: string, parameters: readonly Parameter[]): Parameter[] {
  const missing = routeParameters(path).filter((p) => !parameters.some((q) => q.in === 'path' && q.name === p.name));
  return [...parameters, ...missing];
}

function requestBodyOf({ method, spec }: Draft): { requestBody?: RequestBody } {
  if (spec) return spec.requestBody ? { requestBody: spec.requestBody } : {};
  if (!BODY_METHODS.has(method)) return {};
  return { requestBody: { required: false, description: 'Forwarded to the API as sent; what it takes is not known here.', content: { 'application/json': { schema: {} }, '*/*': { schema: {} } } } };
}

/** The answers that are no errors: the spec's 1xx-3xx, or, where it describes none, any 2xx as the API gives it. */
function responsesOf(spec: SpecOperation | undefined): Response[] {
  const documented = Object.entries(spec?.responses ?? {})
    .filter(([status]) => /^[123](\d\d|XX)$/i.test(status))
    .map(([status, r]) => ({ status: status.toUpperCase(), description: r.description, ...(r.content ? { content: r.content } : {}), ...(r.headers ? { headers: r.headers } : {}) }));
  return documented.length > 0 ? documented : [{ status: '2XX', description: "The API's answer, passed on as it came" }];
}

function effectOf(method: string): Effect {
  if (READ_METHODS.has(method)) return 'read';
  return method === 'DELETE' ? 'destructive' : 'write';
}

/** A fixed cost as its units; a cost counted from the body or settled from the answer as its rule. */
function costOf(limiter: RouteRateLimiter): number | CostRule {
  const rule = limiter.cost;
  if (!rule.readsBody && !rule.settleHeader) return rule.base;
  return {
    base: rule.base,
    ...(rule.readsBody ? { items: rule.items!, per_item: rule.perItem } : {}),
    ...(rule.settleHeader ? { settle: { header: rule.settleHeader } } : {}),
  };
}

/**
 * Tool names, unique: a route's agent.tool, the spec's operationId or the route's name (with - as _). A route with
 * several operations names each apart: by operationId, or its tool or route name with _<method> (and the path, when
 * one method has several). A name given in the config keeps it; a derived name already taken gets _2, _3, ...
 */
function namesOf(drafts: readonly Draft[]): string[] {
  const perRoute = new Map<ContractRoute, Draft[]>();
  for (const draft of drafts) perRoute.set(draft.route, [...(perRoute.get(draft.route) ?? []), draft]);
  const given = (draft: Draft) => (perRoute.get(draft.route)!.length === 1 ? draft.route.config.agent?.tool : undefined);
  const taken = new Set(drafts.map(given).filter((n) => n !== undefined));
  return drafts.map((draft) => {
    const own = given(draft);
    if (own !== undefined) return own;
    const name = uniqueName(candidateName(draft, perRoute.get(draft.route)!), taken);
    taken.add(name);
    return name;
  });
}

function candidateName(draft: Draft, siblings: readonly Draft[]): string {
  const fromSpec = draft.spec?.operationId && toolSafe(draft.spec.operationId);
  if (fromSpec) return fromSpec;
  const base = draft.route.config.agent?.tool ?? draft.route.name.replace(/-/g, '_');
  if (siblings.length === 1) return base;
  const sameMethod = siblings.filter((s) => s.method === draft.method && !s.spec?.operationId);
  const name = `${base}_${draft.method.toLowerCase()}`;
  return sameMethod.length > 1 ? toolSafe(`${name}_${draft.path}`)! : name;
}

/** `text` within MCP's name rules: other characters as _, at most 128; undefined when nothing is left. */
function toolSafe(text: string): string | undefined {
  const safe = text.replace(/[^A-Za-z0-9_.-]+/g, '_').replace(/^_+|_+$/g, '').slice(0, MAX_NAME_LENGTH);
  return safe === '' ? undefined : safe;
}

function uniqueName(name: string, taken: ReadonlySet<string>): string {
  if (!taken.has(name)) return name;
  for (let n = 2; ; n++) {
    const suffix = `_${n}`;
    const candidate = name.slice(0, MAX_NAME_LENGTH - suffix.length) + suffix;
    if (!taken.has(candidate)) return candidate;
  }
}

// Compiles a route's silent-failure rules at config load and applies them to a 2xx before any of it reaches the agent.
import path from 'node:path';
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import type { ResponseSchemas } from '../../config/schema-helpers.ts';
import { parseSize } from '../../config/units.ts';
import { GatewayError } from '../../errors/problem.ts';
import type { GatewayMetrics } from '../../observability/metrics.ts';
import { awaitFirstByte, decodeBody, readBounded } from '../../proxy/body.ts';
import { CONTINUE, refuse, type Exchange, type Policy, type PolicyFactory, type Verdict } from '../contract.ts';
import { SpecResponseSchemaCompiler, type SpecResponseSchemas } from '../../agent-contract/response-schemas.ts';
import { FROM_OPENAPI, loadResponseSchema, type SilentFailureSettings } from './schema.ts';
import { bodyExpected, checkBody, checkContentType, EMPTY_BODY, needsWholeBody, parsePointer, type SilentFailure, type SilentFailureRules } from './rules.ts';

export const silentFailure: PolicyFactory = {
  name: 'silent-failure',
  compile: ({ route, config, configDir, responseSchemas, spec, timeoutMs, deps, shared }) => {
    const settings = route.silent_failure ?? config.defaults.silent_failure;
    let specSchemas: SpecResponseSchemas | undefined;
    if (settings && settings.response_schema === FROM_OPENAPI) {
      if (spec === undefined) throw new Error(`route '${route.name}': silent_failure.response_schema ${FROM_OPENAPI} needs openapi.spec, loaded with the config`);
      // Which route serves which operation is worked out once per load; each schema is compiled once however many routes share it.
      specSchemas = shared('silent-failure:spec-schemas', () => new SpecResponseSchemaCompiler(config, spec)).forRoute(route.name);
    }
    // Response schemas as config load compiled them (it read each file once), for this very load.
    const check = compileSilentFailure(settings, configDir, responseSchemas, specSchemas);
    return check && new SilentFailurePolicy(route.name, check, timeoutMs, deps);
  },
};

/**
 * Inspects a 2xx before any of it reaches the agent: one that is no success (empty, off-schema, an error field, the
 * wrong media type, cut short) is refused as a loud SILENT_FAILURE; one read whole to check it is delivered from memory.
 */
export class SilentFailurePolicy implements Policy {
  readonly name = 'silent-failure';
  readonly check: SilentFailureCheck;
  private readonly route: string;
  private readonly timeoutMs: number;
  private readonly metrics: GatewayMetrics;
  private readonly logger: Logger;

  constructor(route: string, check: SilentFailureCheck, timeoutMs: number, deps: { metrics: GatewayMetrics; logger: Logger }) {
    this.route = route;
    this.check = check;
    this.timeoutMs = timeoutMs;
    this.metrics = deps.metrics;
    this.logger = deps.logger.child({ policy: 'silent-failure', route });
  }

  /** The check for this answer: the route's, with the spec's schema for this operation and status where it uses from_openapi. */
  private checkFor(ex: Exchange, method: string, status: number): SilentFailureCheck {
    const { specSchemas } = this.check;
    if (specSchemas === undefined) return this.check;
    return { ...this.check, rules: { ...this.check.rules, schema: specSchemas.schemaFor(method, ex.ctx.matchPath, status) } };
  }

  async onResponse(ex: Exchange, response: IncomingMessage): Promise<Verdict> {
    const requestId = ex.ctx.requestId;
    const method = ex.req.method ?? 'GET';
    const inspection = await inspectSuccess(this.checkFor(ex, method, response.statusCode ?? 200), method, response, this.timeoutMs);
    switch (inspection.kind) {
      case 'stream':
        return CONTINUE;
      case 'unchecked':
        this.logger.info({ request_id: requestId }, 'response larger than silent_failure.max_body_bytes: delivered unchecked');
        response.unshift(inspection.prefix);
        return CONTINUE;
      case 'buffered':
        if (inspection.unchecked) this.logger.info({ request_id: requestId, reason: inspection.unchecked }, 'response body cannot be checked: delivered unchecked');
        ex.responseBody = inspection.body;
        return CONTINUE;
      case 'failed': {
        response.destroy();
        ex.ctx.upstreamEndedAt = process.hrtime.bigint();
        const status = response.statusCode ?? 200;
        const { rule, extensions, detail } = inspection.failure;
        this.metrics.silentFailures.inc({ route: this.route, rule });
        this.logger.warn({ request_id: requestId, rule, upstream_status: status }, 'silent failure: the upstream answered success without succeeding');
        // An error field's value is quoted in the detail; the envelope is redacted as a whole when it is written.
        return refuse(new GatewayError('SILENT_FAILURE', detail, { upstreamStatus: status, extensions: { rule, ...extensions } }));
      }
    }
  }
}

export interface SilentFailureCheck {
  readonly rules: SilentFailureRules;
  readonly maxBodyBytes: number;
  /** from_openapi: the schema depends on the operation and the status, so rules.schema is chosen per answer from these. */
  readonly specSchemas?: SpecResponseSchemas;
}

/**
 * `compiled` holds the response schemas config load already compiled, by absolute path (LoadedConfig.responseSchemas);
 * a file not among them (a config built in code, not loaded) is read and compiled here.
 */
export function compileSilentFailure(
  settings: false | SilentFailureSettings | undefined,
  configDir: string,
  compiled: ResponseSchemas = new Map(),
  specSchemas?: SpecResponseSchemas,
): SilentFailureCheck | undefined {
  if (!settings) return undefined;
  const file = settings.response_schema;
  const schemaFile = file === undefined || file === FROM_OPENAPI ? undefined : path.resolve(configDir, file);
  const rules: SilentFailureRules = {
    emptyBody: settings.empty_body,
    schema: schemaFile === undefined ? undefined : (compiled.get(schemaFile) ?? loadResponseSchema(schemaFile)),
    errorFields: settings.error_fields.map((f) =>
      typeof f === 'string' ? { pointer: f, tokens: parsePointer(f) } : { pointer: f.pointer, tokens: parsePointer(f.pointer), equals: f.equals },
    ),
    contentTypes: settings.content_type.map((t) => t.toLowerCase()),
  };
  const fromSpec = specSchemas?.describesAny ? specSchemas : undefined;
  const active = rules.emptyBody || rules.schema !== undefined || fromSpec !== undefined || rules.errorFields.length > 0 || rules.contentTypes.length > 0;
  return active ? { rules, maxBodyBytes: parseSize(settings.max_body_bytes), ...(fromSpec && { specSchemas: fromSpec }) } : undefined;
}

export type Inspection =
  /** Deliver as a stream (the stream may be paused with its first bytes put back). */
  | { kind: 'stream' }
  /** The whole body was read and passed (or, with `unchecked`, could not be checked, for that reason); deliver it from memory. */
  | { kind: 'buffered'; body: Buffer; unchecked?: string }
  /** Too large to check: deliver `prefix`, then the rest of the stream, unchecked. */
  | { kind: 'unchecked'; prefix: Buffer }
  | { kind: 'failed'; failure: SilentFailure };

/**
 * Decides whether a 2xx is the success it claims. Only the rules that need the body read it: empty_body waits for the
 * first byte alone, content_type looks at the head, and only schema and error-field rules buffer (bounded).
 */
export async function inspectSuccess(check: SilentFailureCheck, method: string, upstream: IncomingMessage, idleTimeoutMs: number): Promise<Inspection> {
  const status = upstream.statusCode ?? 200;
  if (!bodyExpected(method, status)) return { kind: 'stream' };
  const { rules } = check;
  const wrongType = checkContentType(rules, upstream.headers['content-type']);
  if (wrongType) return { kind: 'failed', failure: wrongType };

  if (needsWholeBody(rules)) {
    const read = await readBounded(upstream, check.maxBodyBytes, idleTimeoutMs);
    if (read.kind === 'truncated' || read.kind === 'timeout') return { kind: 'failed', failure: truncated(read.kind) };
    if (read.kind === 'too_large') return { kind: 'unchecked', prefix: read.prefix };
    // A compressed body is checked as its media type sees it; the agent still gets the bytes the upstream sent.
    const decoded = decodeBody(read.body, upstream.headers['content-encoding'], check.maxBodyBytes);
    if (decoded.kind === 'too_large') return { kind: 'buffered', body: read.body, unchecked: 'decoded larger than silent_failure.max_body_bytes' };
    if (decoded.kind === 'unreadable') return { kind: 'buffered', body: read.body, unchecked: decoded.reason };
    if (decoded.body.length === 0) return rules.emptyBody ? { kind: 'failed', failure: EMPTY_BODY } : { kind: 'buffered', body: read.body };
    const failure = checkBody(rules, decoded.body);
    return failure ? { kind: 'failed', failure } : { kind: 'buffered', body: read.body };
  }
  if (rules.emptyBody) {
    const first = await awaitFirstByte(upstream, idleTimeoutMs);
    if (first === 'empty') return { kind: 'failed', failure: EMPTY_BODY };
    if (first !== 'data') return { kind: 'failed', failure: truncated(first) };
  }
  return { kind: 'stream' };
}

function truncated(how: 'truncated' | 'timeout'): SilentFailure {
  return {
    rule: 'truncated',
    detail:
      how === 'timeout'
        ? 'The upstream answered success, then went silent before its body was complete.'
        : 'The upstream answered success, then closed the connection before its body was complete (fewer bytes than it announced).',
  };
}

// Silent-failure rules: a 2xx that is empty, fails the route's JSON Schema, carries an error field, or has the wrong media type.
import type { ValidateFunction } from 'ajv';

export type SilentFailureRule = 'empty_body' | 'response_schema' | 'error_fields' | 'content_type' | 'truncated';

export interface SilentFailure {
  readonly rule: SilentFailureRule;
  readonly detail: string;
  /** Extra envelope members, e.g. the failing schema paths. */
  readonly extensions?: Record<string, unknown>;
}

/** `/errors` fails when present and non-empty; `{pointer: '/ok', equals: false}` fails when the value is exactly that. */
export interface ErrorFieldRule {
  readonly pointer: string;
  readonly tokens: readonly string[];
  readonly equals?: unknown;
}

export interface SilentFailureRules {
  readonly emptyBody: boolean;
  readonly schema: ValidateFunction | undefined;
  readonly errorFields: readonly ErrorFieldRule[];
  /** Accepted media types (lower case, no parameters); empty accepts any. */
  readonly contentTypes: readonly string[];
}

/** Statuses and methods that have no body by definition: an empty one is not a failure there. */
export function bodyExpected(method: string, status: number): boolean {
  return method !== 'HEAD' && status >= 200 && status < 300 && status !== 204 && status !== 205;
}

/** Whether deciding needs the whole body; empty_body and content_type alone decide on the head and first chunk. */
export function needsWholeBody(rules: SilentFailureRules): boolean {
  return rules.schema !== undefined || rules.errorFields.length > 0;
}

export function checkContentType(rules: SilentFailureRules, contentType: string | undefined): SilentFailure | undefined {
  if (rules.contentTypes.length === 0) return undefined;
  const mediaType = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (rules.contentTypes.includes(mediaType)) return undefined;
  return {
    rule: 'content_type',
    detail: `The upstream answered success with ${mediaType ? `content type '${mediaType}'` : 'no content type'}; this route expects ${rules.contentTypes.join(' or ')}.`,
  };
}

export const EMPTY_BODY: SilentFailure = {
  rule: 'empty_body',
  detail: 'The upstream answered success with an empty body: nothing was returned, so nothing can be assumed to have happened.',
};

/** Checks a complete 2xx body against the schema and error-field rules. */
export function checkBody(rules: SilentFailureRules, body: Buffer): SilentFailure | undefined {
  let document: unknown;
  try {
    document = JSON.parse(body.toString('utf8'));
  } catch {
    return { rule: rules.schema ? 'response_schema' : 'error_fields', detail: 'The upstream answered success with a body that is not valid JSON.' };
  }
  for (const field of rules.errorFields) {
    const found = resolvePointer(document, field.tokens);
    if (!found.present) continue;
    const failed = 'equals' in field ? deepEqual(found.value, field.equals) : isNonEmpty(found.value);
    if (failed) {
      return {
        rule: 'error_fields',
        detail:
          'equals' in field
            ? `The upstream answered success, but ${field.pointer} is ${preview(field.equals)}.`
            : `The upstream answered success, but ${field.pointer} reports an error: ${preview(found.value)}.`,
        extensions: { field: field.pointer },
      };
    }
  }
  if (rules.schema && !rules.schema(document)) {
    const errors = (rules.schema.errors ?? []).slice(0, 10).map((e) => ({ path: e.instancePath || '/', message: e.message ?? 'is invalid' }));
    return {
      rule: 'response_schema',
      detail: `The upstream answered success with a body that does not match the route's response schema: ${errors.map((e) => `${e.path} ${e.message}`).join('; ')}.`,
      extensions: { schema_errors: errors },
    };
  }
  return undefined;
}

/** RFC 6901: '/a/b~1c' → ['a', 'b/c']. Throws on a pointer that does not start with '/'. */
export function parsePointer(pointer: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) throw new Error(`JSON Pointer '${pointer}' must start with /`);
  return pointer
    .slice(1)
    .split('/')
    .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function resolvePointer(document: unknown, tokens: readonly string[]): { present: boolean; value?: unknown } {
  let current = document;
  for (const token of tokens) {
    if (Array.isArray(current) && /^(0|[1-9]\d*)$/.test(token) && Number(token) < current.length) current = current[Number(token)];
    else if (current !== null && typeof current === 'object' && !Array.isArray(current) && Object.hasOwn(current, token)) current = (current as Record<string, unknown>)[token];
    else return { present: false };
  }
  return { present: true, value: current };
}

/** null, '', false, [] and {} say "no error"; anything else present at an error pointer is one. */
function isNonEmpty(value: unknown): boolean {
  if (value === null || value === '' || value === false) return false;
  if (Array.isArray(value)) return value.length > 0;
  if (typeof value === 'object') return Object.keys(value as object).length > 0;
  return true;
}

function deepEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Most of an error field's value quoted in a detail. The envelope's serializer redacts the injected secrets and only
 * then clips the detail (src/errors/problem.ts): a clip here, before redaction, could cut an echoed secret into a prefix
 * that no longer reads as one. This bound only keeps a huge value from being copied whole; it lies far beyond the
 * envelope's clip, and redaction still recognizes a secret it cuts off (8 or more of its first characters).
 */
const MAX_PREVIEW_CHARS = 8192;

function preview(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > MAX_PREVIEW_CHARS ? `${text.slice(0, MAX_PREVIEW_CHARS)}...` : text;
}

// What every config section builds its schema and its cross-field checks from; a leaf (it imports no project module), so each policy's schema.ts imports it directly.
import { Type, type TString } from '@sinclair/typebox';
import type { ValidateFunction } from 'ajv';

// ---- Building a schema -------------------------------------------------------------------------------------------

const DURATION_HELP = 'a duration with a unit: 250ms, 10s, 5m, 24h';
const SIZE_HELP = 'a size with a unit: 512b, 64kb, 1mb';

/** A duration string such as 10s (format `duration`, which config/load.ts registers with ajv). */
export const Duration = (description: string, defaultValue?: string): TString =>
  Type.String({ format: 'duration', description: `${description} (${DURATION_HELP})`, ...(defaultValue ? { default: defaultValue } : {}) });

/** A size string such as 1mb (format `size`, which config/load.ts registers with ajv). */
export const Size = (description: string, defaultValue: string): TString =>
  Type.String({ format: 'size', description: `${description} (${SIZE_HELP})`, default: defaultValue });

/** Route, policy and upstream names end up as metric labels and log fields, so they are kept to a safe alphabet. */
export const NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$';

export const Name = (description: string): TString => Type.String({ pattern: NAME_PATTERN, description });

/** An HTTP header name: an RFC 9110 token. */
export const HEADER_NAME_PATTERN = "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$";

/** A JSON Pointer (RFC 6901): empty, or `/`-separated tokens in which `~` only starts `~0` or `~1`. */
export const JSON_POINTER_PATTERN = '^(/([^~]|~[01])*)*$';

export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

/** One HTTP method, as a route's match.methods takes it. */
export const Method = () => Type.Union(HTTP_METHODS.map((m) => Type.Literal(m)));

// ---- Checking across fields --------------------------------------------------------------------------------------

export type KeyPath = (string | number)[];

/** A rule broken: where (config/load.ts adds file, line and column) and what is wrong, in words. */
export interface CheckProblem {
  keyPath: KeyPath;
  message: string;
}

/** Response schema files compiled while the config was checked, by absolute path. */
export type ResponseSchemas = ReadonlyMap<string, ValidateFunction>;

export interface CheckContext {
  /** Folder of the config file: relative paths inside the config are resolved against it. */
  readonly configDir: string;
  /**
   * Where a check puts the response schemas it compiled to check them: config/load.ts hands them to the runtime, so a
   * load reads and compiles each file once.
   */
  readonly responseSchemas: Map<string, ValidateFunction>;
}

/**
 * A rule JSON Schema cannot express (references between sections, rules between fields: Kong's entity_checks). Each
 * policy's schema.ts exports one as `check`, config/checks.ts lists them all. It runs on the whole config as ajv left
 * it (defaults filled in), schema problems or not, so it only looks at the parts that have the right shape.
 */
export type ConfigCheck = (config: Readonly<Record<string, unknown>>, context: CheckContext) => CheckProblem[];

export function isRecord(value: unknown): value is Record<string, any> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Calls `visit` with defaults.<key>, then each route's own <key> (what a route sets or inherits), and its key path. */
export function forEachRouteSetting(config: Readonly<Record<string, unknown>>, key: string, visit: (value: unknown, keyPath: KeyPath) => void): void {
  if (isRecord(config.defaults)) visit(config.defaults[key], ['defaults', key]);
  (Array.isArray(config.routes) ? config.routes : []).forEach((route: unknown, i) => {
    if (isRecord(route)) visit(route[key], ['routes', i, key]);
  });
}

/** A string in quotes, JSON-escaped so a control character cannot split the message; never shortened, so it can be scrubbed whole. */
export function quote(value: string): string {
  return `'${JSON.stringify(value).slice(1, -1)}'`;
}

/** The known name closest to a misspelt one, if it is close enough to be a likely typo. */
export function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

// The `silent_failure:` config of a route: `false`, or the rules that turn a 2xx that is no success into a loud error.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { falseOr } from '../../config/false-or.ts';
import { forEachRouteSetting, isRecord, JSON_POINTER_PATTERN, Size, type CheckProblem, type ConfigCheck } from '../../config/schema-helpers.ts';

/** response_schema's value that means "the schema openapi.spec describes" instead of a file's. */
export const FROM_OPENAPI = 'from_openapi';

const Pointer = Type.String({ pattern: JSON_POINTER_PATTERN, description: 'a JSON Pointer (RFC 6901), e.g. /errors or /data/0/error' });

export function silentFailureSettingsSchema() {
  return Type.Object(
    {
      empty_body: Type.Boolean({
        default: false,
        description: 'a 2xx (not 204/205, not to HEAD) with no body bytes is a failure; decided on the first chunk, without buffering',
      }),
      response_schema: Type.Optional(
        Type.String({
          minLength: 1,
          description:
            'path of a JSON Schema file (relative to this config file) a 2xx JSON body must match, or from_openapi: the schema openapi.spec describes for the operation and the status answered (checked for structure, not format)',
        }),
      ),
      error_fields: Type.Array(
        Type.Union([
          Pointer,
          Type.Object(
            { pointer: Pointer, equals: Type.Unknown({ description: 'the value that means failure, e.g. false for /ok' }) },
            { additionalProperties: false, required: ['pointer', 'equals'] },
          ),
        ]),
        {
          default: [],
          description: 'JSON Pointers whose non-empty presence in a 2xx JSON body means failure (/errors, /error), or {pointer, equals} for a value that does (/ok equals false)',
        },
      ),
      content_type: Type.Array(Type.String({ pattern: '^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$' }), {
        default: [],
        description: 'media types a 2xx may have, e.g. [application/json]; anything else (an HTML login page) is a failure',
      }),
      max_body_bytes: Size(
        'largest 2xx body buffered to check response_schema and error_fields; a larger one is delivered unchecked (and logged)',
        '1mb',
      ),
    },
    { additionalProperties: false },
  );
}

export type SilentFailureSettings = Static<ReturnType<typeof silentFailureSettingsSchema>>;

export function silentFailureSchema() {
  return falseOr(silentFailureSettingsSchema(), 'false to turn it off, or the rules, e.g. {empty_body: true, error_fields: [/error]}');
}

/** Response schemas are the user's own: lenient about unknown keywords, strict about what they say. */
const responseAjv = new Ajv({ allErrors: true, strict: false });
addFormats.default(responseAjv);

/** Reads and compiles a response JSON Schema file; throws an Error whose message says what is wrong with it. */
export function loadResponseSchema(file: string): ValidateFunction {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read response schema ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let schema: unknown;
  try {
    schema = JSON.parse(text);
  } catch (err) {
    throw new Error(`response schema ${file} is not valid JSON: ${(err as Error).message}`);
  }
  try {
    return responseAjv.compile(schema as object);
  } catch (err) {
    throw new Error(`response schema ${file} is not a valid JSON Schema: ${(err as Error).message}`);
  }
}

/**
 * A response_schema file that cannot be read or is no JSON Schema is a config error, named at its key, not a runtime
 * surprise. Each file is read and compiled once, however many routes name it, and kept in context.responseSchemas
 * for the runtime. from_openapi needs openapi.spec; what the spec describes is judged once it is read (coverage warnings).
 */
export const check: ConfigCheck = (config, { configDir, responseSchemas }) => {
  const problems: CheckProblem[] = [];
  const unusable = new Map<string, string>();
  forEachRouteSetting(config, 'silent_failure', (settings, keyPath) => {
    if (!isRecord(settings) || typeof settings.response_schema !== 'string') return;
    if (settings.response_schema === FROM_OPENAPI) {
      if (!isRecord(config.openapi)) problems.push({ keyPath: [...keyPath, 'response_schema'], message: `${FROM_OPENAPI} takes the schemas of openapi.spec, and there is no openapi.spec` });
      return;
    }
    const file = path.resolve(configDir, settings.response_schema);
    if (!responseSchemas.has(file) && !unusable.has(file)) {
      try {
        responseSchemas.set(file, loadResponseSchema(file));
      } catch (err) {
        unusable.set(file, (err as Error).message);
      }
    }
    const message = unusable.get(file);
    if (message !== undefined) problems.push({ keyPath: [...keyPath, 'response_schema'], message });
  });
  return problems;
};

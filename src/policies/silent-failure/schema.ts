// The `silent_failure:` config of a route: `false`, or the rules that turn a 2xx that is no success into a loud error.
import { Type, type Static, type TString } from '@sinclair/typebox';
import { falseOr } from '../../config/false-or.ts';

const Pointer = Type.String({ pattern: '^(/([^~]|~[01])*)*$', description: 'a JSON Pointer (RFC 6901), e.g. /errors or /data/0/error' });

export function silentFailureSettingsSchema(t: { Size: (description: string, defaultValue: string) => TString }) {
  return Type.Object(
    {
      empty_body: Type.Boolean({
        default: false,
        description: 'a 2xx (not 204/205, not to HEAD) with no body bytes is a failure; decided on the first chunk, without buffering',
      }),
      response_schema: Type.Optional(
        Type.String({ minLength: 1, description: 'path of a JSON Schema file (relative to this config file) a 2xx JSON body must match' }),
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
      max_body_bytes: t.Size(
        'largest 2xx body buffered to check response_schema and error_fields; a larger one is delivered unchecked (and logged)',
        '1mb',
      ),
    },
    { additionalProperties: false },
  );
}

export type SilentFailureSettings = Static<ReturnType<typeof silentFailureSettingsSchema>>;

export function silentFailureSchema(t: { Size: (description: string, defaultValue: string) => TString }) {
  return falseOr(silentFailureSettingsSchema(t), 'false to turn it off, or the rules, e.g. {empty_body: true, error_fields: [/error]}');
}

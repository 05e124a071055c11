// Schema for keys that are either `false` (turned off) or a mapping of settings with defaults, such as `idempotency:`.
import { Type, type TObject, type Static } from '@sinclair/typebox';

/**
 * One schema typed boolean-or-object rather than an anyOf of the two: ajv neither fills in defaults inside an anyOf
 * (strict mode refuses them there) nor reports a typo inside one precisely. Here `properties` apply whenever the value
 * is an object, so defaults and per-key messages work as everywhere else. `true` is refused: which protection a route
 * gets is spelled out, never implied.
 */
export function falseOr<T extends TObject>(settings: T, description: string) {
  return Type.Unsafe<false | Static<T>>({
    type: ['boolean', 'object'],
    properties: settings.properties,
    additionalProperties: false,
    anyOf: [{ type: 'object' }, { const: false }],
    description,
  });
}

// The `auth_halt:` config of an upstream: `false`, or after how many consecutive 401s a credential stops being sent, and for how long.
import { Type, type Static } from '@sinclair/typebox';
import { falseOr } from '../../config/false-or.ts';
import { Duration } from '../../config/schema-helpers.ts';

export function authHaltSettingsSchema() {
  return Type.Object(
    {
      after: Type.Integer({ minimum: 1, default: 5, description: 'consecutive upstream 401s for one credential that halt it' }),
      cooldown: Duration('how long calls with a halted credential are answered by the gateway instead of sent upstream', '1m'),
    },
    { additionalProperties: false },
  );
}

export type AuthHaltSettings = Static<ReturnType<typeof authHaltSettingsSchema>>;

export function authHaltSchema() {
  return falseOr(authHaltSettingsSchema(), 'false to turn it off, or {after, cooldown}');
}

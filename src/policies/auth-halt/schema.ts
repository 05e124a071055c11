// The `auth_halt:` config of an upstream: `false`, or after how many consecutive 401s a credential stops being sent, and for how long.
import { Type, type Static, type TString } from '@sinclair/typebox';
import { falseOr } from '../../config/false-or.ts';

export function authHaltSettingsSchema(t: { Duration: (description: string, defaultValue?: string) => TString }) {
  return Type.Object(
    {
      after: Type.Integer({ minimum: 1, default: 5, description: 'consecutive upstream 401s for one credential that halt it' }),
      cooldown: t.Duration('how long calls with a halted credential are answered by the gateway instead of sent upstream', '1m'),
    },
    { additionalProperties: false },
  );
}

export type AuthHaltSettings = Static<ReturnType<typeof authHaltSettingsSchema>>;

export function authHaltSchema(t: { Duration: (description: string, defaultValue?: string) => TString }) {
  return falseOr(authHaltSettingsSchema(t), 'false to turn it off, or {after, cooldown}');
}

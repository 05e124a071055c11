// routes[].scopes: what an agent must hold to call a route.
import { Type } from '@sinclair/typebox';
import { isRecord, type CheckProblem, type ConfigCheck } from '../../config/schema-helpers.ts';

/** Scopes as OAuth writes them (RFC 6749 §3.3 scope-token), without spaces or quotes. */
export const SCOPE_PATTERN = '^[\\x21\\x23-\\x5B\\x5D-\\x7E]{1,128}$';

export function scopesSchema() {
  return Type.Array(Type.String({ pattern: SCOPE_PATTERN, description: 'a scope the agent must hold' }), {
    minItems: 1,
    uniqueItems: true,
    description: 'scopes the agent must hold, every one, to call this route (403 FORBIDDEN otherwise); needs consumers.authenticate',
  });
}

/** Scopes are held only by verified agents: a route that asks for them on a gateway that verifies no one is a mistake. */
export const check: ConfigCheck = (config) => {
  const problems: CheckProblem[] = [];
  const authenticated = isRecord(config.consumers) && config.consumers.authenticate !== undefined;
  if (authenticated) return problems;
  (Array.isArray(config.routes) ? config.routes : []).forEach((route: unknown, i) => {
    if (isRecord(route) && route.scopes !== undefined) {
      problems.push({ keyPath: ['routes', i, 'scopes'], message: 'scopes need consumers.authenticate: without it no agent is verified, so none holds a scope' });
    }
  });
  return problems;
};

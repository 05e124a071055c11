// The rate-limit config: named budgets under `rate_limits:`, a route's `cost` and `rate_limit`, and their `defaults:` (the one place their defaults are written).
import { Type, type Static } from '@sinclair/typebox';
import {
  closest,
  Duration,
  forEachRouteSetting,
  HEADER_NAME_PATTERN,
  isRecord,
  JSON_POINTER_PATTERN,
  Name,
  NAME_PATTERN,
  quote,
  Size,
  type CheckProblem,
  type ConfigCheck,
  type KeyPath,
} from '../../config/schema-helpers.ts';
import { isDuration, parseDuration } from '../../config/units.ts';

/** Most policies one route may name: each is one more key in the request's single store round trip. */
export const MAX_POLICIES_PER_ROUTE = 8;

/**
 * capacity × per (in ms) must stay below 2^52: budgets are counted exactly in 1/per_ms units, and a bucket may run up
 * one more bucket of debt when an upstream reports a larger actual cost, so 2^53 (exact in doubles, also in Redis' Lua) is never crossed.
 */
export const MAX_CAPACITY_TIMES_PER_MS = 2 ** 52;

export function rateLimitPolicySchema() {
  return Type.Object(
    {
      capacity: Type.Integer({ minimum: 1, description: 'units that may be spent per `per`; each request spends its route\'s cost' }),
      per: Duration('time in which an empty budget refills completely; it refills continuously (capacity/per at a time), not in steps'),
      scope: Type.Union([Type.Literal('consumer'), Type.Literal('route'), Type.Literal('global')], {
        default: 'consumer',
        description:
          "whose budget it is: consumer (one per consumer, across every route naming the policy), route (one per route, shared by all consumers: protects that endpoint of the legacy API) or global (one shared by all consumers and every route naming it)",
      }),
      warn_below: Type.Number({
        minimum: 0,
        maximum: 1,
        default: 0.2,
        description: 'fraction of capacity: while less is left, responses carry X-RateLimit-Warning, and crossing it is counted and logged; 0 turns warnings off',
      }),
      on_store_error: Type.Union([Type.Literal('fail_open'), Type.Literal('fail_closed')], {
        default: 'fail_open',
        description:
          'the store cannot be reached: fail_open (forward unlimited; counted and logged) or fail_closed (503 STORE_UNAVAILABLE). A route naming several policies fails closed if any of them does',
      }),
    },
    { additionalProperties: false, description: 'a budget: capacity units per period, refilled continuously' },
  );
}

export type RateLimitPolicyConfig = Static<ReturnType<typeof rateLimitPolicySchema>>;

export function rateLimitsSchema() {
  return Type.Record(Type.String({ pattern: NAME_PATTERN }), rateLimitPolicySchema(), {
    default: {},
    description: 'named budgets (cost units per period) that routes and defaults.rate_limit refer to',
  });
}

export function costRuleSchema() {
  return Type.Object(
    {
      base: Type.Integer({ minimum: 0, default: 1, description: 'units every request of the route costs' }),
      items: Type.Optional(
        Type.String({
          pattern: JSON_POINTER_PATTERN,
          description: 'JSON Pointer to an array in the JSON request body, e.g. /orders: each item adds per_item units (the body is read, up to max_body)',
        }),
      ),
      per_item: Type.Integer({ minimum: 0, default: 1, description: 'units per item of the `items` array' }),
      max_body: Size('largest request body read to count `items`; a larger one gets 413 PAYLOAD_TOO_LARGE', '1mb'),
      settle: Type.Optional(
        Type.Object(
          {
            header: Type.String({
              pattern: HEADER_NAME_PATTERN,
              description: "response header in which the upstream reports the request's actual cost (a non-negative integer)",
            }),
          },
          {
            additionalProperties: false,
            description: 'settle after the response: the difference between the actual and the charged cost is refunded or charged (possibly into a debt)',
          },
        ),
      ),
    },
    { additionalProperties: false },
  );
}

export type CostRuleConfig = Static<ReturnType<typeof costRuleSchema>>;
export type CostConfig = number | CostRuleConfig;

/**
 * An integer, or the rule. Written as one schema typed integer-or-object rather than an anyOf of the two, because ajv
 * neither fills in defaults inside an anyOf (strict mode refuses them there) nor reports a typo inside one precisely.
 */
export function costSchema(defaultValue?: number) {
  const rule = costRuleSchema();
  return Type.Unsafe<CostConfig>({
    type: ['integer', 'object'],
    minimum: 0,
    properties: rule.properties,
    additionalProperties: false,
    description: 'units a request costs: an integer, or a rule such as {base: 1, items: /orders, per_item: 1}',
    ...(defaultValue === undefined ? {} : { default: defaultValue }),
  });
}

export type RateLimitRef = string | string[] | false;

export function rateLimitRefSchema(defaultValue?: false) {
  const name = () => Name('name of a policy under rate_limits');
  return Type.Unsafe<RateLimitRef>(
    Type.Union([name(), Type.Array(name(), { minItems: 1, maxItems: MAX_POLICIES_PER_ROUTE, uniqueItems: true }), Type.Literal(false)], {
      description: 'a policy name under rate_limits, a list of them (a request must fit all of them), or false for no limit',
      ...(defaultValue === undefined ? {} : { default: defaultValue }),
    }),
  );
}

/** The properties of `defaults:` that belong to rate limiting. */
export function rateLimitDefaultsProperties() {
  return {
    rate_limit: rateLimitRefSchema(false),
    cost: costSchema(1),
  };
}

/** Rate-limit policies named by routes and defaults must exist, and each policy must be countable exactly. */
export const check: ConfigCheck = (config) => {
  const problems: CheckProblem[] = [];
  const policies = isRecord(config.rate_limits) ? config.rate_limits : {};
  const names = Object.keys(policies);
  forEachRouteSetting(config, 'rate_limit', (ref, keyPath) => {
    const refs: [unknown, KeyPath][] = Array.isArray(ref) ? ref.map((r, i) => [r, [...keyPath, i]]) : [[ref, keyPath]];
    for (const [name, at] of refs) {
      if (typeof name !== 'string' || Object.hasOwn(policies, name)) continue;
      const near = closest(name, names);
      problems.push({
        keyPath: at,
        message: `unknown rate-limit policy ${quote(name)}` + (near ? ` (did you mean '${near}'?)` : ` (defined under rate_limits: ${names.join(', ') || 'none'})`),
      });
    }
  });
  for (const [name, policy] of Object.entries(policies)) {
    if (!isRecord(policy) || typeof policy.per !== 'string' || !isDuration(policy.per) || typeof policy.capacity !== 'number') continue;
    const perMs = parseDuration(policy.per);
    if (perMs < 1) problems.push({ keyPath: ['rate_limits', name, 'per'], message: 'must be at least 1ms' });
    else if (policy.capacity * perMs > MAX_CAPACITY_TIMES_PER_MS) {
      problems.push({
        keyPath: ['rate_limits', name, 'capacity'],
        message: `capacity ${policy.capacity} per ${policy.per} is too fine to count exactly (capacity × per in ms must stay below 2^52): use a coarser cost unit`,
      });
    }
  }
  return problems;
};

// The `idempotency:` config of a route: `false`, or its settings with every default (the one place they are written).
import { Type, type Static } from '@sinclair/typebox';
import { falseOr } from '../../config/false-or.ts';
import { Duration, forEachRouteSetting, Method, Size, type CheckProblem, type ConfigCheck } from '../../config/schema-helpers.ts';
import { formatDuration, isDuration, parseDuration } from '../../config/units.ts';

/** The settings object; its Static type is what the policy is compiled from (ajv has filled in every default). */
export function idempotencySettingsSchema() {
  return Type.Object(
    {
      required: Type.Boolean({
        default: false,
        description: 'true: a request of one of `methods` without an Idempotency-Key header gets 400 IDEMPOTENCY_KEY_REQUIRED; false: it is forwarded unprotected',
      }),
      ttl: Duration('how long a finished request is remembered: retries within it get the stored answer (or its refusal)', '24h'),
      methods: Type.Array(Method(), {
        minItems: 1,
        uniqueItems: true,
        default: ['POST', 'PATCH'],
        description: 'methods the Idempotency-Key is honoured on; other methods pass through untouched',
      }),
      lease: Duration(
        'lock lease of a request in flight, renewed while its upstream call is open; a claim whose gateway died is resolved by on_outcome_unknown once it lapses',
        '10s',
      ),
      in_flight: Type.Union([Type.Literal('reject'), Type.Literal('wait')], {
        default: 'reject',
        description: 'a duplicate arriving while the first request is in flight: reject (409 IDEMPOTENCY_IN_PROGRESS with Retry-After) or wait up to in_flight_wait for the first to finish, then replay it',
      }),
      in_flight_wait: Duration('in_flight: wait: longest a duplicate waits before getting 409 IDEMPOTENCY_IN_PROGRESS', '5s'),
      on_outcome_unknown: Type.Union([Type.Literal('block'), Type.Literal('release')], {
        default: 'block',
        description: 'the request reached the upstream but no complete answer came back (timeout, reset, client gone, gateway died): block (retries get 409 IDEMPOTENCY_OUTCOME_UNKNOWN until ttl ends) or release (the key is freed and a retry executes again)',
      }),
      on_5xx: Type.Union([Type.Literal('release'), Type.Literal('store')], {
        default: 'release',
        description: 'an upstream 5xx answer: release (not stored, a retry executes again) or store (replayed like any other answer)',
      }),
      on_store_error: Type.Union([Type.Literal('fail_closed'), Type.Literal('fail_open')], {
        default: 'fail_closed',
        description: 'the store cannot be reached: fail_closed (503 STORE_UNAVAILABLE) or fail_open (forward without protection; counted and logged)',
      }),
      max_body_bytes: Size('largest request body accepted (it is read whole to fingerprint the request); larger ones get 413 PAYLOAD_TOO_LARGE', '1mb'),
      max_response_bytes: Size(
        'largest response body stored for replay; a larger one is still delivered, but retries get 409 IDEMPOTENCY_OUTCOME_UNKNOWN instead of a replay',
        '1mb',
      ),
    },
    { additionalProperties: false },
  );
}

export type IdempotencySettings = Static<ReturnType<typeof idempotencySettingsSchema>>;

/** `false` or the settings. */
export function idempotencySchema() {
  return falseOr(idempotencySettingsSchema(), 'false to turn it off, or a mapping of settings such as {required: true, ttl: 24h}');
}

/** A problem with one idempotency mapping: the key it concerns (inside the mapping) and what is wrong, in words. */
export interface IdempotencySettingsProblem {
  key: keyof IdempotencySettings;
  message: string;
}

/** The shortest lease accepted (see idempotencySettingsProblems). */
export const MIN_LEASE_MS = 100;

/**
 * The rules between the settings of one mapping that the schema cannot express; the policy owns them, as Kong's
 * entity_checks do. Runs on data that may have failed the schema (defaults filled in), so it only looks at
 * well-formed values.
 */
export function idempotencySettingsProblems(settings: unknown): IdempotencySettingsProblem[] {
  if (typeof settings !== 'object' || settings === null || Array.isArray(settings)) return [];
  const { ttl, lease } = settings as Record<string, unknown>;
  if (typeof ttl !== 'string' || typeof lease !== 'string' || !isDuration(ttl) || !isDuration(lease)) return [];
  const problems: IdempotencySettingsProblem[] = [];
  // A record outlives its claim's lease, or a claim whose gateway is still working could vanish, and a retry would
  // run the request a second time. The policy uses ttl as written; it is never stretched behind the operator's back.
  const leaseMs = parseDuration(lease);
  // A lease is renewed every third of it while the request runs; shorter than this, one slow turn of the event loop
  // (or one store round trip) lets it lapse, and a concurrent duplicate takes the key over and runs too.
  if (leaseMs < MIN_LEASE_MS) {
    problems.push({ key: 'lease', message: `${lease} is too short for a claim to be renewed in time; use at least ${formatDuration(MIN_LEASE_MS)}` });
  }
  if (parseDuration(ttl) < 2 * leaseMs) {
    problems.push({
      key: 'ttl',
      message: `${ttl} is shorter than twice the lease (${lease}): a record must outlive its claim's lease; set ttl to at least ${formatDuration(2 * leaseMs)} or shorten lease`,
    });
  }
  return problems;
}

/**
 * Each idempotency mapping obeys the rules above: every route's own and defaults.idempotency (which routes without
 * one take whole), each problem reported at its key.
 */
export const check: ConfigCheck = (config) => {
  const problems: CheckProblem[] = [];
  forEachRouteSetting(config, 'idempotency', (settings, keyPath) => {
    for (const p of idempotencySettingsProblems(settings)) problems.push({ keyPath: [...keyPath, p.key], message: p.message });
  });
  return problems;
};

// The rate-limit response headers: X-RateLimit-*, the IETF draft's RateLimit-Policy / RateLimit structured fields, and X-RateLimit-Warning.
import type { BucketState } from '../../store/store.ts';

/** What the headers need to know of a policy. */
export interface HeaderPolicy {
  readonly name: string;
  readonly capacity: number;
  readonly perMs: number;
  /** Remaining units below this warn (0: never). */
  readonly warnBelowUnits: number;
}

/** One policy's bucket as a request saw it. */
export interface PolicyView {
  readonly policy: HeaderPolicy;
  readonly state: BucketState;
  /** The draft's partition key: a byte sequence (base64, without the colons) hashed from the consumer or pool, never a raw identity. */
  readonly pk: string;
}

/** Every header name this module may set; an upstream's own values of these are replaced on limited routes. */
export const RATE_LIMIT_HEADER_NAMES = [
  'x-ratelimit-limit',
  'x-ratelimit-remaining',
  'x-ratelimit-reset',
  'x-ratelimit-cost',
  'ratelimit-policy',
  'ratelimit',
  'x-ratelimit-warning',
] as const;

const seconds = (ms: number) => Math.ceil(ms / 1000);

/** A wait of -1 (never fits) sorts as the longest. */
const waitOf = (view: PolicyView) => (view.state.waitMs < 0 ? Number.POSITIVE_INFINITY : view.state.waitMs);

/**
 * The views ordered closest to exhaustion first. A refused request: the policies that refused it, longest wait first
 * (that wait is the Retry-After). Otherwise: least remaining as a share of capacity, then the longest time to full.
 */
export function byExhaustion(views: readonly PolicyView[], refused: boolean): PolicyView[] {
  return [...views].sort((a, b) => {
    if (refused && waitOf(a) !== waitOf(b)) return waitOf(b) - waitOf(a);
    const share = a.state.remaining / a.policy.capacity - b.state.remaining / b.policy.capacity;
    return share !== 0 ? share : b.state.resetMs - a.state.resetMs;
  });
}

/**
 * The headers of one response. X-RateLimit-* describe the policy closest to exhaustion; RateLimit-Policy lists every
 * policy in config order (it should stay the same from response to response), RateLimit lists them closest to
 * exhaustion first. `t` is the seconds until the policy is full again; for a policy that refused the request it is
 * the seconds until this request's cost fits, so it never reaches past the Retry-After.
 */
export function rateLimitHeaders(views: readonly PolicyView[], cost: number, now: number, refused: boolean): Record<string, string> {
  const ordered = byExhaustion(views, refused);
  const top = ordered[0]!;
  const t = (view: PolicyView) => seconds(refused && view.state.waitMs > 0 ? view.state.waitMs : view.state.resetMs);
  const headers: Record<string, string> = {
    'x-ratelimit-limit': String(top.policy.capacity),
    'x-ratelimit-remaining': String(top.state.remaining),
    'x-ratelimit-reset': String(seconds(now + top.state.resetMs)),
    'x-ratelimit-cost': String(cost),
    'ratelimit-policy': views.map((v) => `"${v.policy.name}";q=${v.policy.capacity};w=${Math.max(1, seconds(v.policy.perMs))};pk=:${v.pk}:`).join(', '),
    ratelimit: ordered.map((v) => `"${v.policy.name}";r=${v.state.remaining};t=${t(v)};pk=:${v.pk}:`).join(', '),
  };
  const low = ordered.filter((v) => v.state.remaining < v.policy.warnBelowUnits);
  if (low.length > 0) {
    headers['x-ratelimit-warning'] = low.map((v) => `"${v.policy.name}";r=${v.state.remaining};q=${v.policy.capacity};t=${seconds(v.state.resetMs)}`).join(', ');
  }
  return headers;
}

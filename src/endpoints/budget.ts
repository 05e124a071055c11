// GET /_agentgate/budget on the proxy port: the caller's budgets without spending any; ?method=&path= also prices that request and says whether it would pass now.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { GatewayError, storeUnavailable } from '../errors/problem.ts';
import type { Consumer } from '../identity/consumer.ts';
import { policyOf, type Runtime } from '../runtime.ts';
import { RouteRateLimiter } from '../policies/rate-limit/policy.ts';
import { StoreError } from '../store/store.ts';
import { sendJson } from './json.ts';
import { readRequestTarget } from '../routing/request-target.ts';

const METHOD = /^[A-Za-z]{1,16}$/;
const COUNT = /^\d{1,9}$/;

export async function serveBudget(req: IncomingMessage, res: ServerResponse, runtime: Runtime, consumer: Consumer): Promise<void> {
  const url = req.url ?? '/';
  const query = new URL(url, 'http://gateway.invalid').searchParams;
  const probe = parseProbe(query, rawParameter(url, 'path'));
  const body: Record<string, unknown> = {
    consumer: { id: consumer.id, source: consumer.source },
    budgets: await orUnavailable(() => runtime.rateLimits.budgets(consumer)),
  };
  if (probe) {
    // The path is read as a request's would be, so the answer is about the route that request would really take.
    const reading = readRequestTarget(probe.path, runtime.caseSensitivePaths);
    if (reading.kind === 'refuse') throw new GatewayError('INVALID_REQUEST', `path= would be refused: ${reading.detail}`);
    const route = runtime.router.match(probe.method, reading.matchPath);
    if (!route) {
      throw new GatewayError('ROUTE_NOT_FOUND', `No route matches ${probe.method} ${probe.path.slice(0, 256)}, so it has no cost; check the method and path.`);
    }
    const limiter = policyOf(route, RouteRateLimiter);
    const request: Record<string, unknown> = { method: probe.method, path: probe.path, route: route.name };
    if (!limiter) {
      Object.assign(request, { rate_limited: false, cost: 0, allowed: true, retry_after_seconds: null, limited_by: [], exceeds_capacity: false });
    } else {
      const rule = limiter.cost;
      const cost = rule.quote(probe.items);
      Object.assign(request, { rate_limited: true, policies: limiter.policies.map((p) => p.name), cost });
      if (rule.readsBody || rule.settleHeader) {
        request.cost_rule = {
          base: rule.base,
          ...(rule.readsBody ? { items: rule.items, per_item: rule.perItem, items_assumed: probe.items } : {}),
          ...(rule.settleHeader ? { settled_from_response_header: rule.settleHeader } : {}),
        };
      }
      Object.assign(request, await orUnavailable(() => limiter.quote(consumer, cost)));
    }
    body.request = request;
  }
  sendJson(res, 200, JSON.stringify(body));
}

/**
 * A query parameter decoded once by RFC 3986 rules, '+' kept as '+': the path= of a probe must be read exactly as the
 * same path in a request line would be (form decoding would turn /a+b into /a b).
 */
function rawParameter(url: string, name: string): string | null {
  const query = url.indexOf('?');
  if (query === -1) return null;
  for (const pair of url.slice(query + 1).split('&')) {
    const eq = pair.indexOf('=');
    if ((eq === -1 ? pair : pair.slice(0, eq)) !== name) continue;
    try {
      return decodeURIComponent(eq === -1 ? '' : pair.slice(eq + 1));
    } catch {
      throw new GatewayError('INVALID_REQUEST', `${name}= has a malformed percent-escape.`);
    }
  }
  return null;
}

function parseProbe(query: URLSearchParams, path: string | null): { method: string; path: string; items: number } | undefined {
  const method = query.get('method');
  const items = query.get('items');
  if (method === null && path === null) {
    if (items !== null) throw new GatewayError('INVALID_REQUEST', 'items= prices a request: give path= (and method=) too.');
    return undefined;
  }
  if (path === null || !path.startsWith('/')) throw new GatewayError('INVALID_REQUEST', 'Give the request to price as path=/some/path (starting with /) and method=POST (default GET).');
  if (method !== null && !METHOD.test(method)) throw new GatewayError('INVALID_REQUEST', 'method= must be an HTTP method such as GET or POST.');
  if (items !== null && !COUNT.test(items)) throw new GatewayError('INVALID_REQUEST', 'items= must be a non-negative whole number: the items the request body would hold.');
  const cut = path.indexOf('?');
  return { method: (method ?? 'GET').toUpperCase(), path: cut === -1 ? path : path.slice(0, cut), items: items === null ? 0 : Number(items) };
}

async function orUnavailable<T>(read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    if (!(err instanceof StoreError)) throw err;
    throw storeUnavailable('The budgets cannot be read: the state store is unreachable.', err);
  }
}

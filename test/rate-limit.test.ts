// Cost-based rate limiting end to end on the memory store: headers, the 429 that says when to come back, costs, budgets, warnings, metrics, upstream 429s and real clients.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseRateLimit } from 'ratelimit-header-parser';
import { parseList } from 'structured-headers';
import OpenAI from 'openai';
import { configYaml, startTestGateway, type TestGateway } from './helpers/gateway.ts';
import { json, startUpstream, type TestUpstream } from './helpers/upstream.ts';
import { envelopeOf, send, type Reply } from './helpers/http.ts';

let upstream: TestUpstream;
let tg: TestGateway;
/** performance.now() of each upstream arrival, by path. */
const arrivals = new Map<string, number[]>();

before(async () => {
  const note = (path: string) => arrivals.set(path, [...(arrivals.get(path) ?? []), performance.now()]);
  upstream = await startUpstream({
    'POST /v1/chat/completions': (_req, res) => {
      note('/v1/chat/completions');
      json(res, 200, {
        id: 'chatcmpl-1',
        object: 'chat.completion',
        created: 1_800_000_000,
        model: 'legacy-1',
        choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop', logprobs: null }],
      });
    },
    '/metered': (req, res) => json(res, 200, { ok: true }, { 'x-actual-cost': new URL(req.url!, 'http://x').searchParams.get('actual') ?? '' }),
    '/own-headers': (_req, res) => json(res, 200, { ok: true }, { 'x-ratelimit-limit': '99999', 'x-ratelimit-remaining': '99998', ratelimit: '"upstream";r=99998' }),
    '/upstream-429/seconds': (_req, res) => json(res, 429, { message: 'slow down' }, { 'retry-after': '7' }),
    '/upstream-429/date': (_req, res) => json(res, 429, { message: 'slow down' }, { 'retry-after': new Date(Date.now() + 30_000).toUTCString() }),
    '/upstream-429/none': (_req, res) => {
      res.writeHead(429, { 'content-type': 'text/html' });
      res.end('<html><body>Too Many Requests, trace at /srv/app.py</body></html>');
    },
    '*': (req, res) => json(res, 200, { path: req.url }),
  });
  tg = await startTestGateway(
    configYaml(`upstreams:
  api:
    url: ${upstream.url}
rate_limits:
  agents: {capacity: 10, per: 1h}
  tight: {capacity: 10, per: 10s}
  refill: {capacity: 20, per: 2s}
  burst: {capacity: 5, per: 1s}
  daily: {capacity: 3, per: 1d}
  warn: {capacity: 10, per: 1h, warn_below: 0.3}
  bulk: {capacity: 20, per: 1h}
  pool: {capacity: 3, per: 1h, scope: global}
  per-route: {capacity: 2, per: 1h, scope: route}
  exact: {capacity: 20, per: 1h}
  llm: {capacity: 2, per: 2s}
defaults:
  rate_limit: agents
  cost: 1
routes:
  - {name: tight, match: {path: /tight}, upstream: api, rate_limit: tight, cost: 4}
  - {name: huge, match: {path: /huge}, upstream: api, cost: 50}
  - {name: refill, match: {path: /refill}, upstream: api, rate_limit: refill, cost: 20}
  - {name: two-budgets, match: {path: /two}, upstream: api, rate_limit: [burst, daily]}
  - {name: warn, match: {path: /warn}, upstream: api, rate_limit: warn}
  - name: bulk
    match: {methods: [POST], path: /bulk}
    upstream: api
    rate_limit: bulk
    cost: {base: 1, items: /orders, per_item: 2, max_body: 1kb}
  - {name: metered, match: {path: /metered}, upstream: api, rate_limit: bulk, cost: {base: 5, settle: {header: x-actual-cost}}}
  - {name: pooled, match: {path: /pooled}, upstream: api, rate_limit: [agents, pool]}
  - {name: route-pool-a, match: {path: /route-pool/a}, upstream: api, rate_limit: per-route}
  - {name: route-pool-b, match: {path: /route-pool/b}, upstream: api, rate_limit: per-route}
  - {name: exact, match: {path: /exact}, upstream: api, rate_limit: exact, cost: 3}
  - {name: chat, match: {methods: [POST], path: /v1/chat/completions}, upstream: api, rate_limit: llm, cost: 2}
  - {name: free, match: {path: /upstream-429/*}, upstream: api, rate_limit: false}
  - {name: everything-else, match: {path: /*}, upstream: api}
`),
  );
});

after(async () => {
  await tg.close();
  await upstream.close();
});

const as = (agent: string, path: string, options: { method?: string; body?: string; headers?: Record<string, string> } = {}) =>
  send(`${tg.url}${path}`, { method: options.method, body: options.body, headers: { 'x-agent-id': agent, ...options.headers } });
const received = (path: string) => upstream.received.filter((r) => r.url.split('?')[0] === path).length;
const metrics = async () => (await send(`${tg.adminUrl}/metrics`)).text;
const metric = (text: string, line: string) => Number(text.split('\n').find((l) => l.startsWith(`${line} `))?.split(' ')[1] ?? 'NaN');
const budgetOf = async (agent: string, query = '') => (await as(agent, `/_agentgate/budget${query}`)).json();

describe('the budget an agent can plan with', () => {
  test('every answer carries the headers; the 429 says exactly when to come back; refused requests cost nothing', async () => {
    const first = await as('planner', '/tight');
    assert.equal(first.status, 200);
    assert.deepEqual(
      ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-cost'].map((h) => first.headers[h]),
      ['10', '6', '4'],
    );
    const resetAt = Number(first.headers['x-ratelimit-reset']);
    assert.ok(Math.abs(resetAt - (Date.now() / 1000 + 4)) <= 2, `X-RateLimit-Reset ${resetAt} is when the 4 units are back`);
    assert.equal((await as('planner', '/tight')).headers['x-ratelimit-remaining'], '2');

    const refused = await as('planner', '/tight');
    assert.equal(refused.status, 429);
    const body = envelopeOf(refused);
    assert.equal(body.code, 'RATE_LIMITED');
    assert.equal(body.retryable, true);
    assert.equal(body.detail, "Budget 'tight' has 2 of 10 units left; this request costs 4.");
    // 2 units missing at 1 unit per second: 2 seconds (less the milliseconds since), rounded up.
    assert.equal(body.retry_after_seconds, 2);
    assert.equal(refused.headers['retry-after'], '2');
    assert.equal(body.suggestion, 'Wait 2 seconds, then send the same request again.');
    assert.deepEqual(body.violated_policies, ['tight']);
    assert.deepEqual([refused.headers['x-ratelimit-remaining'], refused.headers['x-ratelimit-cost']], ['2', '4']);

    for (let i = 0; i < 5; i++) assert.equal((await as('planner', '/tight')).status, 429);
    assert.equal(received('/tight'), 2, 'refused requests never reach the upstream');
    // Had any refusal been charged, the request would still not fit after the advertised wait.
    await sleep(2_000);
    const again = await as('planner', '/tight');
    assert.equal(again.status, 200, 'after Retry-After seconds the same request fits');
    assert.equal(again.headers['x-ratelimit-remaining'], '0');
  });

  test('the budget refills continuously, within one unit of the policy', async () => {
    const drained = await as('refiller', '/refill');
    const drainedAt = performance.now();
    assert.equal(drained.headers['x-ratelimit-remaining'], '0');
    await sleep(500);
    const { budgets } = await budgetOf('refiller');
    const elapsed = performance.now() - drainedAt;
    const refill = budgets.find((b: { policy: string }) => b.policy === 'refill');
    // 20 units per 2 s is 10 per second.
    const expected = (elapsed * 10) / 1000;
    assert.ok(Math.abs(refill.remaining - expected) <= 1, `remaining ${refill.remaining}, expected about ${expected.toFixed(2)}`);
  });

  test('a request costing more than the whole budget: 422 COST_EXCEEDS_BUDGET, not retryable, split the work', async () => {
    const reply = await as('big-spender', '/huge');
    const body = envelopeOf(reply);
    // 422, not 429: got, ky, axios-retry and urllib3 retry every 429 (and 408, 413, 5xx) by its status.
    assert.deepEqual([reply.status, body.code, body.retryable, body.retry_after_seconds], [422, 'COST_EXCEEDS_BUDGET', false, null]);
    assert.equal(reply.headers['x-should-retry'], 'false');
    assert.equal(reply.headers['retry-after'], undefined);
    assert.match(body.detail, /costs 50 units, more than budget 'agents' holds \(10 per 1h\)/);
    assert.match(body.suggestion, /[Ss]plit the work/);
    assert.equal(reply.headers['x-ratelimit-remaining'], '10', 'nothing was charged');
    assert.equal(received('/huge'), 0);
  });

  test('several policies: an exhausted daily budget blocks even with burst room, and the headers say so', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await as('multi', '/two')).status, 200);
    const refused = await as('multi', '/two');
    const body = envelopeOf(refused);
    assert.equal(body.code, 'RATE_LIMITED');
    assert.equal(body.detail, "Budget 'daily' has 0 of 3 units left; this request costs 1.");
    assert.deepEqual(body.violated_policies, ['daily']);
    // One unit of a 3-per-day budget comes back every 8 hours.
    assert.ok(body.retry_after_seconds > 28_700 && body.retry_after_seconds <= 28_800, String(body.retry_after_seconds));
    assert.deepEqual([refused.headers['x-ratelimit-limit'], refused.headers['x-ratelimit-remaining']], ['3', '0']);
    const limits = parseList(String(refused.headers.ratelimit));
    assert.deepEqual(limits.map(([name]) => name), ['daily', 'burst']);
    assert.ok(Number((limits[1] as [string, Map<string, unknown>])[1].get('r')) >= 2, 'burst still had room');
    assert.deepEqual(parseList(String(refused.headers['ratelimit-policy'])).map(([name]) => name), ['burst', 'daily']);
  });

  test('the headers parse with ratelimit-header-parser and structured-headers (RFC 9651) into what was meant', async () => {
    const reply = await as('parsed-agent', '/anything');
    assert.equal(reply.status, 200);
    // ratelimit-header-parser 0.1 reads a `RateLimit` field as draft 7's `limit=, remaining=, reset=` dictionary, so it
    // is given the X-RateLimit-* set, which it reads as a "reset" in Unix seconds.
    const xHeaders = Object.fromEntries(Object.entries(reply.headers).filter(([name]) => name.startsWith('x-ratelimit-'))) as Record<string, string>;
    const parsed = parseRateLimit(xHeaders);
    assert.ok(parsed);
    assert.deepEqual([parsed.limit, parsed.remaining, parsed.used], [10, 9, 1]);
    assert.equal(parsed.reset!.getTime(), Number(reply.headers['x-ratelimit-reset']) * 1000);
    assert.ok(Math.abs(parsed.reset!.getTime() - (Date.now() + 360_000)) < 2_000, 'one unit of 10 per hour is back in 6 minutes');

    const [policy] = parseList(String(reply.headers['ratelimit-policy']));
    const [limit] = parseList(String(reply.headers.ratelimit));
    assert.equal(policy![0], 'agents');
    const policyParams = (policy as [string, Map<string, unknown>])[1];
    assert.deepEqual([policyParams.get('q'), policyParams.get('w')], [10, 3600]);
    const limitParams = (limit as [string, Map<string, unknown>])[1];
    assert.deepEqual([limit![0], limitParams.get('r'), limitParams.get('t')], ['agents', 9, 360]);
    const pk = Buffer.from(limitParams.get('pk') as ArrayBuffer);
    assert.equal(pk.length, 12, 'pk is a byte sequence: a hash of the consumer');
    assert.deepEqual(Buffer.from(policyParams.get('pk') as ArrayBuffer), pk);
    assert.ok(!pk.toString('latin1').includes('parsed-agent') && !String(reply.headers.ratelimit).includes('parsed-agent'), 'never the raw identity');
    const other = await as('another-agent', '/anything');
    const otherPk = Buffer.from((parseList(String(other.headers.ratelimit))[0] as [string, Map<string, unknown>])[1].get('pk') as ArrayBuffer);
    assert.notDeepEqual(otherPk, pk, 'each consumer is its own partition');
  });

  test("on a limited route the gateway's budget headers replace the upstream's own", async () => {
    const reply = await as('shadowed', '/own-headers');
    assert.deepEqual([reply.headers['x-ratelimit-limit'], reply.headers['x-ratelimit-remaining']], ['10', '9']);
    assert.match(String(reply.headers.ratelimit), /^"agents";r=9;/);
  });
});

describe('costs', () => {
  test('counted from the JSON body (base + per item), with the body forwarded intact; bad or oversized bodies get a clear envelope', async () => {
    const body = JSON.stringify({ orders: [{ sku: 'a' }, { sku: 'b' }, { sku: 'c' }] });
    const ok = await as('bulk-agent', '/bulk', { method: 'POST', body, headers: { 'content-type': 'application/json' } });
    assert.equal(ok.status, 200);
    assert.deepEqual([ok.headers['x-ratelimit-cost'], ok.headers['x-ratelimit-remaining']], ['7', '13']);
    assert.equal(upstream.received.at(-1)!.body.toString(), body);

    const notJson = await as('bulk-agent', '/bulk', { method: 'POST', body: 'orders=3' });
    const problem = envelopeOf(notJson);
    assert.deepEqual([notJson.status, problem.code], [400, 'INVALID_REQUEST']);
    assert.match(problem.detail, /Route 'bulk' prices a request by the number of items in '\/orders' of its JSON body, but the body is not valid JSON/);
    assert.deepEqual([notJson.headers['x-ratelimit-remaining'], notJson.headers['x-ratelimit-cost']], ['13', '0'], 'budget headers on the error too');

    const noList = envelopeOf(await as('bulk-agent', '/bulk', { method: 'POST', body: '{"orders": {"sku": "a"}}' }));
    assert.match(noList.detail, /'\/orders' is an object, not a list/);

    const tooLarge = await as('bulk-agent', '/bulk', { method: 'POST', body: JSON.stringify({ orders: Array.from({ length: 600 }, (_, i) => i) }) });
    assert.deepEqual([tooLarge.status, envelopeOf(tooLarge).code], [413, 'PAYLOAD_TOO_LARGE']);
    assert.equal(received('/bulk'), 1, 'only the priced request reached the upstream');
    assert.equal((await budgetOf('bulk-agent')).budgets.find((b: { policy: string }) => b.policy === 'bulk').remaining, 13, 'refusals cost nothing');
  });

  test('settled after the response from the cost the upstream reports: refunded or charged', async () => {
    const cheaper = await as('metered-agent', '/metered?actual=2');
    assert.deepEqual([cheaper.headers['x-ratelimit-cost'], cheaper.headers['x-ratelimit-remaining']], ['2', '18']);
    const dearer = await as('metered-agent', '/metered?actual=9');
    assert.deepEqual([dearer.headers['x-ratelimit-cost'], dearer.headers['x-ratelimit-remaining']], ['9', '9']);
    const unreported = await as('metered-agent', '/metered?actual=lots');
    assert.deepEqual([unreported.headers['x-ratelimit-cost'], unreported.headers['x-ratelimit-remaining']], ['5', '4'], 'no usable report: the estimate stands');
  });
});

describe('GET /_agentgate/budget', () => {
  test("the caller's budgets without spending any, and the price and verdict of a request it is about to send", async () => {
    await as('budgeter', '/bulk', { method: 'POST', body: '{"orders": [1, 2]}' });
    const first = await budgetOf('budgeter');
    const second = await budgetOf('budgeter');
    assert.deepEqual(second.budgets, first.budgets, 'reading the budget spends nothing');
    const bulk = first.budgets.find((b: { policy: string }) => b.policy === 'bulk');
    assert.equal(bulk.capacity, 20);
    assert.equal(bulk.remaining, 15);
    assert.equal(bulk.per_seconds, 3600);
    assert.ok(bulk.routes.includes('bulk') && bulk.routes.includes('metered'));
    assert.ok(Math.abs(bulk.reset - (Date.now() / 1000 + 900)) <= 2, `reset ${bulk.reset}: 5 units at 20 per hour take 15 minutes`);
    const pool = first.budgets.find((b: { policy: string }) => b.policy === 'pool');
    assert.equal(pool.scope, 'global');
    assert.equal(first.consumer.source, 'header:x-agent-id');

    const quote = await budgetOf('budgeter', '?method=POST&path=/bulk&items=3');
    assert.deepEqual(
      { ...quote.request, cost_rule: undefined },
      { method: 'POST', path: '/bulk', route: 'bulk', rate_limited: true, policies: ['bulk'], cost: 7, allowed: true, retry_after_seconds: null, limited_by: [], exceeds_capacity: false, cost_rule: undefined },
    );
    assert.deepEqual(quote.request.cost_rule, { base: 1, items: '/orders', per_item: 2, items_assumed: 3 });
    const tooMuch = (await budgetOf('budgeter', '?method=POST&path=/bulk&items=8')).request;
    assert.deepEqual([tooMuch.cost, tooMuch.allowed, tooMuch.limited_by], [17, false, ['bulk']]);
    assert.ok(tooMuch.retry_after_seconds > 0);
    assert.equal((await budgetOf('budgeter', '?method=GET&path=/huge')).request.exceeds_capacity, true);
    // The dry run and the request itself tell the same story: never (no wait), by the same policies; sent, a 422.
    const never = (await budgetOf('budgeter', '?method=GET&path=/huge')).request;
    assert.deepEqual([never.cost, never.allowed, never.retry_after_seconds, never.limited_by, never.exceeds_capacity], [50, false, null, ['agents'], true]);
    const sent = await as('budgeter', '/huge');
    const refused = envelopeOf(sent);
    assert.deepEqual([sent.status, refused.code, refused.retryable, refused.retry_after_seconds, refused.violated_policies], [422, 'COST_EXCEEDS_BUDGET', false, null, never.limited_by]);
    assert.equal(sent.headers['retry-after'], undefined);
    // A request that only has to wait: the dry run's wait is the Retry-After of the 429 it would get.
    const wait = (await budgetOf('budgeter', '?method=POST&path=/bulk&items=8')).request;
    const limited = await as('budgeter', '/bulk', { method: 'POST', body: JSON.stringify({ orders: Array.from({ length: 8 }, (_, i) => i) }) });
    assert.deepEqual([limited.status, envelopeOf(limited).code, envelopeOf(limited).violated_policies], [429, 'RATE_LIMITED', wait.limited_by]);
    assert.ok(Math.abs(Number(limited.headers['retry-after']) - wait.retry_after_seconds) <= 1, `${String(limited.headers['retry-after'])} vs ${wait.retry_after_seconds}`);
    assert.equal((await budgetOf('budgeter', '?path=/upstream-429/x')).request.rate_limited, false);
    assert.equal((await budgetOf('budgeter')).budgets.find((b: { policy: string }) => b.policy === 'bulk').remaining, 15, 'quotes spend nothing');

    const unknown = await as('budgeter', '/_agentgate/budget?method=POST&path=/nowhere');
    assert.equal(unknown.status, 200, 'the catch-all route takes it');
    const bad = await as('budgeter', '/_agentgate/budget?method=POST');
    assert.equal(envelopeOf(bad).code, 'INVALID_REQUEST');
    assert.equal((await as('budgeter', '/_agentgate/budget', { method: 'POST' })).status, 405);
  });
});

describe('warnings before exhaustion', () => {
  test('X-RateLimit-Warning below warn_below; the crossing is counted and logged once', async () => {
    const seen: Reply[] = [];
    for (let i = 0; i < 9; i++) seen.push(await as('warned', '/warn'));
    // 10 units, warn below 30%: from 2 left on.
    assert.deepEqual(seen.map((r) => r.headers['x-ratelimit-warning'] !== undefined), [false, false, false, false, false, false, false, true, true]);
    const [item] = parseList(String(seen[7]!.headers['x-ratelimit-warning']));
    assert.deepEqual([item![0], (item as [string, Map<string, unknown>])[1].get('r'), (item as [string, Map<string, unknown>])[1].get('q')], ['warn', 2, 10]);
    assert.equal(metric(await metrics(), 'agentgate_rate_limit_warnings_total{route="warn",policy="warn"}'), 1);
    const logged = tg.logs.lines.filter((l) => l.msg === 'budget below its warning threshold' && l.rate_limit === 'warn');
    assert.equal(logged.length, 1);
    assert.deepEqual([logged[0]!.remaining, logged[0]!.capacity, logged[0]!.route, logged[0]!.policy], [2, 10, 'warn', 'rate-limit']);
  });
});

describe('pools shared by all consumers', () => {
  test('a global policy protects the upstream across consumers, on top of their own budgets', async () => {
    assert.equal((await as('pool-a', '/pooled')).status, 200);
    assert.equal((await as('pool-b', '/pooled')).status, 200);
    assert.equal((await as('pool-c', '/pooled')).status, 200);
    const refused = await as('pool-d', '/pooled');
    assert.equal(envelopeOf(refused).detail, "Budget 'pool' has 0 of 3 units left; this request costs 1.");
    assert.equal((await budgetOf('pool-d')).budgets.find((b: { policy: string }) => b.policy === 'agents').remaining, 10, 'the refusal charged pool-d nothing');
  });

  test('a route-scoped policy is one pool per route, shared by all consumers', async () => {
    assert.deepEqual([(await as('rp-1', '/route-pool/a')).status, (await as('rp-2', '/route-pool/a')).status, (await as('rp-3', '/route-pool/a')).status], [200, 200, 429]);
    assert.equal((await as('rp-3', '/route-pool/b')).status, 200, 'the other route has its own pool');
    const pools = (await budgetOf('rp-4')).budgets.filter((b: { policy: string }) => b.policy === 'per-route');
    assert.deepEqual(pools.map((b: { routes: string[]; remaining: number }) => [b.routes, b.remaining]), [[['route-pool-a'], 0], [['route-pool-b'], 1]]);
  });
});

describe('exactness', () => {
  test('60 concurrent requests of cost 3 against 20 units: exactly 6 pass, exactly 6 reach the upstream', async () => {
    const replies = await Promise.all(Array.from({ length: 60 }, () => as('stampede', '/exact')));
    const statuses = replies.map((r) => r.status);
    assert.equal(statuses.filter((s) => s === 200).length, 6);
    assert.equal(statuses.filter((s) => s === 429).length, 54);
    assert.equal(received('/exact'), 6);
    assert.equal((await budgetOf('stampede')).budgets.find((b: { policy: string }) => b.policy === 'exact').remaining, 2);
  });
});

describe("the upstream's own 429", () => {
  test('becomes UPSTREAM_RATE_LIMITED with an integer Retry-After from seconds, from a date, or a default', async () => {
    const seconds = await as('u', '/upstream-429/seconds');
    const body = envelopeOf(seconds);
    assert.deepEqual([seconds.status, body.code, body.upstream_status, body.retryable, body.retry_after_seconds], [429, 'UPSTREAM_RATE_LIMITED', 429, true, 7]);
    assert.equal(seconds.headers['retry-after'], '7');
    assert.equal(body.detail, "Upstream 'api' is rate limiting this gateway (429): slow down");
    const dated = envelopeOf(await as('u', '/upstream-429/date'));
    assert.ok(dated.retry_after_seconds >= 28 && dated.retry_after_seconds <= 31, String(dated.retry_after_seconds));
    const none = await as('u', '/upstream-429/none');
    assert.equal(envelopeOf(none).retry_after_seconds, 5);
    assert.ok(!none.text.includes('/srv/app.py'), 'no upstream internals');
    const text = await metrics();
    assert.equal(metric(text, 'agentgate_upstream_errors_total{upstream="api",code="UPSTREAM_RATE_LIMITED"}'), 3);
  });
});

describe('metrics', () => {
  test('decisions per route and policy, and the cost units charged', async () => {
    await as('metrics-agent', '/two');
    const text = await metrics();
    assert.ok(metric(text, 'agentgate_rate_limit_decisions_total{route="tight",policy="tight",decision="allowed"}') >= 3);
    assert.ok(metric(text, 'agentgate_rate_limit_decisions_total{route="tight",policy="tight",decision="limited"}') >= 6);
    assert.ok(metric(text, 'agentgate_rate_limit_cost_units_total{route="tight",policy="tight"}') >= 12);
    assert.ok(metric(text, 'agentgate_rate_limit_decisions_total{route="two-budgets",policy="daily",decision="limited"}') >= 1);
    assert.ok(metric(text, 'agentgate_rate_limit_decisions_total{route="two-budgets",policy="burst",decision="allowed"}') >= 4);
    assert.ok(!/metrics-agent|stampede/.test(text), 'no consumer identities in metrics');
  });
});

describe('the OpenAI SDK pointed at the gateway', () => {
  test("retries a RATE_LIMITED only after the Retry-After the gateway sent, and never a COST_EXCEEDS_BUDGET", async () => {
    const responses: { at: number; status: number; retryAfter: string | null }[] = [];
    const client = new OpenAI({
      apiKey: 'sk-test',
      baseURL: `${tg.url}/v1`,
      maxRetries: 1,
      defaultHeaders: { 'x-agent-id': 'sdk-agent' },
      fetch: async (url, init) => {
        const response = await fetch(url, init);
        responses.push({ at: performance.now(), status: response.status, retryAfter: response.headers.get('retry-after') });
        return response;
      },
    });
    const ask = () => client.chat.completions.create({ model: 'legacy-1', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal((await ask()).choices[0]!.message.content, 'ok');
    // The whole budget (2 units, 1 per second) is spent: the next call is refused, waits, and succeeds on its retry.
    assert.equal((await ask()).choices[0]!.message.content, 'ok');
    assert.deepEqual(responses.map((r) => r.status), [200, 429, 200]);
    const retryAfter = Number(responses[1]!.retryAfter);
    assert.equal(retryAfter, 2);
    const retriedArrival = arrivals.get('/v1/chat/completions')![1]!;
    const gap = retriedArrival - responses[1]!.at;
    assert.ok(gap >= retryAfter * 1000, `the SDK retried ${gap.toFixed(0)} ms after the 429, before its Retry-After of ${retryAfter} s`);

    // X-Should-Retry: false is obeyed: one attempt, no retry.
    const refusals: number[] = [];
    const strict = new OpenAI({
      apiKey: 'sk-test',
      baseURL: `${tg.url}`,
      maxRetries: 2,
      defaultHeaders: { 'x-agent-id': 'sdk-agent-2' },
      fetch: async (url, init) => {
        const response = await fetch(url, init);
        refusals.push(response.status);
        return response;
      },
    });
    await assert.rejects(strict.get('/huge'), (err: InstanceType<typeof OpenAI.APIError>) => err.status === 422);
    assert.deepEqual(refusals, [422]);
  });
});

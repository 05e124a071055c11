// What is measured: every scenario, in run order, and the ratios and targets computed from them.
import type { GatewayProfile } from './configs.ts';

export type Target =
  | { kind: 'upstream' }
  /** gatewayHeaders: the bare proxy also sends the seven headers agentgate adds upstream (see bare-proxy.ts). */
  | { kind: 'bare'; gatewayHeaders?: true }
  | { kind: 'nginx' }
  /** Issue 23: what a user would build instead, a few lines of a web framework and its plugins (test/bench/stacks/). */
  | { kind: 'stack'; stack: 'fastify' | 'express' }
  | {
      kind: 'agentgate';
      profile: GatewayProfile;
      store: 'memory' | 'redis';
      workers?: number;
      /**
       * The memory store's default bounds instead of the room for a million records the bench gives it (configs.ts):
       * the open-loop run, whose RSS target (issue 23) is with the default bounds, and whose rate never fills them.
       */
      defaultStoreBounds?: boolean;
      /** The built CLI to run: this checkout's dist/cli.js unless set (--baseline: another checkout's, the old build). */
      cli?: string;
    };

export interface Scenario {
  /** e.g. D-POST; ratios refer to scenarios by id. */
  id: string;
  title: string;
  group: 'main' | 'issue-4' | 'issue-5';
  target: Target;
  method: 'GET' | 'POST';
  path: string;
  expectedStatus: number;
  /** The gateway's `outcome` every measured request must have (agentgate only). */
  expectedOutcome: 'ok' | 'replayed';
  /** A fixed request body and the headers that go with it, instead of the order (and Idempotency-Key) every other POST sends. */
  body?: string;
  headers?: Record<string, string>;
  /** F: every request carries the same Idempotency-Key, which is used once before the run, so each one is a replay. */
  fixedKey?: string;
}

const ITEM = '/bench/item';
const full = (store: 'memory' | 'redis', workers = 1): Target => ({ kind: 'agentgate', profile: 'full', store, workers });

function both(id: string, title: string, target: Target, group: Scenario['group'] = 'main', postStatus = 201): Scenario[] {
  return [
    { id: `${id}-GET`, title, group, target, method: 'GET', path: ITEM, expectedStatus: 200, expectedOutcome: 'ok' },
    { id: `${id}-POST`, title, group, target, method: 'POST', path: ITEM, expectedStatus: postStatus, expectedOutcome: 'ok' },
  ];
}

export const BLOB_SIZES_KIB = [1, 16, 64] as const;

export const SCENARIOS: Scenario[] = [
  // A first: the upstream is then fresh, so its peak RSS is its own.
  ...both('A', 'upstream directly', { kind: 'upstream' }),
  ...both('B', 'bare http-proxy-3 with keep-alive', { kind: 'bare' }),
  // B doing the one part of agentgate's forwarding that costs node the most: the headers it adds to every upstream request.
  ...both('BH', "bare http-proxy-3 sending agentgate's seven upstream headers", { kind: 'bare', gatewayHeaders: true }),
  ...both('C', 'agentgate, passthrough route (no policies)', { kind: 'agentgate', profile: 'passthrough', store: 'memory' }),
  ...both('D', 'agentgate, every policy, memory store', full('memory')),
  ...both('E', 'agentgate, every policy, Redis store', full('redis')),
  // How E scales with cores (issue 7): the same, as two worker processes (server.workers: 2).
  ...both('E2', 'agentgate, every policy, Redis store, server.workers: 2', full('redis', 2)),
  {
    id: 'F-POST',
    title: 'agentgate, idempotent replay (same key, from the memory store)',
    group: 'main',
    target: full('memory'),
    method: 'POST',
    path: ITEM,
    expectedStatus: 201,
    expectedOutcome: 'replayed',
    fixedKey: 'bench-replayed-key',
  },
  ...both('G', 'nginx reverse proxy (1 worker, upstream keep-alive)', { kind: 'nginx' }),
  // Issue 23: the do-it-yourself stacks a user would pick instead (test/bench/stacks/). Both answer POST with the
  // upstream's 201: fastify has no idempotency, and express-idempotency sees a fresh key on every bench request (a
  // retried key would get 409 forever behind a proxy: see stacks/express.ts).
  ...both('H', 'fastify + @fastify/http-proxy + @fastify/rate-limit', { kind: 'stack', stack: 'fastify' }),
  ...both('X', 'express + http-proxy-middleware + express-rate-limit + express-idempotency', { kind: 'stack', stack: 'express' }),
  // Issue 4 and 5: each compared with a passthrough run made right before it, so slow drift of the machine cancels out.
  { id: 'C2-GET', title: 'agentgate, passthrough route again (baseline of issues 4/5)', group: 'issue-4', target: { kind: 'agentgate', profile: 'passthrough', store: 'memory' }, method: 'GET', path: ITEM, expectedStatus: 200, expectedOutcome: 'ok' },
  { id: 'RLM-GET', title: 'agentgate, passthrough + rate limit, memory store', group: 'issue-4', target: { kind: 'agentgate', profile: 'rate-limit', store: 'memory' }, method: 'GET', path: ITEM, expectedStatus: 200, expectedOutcome: 'ok' },
  { id: 'RLR-GET', title: 'agentgate, passthrough + rate limit, Redis store', group: 'issue-4', target: { kind: 'agentgate', profile: 'rate-limit', store: 'redis' }, method: 'GET', path: ITEM, expectedStatus: 200, expectedOutcome: 'ok' },
  { id: 'AK-GET', title: 'agentgate, passthrough + API key authentication', group: 'issue-4', target: { kind: 'agentgate', profile: 'api-key', store: 'memory' }, method: 'GET', path: ITEM, expectedStatus: 200, expectedOutcome: 'ok' },
  { id: 'JWT-GET', title: 'agentgate, passthrough + JWT authentication (one token, verified once)', group: 'issue-4', target: { kind: 'agentgate', profile: 'jwt', store: 'memory' }, method: 'GET', path: ITEM, expectedStatus: 200, expectedOutcome: 'ok' },
  // Issue 21: GET /bench/item as an MCP tools/call (POST /mcp, stateless: no initialize, no session), which the gateway
  // turns into the same GET over loopback to its own proxy port; compared with the plain GET of C2-GET.
  {
    id: 'MCP-GET',
    title: 'agentgate, the same GET as an MCP tools/call (POST /mcp, stateless)',
    group: 'issue-4',
    target: { kind: 'agentgate', profile: 'mcp', store: 'memory' },
    method: 'POST',
    path: '/mcp',
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'item', arguments: {} } }),
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' },
    expectedStatus: 200,
    // The POST /mcp itself is logged as outcome gateway_endpoint under route _agentgate, which the outcome check leaves
    // out (as it does the gateway's other endpoints); what it sees is the tools/call's loopback GET of route `item`.
    expectedOutcome: 'ok',
  },
  { id: 'EB-GET', title: 'agentgate, passthrough + silent_failure.empty_body only', group: 'issue-5', target: { kind: 'agentgate', profile: 'empty-body', store: 'memory' }, method: 'GET', path: ITEM, expectedStatus: 200, expectedOutcome: 'ok' },
  ...BLOB_SIZES_KIB.flatMap((kib): Scenario[] => [
    { id: `P${kib}-GET`, title: `agentgate, passthrough, ${kib} KiB JSON body`, group: 'issue-5', target: { kind: 'agentgate', profile: 'passthrough', store: 'memory' }, method: 'GET', path: `/bench/blob/${kib}`, expectedStatus: 200, expectedOutcome: 'ok' },
    { id: `S${kib}-GET`, title: `agentgate, response_schema only, ${kib} KiB JSON body`, group: 'issue-5', target: { kind: 'agentgate', profile: 'schema', store: 'memory' }, method: 'GET', path: `/bench/blob/${kib}`, expectedStatus: 200, expectedOutcome: 'ok' },
  ]),
];

export interface TargetSpec {
  name: string;
  /** 'throughput' = requests/s of `of` ÷ requests/s of `over`; 'p99-added' = p99 of `of` − p99 of `over`, in ms. */
  kind: 'throughput' | 'p99-added';
  of: string;
  over: string;
  /** ≥ for throughput ratios, ≤ for added p99. */
  target: number;
  stretch?: boolean;
  /** The issue that set the bar. */
  issue: number;
}

/**
 * The targets of issues 7 and 23. Printed next to the measured values, never asserted: shared machines are noisy.
 * --interleave measures each target's two scenarios as a pair.
 */
export const TARGETS: TargetSpec[] = [
  // Issue 23 keeps C/B at 0.95 (the passthrough route stays at the bare proxy's speed).
  { name: 'C/B GET', kind: 'throughput', of: 'C-GET', over: 'B-GET', target: 0.95, issue: 7 },
  { name: 'C/B POST', kind: 'throughput', of: 'C-POST', over: 'B-POST', target: 0.95, issue: 7 },
  // Issue 23 raises D/B from issue 7's 0.85 to 0.95, on GET and POST.
  { name: 'D/B GET', kind: 'throughput', of: 'D-GET', over: 'B-GET', target: 0.95, issue: 23 },
  { name: 'D/B POST', kind: 'throughput', of: 'D-POST', over: 'B-POST', target: 0.95, issue: 23 },
  // Issue 23 raises E/B POST from issue 7's 0.7 to 0.8 (standalone Redis); it sets no new bar for GET: issue 7's stays.
  { name: 'E/B GET', kind: 'throughput', of: 'E-GET', over: 'B-GET', target: 0.7, issue: 7 },
  { name: 'E/B POST', kind: 'throughput', of: 'E-POST', over: 'B-POST', target: 0.8, issue: 23 },
  { name: 'F/B POST', kind: 'throughput', of: 'F-POST', over: 'B-POST', target: 1.5, issue: 7 },
  // Issue 23: against what users would run instead. Every policy vs the fastify stack on GET (fastify has no
  // idempotency, so its POST does less than D's: D/H POST is printed as context only), and vs the express stack on POST.
  { name: 'D/H GET', kind: 'throughput', of: 'D-GET', over: 'H-GET', target: 1.0, issue: 23 },
  { name: 'D/X POST', kind: 'throughput', of: 'D-POST', over: 'X-POST', target: 3.0, issue: 23 },
  { name: 'p99 D−B GET (ms)', kind: 'p99-added', of: 'D-GET', over: 'B-GET', target: 2, issue: 7 },
  { name: 'p99 D−B POST (ms)', kind: 'p99-added', of: 'D-POST', over: 'B-POST', target: 2, issue: 7 },
  { name: 'D/G GET', kind: 'throughput', of: 'D-GET', over: 'G-GET', target: 0.5, stretch: true, issue: 7 },
  { name: 'D/G POST', kind: 'throughput', of: 'D-POST', over: 'G-POST', target: 0.5, stretch: true, issue: 7 },
];

/** Ratios printed for context, without a target. */
export const CONTEXT_RATIOS: { name: string; of: string; over: string }[] = [
  { name: 'B/A GET', of: 'B-GET', over: 'A-GET' },
  { name: 'B/A POST', of: 'B-POST', over: 'A-POST' },
  { name: 'G/B GET', of: 'G-GET', over: 'B-GET' },
  { name: 'G/B POST', of: 'G-POST', over: 'B-POST' },
  { name: 'C/BH GET (BH: B with the gateway\'s upstream headers)', of: 'C-GET', over: 'BH-GET' },
  { name: 'C/BH POST', of: 'C-POST', over: 'BH-POST' },
  { name: 'D/C GET', of: 'D-GET', over: 'C-GET' },
  { name: 'D/C POST', of: 'D-POST', over: 'C-POST' },
  { name: 'E/D GET', of: 'E-GET', over: 'D-GET' },
  { name: 'E/D POST', of: 'E-POST', over: 'D-POST' },
  { name: 'E2/E GET', of: 'E2-GET', over: 'E-GET' },
  { name: 'E2/E POST', of: 'E2-POST', over: 'E-POST' },
  { name: 'E2/B GET', of: 'E2-GET', over: 'B-GET' },
  { name: 'E2/B POST', of: 'E2-POST', over: 'B-POST' },
  { name: 'H/B GET', of: 'H-GET', over: 'B-GET' },
  { name: 'H/B POST', of: 'H-POST', over: 'B-POST' },
  { name: 'X/B GET', of: 'X-GET', over: 'B-GET' },
  { name: 'X/B POST', of: 'X-POST', over: 'B-POST' },
  { name: 'D/H POST (H: no idempotency)', of: 'D-POST', over: 'H-POST' },
  { name: 'D/X GET', of: 'D-GET', over: 'X-GET' },
];

/**
 * Issue 23's open-loop run (--open-loop): requests sent on a fixed schedule at a realistic rate, latency from each
 * request's scheduled time, to the upstream directly and to agentgate with every policy on, GET then POST (each of
 * agentgate's measured right after the upstream's). The memory store keeps its default bounds, as the RSS target has it.
 */
export const OPEN_LOOP_SCENARIOS: Scenario[] = (['GET', 'POST'] as const).flatMap((method): Scenario[] => {
  const scenario = (id: string, title: string, target: Target): Scenario => ({
    id: `${id}-${method}`,
    title,
    group: 'main',
    target,
    method,
    path: ITEM,
    expectedStatus: method === 'GET' ? 200 : 201,
    expectedOutcome: 'ok',
  });
  return [
    scenario('A', 'upstream directly', { kind: 'upstream' }),
    scenario('B', 'bare http-proxy-3: what any Node proxy adds at this rate, on this machine', { kind: 'bare' }),
    scenario('D', 'agentgate, every policy, memory store (default bounds)', { kind: 'agentgate', profile: 'full', store: 'memory', defaultStoreBounds: true }),
    scenario('E', 'agentgate, every policy, Redis store', full('redis')),
  ];
});

export interface OpenLoopTargetSpec {
  name: string;
  /** 'added-p50'/'added-p99': that quantile of `of` − the same of `over`, ms; 'rss': the peak RSS of `of` while measured, MiB. */
  kind: 'added-p50' | 'added-p99' | 'rss';
  of: string;
  over?: string;
  /** Always an upper bound. */
  target: number;
}

/** Issue 23's targets for the open-loop run (targets 1 and 2), at 1,000 req/s. Printed, never asserted. */
export const OPEN_LOOP_TARGETS: OpenLoopTargetSpec[] = [
  ...(['GET', 'POST'] as const).flatMap((m): OpenLoopTargetSpec[] => [
    { name: `D−A ${m} added p50 (ms)`, kind: 'added-p50', of: `D-${m}`, over: `A-${m}`, target: 0.25 },
    { name: `D−A ${m} added p99 (ms)`, kind: 'added-p99', of: `D-${m}`, over: `A-${m}`, target: 1 },
    { name: `E−A ${m} added p50 (ms)`, kind: 'added-p50', of: `E-${m}`, over: `A-${m}`, target: 0.5 },
    { name: `E−A ${m} added p99 (ms)`, kind: 'added-p99', of: `E-${m}`, over: `A-${m}`, target: 2 },
  ]),
  ...['D-GET', 'D-POST', 'E-GET', 'E-POST'].map((id): OpenLoopTargetSpec => ({ name: `${id} peak RSS (MiB)`, kind: 'rss', of: id, target: 128 })),
];

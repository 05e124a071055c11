// Chaos under load: three gateway replicas (the built CLI) sharing a Redis this run owns, in front of an upstream it
// controls, while agents read and write through them. During the run: the upstream flaps (refuses connections, hangs,
// resets), Redis is SIGKILLed and restarted, the shared config file is rewritten ten times (four of them invalid) or
// reloaded by SIGHUP, and one replica is SIGKILLed. Then the faults stop, every write still being retried is let
// finish, and every completed write is sent once more, which must be a byte-identical replay.
//
// The four figures the issue asks for:
//   crashes     gateway processes that exited without the harness ending them (SIGKILL of the victim, SIGTERM at the
//               end), plus any that did not exit 0 on that final SIGTERM
//   malformed   answers that were not what the contract promises: a non-2xx that is not a valid envelope (see
//               envelope.ts), a 2xx whose body is not the upstream's, or any answer without X-Request-Id
//   duplicates  executions of a write beyond the first, counted by the upstream per Idempotency-Key (each write has
//               its own key, and is retried with it until it gets a final answer)
//   lost        requests to a replica in rotation that got no complete HTTP answer (connection refused or reset,
//               response cut short, or nothing within the client's timeout, which is far above the gateway's own).
//               Requests in flight to the replica at the moment it is SIGKILLed cannot be answered by anyone; they are
//               counted apart (in_flight_at_kill) and, writes, retried on the other replicas like any other failure.
//               The killed replica is taken out of rotation at the moment of the kill, as a load balancer would.
// Redis runs with appendonly yes + appendfsync always, the setup docs/idempotency.md asks for when idempotency records must
// survive a Redis restart (a Redis that comes back empty forgets every key, and a retry then executes again).
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { Agent } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { freePorts, startRedisServer, type RedisServer } from '../helpers/redis-cluster.ts';
import { ChaosClient, exchange, type ClientStats, type Replica, type WriteOp } from './chaos-client.ts';
import { ChaosUpstream, type UpstreamMode } from './chaos-upstream.ts';
import { killOnExit, logProblems, metricSum, ProcessGroup, readText, round, scrapeMetrics, sleep, spawnGateway, writeFileAtomic, type GatewayProcess } from './common.ts';
import { CONTRACT_CODES } from './envelope.ts';

export interface ChaosOptions {
  durationSeconds: number;
  concurrency: number;
  /** How long each upstream fault (refuse, hang, reset) lasts, and the healthy time between two. */
  flapSeconds: number;
  flapGapSeconds: number;
  /** When Redis is SIGKILLed, as fractions of the run, and for how long it stays down. */
  redisRestartsAt: number[];
  redisDownSeconds: number;
  /** When one replica is SIGKILLed, as a fraction of the run (1 or more: never). */
  killAt: number;
  /** How long writes under way at the end may keep retrying once the faults stop. */
  settleSeconds: number;
  /** Longest wait between two attempts of a write (Retry-After is obeyed up to this). */
  retryCapMs: number;
  consumers: number;
  keep?: boolean;
  progress?: (line: string) => void;
}

export interface ChaosResult {
  settings: Record<string, unknown>;
  duration_seconds: number;
  timeline: { t: number; event: string }[];
  crashes: number;
  malformed: number;
  duplicates: number;
  lost: number;
  in_flight_at_kill: number;
  crash_details: { replica: string; code: number | null; signal: string | null; t: number | null; stderr: string }[];
  client: ClientStats;
  writes: {
    total: number;
    created_fresh: number;
    created_replayed: number;
    outcome_unknown: number;
    outcome_unknown_executed: number;
    other_final: Record<string, number>;
    unresolved: number;
    attempts_mean: number;
    attempts_max: number;
  };
  upstream: { executions: number; keys: number; duplicate_keys: { key: string; executions: number }[]; served: Record<string, number> };
  /**
   * Completed writes sent again. not_recorded: their 201 went out while Redis was down, so the record could not be
   * written and a retry finds the claim's lapsed lease: 409 outcome unknown (the documented behaviour, no duplicate).
   */
  verification: { checked: number; identical_replays: number; not_recorded: number; failures: number; examples: string[] };
  reloads: { expected: { success: number; error: number }; replicas: { replica: string; success: number; error: number }[]; final_cost: (string | null)[]; ok: boolean };
  exits: { replica: string; code: number | null; signal: string | null; killed_by_harness: boolean }[];
  log_problems: Record<string, Record<string, number>>;
  log_unexpected_errors: number;
  log_examples: string[];
  ok: boolean;
}

interface ConfigVariant {
  name: string;
  /** 'file': the shared file is rewritten (every replica watches it); 'sighup': unchanged, each replica gets SIGHUP. */
  via: 'file' | 'sighup';
  valid: boolean;
  /** The item route's cost in a valid variant: the last one's must be in force at the end. */
  itemCost?: number;
  yaml?: (base: ConfigParams) => string;
}

interface ConfigParams {
  redisUrl: string;
  upstreamUrl: string;
  itemCost: number;
  timeout: string;
}

function configYaml(p: ConfigParams): string {
  return `version: 1
server: {listen: 127.0.0.1:0, admin_listen: 127.0.0.1:0}
store: {type: redis, url: '${p.redisUrl}', key_prefix: chaos, command_timeout: 500ms}
logging: {level: info}
consumers: {identify: [{header: x-agent-id}]}
upstreams:
  legacy:
    url: '${p.upstreamUrl}'
    timeout: ${p.timeout}
    connect_timeout: 500ms
    circuit_breaker: {failures: 20, window: 2s, open_for: 500ms}
rate_limits:
  agents: {capacity: 1000000, per: 1s}
defaults: {rate_limit: agents, cost: 1}
routes:
  - name: item
    match: {methods: [GET], path: '/chaos/items/{id}'}
    upstream: legacy
    cost: ${p.itemCost}
    silent_failure: {empty_body: true}
  - name: feed
    match: {methods: [GET], path: /chaos/feed}
    upstream: legacy
    rate_limit: false
  - name: order
    match: {methods: [POST], path: /chaos/orders}
    upstream: legacy
    cost: 2
    idempotency: {required: true, ttl: 1h, lease: 2s}
`;
}

/** The ten reloads, in order: six valid (two of them SIGHUP of a valid file), four invalid in different ways. */
const RELOADS: ConfigVariant[] = [
  { name: 'valid: item cost 2', via: 'file', valid: true, itemCost: 2, yaml: (p) => configYaml({ ...p, itemCost: 2 }) },
  { name: 'SIGHUP, file unchanged', via: 'sighup', valid: true },
  { name: 'invalid: YAML syntax error', via: 'file', valid: false, yaml: (p) => `${configYaml({ ...p, itemCost: 9 })}  - name: broken\n    match: {path: [unclosed\n` },
  { name: 'valid: item cost 3, upstream timeout 1200ms', via: 'file', valid: true, itemCost: 3, yaml: (p) => configYaml({ ...p, itemCost: 3, timeout: '1200ms' }) },
  { name: 'invalid: unknown key', via: 'file', valid: false, yaml: (p) => configYaml({ ...p, itemCost: 9 }).replace('    cost: 2\n', '    cost: 2\n    timout: 5s\n') },
  { name: 'valid: item cost 4', via: 'file', valid: true, itemCost: 4, yaml: (p) => configYaml({ ...p, itemCost: 4 }) },
  { name: 'invalid: store changed (needs a restart)', via: 'file', valid: false, yaml: (p) => configYaml({ ...p, itemCost: 9 }).replace('command_timeout: 500ms', 'command_timeout: 400ms') },
  { name: 'invalid: unknown upstream', via: 'file', valid: false, yaml: (p) => configYaml({ ...p, itemCost: 9 }).replace('    upstream: legacy\n    rate_limit: false', '    upstream: legacy2\n    rate_limit: false') },
  { name: 'valid: item cost 5', via: 'file', valid: true, itemCost: 5, yaml: (p) => configYaml({ ...p, itemCost: 5 }) },
  { name: 'SIGHUP, file unchanged', via: 'sighup', valid: true },
];

export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const say = options.progress ?? (() => {});
  const procs = new ProcessGroup();
  const unregister = killOnExit(() => {
    procs.killAllSync();
    void redis?.kill();
  });
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'agentgate-chaos-'));
  const runId = randomBytes(4).toString('hex');
  const redisDir = path.join(tmp, 'redis');
  const configDir = path.join(tmp, 'config');
  mkdirSync(redisDir);
  mkdirSync(configDir);
  const redisArgs = ['--appendonly', 'yes', '--appendfsync', 'always'];
  let redis: RedisServer | undefined;
  let upstream: ChaosUpstream | undefined;
  const gateways: GatewayProcess[] = [];
  const agents: Agent[] = [];
  try {
    const [redisPort, upstreamPort] = (await freePorts(2)) as [number, number];
    redis = await startRedisServer(redisPort, redisDir, redisArgs);
    upstream = await ChaosUpstream.start(upstreamPort);
    const params: ConfigParams = { redisUrl: redis.url, upstreamUrl: upstream.url, itemCost: 1, timeout: '1s' };
    const configFile = path.join(configDir, 'gateway.yaml');
    writeFileAtomic(configFile, configYaml(params));
    for (let i = 0; i < 3; i++) gateways.push(await spawnGateway(procs, { label: `replica-${i}`, configFile, dir: tmp, waitReady: true }));

    const t0 = Date.now();
    const now = () => round((Date.now() - t0) / 1000, 2);
    const timeline: ChaosResult['timeline'] = [];
    const event = (text: string) => {
      timeline.push({ t: now(), event: text });
      say(`t=${now().toFixed(1).padStart(6)}s  ${text}`);
    };
    const crashDetails: ChaosResult['crash_details'] = [];
    for (const gw of gateways) {
      void gw.exited.then(({ code, signal }) => {
        if (gw.endedByHarness) return;
        crashDetails.push({ replica: gw.label, code, signal, t: now(), stderr: readText(gw.errFile).slice(-2000) });
        event(`!!! ${gw.label} exited on its own (${code ?? signal})`);
      });
    }

    const catalog = await fetch(`${gateways[0]!.url}/_agentgate/errors`).then((r) => r.json() as Promise<{ errors: { code: string }[] }>);
    const codes = new Set(catalog.errors.map((e) => e.code));
    const missingCodes = CONTRACT_CODES.filter((c) => !codes.has(c));
    if (missingCodes.length > 0) throw new Error(`the catalog lacks codes the contract fixes: ${missingCodes.join(', ')}`);

    const replicas: Replica[] = gateways.map((gw, index) => {
      // timeout: without one, Node's agent ignores the server's Keep-Alive hint and may reuse a socket the gateway is closing.
      const agent = new Agent({ keepAlive: true, maxSockets: options.concurrency, timeout: 60_000 });
      agents.push(agent);
      return { index, url: gw.url, agent, inRotation: true, inFlight: new Set() };
    });
    const client = new ChaosClient(replicas, {
      concurrency: options.concurrency,
      consumers: options.consumers,
      runId,
      codes,
      requestTimeoutMs: 15_000,
      retryCapMs: options.retryCapMs,
      writeShare: 0.5,
      feedShare: 0.15,
    });

    // ---- the faults, each at its time
    const D = options.durationSeconds * 1000;
    const tasks: Promise<void>[] = [];
    const at = (ms: number, run: () => Promise<void> | void) =>
      tasks.push(
        sleep(Math.max(0, ms - (Date.now() - t0))).then(async () => {
          try {
            await run();
          } catch (err) {
            event(`!!! fault step failed: ${(err as Error).message}`);
          }
        }),
      );
    const flap = options.flapSeconds * 1000;
    const gap = options.flapGapSeconds * 1000;
    const faults: UpstreamMode[] = ['refuse', 'hang', 'reset'];
    for (let k = 0, start = gap; start + flap <= D - gap / 2; k++, start += flap + gap) {
      const mode = faults[k % faults.length]!;
      at(start, async () => {
        await upstream!.setMode(mode);
        event(`upstream: ${mode}`);
      });
      at(start + flap, async () => {
        await upstream!.setMode('ok');
        event('upstream: ok');
      });
    }
    let redisDown: Promise<void> = Promise.resolve();
    for (const fraction of options.redisRestartsAt) {
      at(fraction * D, async () => {
        let done!: () => void;
        redisDown = new Promise((resolve) => (done = resolve));
        try {
          await redis!.kill();
          event('redis: SIGKILL');
          await sleep(options.redisDownSeconds * 1000);
          redis = await startRedisServer(redisPort, redisDir, redisArgs);
          event('redis: restarted (AOF reloaded)');
        } finally {
          done();
        }
      });
    }
    RELOADS.forEach((variant, i) => {
      at(((i + 0.5) / RELOADS.length) * D, () => {
        if (variant.via === 'sighup') {
          for (const gw of gateways) if (gw.alive() && !gw.endedByHarness) gw.child.kill('SIGHUP');
        } else writeFileAtomic(configFile, variant.yaml!(params));
        event(`reload ${i + 1}/${RELOADS.length}: ${variant.name}`);
      });
    });
    const victim = gateways[1]!;
    if (options.killAt < 1) at(options.killAt * D, async () => {
      client.takeOutOfRotation(replicas[1]!);
      const inFlight = replicas[1]!.inFlight.size;
      await victim.kill();
      event(`${victim.label}: SIGKILL, ${inFlight} requests in flight to it; out of rotation`);
    });
    const statusEvery = Math.max(1000, D / 12);
    const status = setInterval(() => {
      const s = client.stats;
      say(`t=${now().toFixed(1).padStart(6)}s  ${s.attempts} requests: ${s.ok} ok, ${s.malformed} malformed, ${s.lost} lost, ${s.in_flight_at_kill} in flight at kill; ${client.writes.length} writes`);
    }, statusEvery);

    event(`load: ${options.concurrency} agents over ${gateways.length} replicas`);
    client.start();
    await sleep(D);
    event('faults stop; writes under way may finish');
    await Promise.all(tasks);
    await redisDown;
    await upstream.setMode('ok');
    await client.finish(Date.now() + options.settleSeconds * 1000);
    clearInterval(status);
    event('all writes ended');

    // ---- every write that got its order must replay it, byte for byte
    const live = replicas.filter((r) => r.inRotation);
    const created = client.writes.filter((w) => w.final === 'created');
    const replayProblems = await verifyReplays(created, live);
    event(`verification: ${created.length - replayProblems.length} of ${created.length} completed writes replayed identically`);

    // ---- reloads: every surviving replica applied the six valid ones and refused the four invalid ones
    const expected = { success: RELOADS.filter((r) => r.valid).length, error: RELOADS.filter((r) => !r.valid).length };
    const survivors = gateways.filter((gw) => gw !== victim && gw.alive());
    const reloadCounts = async () =>
      Promise.all(
        survivors.map(async (gw) => {
          const text = (await scrapeMetrics(gw.adminUrl)) ?? '';
          return { replica: gw.label, success: metricSum(text, 'agentgate_config_reloads_total', { result: 'success' }), error: metricSum(text, 'agentgate_config_reloads_total', { result: 'error' }) };
        }),
      );
    let counts = await reloadCounts();
    for (let i = 0; i < 50 && !counts.every((c) => c.success === expected.success && c.error === expected.error); i++) {
      await sleep(100);
      counts = await reloadCounts();
    }
    const finalCost = String(RELOADS.filter((r) => r.valid && r.itemCost !== undefined).at(-1)!.itemCost);
    const seenCost = await Promise.all(
      live.map(async (r) => {
        const reply = await exchange(r, 'GET', '/chaos/items/item-final', { 'x-agent-id': 'agent-final' }, undefined, 5000).catch(() => undefined);
        return reply ? String(reply.headers['x-ratelimit-cost'] ?? null) : null;
      }),
    );
    const reloadsOk = counts.length === survivors.length && counts.every((c) => c.success === expected.success && c.error === expected.error) && seenCost.every((c) => c === finalCost);

    // ---- the end: SIGTERM to the survivors, which must drain and exit 0
    for (const agent of agents) agent.destroy();
    const exits: ChaosResult['exits'] = [];
    for (const gw of gateways) {
      const killed = gw.endedByHarness;
      const exit = killed ? await gw.exited : await gw.stop();
      exits.push({ replica: gw.label, code: exit.code, signal: exit.signal, killed_by_harness: gw === victim });
    }
    const uncleanExits = exits.filter((e) => !e.killed_by_harness && e.code !== 0);
    const logs: Record<string, Record<string, number>> = {};
    const logExamples: string[] = [];
    let unexpectedErrorLines = 0;
    /** Requests whose answer went out while the store could not record it (docs/idempotency.md: "its record cannot be written"). */
    const notRecorded = new Set<string>();
    for (const gw of gateways) {
      const problems = await logProblems(gw.logFile, {
        expectedErrors: EXPECTED_ERROR_LOGS,
        maxExamples: 3,
        onLine: (line) => {
          if (!line.includes('"idempotency store operation failed"') || !line.includes('"operation":"finish"')) return;
          const id = /"request_id":"([^"]+)"/.exec(line)?.[1];
          if (id) notRecorded.add(id);
        },
      });
      logs[gw.label] = problems.counts;
      unexpectedErrorLines += problems.unexpected_errors;
      logExamples.push(...problems.examples.map((e) => `${gw.label}: ${e}`));
    }
    const verification = classifyReplays(created, replayProblems, notRecorded);

    const writes = client.writes;
    const finals: Record<string, number> = {};
    for (const w of writes) if (!['created', 'idempotency_outcome_unknown', 'unresolved'].includes(w.final!)) finals[w.final!] = (finals[w.final!] ?? 0) + 1;
    const unknown = writes.filter((w) => w.final === 'idempotency_outcome_unknown');
    const duplicateKeys = [...upstream.executions].filter(([, n]) => n > 1).map(([key, n]) => ({ key, executions: n }));
    const stats = client.stats;
    const result: ChaosResult = {
      settings: { ...options, progress: undefined, gateway_replicas: 3, reloads: RELOADS.map((r) => r.name) },
      duration_seconds: round(D / 1000, 1),
      timeline,
      crashes: crashDetails.length + uncleanExits.length,
      malformed: stats.malformed,
      duplicates: upstream.duplicates(),
      lost: stats.lost,
      in_flight_at_kill: stats.in_flight_at_kill,
      crash_details: [
        ...crashDetails,
        ...uncleanExits.map((e) => ({ replica: e.replica, code: e.code, signal: e.signal, t: null, stderr: readText(gateways.find((g) => g.label === e.replica)!.errFile).slice(-2000) })),
      ],
      client: stats,
      writes: {
        total: writes.length,
        created_fresh: writes.filter((w) => w.final === 'created' && !w.replayed).length,
        created_replayed: writes.filter((w) => w.final === 'created' && w.replayed).length,
        outcome_unknown: unknown.length,
        outcome_unknown_executed: unknown.filter((w) => (upstream!.executions.get(w.key) ?? 0) > 0).length,
        other_final: finals,
        unresolved: writes.filter((w) => w.final === 'unresolved').length,
        attempts_mean: round(writes.reduce((a, w) => a + w.attempts, 0) / Math.max(1, writes.length)),
        attempts_max: Math.max(0, ...writes.map((w) => w.attempts)),
      },
      upstream: {
        executions: [...upstream.executions.values()].reduce((a, b) => a + b, 0),
        keys: upstream.executions.size,
        duplicate_keys: duplicateKeys.slice(0, 20),
        served: upstream.served,
      },
      verification,
      reloads: { expected, replicas: counts, final_cost: seenCost, ok: reloadsOk },
      exits,
      log_problems: logs,
      log_unexpected_errors: unexpectedErrorLines,
      log_examples: logExamples,
      ok: false,
    };
    result.ok =
      result.crashes === 0 &&
      result.malformed === 0 &&
      result.duplicates === 0 &&
      result.lost === 0 &&
      stats.gateway_errors === 0 &&
      result.writes.unresolved === 0 &&
      verification.failures === 0 &&
      reloadsOk &&
      unexpectedErrorLines === 0;
    return result;
  } finally {
    for (const agent of agents) agent.destroy();
    await Promise.all(gateways.map((gw) => gw.kill()));
    await procs.stopAll();
    procs.killAllSync();
    unregister();
    await upstream?.close();
    await redis?.kill();
    if (!options.keep) rmSync(tmp, { recursive: true, force: true });
    else say(`kept ${tmp}`);
  }
}

/** Error log lines the run provokes on purpose: refused reloads, circuits opening under the flaps. */
const EXPECTED_ERROR_LOGS = [/^config reload failed/, /^circuit open for upstream/];

interface ReplayProblem {
  op: WriteOp;
  status: number | undefined;
  code: string | undefined;
  reason: string | undefined;
  problem: string;
}

/** Sends every completed write once more: each must come back 201, marked as a replay, with the very same body. */
async function verifyReplays(created: WriteOp[], live: Replica[]): Promise<ReplayProblem[]> {
  const problems: ReplayProblem[] = [];
  let next = 0;
  const worker = async () => {
    while (next < created.length) {
      const i = next++;
      const op = created[i]!;
      const replica = live[i % live.length]!;
      let problem: ReplayProblem | undefined;
      for (let attempt = 1; attempt <= 3; attempt++) {
        const reply = await exchange(replica, 'POST', '/chaos/orders', { 'x-agent-id': op.agentId, 'idempotency-key': op.key, 'content-type': 'application/json' }, op.body, 15_000).catch(
          (err: Error) => err,
        );
        if (reply instanceof Error) {
          problem = { op, status: undefined, code: undefined, reason: undefined, problem: `no answer: ${reply.message}` };
          continue;
        }
        const envelope = reply.status === 201 ? {} : (parseObject(reply.body) ?? {});
        const [code, reason] = [envelope.code, envelope.reason].map((v) => (typeof v === 'string' ? v : undefined));
        const base = { op, status: reply.status, code, reason };
        if (reply.status !== 201) problem = { ...base, problem: `status ${reply.status}: ${reply.body.subarray(0, 240).toString()}` };
        else if (reply.headers['idempotent-replayed'] !== 'true') problem = { ...base, problem: 'not marked as a replay' };
        else if (!reply.body.equals(op.created!)) problem = { ...base, problem: `a different body: ${reply.body.subarray(0, 120).toString()} vs ${op.created!.subarray(0, 120).toString()}` };
        else problem = undefined;
        break;
      }
      if (problem) problems.push(problem);
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  return problems;
}

function classifyReplays(created: WriteOp[], problems: ReplayProblem[], notRecorded: Set<string>): ChaosResult['verification'] {
  const excused = problems.filter((p) => p.code === 'IDEMPOTENCY_OUTCOME_UNKNOWN' && p.op.requestId !== undefined && notRecorded.has(p.op.requestId) && p.reason === 'gateway_lost');
  const failures = problems.filter((p) => !excused.includes(p));
  return {
    checked: created.length,
    identical_replays: created.length - problems.length,
    not_recorded: excused.length,
    failures: failures.length,
    examples: failures.slice(0, 10).map((p) => `${p.op.key} (first answered as ${p.op.requestId}): ${p.problem}`),
  };
}

function parseObject(body: Buffer): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(body.toString('utf8'));
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The run's fault schedule scaled to its length: the test's few seconds and the script's minutes meet the same faults. */
export function chaosPreset(durationSeconds: number, concurrency: number, overrides: Partial<ChaosOptions> = {}): ChaosOptions {
  const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));
  const flap = round(clamp(durationSeconds / 40, 0.4, 2), 2);
  return {
    durationSeconds,
    concurrency,
    flapSeconds: flap,
    flapGapSeconds: round(flap * 1.5, 2),
    redisRestartsAt: durationSeconds < 30 ? [0.35] : [0.3, 0.7],
    redisDownSeconds: round(clamp(durationSeconds / 20, 0.6, 3), 2),
    killAt: 0.55,
    settleSeconds: 30,
    retryCapMs: durationSeconds < 30 ? 250 : 1000,
    consumers: 1000,
    ...overrides,
  };
}

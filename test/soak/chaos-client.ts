// The chaos run's agents: concurrent workers that read and write through the replicas (round-robin, as a load balancer
// would), classify every single answer, and retry writes the way an agent should: the same Idempotency-Key, body and
// consumer, after the wait a retryable envelope asks for (capped, so a short run stays short).
import { Agent, request, type IncomingHttpHeaders } from 'node:http';
import { checkEnvelope } from './envelope.ts';
import { FEED, itemBody } from './chaos-upstream.ts';
import { sleep } from './common.ts';

export interface Replica {
  readonly index: number;
  readonly url: string;
  readonly agent: Agent;
  /** Chosen for new requests. Taken out of rotation at the moment the harness kills it. */
  inRotation: boolean;
  /** Requests in flight to it right now: marked when it is killed. */
  readonly inFlight: Set<{ atKill: boolean }>;
}

export type OpKind = 'item' | 'feed' | 'order';

export interface WriteOp {
  key: string;
  agentId: string;
  body: string;
  attempts: number;
  /** created | outcome_unknown | another envelope code | malformed | unresolved */
  final?: string;
  /** The 201 body the client got in the end, and whether that answer was a replay. */
  created?: Buffer;
  execution?: number;
  replayed?: boolean;
  /** X-Request-Id of that answer. */
  requestId?: string;
}

export interface Example {
  t: number;
  replica: number;
  kind: OpKind;
  detail: string;
}

export interface ClientStats {
  attempts: number;
  by_kind: Record<OpKind, number>;
  statuses: Record<string, number>;
  /** Envelope codes, per operation kind. */
  codes: Record<OpKind, Record<string, number>>;
  ok: number;
  replays: number;
  malformed: number;
  malformed_examples: Example[];
  /** Requests to a replica in rotation that got no complete answer (refused, reset, cut mid-body, or no answer in time). */
  lost: number;
  lost_examples: Example[];
  /** Requests in flight to the replica the harness SIGKILLed, at the moment it was killed, that got no complete answer. */
  in_flight_at_kill: number;
  gateway_errors: number;
  unexpected_codes: Record<string, number>;
  /** What the answers were, second by second since the client started: 2xx, an envelope code, lost, killed, malformed. */
  per_second: Record<string, number>[];
}

/** Envelope codes each kind of request can meet under the faults of the run; any other is reported as unexpected. */
const EXPECTED_CODES: Record<OpKind, Set<string>> = {
  item: new Set(['UPSTREAM_UNAVAILABLE', 'UPSTREAM_TIMEOUT', 'UPSTREAM_ERROR', 'CIRCUIT_OPEN']),
  feed: new Set(['UPSTREAM_UNAVAILABLE', 'UPSTREAM_TIMEOUT', 'UPSTREAM_ERROR', 'CIRCUIT_OPEN']),
  order: new Set(['UPSTREAM_UNAVAILABLE', 'UPSTREAM_TIMEOUT', 'UPSTREAM_ERROR', 'CIRCUIT_OPEN', 'STORE_UNAVAILABLE', 'IDEMPOTENCY_IN_PROGRESS', 'IDEMPOTENCY_OUTCOME_UNKNOWN']),
};

export interface ClientOptions {
  concurrency: number;
  consumers: number;
  runId: string;
  /** Envelope codes the gateway's catalog lists. */
  codes: ReadonlySet<string>;
  requestTimeoutMs: number;
  /** Longest wait before retrying a write, whatever Retry-After says. */
  retryCapMs: number;
  /** Shares of the workers that write, and of the requests that read the feed; the rest read items. */
  writeShare: number;
  feedShare: number;
}

interface Response {
  kind: 'response';
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

type Answer =
  | (Response & { replica: Replica })
  | { kind: 'no_answer'; error: string; atKill: boolean; replica: Replica };

const MAX_EXAMPLES = 12;

export class ChaosClient {
  readonly stats: ClientStats = {
    attempts: 0,
    by_kind: { item: 0, feed: 0, order: 0 },
    statuses: {},
    codes: { item: {}, feed: {}, order: {} },
    ok: 0,
    replays: 0,
    malformed: 0,
    malformed_examples: [],
    lost: 0,
    lost_examples: [],
    in_flight_at_kill: 0,
    gateway_errors: 0,
    unexpected_codes: {},
    per_second: [],
  };
  readonly writes: WriteOp[] = [];
  private readonly replicas: Replica[];
  private readonly options: ClientOptions;
  private readonly t0 = Date.now();
  private issuing = false;
  /** Operations stop retrying at this time (ms since the epoch): they end 'unresolved'. */
  private giveUpAt = Infinity;
  private next = 0;
  private opCount = 0;
  private workers: Promise<void>[] = [];

  constructor(replicas: Replica[], options: ClientOptions) {
    this.replicas = replicas;
    this.options = options;
  }

  /** Writers and readers are separate workers, so writes retrying through an outage never starve the reads. */
  start(): void {
    this.issuing = true;
    const writers = Math.max(1, Math.round(this.options.concurrency * this.options.writeShare));
    const readers = Math.max(1, this.options.concurrency - writers);
    this.workers = [...Array.from({ length: writers }, () => this.work('write')), ...Array.from({ length: readers }, () => this.work('read'))];
  }

  /** No new operations; those under way keep retrying until they end or `giveUpAt`. */
  async finish(giveUpAt: number): Promise<void> {
    this.issuing = false;
    this.giveUpAt = giveUpAt;
    await Promise.all(this.workers);
    for (const op of this.writes) op.final ??= 'unresolved';
  }

  /** Marks every request in flight to the replica as in flight at the kill; takes it out of rotation first. */
  takeOutOfRotation(replica: Replica): void {
    replica.inRotation = false;
    for (const flight of replica.inFlight) flight.atKill = true;
  }

  private pick(): Replica {
    const live = this.replicas.filter((r) => r.inRotation);
    return live[this.next++ % live.length]!;
  }

  private async work(role: 'read' | 'write'): Promise<void> {
    const feedShare = this.options.feedShare / (1 - this.options.writeShare);
    while (this.issuing) {
      const n = this.opCount++;
      const agentId = `agent-${Math.floor(Math.random() * this.options.consumers)}`;
      if (role === 'write') await this.write(n, agentId);
      else if (Math.random() < feedShare) await this.read('feed', '/chaos/feed', agentId);
      else await this.read('item', `/chaos/items/item-${n % 500}`, agentId);
    }
  }

  private async read(kind: 'item' | 'feed', path: string, agentId: string): Promise<void> {
    const answer = await this.send(kind, 'GET', path, { 'x-agent-id': agentId, accept: 'application/json' });
    if (answer.kind === 'response' && answer.status >= 200 && answer.status < 300) {
      const expected = kind === 'feed' ? FEED : itemBody(path.slice('/chaos/items/'.length));
      if (answer.status === 200 && answer.body.toString('utf8') === expected) this.stats.ok++;
      else this.malformed(kind, answer, `${answer.status} with a body that is not the upstream's (${answer.body.length} bytes)`);
    } else if (answer.kind === 'response' && answer.headers['x-should-retry'] === 'true') {
      // An agent told to wait waits (up to the cap) before its next call, rather than hammering an open circuit.
      await sleep(Math.min(Number(answer.headers['retry-after'] ?? 0) * 1000, this.options.retryCapMs) + Math.random() * 50);
    }
  }

  private async write(n: number, agentId: string): Promise<void> {
    const op: WriteOp = { key: `chaos-${this.options.runId}-${n}`, agentId, body: JSON.stringify({ item: 'widget', quantity: 1 + (n % 3), n }), attempts: 0 };
    this.writes.push(op);
    for (;;) {
      if (Date.now() > this.giveUpAt) return;
      op.attempts++;
      const answer = await this.send('order', 'POST', '/chaos/orders', {
        'x-agent-id': op.agentId,
        'idempotency-key': op.key,
        'content-type': 'application/json',
      }, op.body);
      if (answer.kind === 'no_answer') {
        await sleep(50);
        continue;
      }
      if (answer.status >= 200 && answer.status < 300) {
        const order = parseJson(answer.body) as { key?: unknown; execution?: unknown } | undefined;
        if (answer.status !== 201 || !order || order.key !== op.key || typeof order.execution !== 'number' || !String(answer.headers['content-type']).startsWith('application/json')) {
          this.malformed('order', answer, `201 that is not this write's order: ${answer.body.subarray(0, 160).toString()}`);
          op.final = 'malformed';
          return;
        }
        const replayed = answer.headers['idempotent-replayed'] === 'true';
        if (replayed) this.stats.replays++;
        this.stats.ok++;
        Object.assign(op, { final: 'created', created: answer.body, execution: order.execution, replayed, requestId: answer.headers['x-request-id'] });
        return;
      }
      const envelope = checkEnvelope(answer.status, answer.headers, answer.body, this.options.codes);
      if (!envelope.ok) {
        op.final = 'malformed';
        return;
      }
      if (!envelope.envelope.retryable) {
        op.final = envelope.envelope.code.toLowerCase();
        return;
      }
      const wait = Math.min((envelope.envelope.retry_after_seconds ?? 0) * 1000, this.options.retryCapMs);
      await sleep(wait + Math.random() * 50);
    }
  }

  /** One request; every answer is counted and checked here (2xx bodies by the caller). */
  private async send(kind: OpKind, method: string, path: string, headers: Record<string, string>, body?: string): Promise<Answer> {
    const replica = this.pick();
    const flight = { atKill: false };
    replica.inFlight.add(flight);
    this.stats.attempts++;
    this.stats.by_kind[kind]++;
    let answer: Answer;
    try {
      answer = await exchange(replica, method, path, headers, body, this.options.requestTimeoutMs).then(
        (response) => ({ ...response, replica }),
        (err: Error) => ({ kind: 'no_answer' as const, error: (err as NodeJS.ErrnoException).code ?? err.message, atKill: flight.atKill, replica }),
      );
    } finally {
      replica.inFlight.delete(flight);
    }
    if (answer.kind === 'no_answer') {
      // A request can be lost to a process killed under it; to a process in rotation it must never be.
      this.tally(answer.atKill ? 'in_flight_at_kill' : 'lost');
      if (answer.atKill) this.stats.in_flight_at_kill++;
      else {
        this.stats.lost++;
        this.example(this.stats.lost_examples, replica, kind, `${method} ${path}: ${answer.error}`);
      }
      return answer;
    }
    this.stats.statuses[answer.status] = (this.stats.statuses[answer.status] ?? 0) + 1;
    if (answer.status >= 200 && answer.status < 300) this.tally(String(answer.status));
    if (!answer.headers['x-request-id']) this.malformed(kind, answer, 'no X-Request-Id');
    else if (answer.status < 200 || answer.status >= 300) {
      const checked = checkEnvelope(answer.status, answer.headers, answer.body, this.options.codes);
      if (!checked.ok) this.malformed(kind, answer, checked.problem);
      else {
        const code = checked.envelope.code;
        this.tally(code);
        const codes = this.stats.codes[kind];
        codes[code] = (codes[code] ?? 0) + 1;
        if (code === 'GATEWAY_ERROR') this.stats.gateway_errors++;
        if (!EXPECTED_CODES[kind].has(code)) this.stats.unexpected_codes[`${kind} ${code}`] = (this.stats.unexpected_codes[`${kind} ${code}`] ?? 0) + 1;
      }
    }
    return answer;
  }

  private tally(outcome: string): void {
    const second = Math.floor((Date.now() - this.t0) / 1000);
    const slot = (this.stats.per_second[second] ??= {});
    slot[outcome] = (slot[outcome] ?? 0) + 1;
  }

  private malformed(kind: OpKind, answer: Extract<Answer, { kind: 'response' }>, problem: string): void {
    this.stats.malformed++;
    this.tally('malformed');
    this.example(this.stats.malformed_examples, answer.replica, kind, `${answer.status}: ${problem} — ${answer.body.subarray(0, 200).toString()}`);
  }

  private example(list: Example[], replica: Replica, kind: OpKind, detail: string): void {
    if (list.length < MAX_EXAMPLES) list.push({ t: Math.round((Date.now() - this.t0) / 100) / 10, replica: replica.index, kind, detail });
  }
}

/** One HTTP exchange over the replica's keep-alive pool; rejects when no complete answer arrives. */
export function exchange(replica: Replica, method: string, path: string, headers: Record<string, string>, body: string | undefined, timeoutMs: number): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = request(`${replica.url}${path}`, { method, headers, agent: replica.agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        if (!res.complete) return reject(new Error('response cut short'));
        resolve({ kind: 'response', status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
      });
      res.on('aborted', () => reject(new Error('response aborted')));
    });
    req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'CLIENT_TIMEOUT' })));
    req.on('error', reject);
    req.end(body);
  });
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}

// The primary of server.workers > 1: forks the workers (node:cluster, one shared proxy port), serves the admin port for
// all of them, relays their log lines whole, passes signals on, and replaces a worker that dies.
import cluster, { type Worker } from 'node:cluster';
import type { Readable, Writable } from 'node:stream';
import { AggregatorRegistry, Counter, Gauge, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { DestinationStream } from 'pino';
import { createAdminServer } from '../admin/server.ts';
import { keepAccepting, listen, StartError } from '../gateway.ts';
import { createLogger, type Logger } from '../observability/logger.ts';
import { isMessage, type AnswerMessage, type ListeningMessage, type QueryMessage } from './messages.ts';

export interface PrimaryOptions {
  workers: number;
  adminListen: string;
  shutdownTimeoutMs: number;
  logLevel: string;
  configFile: string;
  /** restartOnlyDigest() of the config the primary started with: a replacement worker must find the same. */
  startedWith: string;
}

export interface Primary {
  readonly logger: Logger;
  readonly proxyUrl: string;
  readonly adminUrl: string;
  /** Passes SIGHUP on: every worker re-reads the config (each also watches the file itself). */
  reload(trigger: string): void;
  /** SIGTERM to every worker, waits for them to drain and exit (SIGKILL 5 s past the drain bound), closes the admin port. */
  shutdown(): Promise<void>;
}

/** Env var telling a worker its slot, 1..workers: stable across restarts, unlike cluster's worker ids. */
export const WORKER_SLOT_ENV = 'AGENTGATE_WORKER_SLOT';
/** Env var carrying PrimaryOptions.startedWith to the workers. */
export const WORKER_STARTED_WITH_ENV = 'AGENTGATE_WORKER_STARTED_WITH';

/** A worker that ran this long before dying is replaced at once; one that dies sooner, after a growing delay. */
const STABLE_UPTIME_MS = 10_000;
const MAX_RESTART_DELAY_MS = 10_000;
/** How long the admin port waits for each worker's part of an answer. */
const METRICS_TIMEOUT_MS = 2000;
const READY_TIMEOUT_MS = 1000;
/** Beyond the drain bound, how long a worker may take to release its store and exit before it is killed. */
const EXIT_GRACE_MS = 5000;
/** A log "line" longer than this without a newline is passed on as it is, so a broken worker cannot grow the primary. */
const MAX_PARTIAL_LINE_BYTES = 1024 * 1024;

interface Slot {
  readonly number: number;
  worker: Worker | undefined;
  listening: boolean;
  startedAt: number;
  /** Deaths in a row within STABLE_UPTIME_MS, for the restart delay. */
  quickDeaths: number;
  restartTimer: NodeJS.Timeout | undefined;
}

export async function startPrimary(options: PrimaryOptions): Promise<Primary> {
  // One writer for stdout: the primary's own lines and the workers' go through the same stream, whole lines only.
  // Worker 0 is the primary: a number, like the workers' own, so log indexes see one type.
  const logger = createLogger(options.logLevel, process.stdout as unknown as DestinationStream, { worker: 0 });
  // A reader that went away (a log collector restarting) must not take the gateway down: the lines are dropped,
  // as pino drops them on EPIPE in a single process.
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {});
  const registry = new Registry();
  const { restarts, workerCount } = primaryMetrics(registry);
  restarts.inc(0);
  workerCount.set({ state: 'configured' }, options.workers);

  // The workers accept from the one listening socket themselves. In node's default round-robin mode the primary
  // accepts and hands each connection over IPC, and a connection in transit to a worker that just died is neither
  // closed nor handed to another: its client waits forever (seen in test/workers.test.ts; nodejs/node-v0.x-archive#7928).
  // Here a dying worker's connections are reset by the kernel, which a client sees at once and can retry.
  // (Read when the primary is set up: it must be set first.)
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  // Workers' stdout and stderr come to the primary (silent), so their lines can be relayed whole.
  cluster.setupPrimary({ silent: true });
  const slots: Slot[] = Array.from({ length: options.workers }, (_, i) => ({
    number: i + 1,
    worker: undefined,
    listening: false,
    startedAt: 0,
    quickDeaths: 0,
    restartTimer: undefined,
  }));
  let stopping = false;
  let proxyUrl = '';
  const queries = new Queries();
  cluster.on('message', (_worker, message: unknown) => queries.answered(message));

  /** Settles once every worker listens, or one exits first; undefined once started, when a dead worker is replaced instead. */
  let starting: PromiseWithResolvers<void> | undefined = Promise.withResolvers<void>();

  const fork = (slot: Slot) => {
    slot.restartTimer = undefined;
    const worker = cluster.fork({ [WORKER_SLOT_ENV]: String(slot.number), [WORKER_STARTED_WITH_ENV]: options.startedWith });
    slot.worker = worker;
    slot.listening = false;
    slot.startedAt = Date.now();
    relayLines(worker.process.stdout!, process.stdout);
    worker.process.stderr!.pipe(process.stderr, { end: false });
    worker.on('message', (message: unknown) => {
      if (!isMessage<ListeningMessage>(message, 'agentgate:listening')) return;
      slot.listening = true;
      proxyUrl ||= message.proxyUrl;
      if (slots.every((s) => s.listening)) starting?.resolve();
    });
    worker.once('exit', (code, signal) => {
      const wasListening = slot.listening;
      slot.worker = undefined;
      slot.listening = false;
      if (stopping) return;
      if (!wasListening && starting) {
        starting.reject(new StartError(`worker ${slot.number} exited (${signal ?? `code ${code}`}) before it listened`));
        return;
      }
      restarts.inc();
      slot.quickDeaths = Date.now() - slot.startedAt < STABLE_UPTIME_MS ? slot.quickDeaths + 1 : 0;
      const delayMs = slot.quickDeaths === 0 ? 0 : Math.min(100 * 2 ** slot.quickDeaths, MAX_RESTART_DELAY_MS);
      logger.error({ slot: slot.number, pid: worker.process.pid, code, signal, restart_in_ms: delayMs }, 'worker exited unexpectedly; starting a new one');
      slot.restartTimer = setTimeout(() => fork(slot), delayMs);
    });
  };

  const stopWorkers = async () => {
    stopping = true;
    const exits: Promise<unknown>[] = [];
    for (const slot of slots) {
      clearTimeout(slot.restartTimer);
      const worker = slot.worker;
      if (!worker) continue;
      exits.push(new Promise((resolve) => (worker.isDead() ? resolve(undefined) : worker.once('exit', resolve))));
      worker.process.kill('SIGTERM');
    }
    const killer = setTimeout(() => {
      for (const slot of slots) slot.worker?.process.kill('SIGKILL');
    }, options.shutdownTimeoutMs + EXIT_GRACE_MS);
    await Promise.all(exits);
    clearTimeout(killer);
  };

  for (const slot of slots) fork(slot);
  try {
    await starting.promise;
  } catch (err) {
    await stopWorkers();
    throw err;
  }
  starting = undefined;

  const running = () => slots.flatMap((slot) => (slot.worker && slot.listening ? [{ slot, worker: slot.worker }] : []));
  const admin = createAdminServer({
    metricsContentType: registry.contentType,
    metrics: async () => {
      const answers = await Promise.all(running().map(({ worker }) => queries.ask(worker, 'metrics', METRICS_TIMEOUT_MS)));
      const parts: MetricObjectWithValues<MetricValue<string>>[][] = answers.flatMap((a) => (a?.metrics ? [a.metrics] : []));
      workerCount.set({ state: 'reporting' }, parts.length);
      parts.push(await registry.getMetricsAsJSON());
      return AggregatorRegistry.aggregate(parts).metrics();
    },
    notReadyReason: async () => {
      if (stopping) return 'shutting down';
      const down = slots.find((slot) => !slot.listening);
      if (down) return `worker ${down.number} is not running`;
      const answers = await Promise.all(running().map(async ({ slot, worker }) => ({ slot, answer: await queries.ask(worker, 'ready', READY_TIMEOUT_MS) })));
      for (const { slot, answer } of answers) {
        if (!answer || answer.error !== undefined) return `worker ${slot.number} did not answer`;
        if (answer.notReady) return `worker ${slot.number}: ${answer.notReady}`;
      }
      return undefined;
    },
  });
  let adminUrl: string;
  try {
    adminUrl = await listen(admin, options.adminListen);
  } catch (err) {
    await stopWorkers();
    throw new StartError(`cannot listen: ${(err as Error).message}`, { cause: err });
  }
  keepAccepting(admin, 'admin', logger);
  logger.info({ proxy: proxyUrl, admin: adminUrl, config: options.configFile, workers: options.workers }, 'agentgate listening');

  let shuttingDown: Promise<void> | undefined;
  return {
    logger,
    proxyUrl,
    adminUrl,
    reload: (trigger) => {
      logger.info({ trigger }, 'passing the reload on to every worker');
      // Only to workers that listen: one still starting may not handle SIGHUP yet (it would die of it), and it reads
      // the file as it is now anyway.
      for (const { worker } of running()) worker.process.kill('SIGHUP');
    },
    shutdown: () => {
      shuttingDown ??= (async () => {
        logger.info({ workers: running().length }, 'shutting down: draining every worker');
        await stopWorkers();
        admin.closeAllConnections();
        await new Promise<void>((resolve) => admin.close(() => resolve()));
        logger.info('stopped');
      })();
      return shuttingDown;
    },
  };
}

/** Questions to workers, each answered once or given up after its timeout (a dying worker never answers). */
class Queries {
  private nextId = 0;
  private readonly waiting = new Map<number, (answer: AnswerMessage | undefined) => void>();

  ask(worker: Worker, what: QueryMessage['what'], timeoutMs: number): Promise<AnswerMessage | undefined> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => settle(undefined), timeoutMs).unref();
      const settle = (answer: AnswerMessage | undefined) => {
        clearTimeout(timer);
        this.waiting.delete(id);
        resolve(answer);
      };
      this.waiting.set(id, settle);
      const query: QueryMessage = { type: 'agentgate:query', id, what };
      if (!worker.isConnected()) return settle(undefined);
      worker.send(query, (err: Error | null) => err && settle(undefined));
    });
  }

  answered(message: unknown): void {
    if (isMessage<AnswerMessage>(message, 'agentgate:answer')) this.waiting.get(message.id)?.(message);
  }
}

/**
 * Copies a worker's stdout to the primary's in whole lines. Every worker writing the same pipe itself could mix two
 * lines whenever a write is larger than the pipe's atomic size (4 KiB), and a worker batches more than that.
 */
export function relayLines(from: Readable, to: Writable): void {
  let partial: Buffer | undefined;
  from.on('data', (chunk: Buffer) => {
    const data = partial ? Buffer.concat([partial, chunk]) : chunk;
    const end = data.lastIndexOf(0x0a) + 1;
    if (end > 0) to.write(data.subarray(0, end));
    partial = end < data.length ? data.subarray(end) : undefined;
    if (partial && partial.length > MAX_PARTIAL_LINE_BYTES) {
      to.write(partial);
      partial = undefined;
    }
  });
  from.once('end', () => {
    if (partial) to.write(Buffer.concat([partial, Buffer.from('\n')]));
  });
}

/** The primary's own metrics, beside the workers' it aggregates (also read by scripts/write-reference.ts). */
export function primaryMetrics(registry: Registry) {
  return {
    restarts: new Counter({
      name: 'agentgate_worker_restarts_total',
      help: 'Workers that exited unexpectedly and were replaced.',
      registers: [registry],
    }),
    workerCount: new Gauge({
      name: 'agentgate_workers',
      help: 'Gateway workers: configured, and reporting (those whose metrics are in this scrape; the sums cover only them).',
      labelNames: ['state'] as const,
      registers: [registry],
    }),
  };
}

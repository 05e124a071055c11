// Starts and stops a gateway: config, store, proxy and admin servers, config reloads (SIGHUP or file change) and draining shutdown.
import { createServer, STATUS_CODES, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { once } from 'node:events';
import { setFlagsFromString } from 'node:v8';
import type { DestinationStream } from 'pino';
import { loadConfigFile, ConfigError } from './config/load.ts';
import type { Config } from './config/schema.ts';
import { parseDuration, parseListenAddress, parseSize } from './config/units.ts';
import { buildRuntime, UpstreamPools, type Runtime } from './runtime.ts';
import { createStore } from './store/index.ts';
import type { Store, StoreError } from './store/store.ts';
import { Forwarder } from './proxy/forwarder.ts';
import { createPipeline } from './pipeline.ts';
import { createAdminServer } from './admin/server.ts';
import { createLogger, type Logger } from './observability/logger.ts';
import { AccessLog } from './observability/access-log.ts';
import { GatewayMetrics } from './observability/metrics.ts';
import { GatewayError, problemDocument } from './errors/problem.ts';
import { uuidv7 } from './identity/request-id.ts';

export interface GatewayOptions {
  configFile: string;
  /** Environment for ${NAME} substitution; process.env when left out. */
  env?: NodeJS.ProcessEnv;
  /** Where JSON log lines go; stdout when left out. */
  logDestination?: DestinationStream;
  /** Reload when the config file changes on disk (default true). */
  watchConfig?: boolean;
  /**
   * Run as worker `id` of several (server.workers): no admin server (the primary serves the admin port for all of
   * them, see src/workers/primary.ts), and every log line names the worker. `startedWith` is the primary's
   * restartOnlyDigest(): a worker started later (a replacement) refuses a file whose server or store has changed
   * since, as a reload would, rather than serve with another Redis or port than its siblings.
   */
  worker?: { id: number; startedWith: string };
}

export interface Gateway {
  /** e.g. http://127.0.0.1:8080 — the port actually bound, also when the config asked for port 0. */
  readonly proxyUrl: string;
  /** Undefined for a worker: its primary serves the admin port. */
  readonly adminUrl: string | undefined;
  readonly logger: Logger;
  readonly metrics: GatewayMetrics;
  readonly store: Store;
  runtime(): Runtime;
  /** Why this gateway cannot serve right now (draining, store unreachable), or undefined when it is ready: /readyz. */
  notReadyReason(): Promise<string | undefined>;
  /** Re-reads the config file; an invalid file keeps the current config. Resolves true when the new config is in force. */
  reload(trigger: string): Promise<boolean>;
  /** Stops accepting, lets in-flight requests finish (bounded by server.shutdown_timeout), then releases everything. */
  shutdown(): Promise<void>;
}

/** The parts of a config that only a restart applies: a reload refuses changes to them. */
const RESTART_ONLY_KEYS = ['server', 'store'] as const;

/** RESTART_ONLY_KEYS of a config as one digest, for a replacement worker to compare with its primary's. */
export function restartOnlyDigest(config: Config): string {
  return createHash('sha256').update(JSON.stringify(RESTART_ONLY_KEYS.map((key) => config[key]))).digest('hex');
}

/** The gateway could not start serving (a listen address taken or not allowed); everything it had opened is closed. */
export class StartError extends Error {}

/** During a store outage every request fails an operation; one log line per interval (with a count) says it all. */
const STORE_ERROR_LOG_INTERVAL_MS = 5000;

/** How long a file-change burst (editors write, rename and chmod in quick succession) is left to settle before reloading. */
const RELOAD_DEBOUNCE_MS = 150;

export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  keepRequestObjectsYoung();
  const env = options.env ?? process.env;
  const loaded = await loadConfigFile(options.configFile, env);
  const { config } = loaded;
  if (options.worker && restartOnlyDigest(config) !== options.worker.startedWith) {
    throw new ConfigError([
      { file: loaded.file, line: 0, column: 0, keyPath: 'server/store', message: 'changed since agentgate started; changes here take effect only after a restart of agentgate' },
    ]);
  }
  const logger = createLogger(config.logging.level, options.logDestination, options.worker && { worker: options.worker.id });
  const accessLog = new AccessLog(logger);
  const metrics = new GatewayMetrics();
  const logStoreError = throttled(STORE_ERROR_LOG_INTERVAL_MS, (error: StoreError, suppressed: number) =>
    logger.warn({ operation: error.operation, err: error.message, suppressed }, 'store operation failed'),
  );
  const store = createStore(config.store, (error) => {
    metrics.storeErrors.inc({ store: config.store.type, operation: error.operation });
    logStoreError(error);
  });
  const pools = new UpstreamPools();
  const policyDeps = { store, keyPrefix: config.store.key_prefix, metrics, logger };
  let runtime = buildRuntime(loaded, pools, policyDeps);
  let appliedDigest = loaded.digest;
  let rejectedDigest: string | undefined;
  const forwarder = new Forwarder();
  const handle = createPipeline({ runtime: () => runtime, forwarder, metrics, logger, accessLog, storeKind: store.kind });

  let inFlight = 0;
  let draining = false;
  let onIdle: (() => void) | undefined;
  const server = createServer({ maxHeaderSize: parseSize(config.server.limits.max_header_bytes) }, (req, res) => {
    inFlight++;
    res.once('close', () => {
      inFlight--;
      if (inFlight === 0) onIdle?.();
    });
    if (draining) res.setHeader('connection', 'close');
    handle(req, res);
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => answerMalformedRequest(err, socket, metrics, logger));

  const notReadyReason = async (): Promise<string | undefined> => {
    if (draining) return 'shutting down';
    if (!(await store.ready())) return `${config.store.type} store unreachable`;
    return undefined;
  };
  const admin = options.worker
    ? undefined
    : createAdminServer({ metrics: () => metrics.registry.metrics(), metricsContentType: metrics.registry.contentType, notReadyReason });

  let proxyUrl: string;
  let adminUrl: string | undefined;
  try {
    proxyUrl = await listen(server, config.server.listen);
    adminUrl = admin && (await listen(admin, config.server.admin_listen));
  } catch (err) {
    // Nothing may keep the process alive after a failed start: a Redis connection would, for good.
    server.close();
    admin?.close();
    forwarder.close();
    pools.destroyAll();
    await store.close();
    throw new StartError(`cannot listen: ${(err as Error).message}`, { cause: err });
  }
  const started = { proxy: proxyUrl, admin: adminUrl, config: loaded.file, store: config.store.type, routes: config.routes.length };
  logger.info(started, options.worker ? 'worker listening' : 'agentgate listening');

  let reloading: Promise<boolean> = Promise.resolve(true);
  const reload = (trigger: string): Promise<boolean> => {
    reloading = reloading.then(() => applyReload(trigger));
    return reloading;
  };

  async function applyReload(trigger: string): Promise<boolean> {
    try {
      const next = await loadConfigFile(options.configFile, env);
      const restartOnly = RESTART_ONLY_KEYS.filter((key) => JSON.stringify(next.config[key]) !== JSON.stringify(runtime.config[key]));
      if (restartOnly.length > 0) {
        throw new ConfigError(
          restartOnly.map((key) => ({ file: options.configFile, line: 0, column: 0, keyPath: key, message: 'changes here take effect only after a restart; the running config was kept' })),
        );
      }
      const previous = runtime;
      runtime = buildRuntime(next, pools, policyDeps);
      appliedDigest = next.digest;
      logger.level = next.config.logging.level;
      pools.releaseUnusedPools(runtime, maxTimeoutMs(previous) + 1000);
      metrics.configReloads.inc({ result: 'success' });
      logger.info({ trigger, routes: next.config.routes.length }, 'config reloaded');
      return true;
    } catch (err) {
      if (err instanceof ConfigError) rejectedDigest = err.digest;
      metrics.configReloads.inc({ result: 'error' });
      const problems = err instanceof ConfigError ? err.message.split('\n') : [(err as Error).message];
      logger.error({ trigger, problems }, 'config reload failed; the previous config keeps serving');
      return false;
    }
  }

  let watcher: FSWatcher | undefined;
  if (options.watchConfig !== false) {
    watcher = watchConfigFile(
      loaded.file,
      async () => {
        // Watchers fire for unrelated files in the folder and several times per save: reload only on a real change,
        // and try content already found invalid only once (it was logged and counted then).
        const digest = await fileDigest(loaded.file);
        if (digest !== undefined && digest !== appliedDigest && digest !== rejectedDigest) await reload('file change');
      },
      (err) => logger.error({ err: err.message }, 'config file watching stopped; reload with SIGHUP'),
    );
  }

  let shuttingDown: Promise<void> | undefined;
  const shutdown = (): Promise<void> => {
    shuttingDown ??= (async () => {
      draining = true;
      watcher?.close();
      logger.info({ in_flight: inFlight }, 'shutting down: draining in-flight requests');
      server.close();
      server.closeIdleConnections();
      if (inFlight > 0) {
        const idle = new Promise<void>((resolve) => (onIdle = resolve));
        const deadline = parseDuration(config.server.shutdown_timeout);
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), deadline)));
        if (await Promise.race([idle.then(() => false), timedOut])) {
          logger.warn({ in_flight: inFlight }, 'drain timeout reached; closing remaining connections');
        }
        clearTimeout(timer);
      }
      server.closeAllConnections();
      if (admin) {
        admin.closeAllConnections();
        await new Promise<void>((resolve) => admin.close(() => resolve()));
      }
      forwarder.close();
      pools.destroyAll();
      await store.close();
      accessLog.flush();
      logger.info('stopped');
      await new Promise<void>((resolve) => logger.flush(() => resolve()));
    })();
    return shuttingDown;
  };

  return { proxyUrl, adminUrl, logger, metrics, store, runtime: () => runtime, notReadyReason, reload, shutdown };
}

/**
 * V8's allocation-site pretenuring allocates an object literal straight in the old generation once most of its objects
 * were seen surviving a young collection, and never revisits the decision. Under proxy load it has been seen to settle
 * on per-request objects (the first requests are slow while code warms up): from then on every request's objects are
 * promoted and freed only by major GCs (measured: scavenges of ~11 ms instead of under 1 ms, a major GC every second,
 * about 20% less throughput). A gateway's per-request objects die young, so the heuristic is switched off. It only
 * decides where objects are allocated, never what the program does, and can be changed while the process runs.
 */
function keepRequestObjectsYoung(): void {
  setFlagsFromString('--no-allocation-site-pretenuring');
}

/** Calls `emit` at most once per interval; the calls skipped in between are counted into the next one. */
function throttled<T>(intervalMs: number, emit: (value: T, suppressed: number) => void): (value: T) => void {
  let last = 0;
  let suppressed = 0;
  return (value) => {
    const now = Date.now();
    if (now - last < intervalMs) {
      suppressed++;
      return;
    }
    last = now;
    emit(value, suppressed);
    suppressed = 0;
  };
}

function maxTimeoutMs(runtime: Runtime): number {
  let max = 0;
  for (const route of runtime.router.routes) max = Math.max(max, route.timeoutMs);
  return max;
}

/** Listens on a `host:port` of the config; resolves with the URL it can be reached at. */
export async function listen(server: Server, address: string): Promise<string> {
  const { host, port } = parseListenAddress(address)!;
  server.listen(port, host);
  await once(server, 'listening');
  const bound = server.address();
  const boundPort = typeof bound === 'object' && bound ? bound.port : port;
  const shownHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return `http://${shownHost}:${boundPort}`;
}

/**
 * Watches the config's folder rather than the file: editors replace files by rename, and Kubernetes swaps
 * a ConfigMap through a `..data` symlink, neither of which a watch on the file itself would see.
 */
function watchConfigFile(file: string, onChange: () => Promise<void>, onError: (err: Error) => void): FSWatcher {
  let timer: NodeJS.Timeout | undefined;
  const watcher = watch(path.dirname(file), { persistent: false }, () => {
    clearTimeout(timer);
    timer = setTimeout(() => void onChange(), RELOAD_DEBOUNCE_MS);
  });
  watcher.on('error', (err) => {
    watcher.close();
    onError(err);
  });
  return watcher;
}

async function fileDigest(file: string): Promise<string | undefined> {
  try {
    return createHash('sha256').update(await readFile(file)).digest('hex');
  } catch {
    return undefined; // mid-swap: the next event will catch the final state
  }
}

/** Node's HTTP parser refused the request (oversized head, smuggling-shaped framing, garbage); answer with an envelope anyway. */
function answerMalformedRequest(err: NodeJS.ErrnoException, socket: Duplex, metrics: GatewayMetrics, logger: Logger): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const [status, detail] = describeParseError(err);
  const requestId = uuidv7();
  const error = new GatewayError('INVALID_REQUEST', detail, { status, retryable: status === 408 });
  const body = JSON.stringify(problemDocument(error, requestId));
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n` +
      `content-type: application/problem+json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `x-request-id: ${requestId}\r\nx-should-retry: ${error.retryable}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n${body}`,
  );
  metrics.requests.inc({ route: 'none', method: 'OTHER', status_code: String(status), outcome: 'invalid_request' });
  logger.info({ request_id: requestId, route: 'none', status, outcome: 'invalid_request', code: 'INVALID_REQUEST', parse_error: err.code }, 'request');
}

function describeParseError(err: NodeJS.ErrnoException): [number, string] {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return [431, 'The request line and headers are larger than this gateway accepts.'];
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
    case 'HPE_INVALID_TRANSFER_ENCODING':
      return [400, 'The request has conflicting or invalid Content-Length and Transfer-Encoding headers.'];
    case 'HPE_INVALID_CONTENT_LENGTH':
      return [400, 'The request has an invalid Content-Length header.'];
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return [408, 'The request was not received completely in time.'];
    default:
      return [400, `The request is not valid HTTP/1.1 (${err.code ?? 'parse error'}).`];
  }
}

// Starts and stops a gateway: config, store, proxy and admin servers, config reloads (SIGHUP or file change) and draining shutdown.
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerOptions, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { readFileSync, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { once } from 'node:events';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { DestinationStream } from 'pino';
import { loadConfigFile, ConfigError, type LoadedConfig } from './config/load.ts';
import { coverageWarnings } from './agent-contract/match.ts';
import type { Config } from './config/schema.ts';
import { parseDuration, parseListenAddress, parseSize } from './config/units.ts';
import { buildRuntime, UpstreamPools, type Runtime } from './runtime.ts';
import { fileDigest, watchFile } from './config/watch.ts';
import { JwtVerifiers, loadJwtSupport } from './agents/authenticate.ts';
import { AgentsFileWatch } from './agents/watch.ts';
import { createStore } from './store/index.ts';
import type { Store, StoreError } from './store/store.ts';
import { Forwarder } from './proxy/forwarder.ts';
import { createPipeline } from './pipeline.ts';
import type { SelfCall } from './mcp/call.ts';
import { InternalSecret } from './mcp/internal-client.ts';
import { ADMIN_MAX_CONNECTIONS, createAdminServer } from './admin/server.ts';
import { ApprovalStore } from './approvals/store.ts';
import { WebhookNotifier, type WebhookNotifierOptions } from './approvals/webhook.ts';
import { createLogger, type Logger } from './observability/logger.ts';
import { AccessLog } from './observability/access-log.ts';
import { GatewayMetrics } from './observability/metrics.ts';
import { GatewayError, problemAnswer } from './errors/problem.ts';
import type { ErrorCode } from './errors/catalog.ts';
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
  /**
   * Test hook: the approval.notify webhook's delivery settings (backoff base delay, attempts, per-attempt timeout, bound),
   * so that tests can retry within milliseconds. Left out in production: 1 s doubling, 6 attempts, 5 s, 1000 notices.
   */
  approvalWebhook?: Pick<WebhookNotifierOptions, 'baseDelayMs' | 'maxAttempts' | 'timeoutMs' | 'maxPending'>;
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

/**
 * Routes the legacy API's spec does not describe, and spec operations no route serves: what `agentgate validate` warns
 * of, logged at start and on every reload too, since a spec edited beside the config is seldom validated first.
 */
function logSpecCoverage(loaded: LoadedConfig, logger: Logger): void {
  if (!loaded.openapi) return;
  for (const warning of coverageWarnings(loaded.config, loaded.openapi)) logger.warn({ warning }, 'openapi.spec and the routes disagree');
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


/** A flood of connections (or of failing accepts) is logged once per interval, with a count of what was skipped. */
const CONNECTION_LOG_INTERVAL_MS = 5000;

/**
 * A refused connection (its request malformed or too slow) is closed the way nginx's lingering_close does it: the
 * answer, then FIN, then whatever the client still sends is read and dropped for at most this long, and the socket is
 * destroyed. Closing at once, with the client's bytes still unread, would make the kernel send a reset that can
 * destroy the answer before the client reads it; waiting for the client to close would let it keep the descriptor.
 */
const LINGER_MS = 1500;

/**
 * node:http's requestTimeout, the time a whole request (head and body) may take to arrive: node's own default, kept as
 * an outer bound behind server.timeouts.request_head (the head) and request_body_idle (each pause in the body).
 */
const REQUEST_TOTAL_MS = 300_000;

/**
 * Open files kept for everything but client connections of the proxy port: stdio and log files, the listening
 * sockets, the store's connections (several on a Redis Cluster), node's own (epoll, event fds, the worker IPC channel),
 * DNS, approval webhook deliveries (at most 8 at once, src/approvals/webhook.ts). The admin port's connections and the upstream pools are added to it.
 */
const FD_RESERVE = 128;

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
  const store = await createStore(
    config.store,
    (error) => {
      metrics.storeErrors.inc({ store: config.store.type, operation: error.operation });
      logStoreError(error);
    },
    metrics,
  );
  const pools = new UpstreamPools();
  // The proxy listener's URL is known once it is bound (below); MCP tool calls are sent there.
  const self: SelfCall = { url: undefined, secret: new InternalSecret() };
  /** The admin listener's URL once bound (undefined for a worker: its primary serves the admin port). */
  let adminBound: string | undefined;
  // One notifier for the gateway's life, across reloads: a reload does not cancel the retries of notices already sent.
  const approvalNotifier = new WebhookNotifier({
    logger,
    metrics,
    // server is restart-only, so server.admin_url is the same in every config this gateway runs.
    adminBase: () => config.server.admin_url ?? adminBound ?? listenUrl(config.server.admin_listen),
    proxyUrl: () => self.url,
    ...options.approvalWebhook,
  });
  const policyDeps = {
    store,
    keyPrefix: config.store.key_prefix,
    metrics,
    logger,
    requestBodyIdleMs: parseDuration(config.server.timeouts.request_body_idle),
    approvalNotifier,
  };
  const jwtVerifiers = new JwtVerifiers();
  await loadJwtSupport(config);
  let runtime = buildRuntime(loaded, pools, policyDeps, jwtVerifiers);
  const warnApprovalsInMemory = approvalsInMemoryWarning(logger);
  warnApprovalsInMemory(config);
  const agentsFile = new AgentsFileWatch({ logger, metrics }, () => ({ config: runtime.config, authenticator: runtime.callers.authenticator }), options.watchConfig !== false);
  agentsFile.follow(loaded.agents);
  let appliedDigest = loaded.digest;
  /** The content the last reload refused, so that the watcher tries it once; cleared once the file is in force again. */
  let rejectedDigest: string | undefined;
  /** True from a refused reload until a reload succeeds or the watcher sees the file back at the config in force. */
  let fileRefused = false;
  const forwarder = new Forwarder();
  const handle = createPipeline({ runtime: () => runtime, forwarder, metrics, logger, accessLog, store, self });

  let inFlight = 0;
  let draining = false;
  let onIdle: (() => void) | undefined;
  const timeouts = clientTimeouts(config);
  // requireHostHeader: false, so that a request without Host gets the pipeline's envelope (with a request id) rather
  // than Node's bare 400; the pipeline refuses it all the same (src/pipeline.ts checkRequestHead).
  const serverOptions = { maxHeaderSize: parseSize(config.server.limits.max_header_bytes), requireHostHeader: false, ...proxyServerTimeouts(timeouts) };
  const server = createServer(serverOptions, (req, res) => {
    inFlight++;
    const connection = connectionOf(req.socket);
    connection.open++;
    res.once('close', () => {
      inFlight--;
      if (--connection.open === 0) connection.settled?.();
      if (inFlight === 0) onIdle?.();
    });
    if (draining) res.setHeader('connection', 'close');
    handle(req, res);
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => refuseConnection(err, socket as Socket, timeouts, metrics, logger));
  // An Expect other than 100-continue: Node would answer a bare 417 without an envelope or a request id.
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => refuseExpectation(req, res, metrics, logger));
  const bound = connectionBound(config, openFileLimit());
  server.maxConnections = bound.maxConnections;
  if (bound.lowered) {
    logger.warn(
      { max_connections: config.server.limits.max_connections, effective: bound.maxConnections, open_file_limit: bound.openFileLimit, reserved: bound.reserved },
      `server.limits.max_connections lowered to ${bound.maxConnections}: the open-file limit (${bound.openFileLimit}) must also hold ${bound.reserved} descriptors for upstream pools, the admin port, the store and log files; raise the limit (ulimit -n, LimitNOFILE, the container's nofile) to allow more`,
    );
  }
  server.on(
    'drop',
    throttled(CONNECTION_LOG_INTERVAL_MS, (_data: unknown, suppressed: number) =>
      logger.warn({ max_connections: bound.maxConnections, suppressed }, 'connection limit reached: new connections to the proxy port are closed on arrival'),
    ),
  );

  const notReadyReason = async (): Promise<string | undefined> => {
    if (draining) return 'shutting down';
    if (!(await store.ready())) return `${config.store.type} store unreachable`;
    return undefined;
  };
  const admin = options.worker
    ? undefined
    : createAdminServer({
        metrics: () => metrics.registry.metrics(),
        metricsContentType: metrics.registry.contentType,
        notReadyReason,
        approvals: { approvals: new ApprovalStore(store, config.store.key_prefix), config: () => runtime.config, proxyUrl: () => self.url, metrics, logger },
      });

  let proxyUrl: string;
  let adminUrl: string | undefined;
  try {
    proxyUrl = await listen(server, config.server.listen);
    self.url = proxyUrl;
    adminUrl = admin && (await listen(admin, config.server.admin_listen));
    adminBound = adminUrl;
  } catch (err) {
    // Nothing may keep the process alive after a failed start: a Redis connection would, for good.
    server.close();
    admin?.close();
    approvalNotifier.close();
    forwarder.close();
    pools.destroyAll();
    agentsFile.close();
    jwtVerifiers.closeAll();
    await store.close();
    throw new StartError(`cannot listen: ${(err as Error).message}`, { cause: err });
  }
  keepAccepting(server, 'proxy', logger);
  if (admin) keepAccepting(admin, 'admin', logger);
  const started = { proxy: proxyUrl, admin: adminUrl, config: loaded.file, store: config.store.type, routes: config.routes.length };
  logger.info(started, options.worker ? 'worker listening' : 'agentgate listening');
  logSpecCoverage(loaded, logger);

  let reloading: Promise<boolean> = Promise.resolve(true);
  const reload = (trigger: string): Promise<boolean> => {
    reloading = reloading.then(() => applyReload(trigger));
    return reloading;
  };

  async function applyReload(trigger: string): Promise<boolean> {
    try {
      // Read before the load: a spec edited while this reload runs differs from it, and so reloads once more.
      const specBefore = specFile === undefined ? undefined : await fileDigest(specFile);
      const next = await loadConfigFile(options.configFile, env);
      const restartOnly = RESTART_ONLY_KEYS.filter((key) => JSON.stringify(next.config[key]) !== JSON.stringify(runtime.config[key]));
      if (restartOnly.length > 0) {
        const refused = new ConfigError(
          restartOnly.map((key) => ({ file: options.configFile, line: 0, column: 0, keyPath: key, message: 'changes here take effect only after a restart; the running config was kept' })),
        );
        refused.digest = next.digest;
        throw refused;
      }
      const previous = runtime;
      await loadJwtSupport(next.config);
      runtime = buildRuntime(next, pools, policyDeps, jwtVerifiers);
      warnApprovalsInMemory(next.config);
      agentsFile.follow(next.agents);
      await followSpec(next, specBefore);
      jwtVerifiers.releaseUnused(new Set(runtime.callers.authenticator?.jwt ? [runtime.callers.authenticator.jwt] : []));
      appliedDigest = next.digest;
      rejectedDigest = undefined;
      fileRefused = false;
      logger.level = next.config.logging.level;
      pools.releaseUnusedPools(runtime, maxTimeoutMs(previous) + 1000);
      metrics.configReloads.inc({ result: 'success' });
      logger.info({ trigger, routes: next.config.routes.length }, 'config reloaded');
      logSpecCoverage(next, logger);
      return true;
    } catch (err) {
      rejectedDigest = err instanceof ConfigError ? err.digest : undefined;
      fileRefused = true;
      metrics.configReloads.inc({ result: 'error' });
      const problems = err instanceof ConfigError ? err.message.split('\n') : [(err as Error).message];
      logger.error({ trigger, problems }, 'config reload failed; the previous config keeps serving');
      return false;
    }
  }

  /**
   * Watchers fire for unrelated files in the folder and several times per save: reload only on a real change, and try
   * content already found invalid only once (it was logged and counted then). A file edited back to the config in force
   * after a refused edit needs no reload, but is logged, or the last word in the log would still be the refusal. It is
   * not counted in agentgate_config_reloads_total: nothing was reloaded, so it is neither a success (the config in force
   * did not change) nor an error; AgentgateConfigReloadFailed clears by itself once its window has passed.
   */
  async function onFileChange(trigger: string): Promise<boolean> {
    const digest = await fileDigest(loaded.file);
    if (digest === undefined) return false;
    if (digest === appliedDigest) {
      if (fileRefused) {
        fileRefused = false;
        rejectedDigest = undefined; // the same mistake made again is a new edit, to be tried and logged again
        logger.info({ trigger }, 'config file is back to the config in force; nothing to reload');
      }
      return true;
    }
    if (digest === rejectedDigest) return false;
    return applyReload(trigger);
  }

  let watcher: FSWatcher | undefined;
  if (options.watchConfig !== false) {
    watcher = watchFile(
      loaded.file,
      () => {
        // In the reload queue, so that the digests compared are those of the reloads before it.
        reloading = reloading.then(() => onFileChange('file change'));
        return reloading.then(() => undefined);
      },
      (err) => logger.error({ err: err.message }, 'config file watching stopped; reload with SIGHUP'),
    );
  }

  // The legacy API's spec (openapi.spec) is part of the config in force: an edit of it reloads the config, as an edit
  // of the config would. Its own watch, because it may live in another folder, and the config's digest does not see it.
  let specWatcher: FSWatcher | undefined;
  let specFile: string | undefined;
  /** The spec's content the config in force was loaded with, or last tried: the same content is not tried twice. */
  let specDigest: string | undefined;
  /** `digestBefore`: the spec's digest read before `next` was loaded, when its file is the one followed already. */
  async function followSpec(next: LoadedConfig, digestBefore?: string): Promise<void> {
    const file = next.openapi?.file;
    specDigest = file === undefined ? undefined : file === specFile && digestBefore !== undefined ? digestBefore : await fileDigest(file);
    if (file === specFile) return;
    specWatcher?.close();
    specWatcher = undefined;
    specFile = file;
    if (file === undefined || options.watchConfig === false) return;
    specWatcher = watchFile(
      file,
      () => {
        reloading = reloading.then(async () => {
          const digest = await fileDigest(file);
          if (digest === undefined || digest === specDigest) return true;
          specDigest = digest;
          return applyReload('openapi spec change');
        });
        return reloading.then(() => undefined);
      },
      (err) => logger.error({ err: err.message }, 'openapi spec watching stopped; reload with SIGHUP after editing it'),
    );
  }
  await followSpec(loaded);

  let shuttingDown: Promise<void> | undefined;
  const shutdown = (): Promise<void> => {
    shuttingDown ??= (async () => {
      draining = true;
      specWatcher?.close();
      watcher?.close();
      agentsFile.close();
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
      // After the drain, so that the requests drained could still notify; retries not yet made are cancelled.
      approvalNotifier.close();
      forwarder.close();
      pools.destroyAll();
      jwtVerifiers.closeAll();
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

/** V8's gc extension: `last-resort` is the collection V8 makes before giving up on memory, which also gives pages back. */
type GcExtension = (options: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;

/**
 * Starting up (reading the config, compiling its schemas, compiling the gateway's own code) grows V8's young generation
 * to its cap and leaves garbage in the old one, and nothing collects it while a gateway waits for its first requests:
 * measured, an idle gateway held 107 MiB of RSS, 84 MiB after one such collection (docs/performance.md, "Memory"). The
 * process's owner (the CLI, the demo) calls this once the gateway listens. V8 offers this collection only through its
 * gc extension, which is switched on just long enough to create one context that has it, so no global `gc` appears
 * anywhere else in the process.
 */
export function releaseStartUpMemory(): void {
  // Started with --expose-gc (an operator's choice), the extension is there already and is left switched on.
  let gc = (globalThis as { gc?: GcExtension }).gc;
  if (gc === undefined) {
    setFlagsFromString('--expose-gc');
    try {
      gc = runInNewContext('gc') as GcExtension;
    } finally {
      setFlagsFromString('--no-expose-gc');
    }
  }
  gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
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
  return urlOf(host, typeof bound === 'object' && bound ? bound.port : port);
}

/** The URL of a `host:port` of the config, as written (port 0 stays 0): where a listener not bound here is reached. */
function listenUrl(address: string): string {
  const { host, port } = parseListenAddress(address)!;
  return urlOf(host, port);
}

function urlOf(host: string, port: number): string {
  const shownHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return `http://${shownHost}:${port}`;
}

/**
 * On the memory store, approvals are lost with the process and seen by no other replica: said once when a config
 * with approvals comes into force (at start, or by a reload that adds the first route with approval).
 */
function approvalsInMemoryWarning(logger: Logger): (config: Config) => void {
  let had = false;
  return (config) => {
    const routes = config.routes.filter((route) => route.approval !== undefined).map((route) => route.name);
    const has = config.store.type === 'memory' && routes.length > 0;
    if (has && !had) {
      logger.warn(
        { store: config.store.type, routes },
        "approvals live in this process's memory: a restart loses pending and approved approvals; use store type redis to keep them and share them between replicas",
      );
    }
    had = has;
    const humans = config.routes.filter((route) => route.approval?.by === 'human').map((route) => route.name);
    if (humans.length > 0 && config.server.admin_token === undefined) {
      // Allowed on a loopback admin port (the contract's rule), but any process on this host, an agent's included, may decide.
      logger.warn(
        { routes: humans },
        'approvals by a person without server.admin_token: any process on this host can approve them through the admin port; set admin_token unless only people use this host',
      );
    }
  };
}

// ---------- client connections of the proxy port: timeouts, limits, refusals ----------

/** server.timeouts as the proxy server applies them. */
interface ClientTimeouts {
  /** request_head, as written in the config (for the answer's detail) and in milliseconds. */
  head: string;
  headMs: number;
  keepAliveMs: number;
}

function clientTimeouts(config: Config): ClientTimeouts {
  const { request_head: head, keep_alive: keepAlive } = config.server.timeouts;
  return { head, headMs: parseDuration(head), keepAliveMs: parseDuration(keepAlive) };
}

/**
 * node:http enforces the head timeout itself: each connection's parser is stamped when the connection opens and again
 * at the first byte of every request, and a timer (connectionsCheckingInterval) ends every connection whose head is
 * not complete within headersTimeout of that stamp, through 'clientError' with ERR_HTTP_REQUEST_TIMEOUT. So a
 * connection that never sends a byte is closed after request_head too (checked on node 24 over a raw socket, and held
 * by test/connections.test.ts): no timer of our own is needed. Between two requests a connection is idle, not in a
 * request, and keepAliveTimeout closes it (node waits its keepAliveTimeoutBuffer, 1 s, past the `Keep-Alive:
 * timeout=N` it advertises, so a client that honours the header never races the close).
 */
function proxyServerTimeouts(timeouts: ClientTimeouts): ServerOptions {
  return {
    headersTimeout: timeouts.headMs,
    requestTimeout: Math.max(REQUEST_TOTAL_MS, timeouts.headMs),
    keepAliveTimeout: timeouts.keepAliveMs,
    // node's default is 30 s, which would let a 10 s head timeout run to 40 s. The check walks only the connections
    // in the middle of a request's head or body.
    connectionsCheckingInterval: Math.min(1000, Math.max(50, Math.floor(timeouts.headMs / 4))),
  };
}

export interface ConnectionBound {
  /** What server.maxConnections of the proxy port is set to. */
  maxConnections: number;
  /** True when that is less than server.limits.max_connections, to fit the open-file limit. */
  lowered: boolean;
  openFileLimit: number | undefined;
  /** Descriptors kept for everything else: FD_RESERVE, the admin port's connections and the upstream pools. */
  reserved: number;
}

/**
 * The proxy port's connection bound: server.limits.max_connections, lowered when the process's open-file limit could
 * not also hold everything else. A flood of client connections then meets the bound (each further one is closed on
 * arrival) long before accept() and the upstream pools meet EMFILE, and the admin port keeps serving. Computed at start
 * from the upstreams configured then (server is restart-only, so max_connections cannot change without a restart).
 */
export function connectionBound(config: Config, openFiles: number | undefined): ConnectionBound {
  const configured = config.server.limits.max_connections;
  // One keep-alive pool per upstream origin and pool size (UpstreamPools.agentFor), each at most max_sockets open.
  const pools = new Map<string, number>();
  for (const upstream of Object.values(config.upstreams)) {
    const url = new URL(upstream.url);
    pools.set(`${url.protocol}//${url.host}|${upstream.max_sockets}`, upstream.max_sockets);
  }
  let reserved = FD_RESERVE + ADMIN_MAX_CONNECTIONS;
  for (const sockets of pools.values()) reserved += sockets;
  if (openFiles === undefined || configured + reserved <= openFiles) {
    return { maxConnections: configured, lowered: false, openFileLimit: openFiles, reserved };
  }
  // A limit too low even for the reserve still leaves the proxy port a quarter of it rather than nothing; the warning
  // names the numbers. (Upstream sockets only reach max_sockets with as many requests in flight.)
  const maxConnections = Math.min(configured, Math.max(openFiles - reserved, Math.floor(openFiles / 4), 1));
  return { maxConnections, lowered: maxConnections < configured, openFileLimit: openFiles, reserved };
}

/** The soft limit on open files (RLIMIT_NOFILE) of this process, as node left it; undefined without /proc (macOS) or when unlimited. */
export function openFileLimit(): number | undefined {
  let limits: string;
  try {
    limits = readFileSync('/proc/self/limits', 'utf8');
  } catch {
    return undefined;
  }
  const soft = /^Max open files\s+(\d+)\s/m.exec(limits)?.[1];
  return soft === undefined ? undefined : Number(soft);
}

/**
 * A failed accept (EMFILE or ENFILE when descriptors run out) is an 'error' event on the listening server, which with
 * no listener would end the process. It is logged instead; the server keeps listening and accepts again once
 * descriptors are free.
 */
export function keepAccepting(server: Server, port: 'proxy' | 'admin', logger: Logger): void {
  server.on(
    'error',
    throttled(CONNECTION_LOG_INTERVAL_MS, (err: NodeJS.ErrnoException, suppressed: number) =>
      logger.error({ port, err: err.message, code: err.code, suppressed }, 'accepting a connection failed'),
    ),
  );
}

/** What the gateway keeps about one client connection of the proxy port. */
interface ConnectionState {
  /** Requests handed to the pipeline whose responses have not closed yet. */
  open: number;
  /** Set once the connection is refused: later parser errors and timeouts on it are ignored. */
  refused: boolean;
  /** Runs when `open` drops to 0: a refusal's answer waiting for the answers before it. */
  settled: (() => void) | undefined;
}

const CONNECTION = Symbol('agentgate.connection');

/** node:http's socket, with the parser it sets on it (socket.parser.incoming: the request being read, or the last one). */
type ProxySocket = Socket & { [CONNECTION]?: ConnectionState; parser?: { incoming?: IncomingMessage | null } | null };

function connectionOf(socket: Socket): ConnectionState {
  return ((socket as ProxySocket)[CONNECTION] ??= { open: 0, refused: false, settled: undefined });
}

/**
 * node:http refused what the client sent (an oversized head, smuggling-shaped framing, garbage) or the client was too
 * slow with a request head. The answer is an envelope, and it takes its turn: HTTP/1.1 answers a connection's requests
 * in order, so when requests before the refused one are still being answered (pipelining), the refusal waits for them
 * rather than be read as the answer to the first of them. Then the connection is closed for good (lingeringClose).
 */
function refuseConnection(err: NodeJS.ErrnoException, socket: Socket, timeouts: ClientTimeouts, metrics: GatewayMetrics, logger: Logger): void {
  const connection = connectionOf(socket);
  // The parser stays in its error state, and node:http's timer may still find the connection: one refusal is enough.
  if (connection.refused) return;
  connection.refused = true;
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const timedOut = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
  if (timedOut && socket.bytesRead === 0) {
    // A connection that never sent a byte has no request to answer (and a client that sends one just as an
    // unasked-for 408 arrives would take it for the answer): it is closed, as nginx and Go's server do.
    socket.destroy();
    return;
  }
  discardInput(socket);
  const current = (socket as ProxySocket).parser?.incoming;
  if (current && !current.complete) {
    // The fault is in the body of a request the pipeline already has (its chunked framing broke, or the whole request
    // took longer than REQUEST_TOTAL_MS): that request is answered by the pipeline or not at all, never twice. If it
    // is still being answered, the connection is cut, which the pipeline sees as the client gone; if its answer is
    // out, the connection is closed without another.
    if (connection.open > 0) socket.destroy();
    else lingeringClose(socket, undefined);
    return;
  }
  const [status, code, detail] = describeClientError(err, timeouts);
  const requestId = uuidv7();
  const answer = problemAnswer(new GatewayError(code, detail, { status }), requestId);
  let head = `HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status]}\r\n`;
  for (const [name, value] of Object.entries(answer.headers)) head += `${name}: ${value}\r\n`;
  const raw = `${head}content-length: ${Buffer.byteLength(answer.body)}\r\nx-request-id: ${requestId}\r\nconnection: close\r\n\r\n${answer.body}`;
  if (connection.open === 0) lingeringClose(socket, raw);
  else {
    connection.settled = () => {
      connection.settled = undefined;
      lingeringClose(socket, raw);
    };
  }
  const outcome = code.toLowerCase();
  metrics.requests.inc({ route: 'none', method: 'OTHER', status_code: String(status), outcome });
  logger.info({ request_id: requestId, route: 'none', status, outcome, code, parse_error: err.code, waits_for: connection.open || undefined }, 'request');
}

function refuseExpectation(req: IncomingMessage, res: ServerResponse, metrics: GatewayMetrics, logger: Logger): void {
  const requestId = uuidv7();
  const detail = 'The request expects something other than 100-continue, which this gateway cannot meet; send it without that Expect header.';
  const answer = problemAnswer(new GatewayError('INVALID_REQUEST', detail, { status: 417 }), requestId);
  res.writeHead(417, { ...answer.headers, 'x-request-id': requestId, 'content-length': Buffer.byteLength(answer.body), connection: 'close' });
  res.end(answer.body);
  metrics.requests.inc({ route: 'none', method: 'OTHER', status_code: '417', outcome: 'invalid_request' });
  logger.info({ request_id: requestId, route: 'none', method: req.method, status: 417, outcome: 'invalid_request', code: 'INVALID_REQUEST' }, 'request');
}

/**
 * From now on the connection's bytes are read and dropped: node:http's parser gets no more of them (after its error
 * it would report each chunk again), and a client that half-closes no longer makes node:http end the socket before
 * the refusal's answer is out. (A 'data' listener also takes the socket back from the parser: node:http "unconsumes"
 * it for one.) Reading on matters: a socket closed with unread bytes sends a reset instead of its last answer.
 */
function discardInput(socket: Socket): void {
  socket.removeAllListeners('data');
  socket.removeAllListeners('end');
  socket.on('data', () => {});
  socket.resume();
}

/** Writes `answer` (if any) and FIN, then destroys the socket once the client closes too or LINGER_MS have passed. */
function lingeringClose(socket: Socket, answer: string | undefined): void {
  // Gone already, or closing after an answer that asked for it (Connection: close): nothing more goes out.
  if (socket.destroyed || !socket.writable) return;
  socket.setTimeout(0); // node:http's keep-alive timer, set when the last answer before this one finished
  if (answer === undefined) socket.end();
  else socket.end(answer);
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  socket.once('close', () => clearTimeout(timer));
}

function describeClientError(err: NodeJS.ErrnoException, timeouts: ClientTimeouts): [number, ErrorCode, string] {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return [431, 'INVALID_REQUEST', 'The request line and headers are larger than this gateway accepts.'];
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
    case 'HPE_INVALID_TRANSFER_ENCODING':
      return [400, 'INVALID_REQUEST', 'The request has conflicting or invalid Content-Length and Transfer-Encoding headers.'];
    case 'HPE_INVALID_CONTENT_LENGTH':
      return [400, 'INVALID_REQUEST', 'The request has an invalid Content-Length header.'];
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return [408, 'REQUEST_TIMEOUT', `The request line and headers did not arrive within ${timeouts.head} (server.timeouts.request_head).`];
    default:
      return [400, 'INVALID_REQUEST', `The request is not valid HTTP/1.1 (${err.code ?? 'parse error'}).`];
  }
}

#!/usr/bin/env -S node --max-semi-space-size=8 --heap-growing-percent=20
// Command line: `agentgate --config FILE` serves, `agentgate validate --config FILE` checks a config and exits 0 or 1.
import { readFileSync } from 'node:fs';
import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { loadConfigFile, ConfigError } from './config/load.ts';
import { parseDuration } from './config/units.ts';
import { MAX_WORKERS } from './config/schema.ts';
import { releaseStartUpMemory, restartOnlyDigest, startGateway, StartError } from './gateway.ts';
import { startPrimary, WORKER_SLOT_ENV, WORKER_STARTED_WITH_ENV } from './workers/primary.ts';
import { serveAsWorker } from './workers/worker.ts';
import { keyHash, newKey } from './agents/keys.ts';
import { AGENT_ID_PATTERN } from './agents/schema.ts';
import { coverageWarnings } from './agent-contract/match.ts';

const USAGE = `Usage:
  agentgate [serve] --config FILE      serve (AGENTGATE_CONFIG is the fallback for --config)
  agentgate validate --config FILE     check a config (and the agents file and OpenAPI spec it names): prints 'config OK'
                                       or each problem with file, line and key path; warns (on stderr) of routes the
                                       spec does not describe and spec operations no route serves
  agentgate keys new --agent ID        print a new agent key, once, and the line that lists it in agents.yaml
  agentgate --version | --help

In a clone, whatever the machine's node, 'agentgate' is: sh scripts/node.sh dist/cli.js
(in the container image: node dist/cli.js). See docs/operations.md.

Signals: SIGTERM/SIGINT drain in-flight requests and exit 0; SIGHUP reloads the config.`;

interface Args {
  command: 'serve' | 'validate' | 'keys-new' | 'help' | 'version';
  config: string | undefined;
  agent: string | undefined;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { command: 'serve', config: undefined, agent: undefined };
  if (argv[0] === 'keys') {
    if (argv[1] !== 'new') throw new Error(`unknown keys command '${argv[1] ?? ''}' (there is: keys new --agent ID)`);
    args.command = 'keys-new';
    for (let i = 2; i < argv.length; i++) {
      const arg = argv[i]!;
      if (arg === '--agent') args.agent = argv[++i];
      else if (arg.startsWith('--agent=')) args.agent = arg.slice('--agent='.length);
      else throw new Error(`unknown argument '${arg}'`);
    }
    if (!args.agent || !new RegExp(AGENT_ID_PATTERN).test(args.agent)) throw new Error('keys new needs --agent ID (letters, digits and . _ : @ -, at most 128)');
    return args;
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--config' || arg === '-c') {
      const value = argv[++i];
      if (!value) throw new Error(`${arg} needs a file path`);
      args.config = value;
    } else if (arg.startsWith('--config=')) args.config = arg.slice('--config='.length);
    else if (arg === '--help' || arg === '-h') args.command = 'help';
    else if (arg === '--version' || arg === '-v') args.command = 'version';
    else if ((arg === 'serve' || arg === 'validate') && i === 0) args.command = arg;
    else throw new Error(`unknown argument '${arg}'`);
  }
  args.config ??= process.env.AGENTGATE_CONFIG || undefined;
  return args;
}

async function main(): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`agentgate: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (args.command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (args.command === 'version') {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    process.stdout.write(`agentgate ${pkg.version}\n`);
    return 0;
  }
  if (args.command === 'keys-new') {
    process.stdout.write(issueKey(args.agent!));
    return 0;
  }
  if (!args.config) {
    process.stderr.write(`agentgate: no config file: pass --config FILE or set AGENTGATE_CONFIG\n${USAGE}\n`);
    return 2;
  }

  if (args.command === 'validate') {
    try {
      const loaded = await loadConfigFile(args.config);
      for (const warning of loaded.openapi ? coverageWarnings(loaded.config, loaded.openapi) : []) process.stderr.write(`warning: ${warning}\n`);
      process.stdout.write('config OK\n');
      return 0;
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      process.stderr.write(`${err.message}\n`);
      return 1;
    }
  }

  // Signal handlers go in before the gateway starts listening: as PID 1 in a container, a SIGTERM that finds no
  // handler is ignored, and one that arrives during start-up must still stop the gateway cleanly once it runs.
  // Until then there is no config to reload; without a handler SIGHUP's default would kill the process.
  let stopRequested: ((signal: string) => void) | undefined;
  let earlySignal: string | undefined;
  const onStopSignal = (signal: string) => (stopRequested ? stopRequested(signal) : (earlySignal ??= signal));
  process.once('SIGTERM', () => onStopSignal('SIGTERM'));
  process.once('SIGINT', () => onStopSignal('SIGINT'));
  let gateway: Running | undefined;
  process.on('SIGHUP', () => void gateway?.reload('SIGHUP'));
  try {
    gateway = await start(args.config);
  } catch (err) {
    if (err instanceof StartError) {
      process.stderr.write(`agentgate: ${err.message}; not starting\n`);
      return 1;
    }
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`agentgate: invalid config, not starting:\n${err.message}\n`);
    return 1;
  }
  const running = gateway;
  await new Promise<void>((resolve) => {
    stopRequested = (signal: string) => {
      running.logger.info({ signal }, 'signal received');
      void running.shutdown().then(resolve);
    };
    if (earlySignal) stopRequested(earlySignal);
  });
  return 0;
}

/** A new key, shown this once, and how agents.yaml lists it: by its hash alone. */
function issueKey(agent: string): string {
  const key = newKey();
  return [
    `New key for agent '${agent}' (shown only now; give it to the agent, which sends it as Authorization: Bearer <key>):`,
    '',
    `  ${key}`,
    '',
    'Add its hash to the agents file (a new agent, or one more key of an existing one; remove the old key once the',
    'agent has moved over). The file is reloaded when it changes:',
    '',
    `  - id: ${agent}`,
    `    keys: ['${keyHash(key)}']`,
    '',
  ].join('\n');
}

/** What the signal handlers act on: one gateway, or the primary of several workers. */
interface Running {
  logger: { info(fields: object, msg: string): void };
  reload(trigger: string): unknown;
  shutdown(): Promise<void>;
}

/**
 * One gateway process, or with server.workers > 1 a primary forking that many (each then comes through here as a
 * cluster worker). The config is read first to know which; each worker reads it again itself.
 */
async function start(configFile: string): Promise<Running> {
  const running = await startProcess(configFile);
  releaseStartUpMemory();
  return running;
}

async function startProcess(configFile: string): Promise<Running> {
  if (cluster.isWorker) {
    const worker = { id: Number(process.env[WORKER_SLOT_ENV]), startedWith: process.env[WORKER_STARTED_WITH_ENV]! };
    return serveAsWorker(await startGateway({ configFile, worker }));
  }
  const { config, file } = await loadConfigFile(configFile);
  const workers = config.server.workers === 'auto' ? Math.min(availableParallelism(), MAX_WORKERS) : config.server.workers;
  if (workers === 1) return startGateway({ configFile });
  return startPrimary({
    workers,
    configFile: file,
    startedWith: restartOnlyDigest(config),
    adminListen: config.server.admin_listen,
    shutdownTimeoutMs: parseDuration(config.server.shutdown_timeout),
    logLevel: config.logging.level,
  });
}

main().then(
  (code) => {
    process.exitCode = code;
    letGoOfPrimary();
  },
  (err: unknown) => {
    process.stderr.write(`agentgate: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
    letGoOfPrimary();
  },
);

/** A worker's channel to its primary keeps it alive: a worker that failed to start must close it to exit. */
function letGoOfPrimary(): void {
  // worker.disconnect(), not process.disconnect(): to node:cluster any other disconnect means "the primary is gone",
  // and it ends the worker at once with exit code 0.
  if (cluster.isWorker && process.connected) cluster.worker!.disconnect();
}

// Shared plumbing of the endurance and chaos runs: built-gateway child processes, /proc memory readings, small statistics.
import { closeSync, createReadStream, existsSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { machineFacts, procStatusKiB, ProcessGroup } from '../bench/procs.ts';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const CLI = path.join(ROOT, 'dist/cli.js');
export const HERE = import.meta.dirname;

export { machineFacts, procStatusKiB, ProcessGroup, sleep };


export function mib(bytes: number): number {
  return Math.round((bytes / 2 ** 20) * 10) / 10;
}

/** Nearest-rank percentile of an ascending array; NaN when empty. */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[index]!;
}

export function median(values: number[]): number {
  return percentile(Float64Array.from(values).sort(), 0.5);
}

export function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Writes a file by rename, so a watcher never reads it half-written. */
export function writeFileAtomic(file: string, text: string): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

/** One `agentgate --config FILE` child process, its logs in files, and whether it ended on its own. */
export interface GatewayProcess {
  readonly label: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly url: string;
  readonly adminUrl: string;
  readonly logFile: string;
  readonly errFile: string;
  /** Set just before the harness signals the process to end (SIGTERM or SIGKILL): its exit is then not a crash. */
  endedByHarness: boolean;
  /** Resolves with the exit once the process has ended. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive(): boolean;
  /** SIGKILL, as a crash of the machine or an OOM kill would. */
  kill(): Promise<void>;
  /** SIGTERM (drain), SIGKILL after graceMs; resolves with the exit code. */
  stop(graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
}

export interface SpawnGatewayOptions {
  label: string;
  configFile: string;
  /** Where the log files go. */
  dir: string;
  nodeArgs?: string[];
  env?: NodeJS.ProcessEnv;
  /** Wait for /readyz to answer 200 (the store connected), not only for the listening line. */
  waitReady?: boolean;
}

/**
 * Spawns the built CLI. The config uses port 0, so the bound ports are read from the 'agentgate listening' log line;
 * stdout (JSON log lines, one per request) goes to a file, as it would in production.
 */
export async function spawnGateway(procs: ProcessGroup, options: SpawnGatewayOptions): Promise<GatewayProcess> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run 'npm run build' first`);
  mkdirSync(options.dir, { recursive: true });
  const logFile = path.join(options.dir, `${options.label}.log`);
  const errFile = path.join(options.dir, `${options.label}.err`);
  const out = openSync(logFile, 'w');
  const err = openSync(errFile, 'w');
  const child = procs.spawn(process.execPath, [...(options.nodeArgs ?? []), CLI, '--config', options.configFile], ['ignore', out, err], options.env ?? process.env);
  closeSync(out);
  closeSync(err);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode });
    else child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const stderr = () => readText(errFile);
  const deadline = Date.now() + 20_000;
  let listening: { proxy: string; admin: string } | undefined;
  while (!listening) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${options.label} exited (${child.exitCode ?? child.signalCode}) at start:\n${stderr()}${readText(logFile).slice(0, 2000)}`);
    if (Date.now() > deadline) throw new Error(`${options.label} did not log 'agentgate listening' within 20 s:\n${stderr()}`);
    listening = findListening(logFile);
    if (!listening) await sleep(25);
  }
  const gateway: GatewayProcess = {
    label: options.label,
    child,
    pid: child.pid!,
    url: listening.proxy,
    adminUrl: listening.admin,
    logFile,
    errFile,
    endedByHarness: false,
    exited,
    alive: () => child.exitCode === null && child.signalCode === null,
    async kill() {
      gateway.endedByHarness = true;
      if (gateway.alive()) child.kill('SIGKILL');
      await exited;
    },
    async stop(graceMs = 10_000) {
      gateway.endedByHarness = true;
      if (gateway.alive()) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        const result = await exited;
        clearTimeout(timer);
        return result;
      }
      return exited;
    },
    stderr,
  };
  if (options.waitReady) {
    while (!(await isReady(gateway.adminUrl))) {
      if (!gateway.alive()) throw new Error(`${options.label} exited before it was ready:\n${stderr()}`);
      if (Date.now() > deadline) throw new Error(`${options.label} did not become ready within 20 s:\n${stderr()}`);
      await sleep(50);
    }
  }
  return gateway;
}

function findListening(logFile: string): { proxy: string; admin: string } | undefined {
  const text = readText(logFile);
  for (const line of text.split('\n')) {
    if (!line.includes('"agentgate listening"')) continue;
    try {
      const parsed = JSON.parse(line) as { proxy?: string; admin?: string };
      if (parsed.proxy && parsed.admin) return { proxy: parsed.proxy, admin: parsed.admin };
    } catch {
      // a line still being written
    }
  }
  return undefined;
}

export async function isReady(adminUrl: string): Promise<boolean> {
  try {
    const res = await fetch(`${adminUrl}/readyz`, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

export function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** The gateway's Prometheus text, or undefined when it does not answer. */
export async function scrapeMetrics(adminUrl: string): Promise<string | undefined> {
  try {
    const res = await fetch(`${adminUrl}/metrics`, { signal: AbortSignal.timeout(5000) });
    return res.status === 200 ? await res.text() : (await res.arrayBuffer(), undefined);
  } catch {
    return undefined;
  }
}

/** Sum of every sample of `name` whose labels include all of `labels`. */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== '{' && rest[0] !== ' ') continue;
    if (!Object.entries(labels).every(([k, v]) => rest.includes(`${k}="${v}"`))) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) sum += value;
  }
  return sum;
}

export interface LogProblems {
  /** Warn, error and fatal lines by `level: msg`. */
  counts: Record<string, number>;
  /** Error and fatal lines whose message is not among the expected ones. */
  unexpected_errors: number;
  examples: string[];
}

/**
 * Scans a gateway log (streamed: a soak's log is larger than any one string may be) for warn, error and fatal lines
 * (request lines are info). Error lines whose message matches `expectedErrors` (a refused reload, a circuit opening:
 * what the run provokes on purpose) are counted but not held against the gateway; `onLine` sees every such line.
 */
export async function logProblems(logFile: string, options: { expectedErrors?: RegExp[]; onLine?: (line: string) => void; maxExamples?: number } = {}): Promise<LogProblems> {
  const counts: Record<string, number> = {};
  const examples: string[] = [];
  let unexpected = 0;
  if (!existsSync(logFile)) return { counts, unexpected_errors: 0, examples };
  const lines = createInterface({ input: createReadStream(logFile, { highWaterMark: 1 << 20 }), crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.includes('"level":"warn"') && !line.includes('"level":"error"') && !line.includes('"level":"fatal"')) continue;
    options.onLine?.(line);
    const msg = /"msg":"((?:[^"\\]|\\.)*)"/.exec(line)?.[1] ?? '?';
    const level = /"level":"(\w+)"/.exec(line)?.[1] ?? '?';
    const key = `${level}: ${msg}`;
    counts[key] = (counts[key] ?? 0) + 1;
    if (level === 'warn' || options.expectedErrors?.some((re) => re.test(msg))) continue;
    unexpected++;
    if (examples.length < (options.maxExamples ?? 5)) examples.push(line.slice(0, 800));
  }
  return { counts, unexpected_errors: unexpected, examples };
}


/** redis-server's version, or undefined when it is not installed. */
export function redisServerVersion(): string | undefined {
  try {
    return /v=(\S+)/.exec(execFileSync('redis-server', ['--version'], { encoding: 'utf8' }))?.[1];
  } catch {
    return undefined;
  }
}

const exitHooks = new Set<() => void>();
process.on('exit', () => {
  for (const hook of exitHooks) {
    try {
      hook();
    } catch {
      // best effort: the process is ending
    }
  }
});

/**
 * Runs `hook` (synchronous work only) if this process exits before the returned function is called: children spawned
 * with files for stdio outlive their parent otherwise (an interrupted run, a failed test).
 */
export function killOnExit(hook: () => void): () => void {
  exitHooks.add(hook);
  return () => exitHooks.delete(hook);
}

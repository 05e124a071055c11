// The child processes of a benchmark run: started, measured through /proc, and always stopped (also on Ctrl-C).
import { spawn, execFileSync, type ChildProcess, type StdioOptions } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

/** Clock ticks per second of /proc/<pid>/stat's utime and stime. */
export const CLK_TCK = (() => {
  try {
    const value = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isInteger(value) && value > 0 ? value : 100;
  } catch {
    return 100;
  }
})();

const REPO = path.resolve(import.meta.dirname, '../..');

/** The built command line, which every bench script starts the gateway with. */
export const GATEWAY_CLI = path.join(REPO, 'dist/cli.js');

/** A bench script's `--name value` option, or `fallback`. */
export function option(name: string, fallback: string): string {
  const at = process.argv.indexOf(`--${name}`);
  return at === -1 ? fallback : process.argv[at + 1]!;
}

/**
 * Waits until the gateway's /readyz answers 200. A gateway that exits first, or is not ready within 15 s, stops the
 * script: measuring a process that never got ready would report its connection errors as figures.
 */
export async function waitForGateway(child: ChildProcess, adminPort: number, label: string): Promise<void> {
  for (let i = 0; ; i++) {
    if (await fetch(`http://127.0.0.1:${adminPort}/readyz`).then((r) => r.ok, () => false)) return;
    if (child.exitCode !== null || i === 150) throw new Error(`${label}: the gateway did not get ready (exit ${child.exitCode})`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The node flags of the image's CMD (Dockerfile), read from there so that what is measured is what ships. */
export function shippedNodeFlags(): string[] {
  const cmd = /^CMD \[(.*)\]$/m.exec(readFileSync(path.join(REPO, 'Dockerfile'), 'utf8'))?.[1] ?? '';
  const args = (JSON.parse(`[${cmd}]`) as string[]).slice(1);
  return args.slice(0, Math.max(0, args.findIndex((arg) => !arg.startsWith('--'))));
}

/** The memory limit the Kubernetes manifest gives the agentgate container, in MiB. */
export function shippedMemoryLimitMiB(): number {
  const manifest = readFileSync(path.join(REPO, 'deploy/kubernetes/deployment.yaml'), 'utf8');
  const container = manifest.slice(manifest.indexOf('- name: agentgate'));
  const limit = /limits: \{[^}]*memory: (\d+)Mi\}/.exec(container)?.[1];
  if (limit === undefined) throw new Error('deploy/kubernetes/deployment.yaml: no memory limit in Mi for the agentgate container');
  return Number(limit);
}

/** A port nothing listens on right now, on 127.0.0.1, for a process about to be started. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Garbage-collection pause seconds (all kinds) and major collections so far, from prom-client's default GC metrics. */
export async function gatewayGc(adminUrl: string): Promise<{ seconds: number; majors: number } | undefined> {
  try {
    const text = await (await fetch(`${adminUrl}/metrics`)).text();
    let seconds = 0;
    let majors = 0;
    for (const line of text.split('\n')) {
      const value = Number(line.slice(line.lastIndexOf(' ') + 1));
      if (line.startsWith('nodejs_gc_duration_seconds_sum{')) seconds += value;
      else if (line.startsWith('nodejs_gc_duration_seconds_count{kind="major"')) majors += value;
    }
    return { seconds, majors };
  } catch {
    return undefined;
  }
}

/** Peak resident set size (VmHWM) in KiB, or undefined when the process is gone or /proc is unavailable. */
export function peakRssKiB(pid: number): number | undefined {
  return procStatusKiB(pid, 'VmHWM');
}

/** A field of /proc/<pid>/status in KiB (VmRSS: resident now; VmHWM: peak), or undefined when the process is gone. */
export function procStatusKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Resets VmHWM to the current RSS (Linux ≥ 4.0), so a long-lived process's peak covers one scenario only. */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** CPU seconds (user + system) the process (all its threads) has used so far. */
export function cpuSeconds(pid: number): number | undefined {
  return statCpu(`/proc/${pid}/stat`);
}

/** CPU seconds of the process's main thread alone (JavaScript runs there; GC helpers and libuv's pool do not). */
export function mainThreadCpuSeconds(pid: number): number | undefined {
  return statCpu(`/proc/${pid}/task/${pid}/stat`);
}

function statCpu(file: string): number | undefined {
  try {
    const stat = readFileSync(file, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: count fields after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / CLK_TCK : undefined;
  } catch {
    return undefined;
  }
}

/** The machine's CPU time so far, in ticks: total, idle (with iowait) and stolen by the hypervisor. */
export function machineCpu(): { total: number; idle: number; steal: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    // cpu user nice system idle iowait irq softirq steal guest guest_nice (guest time is already in user)
    const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
    if (v.length < 8 || v.some((n) => !Number.isFinite(n))) return undefined;
    return { total: v.reduce((a, b) => a + b, 0), idle: v[3]! + v[4]!, steal: v[7]! };
  } catch {
    return undefined;
  }
}

/** TCP connections this machine has opened (ActiveOpens) so far: with keep-alive everywhere, a run opens next to none. */
export function tcpActiveOpens(): number | undefined {
  try {
    const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Tcp:'));
    const names = lines[0]?.split(/\s+/) ?? [];
    const values = lines[1]?.split(/\s+/) ?? [];
    const value = Number(values[names.indexOf('ActiveOpens')]);
    return Number.isFinite(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Direct children of a process (nginx's workers). */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter((s) => s !== '')
      .map(Number);
  } catch {
    return [];
  }
}

export class ProcessGroup {
  private readonly children = new Set<ChildProcess>();

  /** Spawns a process and remembers it, so stopAll() and killAllSync() reach it whatever happens. */
  spawn(command: string, args: string[], stdio: StdioOptions, env: NodeJS.ProcessEnv = process.env): ChildProcess {
    const child = spawn(command, args, { stdio, env });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    // A spawn failure (ENOENT) is reported through 'error'; it must not crash the run.
    child.on('error', () => {});
    return child;
  }

  /**
   * Runs a node script with an IPC channel and waits for it to report `{port}`. The script exits when the channel
   * closes, so it does not outlive this process even when this one is killed.
   */
  async spawnNodeWithPort(script: string, args: string[], nodeArgs: string[] = [], timeoutMs = 10_000): Promise<{ child: ChildProcess; port: number }> {
    let stderr = '';
    const child = this.spawn(process.execPath, [...nodeArgs, script, ...args], ['ignore', 'ignore', 'pipe', 'ipc']);
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${script} did not report its port within ${timeoutMs} ms\n${stderr}`)), timeoutMs);
      child.once('message', (message: unknown) => {
        clearTimeout(timer);
        const port = (message as { port?: unknown }).port;
        if (typeof port === 'number') resolve(port);
        else reject(new Error(`${script} sent an unexpected message: ${JSON.stringify(message)}`));
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${script} exited (${code ?? signal}) before listening\n${stderr}`));
      });
    });
    return { child, port };
  }

  /** SIGTERM (agentgate drains, and writes its --cpu-prof profile on exit), then SIGKILL after `graceMs`. */
  async stop(child: ChildProcess, graceMs = 5000): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.children].map((c) => this.stop(c, 3000)));
  }

  /** Last resort on process exit: nothing asynchronous runs any more. */
  killAllSync(): void {
    for (const child of this.children) {
      // nginx's master would leave its workers behind when killed outright.
      const pids = child.pid === undefined ? [] : [...childPids(child.pid), child.pid];
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  }
}

const ROOT = path.resolve(import.meta.dirname, '../..');

/** What a result file records of the machine and the code it was measured on. */
export function machineFacts(redisVersion: string | undefined, nginx?: string): Record<string, unknown> {
  const cpus = os.cpus();
  const require = createRequire(import.meta.url);
  let commit: string | undefined;
  let dirty: boolean | undefined;
  try {
    commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() !== '';
  } catch {
    // not a git checkout
  }
  return {
    cpu_model: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    available_parallelism: os.availableParallelism(),
    memory_gib: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    autocannon: (require('autocannon/package.json') as { version: string }).version,
    nginx: nginx ?? null,
    redis: redisVersion ?? null,
    load_average_at_start: os.loadavg().map((l) => Math.round(l * 100) / 100),
    git_commit: commit ?? null,
    git_dirty: dirty ?? null,
  };
}

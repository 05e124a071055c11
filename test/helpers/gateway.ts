// Starts a real gateway for a test: in-process (fast, logs captured) or as the built CLI in a child process (signals, reloads).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { Writable } from 'node:stream';
import { startGateway, type Gateway } from '../../src/gateway.ts';

export const CLI = path.resolve(import.meta.dirname, '../../dist/cli.js');

export async function tempDir(label = 'agentgate'): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), `${label}-`));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** Collects the gateway's JSON log lines. */
export class LogCapture extends Writable {
  readonly raw: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.raw.push(chunk.toString());
    done();
  }
  get text(): string {
    return this.raw.join('');
  }
  get lines(): Record<string, unknown>[] {
    return this.text
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }
  requestLines(): Record<string, unknown>[] {
    return this.lines.filter((l) => l.msg === 'request');
  }
}

export interface TestGateway {
  gateway: Gateway;
  url: string;
  adminUrl: string;
  logs: LogCapture;
  configFile: string;
  close(): Promise<void>;
}

/** Minimal config around the given upstreams and routes; ports are 0 so tests never collide. */
export function configYaml(body: string): string {
  return `version: 1\nserver:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n${body}`;
}

/** `files`: written beside the config first, by name (an agents file, a JWKS, a response schema). */
export async function startTestGateway(
  yaml: string,
  options: { env?: NodeJS.ProcessEnv; watchConfig?: boolean; files?: Record<string, string> } = {},
): Promise<TestGateway> {
  const tmp = await tempDir();
  const configFile = path.join(tmp.dir, 'gateway.yaml');
  for (const [name, text] of Object.entries(options.files ?? {})) await writeFile(path.join(tmp.dir, name), text);
  await writeFile(configFile, yaml);
  const logs = new LogCapture();
  const gateway = await startGateway({ configFile, logDestination: logs, env: options.env ?? process.env, watchConfig: options.watchConfig ?? false });
  return {
    gateway,
    url: gateway.proxyUrl,
    adminUrl: gateway.adminUrl!,
    logs,
    configFile,
    close: async () => {
      await gateway.shutdown();
      await tmp.remove();
    },
  };
}

export interface CliGateway {
  child: ChildProcess;
  url: string;
  adminUrl: string;
  /** Everything the process wrote to stdout so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code once the process has ended. */
  exited: Promise<number | null>;
  /** Resolves when a log line satisfying `predicate` appears. */
  waitForLog(predicate: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
}

/** Runs the built CLI (`node dist/cli.js --config FILE`) and waits until it logs that it listens. */
export async function startCliGateway(configFile: string, env: NodeJS.ProcessEnv = process.env): Promise<CliGateway> {
  const child = spawn(process.execPath, [CLI, '--config', configFile], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters: { predicate: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  const parsed: Record<string, unknown>[] = [];
  let partial = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    partial += chunk.toString();
    let nl;
    while ((nl = partial.indexOf('\n')) !== -1) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      try {
        const obj = JSON.parse(line) as Record<string, unknown>;
        parsed.push(obj);
        for (const w of [...waiters]) if (w.predicate(obj)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(obj);
        }
      } catch {
        // not a log line
      }
    }
  });
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  // 'close', not 'exit': the process's last writes to stdout and stderr have been read by then.
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const waitForLog = (predicate: (l: Record<string, unknown>) => boolean, timeoutMs = 10_000) => {
    const found = parsed.find(predicate);
    if (found) return Promise.resolve(found);
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching log line within ${timeoutMs} ms; stdout:\n${out}\nstderr:\n${err}`)), timeoutMs);
      waiters.push({ predicate, resolve: (l) => (clearTimeout(timer), resolve(l)) });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`gateway exited (${code}) before the expected log line; stderr:\n${err}`));
      });
    });
  };
  const listening = await waitForLog((l) => l.msg === 'agentgate listening');
  return { child, url: String(listening.proxy), adminUrl: String(listening.admin), stdout: () => out, stderr: () => err, exited, waitForLog };
}

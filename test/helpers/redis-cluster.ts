// Throwaway redis-server processes for tests: single servers on chosen ports, and a three-master Redis Cluster.
import { execFile, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { skipOrFail } from './redis.ts';

const run = promisify(execFile);

/** The node:test `skip` value for tests that spawn redis-server: same skip-or-fail rule as for a missing Redis. */
export function skipWithoutRedisServer(): string | false {
  const missing = ['redis-server', 'redis-cli'].some((bin) => spawnSync(bin, ['--version']).error !== undefined);
  return skipOrFail(missing, 'redis-server and redis-cli are not on PATH');
}

/** Distinct loopback ports nothing listens on right now (all held open together, so none is handed out twice). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = Array.from({ length: count }, () => createServer().listen(0, '127.0.0.1'));
  await Promise.all(servers.map((server) => once(server, 'listening')));
  const ports = servers.map((server) => (server.address() as { port: number }).port);
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port!;
}

export interface RedisServer {
  port: number;
  url: string;
  pid: number;
  /** SIGKILL, as a crash would; resolves once the process is gone. */
  kill(): Promise<void>;
}

/** Starts redis-server on port, keeping nothing on disk beyond dir, and resolves once it answers PING. */
export async function startRedisServer(port: number, dir: string, extraArgs: string[] = []): Promise<RedisServer> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-2000)));
  child.stderr.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-2000)));
  const exited = once(child, 'exit');
  try {
    await until(`redis-server on port ${port} to answer PING`, 5000, async () => {
      if (child.exitCode !== null) throw new Error(`redis-server on port ${port} exited: ${output}`);
      return (await cli(port, 'PING')) === 'PONG';
    });
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    pid: child.pid!,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

export async function startRedisCluster(): Promise<{ nodes: string[]; stop(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'agentgate-cluster-'));
  const servers: RedisServer[] = [];
  const stop = async () => {
    await Promise.all(servers.map((server) => server.kill()));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const ports = await freePorts(6);
    for (let i = 0; i < 3; i++) {
      const [port, busPort] = [ports[2 * i]!, ports[2 * i + 1]!];
      servers.push(
        await startRedisServer(port, dir, [
          '--cluster-enabled', 'yes',
          '--cluster-config-file', join(dir, `nodes-${port}.conf`),
          '--cluster-port', String(busPort),
        ]),
      );
    }
    const addresses = servers.map((server) => `127.0.0.1:${server.port}`);
    await run('redis-cli', ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes'], { timeout: 20_000 });
    await until('every cluster node to report cluster_state:ok', 20_000, async () => {
      const infos = await Promise.all(servers.map((server) => cli(server.port, 'CLUSTER', 'INFO')));
      return infos.every((info) => info.includes('cluster_state:ok'));
    });
  } catch (error) {
    await stop();
    throw error;
  }
  return { nodes: servers.map((server) => server.url), stop };
}

/** One redis-cli command against a loopback port; its trimmed reply, or '' when the server does not answer. */
export async function cli(port: number, ...args: string[]): Promise<string> {
  try {
    const { stdout } = await run('redis-cli', ['-p', String(port), ...args], { timeout: 2000 });
    return stdout.trim();
  } catch {
    return '';
  }
}

async function until(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await sleep(50);
  }
}

// A pod and its containers without a container engine, from the same kernel features one uses: a network namespace
// shared by the pod's containers, and per container a mount and PID namespace, the image's filesystem as a read-only
// root, tmpfs and volume mounts, a non-root user, and the image's env and working directory. Needs root (CI runs as root).
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { request, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';

const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Absolute path of a host tool; the test fails (never skips) when one is missing. */
export function tool(name: string): string {
  for (const dir of `${process.env.PATH ?? ''}:${SYSTEM_PATH}`.split(':')) {
    const candidate = path.join(dir, name);
    if (dir && existsSync(candidate)) return candidate;
  }
  throw new Error(`'${name}' is needed to run containers without an engine (util-linux, iproute2) and is not installed`);
}

/** Fails with a clear reason unless this process may create namespaces and mount (root). */
export function assertCanSandbox(): void {
  if (process.getuid?.() !== 0) throw new Error('the container emulation needs root (mount, network and PID namespaces); CI runs as root');
  for (const t of ['unshare', 'nsenter', 'setpriv', 'ip', 'mount', 'ldd']) tool(t);
}

function quote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** Everything the base image (node:24-*-slim) provides that the gateway uses: node on PATH and its shared libraries. */
function baseLayer(): { node: string; libraries: string[] } {
  const ldd = execFileSync(tool('ldd'), [process.execPath], { encoding: 'utf8' });
  const libraries = [...ldd.matchAll(/(\/\S+) \(0x[0-9a-f]+\)/g)].map((m) => m[1]!);
  return { node: process.execPath, libraries };
}

interface Lines {
  text: () => string;
  parsed: Record<string, unknown>[];
  waitFor(predicate: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
}

function collectLines(child: ChildProcess, stream: 'stdout' | 'stderr', describe: () => string): Lines {
  let text = '';
  let partial = '';
  const parsed: Record<string, unknown>[] = [];
  const waiters = new Set<{ predicate: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }>();
  child[stream]!.on('data', (chunk: Buffer) => {
    text += chunk.toString();
    partial += chunk.toString();
    let nl;
    while ((nl = partial.indexOf('\n')) !== -1) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      let obj: Record<string, unknown>;
      try {
        obj = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      parsed.push(obj);
      for (const w of [...waiters]) if (w.predicate(obj)) (waiters.delete(w), w.resolve(obj));
    }
  });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  return {
    text: () => text,
    parsed,
    waitFor(predicate, timeoutMs = 10_000) {
      const found = parsed.find(predicate);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no matching log line within ${timeoutMs} ms; ${describe()}`)), timeoutMs);
        const waiter = { predicate, resolve: (l: Record<string, unknown>) => (clearTimeout(timer), resolve(l)) };
        waiters.add(waiter);
        void exited.then(() => {
          if (!waiters.has(waiter)) return;
          clearTimeout(timer);
          reject(new Error(`the process ended before the expected log line; ${describe()}`));
        });
      });
    },
  };
}

function readLine(child: ChildProcess, expected: string, what: string, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`${what} did not start within ${timeoutMs} ms: ${out}${err}`)), timeoutMs);
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes(`${expected}\n`)) (clearTimeout(timer), resolve());
    });
    child.once('close', (code) => (clearTimeout(timer), reject(new Error(`${what} exited (${code}) before it was ready: ${out}${err}`))));
  });
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const closed = new Promise((resolve) => child.once('close', resolve));
  child.kill('SIGKILL');
  await closed;
}

export interface HttpReply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface Pod {
  /** The pause process holding the network namespace. */
  pid: number;
  netns: string;
  /** An HTTP request to 127.0.0.1:port inside the pod (through a Unix-socket port-forward). */
  http(port: number, pathAndQuery: string, options?: { method?: string; headers?: OutgoingHttpHeaders; body?: string; timeoutMs?: number }): Promise<HttpReply>;
  close(): Promise<void>;
}

/** A network namespace with loopback up (the pod's "pause" container) and a port-forward for `ports`. */
export async function startPod(ports: number[]): Promise<Pod> {
  const pause = spawn(tool('setpriv'), ['--pdeathsig', 'KILL', '--', tool('unshare'), '--net', '--', 'sh', '-c', `${quote(tool('ip'))} link set lo up && echo ready && exec sleep 900`], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: SYSTEM_PATH },
  });
  await readLine(pause, 'ready', 'the pod network namespace');
  const netns = `/proc/${pause.pid}/ns/net`;
  const socketDir = await mkdtemp(path.join(tmpdir(), 'agentgate-pod-'));
  const forwarder = spawn(
    tool('setpriv'),
    ['--pdeathsig', 'KILL', '--', tool('nsenter'), `--net=${netns}`, '--', process.execPath, path.join(import.meta.dirname, 'port-forward.ts'), socketDir, ...ports.map(String)],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: SYSTEM_PATH } },
  );
  try {
    await readLine(forwarder, 'ready', 'the port-forward');
  } catch (err) {
    await stopProcess(pause);
    throw err;
  }
  return {
    pid: pause.pid!,
    netns,
    http: (port, pathAndQuery, options = {}) =>
      new Promise<HttpReply>((resolve, reject) => {
        const req = request(
          { socketPath: path.join(socketDir, `${port}.sock`), path: pathAndQuery, method: options.method ?? 'GET', headers: { host: `127.0.0.1:${port}`, ...options.headers }, agent: false },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('error', reject);
            res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
          },
        );
        const timeoutMs = options.timeoutMs ?? 10_000;
        req.setTimeout(timeoutMs, () => req.destroy(new Error(`${options.method ?? 'GET'} :${port}${pathAndQuery}: no answer within ${timeoutMs} ms`)));
        req.on('error', reject);
        req.end(options.body);
      }),
    close: async () => {
      await stopProcess(forwarder);
      await stopProcess(pause);
      await rm(socketDir, { recursive: true, force: true });
    },
  };
}

export interface ContainerSpec {
  name: string;
  /** The image's filesystem (see image.ts); shared read-only by every container of that image. */
  rootfs: string;
  command: string[];
  /** The process environment: the image's ENV plus the container's; PATH and HOME default like Docker's. */
  env: Record<string, string>;
  workdir: string;
  uid: number;
  gid: number;
  readOnlyRoot: boolean;
  volumes?: { source: string; target: string; readOnly: boolean }[];
  tmpfs?: string[];
}

export interface Container {
  name: string;
  /** Host PID of the container's PID 1. */
  pid: number;
  stdout: Lines;
  stderr: () => string;
  /** Exit code of PID 1 (the runtime's exit code for the container). */
  exited: Promise<number | null>;
  signal(name: NodeJS.Signals): void;
  /** `docker exec` / `kubectl exec`: a process in the container's namespaces, root, working directory and user. */
  exec(command: string[], env?: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** SIGKILL if still running. */
  remove(): Promise<void>;
}

function containerEnv(spec: ContainerSpec): Record<string, string> {
  return { PATH: SYSTEM_PATH, HOME: '/home/node', HOSTNAME: spec.name, ...spec.env };
}

/** Starts `spec.command` as PID 1 of a new container in `pod`, and waits until it runs as that PID 1. */
export async function startContainer(pod: Pod, spec: ContainerSpec): Promise<Container> {
  const base = baseLayer();
  const R = spec.rootfs;
  // Mount points must exist in the image's folder before its root turns read-only (as in an image, they are empty).
  const files = ['/usr/local/bin/node', ...base.libraries, '/dev/null', '/dev/zero', '/dev/random', '/dev/urandom'];
  for (const f of files) {
    await mkdir(path.join(R, path.dirname(f)), { recursive: true, mode: 0o755 });
    if (!existsSync(path.join(R, f))) await writeFile(path.join(R, f), '', { mode: 0o644 });
  }
  for (const d of ['/proc', '/tmp', '/home/node', ...(spec.tmpfs ?? []), ...(spec.volumes ?? []).map((v) => v.target)]) await mkdir(path.join(R, d), { recursive: true, mode: 0o755 });
  // What Docker writes into every container.
  await writeFile(path.join(R, 'etc/hosts'), '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n', { mode: 0o644 });

  const r = (p: string) => quote(path.join(R, p));
  const lines = ['set -eu', `mount --bind ${quote(R)} ${quote(R)}`, `mount -t proc proc ${r('/proc')}`];
  for (const dev of ['/dev/null', '/dev/zero', '/dev/random', '/dev/urandom']) lines.push(`mount --bind ${dev} ${r(dev)}`);
  lines.push(`mount --bind ${quote(base.node)} ${r('/usr/local/bin/node')}`, `mount -o remount,bind,ro ${r('/usr/local/bin/node')}`);
  for (const lib of base.libraries) lines.push(`mount --bind ${quote(lib)} ${r(lib)}`);
  for (const t of new Set(['/tmp', ...(spec.tmpfs ?? [])])) lines.push(`mount -t tmpfs -o mode=1777,size=16m tmpfs ${r(t)}`);
  for (const v of spec.volumes ?? []) {
    lines.push(`mount --bind ${quote(v.source)} ${r(v.target)}`);
    if (v.readOnly) lines.push(`mount -o remount,bind,ro ${r(v.target)}`);
  }
  if (spec.readOnlyRoot) lines.push(`mount -o remount,bind,ro ${quote(R)}`);
  const env = Object.entries(containerEnv(spec)).map(([k, v]) => quote(`${k}=${v}`));
  lines.push(
    `exec env -i ${env.join(' ')} ${quote(tool('unshare'))} --root=${quote(R)} --wd=${quote(spec.workdir)} --setgid=${spec.gid} --setuid=${spec.uid} -- ${spec.command.map(quote).join(' ')}`,
  );

  const outer = spawn(
    tool('setpriv'),
    ['--pdeathsig', 'KILL', '--', tool('nsenter'), `--net=${pod.netns}`, '--', tool('unshare'), '--mount', '--pid', '--fork', '--kill-child', '--propagation', 'private', '--', 'sh', '-c', lines.join('\n')],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: SYSTEM_PATH } },
  );
  let stderr = '';
  outer.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const stdout = collectLines(outer, 'stdout', () => `container ${spec.name} stdout:\n${stdout.text()}\nstderr:\n${stderr}`);
  const exited = new Promise<number | null>((resolve) => outer.once('close', (code) => resolve(code)));

  // PID 1 of the container is the child the outer unshare forked; wait until it has exec'd the command itself.
  const deadline = Date.now() + 10_000;
  let pid = 0;
  for (;;) {
    try {
      const children = readFileSync(`/proc/${outer.pid}/task/${outer.pid}/children`, 'utf8').trim();
      if (children) {
        pid = Number(children.split(/\s+/)[0]);
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        if (path.basename(cmdline[0] ?? '') === path.basename(spec.command[0]!) && readFileSync(`/proc/${pid}/status`, 'utf8').includes(`\nUid:\t${spec.uid}\t`)) break;
      }
    } catch {
      // not there yet
    }
    if (outer.exitCode !== null || Date.now() > deadline) throw new Error(`container ${spec.name} did not start: ${stderr}${stdout.text()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }

  return {
    name: spec.name,
    pid,
    stdout,
    stderr: () => stderr,
    exited,
    signal: (name) => process.kill(pid, name),
    exec: (command, extraEnv = {}) =>
      new Promise((resolve, reject) => {
        const child = spawn(
          tool('nsenter'),
          [`--target=${pid}`, '--mount', '--net', '--pid', '--root', '--wd', `--setgid=${spec.gid}`, `--setuid=${spec.uid}`, '--', ...command],
          { stdio: ['ignore', 'pipe', 'pipe'], env: { ...containerEnv(spec), ...extraEnv } },
        );
        let out = '';
        let err = '';
        child.stdout.on('data', (c: Buffer) => (out += c.toString()));
        child.stderr.on('data', (c: Buffer) => (err += c.toString()));
        const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        child.on('error', reject);
        child.on('close', (code) => (clearTimeout(timer), resolve({ code, stdout: out, stderr: err })));
      }),
    remove: () => stopProcess(outer),
  };
}

export interface ConfigMapVolume {
  dir: string;
  /** Replaces the files the way the kubelet's atomic writer does: new timestamped folder, ..data swapped by rename. */
  update(files: Record<string, string>): Promise<void>;
}

/** A folder laid out like a ConfigMap volume: `..<timestamp>/` with the files, `..data` pointing at it, one symlink per key. */
export async function configMapVolume(parent: string, files: Record<string, string>): Promise<ConfigMapVolume> {
  const dir = path.join(parent, 'configmap');
  await mkdir(dir, { mode: 0o755 });
  let generation = 0;
  const write = async (data: Record<string, string>) => {
    const name = `..2026_01_01_00_00_${String(generation++).padStart(2, '0')}.000000000`;
    await mkdir(path.join(dir, name), { mode: 0o755 });
    for (const [key, content] of Object.entries(data)) await writeFile(path.join(dir, name, key), content, { mode: 0o644 });
    return name;
  };
  let current = await write(files);
  await symlink(current, path.join(dir, '..data'));
  for (const key of Object.keys(files)) await symlink(path.join('..data', key), path.join(dir, key));
  return {
    dir,
    update: async (data) => {
      const next = await write(data);
      await symlink(next, path.join(dir, '..data_tmp'));
      await rename(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
      await rm(path.join(dir, current), { recursive: true });
      current = next;
    },
  };
}

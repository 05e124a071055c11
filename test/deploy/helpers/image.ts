// Builds the Dockerfile without a Docker engine: replays every stage's WORKDIR, ENV, COPY (context and --from) and RUN
// into host folders, so the last stage's folder is the image's filesystem. Anything it cannot replay faithfully throws.
import { spawn } from 'node:child_process';
import { cp, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { REPO, copyOf, dockerignore, expand, parseDockerfile, type ParsedDockerfile, type Stage } from './dockerfile.ts';

export interface BuiltImage {
  dockerfile: ParsedDockerfile;
  /** The final stage's filesystem: the image, minus its base image's own files. */
  rootfs: string;
  stageRoots: Map<string, string>;
  /** Seconds each stage took. */
  timings: Record<string, number>;
}

/** Keywords that only set metadata; the replay records nothing for them beyond imageConfig(). */
const METADATA = new Set(['ARG', 'LABEL', 'USER', 'EXPOSE', 'HEALTHCHECK', 'CMD', 'ENTRYPOINT', 'STOPSIGNAL']);

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

/** `cp -a from target`, with a directory's contents merged into target as Docker's COPY does. */
async function copyTree(from: string, target: string): Promise<void> {
  const isDir = (await stat(from)).isDirectory();
  if (isDir) await mkdir(target, { recursive: true, mode: 0o755 });
  await new Promise<void>((resolve, reject) => {
    const child = spawn('cp', ['-a', isDir ? `${from}/.` : from, target], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`cp -a ${from} ${target}: ${err}`))));
  });
}

function run(command: string, cwd: string, env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', command], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`RUN ${command} (in ${cwd}) exited ${code}:\n${output}`))));
  });
}

/**
 * Replays `dockerfile` with `REPO` as the build context into `workDir`. RUN runs on this machine with the stage's
 * WORKDIR mapped into its folder and this Node.js first on PATH (the base image's node); the final stage may not RUN.
 */
export async function replayBuild(workDir: string, dockerfile: ParsedDockerfile = parseDockerfile()): Promise<BuiltImage> {
  const ignored = dockerignore();
  const stageRoots = new Map<string, string>();
  const timings: Record<string, number> = {};
  let rootfs = '';
  for (const stage of dockerfile.stages) {
    const started = performance.now();
    const root = path.join(workDir, `stage-${stage.index}-${stage.name}`);
    await mkdir(root, { recursive: true, mode: 0o755 });
    await replayStage(stage, root, stage === dockerfile.final, dockerfile, stageRoots, ignored);
    stageRoots.set(stage.name, root);
    stageRoots.set(String(stage.index), root);
    timings[stage.name] = Math.round(performance.now() - started) / 1000;
    rootfs = root;
  }
  return { dockerfile, rootfs, stageRoots, timings };
}

async function replayStage(
  stage: Stage,
  root: string,
  isFinal: boolean,
  dockerfile: ParsedDockerfile,
  stageRoots: Map<string, string>,
  ignored: ReturnType<typeof dockerignore>,
): Promise<void> {
  let workdir = '/';
  const env: Record<string, string> = {};
  const args: Record<string, string> = {};
  const inRoot = (p: string) => path.join(root, p);
  for (const step of stage.steps) {
    const where = `Dockerfile:${step.line}`;
    const vars = { ...args, ...env };
    switch (step.keyword) {
      case 'WORKDIR':
        workdir = path.posix.resolve(workdir, expand(step.args.join(' '), vars));
        await mkdir(inRoot(workdir), { recursive: true, mode: 0o755 });
        break;
      case 'ENV':
        for (const [name, value] of step.properties) env[name] = expand(value ?? '', vars);
        break;
      case 'ARG':
        for (const [name, value] of step.properties) args[name] = value ?? dockerfile.globalArgs[name] ?? '';
        break;
      case 'COPY': {
        const copy = copyOf(step);
        const unsupported = Object.keys(step.flags).filter((f) => f !== 'from');
        if (unsupported.length > 0) throw new Error(`${where}: COPY --${unsupported.join(', --')} is not replayed`);
        const dest = path.posix.resolve(workdir, expand(copy.dest, vars));
        const intoDir = copy.dest.endsWith('/') || copy.sources.length > 1;
        for (const source of copy.sources) {
          if (/[*?[]/.test(source)) throw new Error(`${where}: wildcards in COPY sources are not replayed`);
          let from: string;
          let filter: ((src: string) => boolean) | undefined;
          if (copy.from !== undefined) {
            const other = stageRoots.get(copy.from);
            if (!other) throw new Error(`${where}: COPY --from=${copy.from} names no earlier stage`);
            from = path.join(other, path.posix.resolve('/', source));
          } else {
            const relative = path.posix.normalize(source).replace(/^\/+/, '');
            if (relative.startsWith('..')) throw new Error(`${where}: COPY ${source} leaves the build context`);
            if (ignored.ignores(relative)) throw new Error(`${where}: COPY ${source}: .dockerignore excludes it, so the build would fail`);
            from = path.join(REPO, relative);
            filter = (src) => {
              const rel = path.relative(REPO, src);
              return rel === '' || !ignored.ignores(rel);
            };
          }
          if (!(await exists(from))) throw new Error(`${where}: COPY source ${source} does not exist (${from})`);
          const isDir = (await stat(from)).isDirectory();
          // Docker copies a directory's contents; a file lands inside a destination ending in / (or given several sources).
          const target = isDir || !intoDir ? inRoot(dest) : inRoot(path.posix.join(dest, path.basename(source)));
          await mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
          if (filter) await cp(from, target, { recursive: true, filter, verbatimSymlinks: true, preserveTimestamps: true });
          else await copyTree(from, target); // between stages: nothing to filter, and cp(1) is several times faster on node_modules
        }
        break;
      }
      case 'RUN': {
        if (isFinal) throw new Error(`${where}: RUN in the final stage cannot be replayed (and the final stage should not need one)`);
        const unsupported = Object.entries(step.flags).filter(([name, value]) => !(name === 'mount' && /^type=cache,/.test(value ?? '')));
        if (unsupported.length > 0) throw new Error(`${where}: RUN --${unsupported.map(([n]) => n).join(', --')} is not replayed`);
        const command = step.json ? step.json.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ') : step.text;
        // This machine's network settings and npm cache, without what the test run itself set (npm's lifecycle variables, the test runner's).
        const hostEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_|^NODE_TEST_CONTEXT$|^NODE_OPTIONS$/i.test(k)));
        const runEnv: NodeJS.ProcessEnv = { ...hostEnv, PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? ''}`, ...env };
        await run(command, inRoot(workdir), runEnv);
        break;
      }
      default:
        if (!METADATA.has(step.keyword)) throw new Error(`${where}: ${step.keyword} is not replayed`);
    }
  }
}

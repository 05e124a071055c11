// The Dockerfile and .dockerignore, read with real parsers (dockerfile-ast; dockerfile-utils' linter; Docker's ignore rules).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { validate } from 'dockerfile-utils';
import { parse as parseYaml } from 'yaml';
import { REPO, copyOf, dockerignore, parseDockerfile, type Stage } from './helpers/dockerfile.ts';

const dockerfile = parseDockerfile();
const { final, config } = dockerfile;
/** docs/performance.md, "Memory": what test/bench/heap-flags.ts measured. */
const HEAP_FLAGS = ['--max-semi-space-size=8', '--heap-growing-percent=20'];
const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string; license: string; engines: { node: string } };

function runs(stage: Stage): string[] {
  return stage.steps.filter((s) => s.keyword === 'RUN').map((s) => s.text);
}

function portOf(listen: string): string {
  return listen.slice(listen.lastIndexOf(':') + 1);
}

test('the Dockerfile lints clean (dockerfile-utils, the validator of the Dockerfile language server)', () => {
  const problems = validate(dockerfile.text);
  assert.deepEqual(
    problems.map((p) => `line ${p.range.start.line + 1}: ${p.message}`),
    [],
  );
});

test('multi-stage: a build stage with dev dependencies, a production-only dependency stage, and a runtime stage on the same Node LTS slim base', () => {
  assert.ok(dockerfile.stages.length >= 2, 'multi-stage');
  for (const stage of dockerfile.stages) {
    const match = /^node:(\d+)(?:\.\d+)*-(?:[a-z]+-)?slim(?:@sha256:[0-9a-f]{64})?$/.exec(stage.base);
    assert.ok(match, `${stage.name}: base image ${stage.base} is an official node slim image`);
    const major = Number(match[1]);
    assert.equal(major % 2, 0, `${stage.base}: even majors are the LTS lines`);
    assert.ok(major >= Number(/\d+/.exec(pkg.engines.node)![0]), `${stage.base} satisfies engines.node ${pkg.engines.node}`);
  }
  assert.equal(new Set(dockerfile.stages.map((s) => s.base)).size, 1, 'every stage uses the same base, so the native ABI matches');

  const build = dockerfile.stages.find((s) => runs(s).some((r) => /\bnpm run build\b/.test(r)));
  assert.ok(build && build !== final, 'a separate stage builds dist/');
  assert.ok(runs(build).some((r) => /^npm ci\b/.test(r) && !/--omit=dev|--production/.test(r)), 'the build stage installs dev dependencies (tsc)');

  assert.deepEqual(runs(final), [], 'the runtime stage runs nothing: no package manager, no shell step, only files copied in');
  assert.ok(!final.steps.some((s) => s.keyword === 'ADD'), 'no ADD (remote fetches, archive unpacking)');
});

test('no dev dependency reaches the runtime stage: node_modules comes only from an `npm ci --omit=dev` stage', () => {
  const copies = final.steps.filter((s) => s.keyword === 'COPY').map(copyOf);
  const modules = copies.filter((c) => c.sources.some((s) => /node_modules/.test(s)));
  assert.equal(modules.length, 1, 'node_modules is copied exactly once');
  const from = dockerfile.stages.find((s) => s.name === modules[0]!.from);
  assert.ok(from, 'node_modules comes from an earlier stage');
  assert.ok(
    runs(from).some((r) => /^npm ci\b.*--omit=dev/.test(r) && /--ignore-scripts/.test(r)),
    `stage ${from.name} installs production dependencies only, without running install scripts: ${runs(from).join(' && ')}`,
  );
  const workdirs = new Set(['/', '/app', '.', './', '/app/']);
  for (const c of copies.filter((copy) => copy.from !== undefined && copy.from !== from.name)) {
    for (const source of c.sources) {
      assert.ok(!/node_modules/.test(source), `COPY --from=${c.from} ${source} must not bring node_modules`);
      assert.ok(!workdirs.has(source), `COPY --from=${c.from} ${source} would copy that stage's whole tree (dev dependencies included)`);
    }
  }
  for (const c of copies.filter((copy) => copy.from === undefined)) {
    for (const source of c.sources) assert.ok(!['.', './', 'node_modules'].includes(source), `COPY ${source} from the context would bring local node_modules`);
  }
});

test('every COPY source exists: context files are present and not excluded by .dockerignore, --from names an earlier stage', () => {
  const ignored = dockerignore();
  for (const [i, stage] of dockerfile.stages.entries()) {
    for (const step of stage.steps.filter((s) => s.keyword === 'COPY')) {
      const copy = copyOf(step);
      if (copy.from !== undefined) {
        const earlier = dockerfile.stages.slice(0, i).map((s) => s.name);
        assert.ok(earlier.includes(copy.from), `Dockerfile:${step.line}: --from=${copy.from} is not an earlier stage (${earlier.join(', ')})`);
        continue;
      }
      for (const source of copy.sources) {
        assert.ok(existsSync(path.join(REPO, source)), `Dockerfile:${step.line}: COPY ${source} does not exist in the build context`);
        assert.ok(!ignored.ignores(source), `Dockerfile:${step.line}: COPY ${source} is excluded by .dockerignore`);
      }
    }
  }
});

test('.dockerignore keeps local builds, dependencies, VCS data and secrets out of the build context', () => {
  const ignored = dockerignore();
  for (const p of ['node_modules', 'node_modules/x/index.js', 'dist/cli.js', '.git/HEAD', '.tools/node24', 'test/lifecycle.test.ts', 'src/proxy/body.test.ts', '.env', '.env.local', 'server.key', 'bench-results/latest.json']) {
    assert.ok(ignored.ignores(p), `${p} must be ignored`);
  }
  for (const p of ['package.json', 'package-lock.json', 'src/cli.ts', 'schema/gateway.schema.json', 'scripts/write-schema.ts', 'deploy/docker/gateway.yaml']) {
    assert.ok(!ignored.ignores(p), `${p} is needed by the build`);
  }
});

test('runtime stage: non-root numeric USER, NODE_ENV=production, exec-form CMD running the CLI with the /etc config (never npm start)', () => {
  assert.match(config.user ?? '', /^[1-9]\d*(:[1-9]\d*)?$/, 'a numeric non-root uid[:gid], which Kubernetes runAsNonRoot can verify');
  const userAt = final.steps.findIndex((s) => s.keyword === 'USER');
  assert.equal(final.steps.filter((s) => s.keyword === 'USER').length, 1);
  assert.ok(final.steps.slice(userAt).every((s) => s.keyword !== 'COPY'), 'files are copied as root before USER, so the process cannot change them');
  assert.equal(config.env.NODE_ENV, 'production');
  assert.equal(config.entrypoint, undefined, 'no ENTRYPOINT: `docker run IMAGE validate ...` style overrides stay simple');
  const cmdStep = final.steps.find((s) => s.keyword === 'CMD');
  assert.ok(cmdStep?.json, 'CMD is in exec form, so the node process is PID 1 and receives SIGTERM itself');
  assert.deepEqual(config.cmd, ['node', ...HEAP_FLAGS, 'dist/cli.js', '--config', '/etc/agentgate/gateway.yaml']);
  assert.doesNotMatch(JSON.stringify(config.cmd), /npm/);
  assert.equal(config.stopSignal ?? 'SIGTERM', 'SIGTERM');
});

test('the heap flags measured for a sidecar are the same in the image, the CLI and npm start', () => {
  const shebang = readFileSync(path.join(REPO, 'src/cli.ts'), 'utf8').split('\n')[0];
  assert.equal(shebang, `#!/usr/bin/env -S node ${HEAP_FLAGS.join(' ')}`, 'the installed `agentgate` command runs with them');
  const start = (JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.start!;
  assert.equal(start, `sh scripts/node.sh ${HEAP_FLAGS.join(' ')} dist/demo/start.js`);
  const built = path.join(REPO, 'dist/cli.js');
  if (existsSync(built)) assert.equal(readFileSync(built, 'utf8').split('\n')[0], shebang, 'tsc keeps the shebang');
});

test('HEALTHCHECK needs no curl and probes the admin port the image EXPOSEs; both ports match the default config', () => {
  assert.ok(config.healthcheck, 'HEALTHCHECK is set');
  const step = final.steps.find((s) => s.keyword === 'HEALTHCHECK')!;
  assert.match(step.text, /^CMD\s*\[/, 'exec form: no shell needed');
  assert.equal(config.healthcheck.cmd[0], 'node', 'runs with the node binary the image has anyway');
  assert.doesNotMatch(config.healthcheck.cmd.join(' '), /\b(curl|wget)\b/);
  for (const flag of ['interval', 'timeout', 'retries']) assert.ok(config.healthcheck.flags[flag], `HEALTHCHECK --${flag}`);
  assert.match(config.healthcheck.cmd.join(' '), /127\.0\.0\.1:9090\/healthz/, 'liveness, not readiness: a Redis outage must not mark the container unhealthy');

  const defaults = parseYaml(readFileSync(path.join(REPO, 'deploy/docker/gateway.yaml'), 'utf8')) as { server: { listen: string; admin_listen: string } };
  assert.deepEqual([...config.exposed].sort(), [portOf(defaults.server.listen), portOf(defaults.server.admin_listen)].sort());
  assert.match(defaults.server.listen, /^0\.0\.0\.0:/, 'a container must listen on all interfaces');
  assert.match(defaults.server.admin_listen, /^0\.0\.0\.0:/, 'probes and Prometheus reach the admin port from outside the container');
  const configCopy = final.steps.filter((s) => s.keyword === 'COPY').map(copyOf).find((c) => c.dest === config.cmd![config.cmd!.indexOf('--config') + 1]);
  assert.deepEqual(configCopy?.sources, ['deploy/docker/gateway.yaml'], 'the default config is the one the CMD names');
});

test('OCI labels name the image, its version and licence as package.json does', () => {
  assert.equal(config.labels['org.opencontainers.image.title'], 'agentgate');
  assert.ok(config.labels['org.opencontainers.image.description']);
  assert.equal(config.labels['org.opencontainers.image.version'], pkg.version);
  assert.equal(config.labels['org.opencontainers.image.licenses'], pkg.license);
  assert.equal(config.labels['org.opencontainers.image.base.name'], final.base);
});

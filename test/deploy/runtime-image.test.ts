// The container image without a container engine: replays the Dockerfile into folders (helpers/image.ts), then runs the
// result the way Docker and the kubelet would (helpers/sandbox.ts): PID 1, uid 1000, read-only root, its own network.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { chmod, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { tempDir } from '../helpers/gateway.ts';
import { REPO } from './helpers/dockerfile.ts';
import { replayBuild, type BuiltImage } from './helpers/image.ts';
import { assertCanSandbox, configMapVolume, startContainer, startPod, type Container, type ContainerSpec, type Pod } from './helpers/sandbox.ts';
import { until } from '../helpers/wait.ts';
import { keyHash } from '../../src/agents/keys.ts';

/** demo-agent's demo key (config/agents.yaml, docs/getting-started.md): public, like every demo key. */
const DEMO_KEY = 'agk_AC_xiepRgy8OlsB9gySxPiBOyFSjxjh4U8xPGrI1Qug';
/** batch-agent's. */
const BATCH_KEY = 'agk_SUTWuaP_AIuGxqn0zgCIjkADBfH9ITgXJYFrlwXTQME';

let image: BuiltImage;
let work: { dir: string; remove: () => Promise<void> };

before(async () => {
  assertCanSandbox();
  work = await tempDir('agentgate-image');
  await chmod(work.dir, 0o755);
  image = await replayBuild(work.dir);
});

after(async () => {
  await work?.remove();
});

/** uid and gid of a Dockerfile USER that must be numeric (so runAsNonRoot can verify it). */
function numericUser(user: string | undefined): { uid: number; gid: number } {
  const match = /^(\d+)(?::(\d+))?$/.exec(user ?? '');
  assert.ok(match, `USER must be numeric uid[:gid], got ${String(user)}`);
  return { uid: Number(match[1]), gid: Number(match[2] ?? match[1]) };
}

async function exitWithin(container: Container, ms: number): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      container.exited,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${container.name} did not exit within ${ms} ms:\n${container.stdout.text()}\n${container.stderr()}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function metric(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** Pid 1 in its own PID namespace, running as `uid`: what `docker top` would show. */
function assertPidOne(container: Container, uid: number): void {
  const status = readFileSync(`/proc/${container.pid}/status`, 'utf8');
  assert.match(status, /\nNSpid:\t\d+\t1\n/, `${container.name} must be PID 1 of its own PID namespace`);
  assert.match(status, new RegExp(`\\nUid:\\t${uid}\\t${uid}\\t${uid}\\t${uid}\\n`), `${container.name} must run as uid ${uid}`);
}

test('the Dockerfile replays: the build stage compiles from what it COPYs; the image holds dist, production dependencies and the config, nothing else', (t) => {
  t.diagnostic(`stage replay times (s): ${JSON.stringify(image.timings)}`);
  const app = path.join(image.rootfs, image.dockerfile.config.workdir);
  assert.equal(image.dockerfile.config.workdir, '/app');
  assert.deepEqual(readdirSync(app).sort(), ['dist', 'node_modules', 'package.json', 'schema']);

  const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
  for (const name of Object.keys(pkg.dependencies)) assert.ok(existsSync(path.join(app, 'node_modules', name, 'package.json')), `production dependency ${name} is installed`);
  // A dev dependency a production one needs too (express, for the MCP SDK) is production code: the lock file says which.
  const lock = JSON.parse(readFileSync(path.join(REPO, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
  for (const name of Object.keys(pkg.devDependencies)) {
    if (lock.packages[`node_modules/${name}`]?.dev !== true) continue;
    assert.ok(!existsSync(path.join(app, 'node_modules', name)), `dev dependency ${name} must not be in the image`);
  }
  assert.ok(existsSync(path.join(app, 'node_modules', 'express')) === (lock.packages['node_modules/express']?.dev !== true), 'the image has exactly the production tree');
  const installed = JSON.parse(readFileSync(path.join(app, 'node_modules', '.package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
  assert.deepEqual(Object.entries(installed.packages).filter(([, p]) => p.dev).map(([name]) => name), [], 'npm installed no dev-only package');

  assert.ok(existsSync(path.join(app, 'dist/cli.js')));
  assert.ok(existsSync(path.join(app, 'dist/demo/serve-legacy-api.js')));
  const compiled = (dir: string): string[] => readdirSync(dir, { recursive: true, encoding: 'utf8' });
  assert.deepEqual(compiled(path.join(app, 'dist')).filter((f) => f.includes('.test.')), [], 'tests are not compiled into the image');
  assert.ok(existsSync(path.join(app, 'schema/gateway.schema.json')));
  assert.equal(readFileSync(path.join(image.rootfs, 'etc/agentgate/gateway.yaml'), 'utf8'), readFileSync(path.join(REPO, 'deploy/docker/gateway.yaml'), 'utf8'));
});

test('docker run --read-only --tmpfs /tmp -e UPSTREAM_URL: PID 1 as uid 1000 serves, passes its HEALTHCHECK, reloads on SIGHUP and drains on SIGTERM', async (t) => {
  const config = image.dockerfile.config;
  const { uid, gid } = numericUser(config.user);
  assert.notEqual(uid, 0);
  const pod = await startPod([8080, 9090, 3000]);
  t.after(() => pod.close());
  const base = { rootfs: image.rootfs, workdir: config.workdir, uid, gid, readOnlyRoot: true, tmpfs: ['/tmp'] };

  // The API behind it, in the same network namespace (a sidecar's neighbour), from the same image.
  const api = await startContainer(pod, { ...base, name: 'legacy-api', command: ['node', 'dist/demo/serve-legacy-api.js'], env: { ...config.env, LEGACY_API_HOST: '127.0.0.1' } });
  t.after(() => api.remove());
  await api.stdout.waitFor((l) => l.msg === 'demo legacy API listening');
  // deploy/docker-compose.yml's health check of this container works, and is not counted as a call of the API.
  const composeCheck = (parseYaml(readFileSync(path.join(REPO, 'deploy/docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, { healthcheck: { test: string[] } }> })
    .services['legacy-api']!.healthcheck.test;
  assert.equal(composeCheck[0], 'CMD');
  assert.equal((await api.exec(composeCheck.slice(1))).code, 0);
  assert.deepEqual(JSON.parse((await pod.http(3000, '/_demo/stats')).body), { executions: {}, orders: 0 });

  const command = [...(config.entrypoint ?? []), ...(config.cmd ?? [])];
  const gw = await startContainer(pod, { ...base, name: 'agentgate', command, env: { ...config.env, UPSTREAM_URL: 'http://127.0.0.1:3000' } });
  t.after(() => gw.remove());
  const listening = await gw.stdout.waitFor((l) => l.msg === 'agentgate listening');
  assert.equal(listening.config, '/etc/agentgate/gateway.yaml');
  assertPidOne(gw, uid);

  const orders = await pod.http(8080, '/orders');
  assert.equal(orders.status, 200, orders.body);
  assert.deepEqual(JSON.parse(orders.body), { orders: [], count: 0 });
  assert.ok(orders.headers['x-request-id']);
  assert.equal(orders.headers['x-ratelimit-limit'], '1000');

  // The HEALTHCHECK exactly as the Dockerfile writes it, run like Docker runs it (an exec in the container).
  assert.ok(config.healthcheck, 'the image has a HEALTHCHECK');
  const healthy = await gw.exec(config.healthcheck.cmd);
  assert.equal(healthy.code, 0, `HEALTHCHECK failed: ${healthy.stderr}`);
  const unhealthy = await gw.exec(config.healthcheck.cmd, { AGENTGATE_HEALTHCHECK_URL: 'http://127.0.0.1:9/healthz' });
  assert.equal(unhealthy.code, 1, 'the HEALTHCHECK reports a gateway that does not answer');

  // The root filesystem is read-only for the process; /tmp is the only place it could write.
  const write = (file: string) => gw.exec(['node', '-e', `require('node:fs').writeFileSync(${JSON.stringify(file)}, 'x')`]);
  for (const file of ['/app/probe', '/etc/agentgate/probe', '/probe']) assert.match((await write(file)).stderr, /EROFS/, `${file} must not be writable`);
  assert.equal((await write('/tmp/probe')).code, 0);

  // docker kill -s HUP: PID 1 reloads rather than ignoring the signal (or dying of it).
  gw.signal('SIGHUP');
  await gw.stdout.waitFor((l) => l.msg === 'config reloaded' && l.trigger === 'SIGHUP');
  assert.equal(metric((await pod.http(9090, '/metrics')).body, 'agentgate_config_reloads_total{result="success"}'), 1);

  // docker stop: SIGTERM to PID 1 while a request is in flight.
  const inFlight = pod.http(8080, '/slow?ms=1500', { timeoutMs: 20_000 });
  inFlight.catch(() => undefined);
  await until(
    async () => (JSON.parse((await pod.http(3000, '/_demo/stats')).body) as { executions: Record<string, number> }).executions['GET /slow'] === 1,
    5000,
    () => 'the slow request never reached the API',
  );
  gw.signal((config.stopSignal ?? 'SIGTERM') as NodeJS.Signals);
  await gw.stdout.waitFor((l) => l.msg === 'shutting down: draining in-flight requests');
  assert.equal((await pod.http(9090, '/readyz')).status, 503, 'a draining gateway is not ready');
  const reply = await inFlight;
  assert.equal(reply.status, 200, 'the in-flight request completes');
  assert.equal(await exitWithin(gw, 10_000), 0);
  assert.ok(gw.stdout.parsed.some((l) => l.msg === 'stopped'));

  api.signal('SIGTERM');
  assert.equal(await exitWithin(api, 5000), 0);
});

interface K8sContainer {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
  workingDir?: string;
  ports?: { name: string; containerPort: number }[];
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  securityContext?: { readOnlyRootFilesystem?: boolean; runAsUser?: number; runAsGroup?: number };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean; subPath?: string }[];
}

interface K8sPodSpec {
  securityContext?: { runAsUser?: number; runAsGroup?: number };
  containers: K8sContainer[];
  volumes?: { name: string; configMap?: { name: string }; secret?: { secretName: string }; emptyDir?: object }[];
}

test('the Kubernetes pod as deploy/kubernetes describes it: both containers run, probes pass, ConfigMap and Secret edits reload without a restart', async (t) => {
  const deployment = parseYaml(readFileSync(path.join(REPO, 'deploy/kubernetes/deployment.yaml'), 'utf8')) as { spec: { template: { spec: K8sPodSpec } } };
  const configMap = parseYaml(readFileSync(path.join(REPO, 'deploy/kubernetes/configmap.yaml'), 'utf8')) as { metadata: { name: string }; data: Record<string, string> };
  const secret = parseYaml(readFileSync(path.join(REPO, 'deploy/kubernetes/secret.yaml'), 'utf8')) as { metadata: { name: string }; stringData: Record<string, string> };
  const podSpec = deployment.spec.template.spec;
  const config = image.dockerfile.config;
  for (const key of [DEMO_KEY, BATCH_KEY]) assert.ok(secret.stringData['agents.yaml']!.includes(keyHash(key)), 'the Secret lists the demo keys this test sends');

  const pod = await startPod([8080, 9090, 3000]);
  t.after(() => pod.close());
  const volume = await configMapVolume(work.dir, configMap.data);
  // A Secret volume is laid out and updated exactly like a ConfigMap's (the kubelet's atomic writer, ..data).
  await mkdir(path.join(work.dir, 'secret'), { mode: 0o755 });
  const secretVolume = await configMapVolume(path.join(work.dir, 'secret'), secret.stringData);

  const started: Record<string, Container> = {};
  for (const c of podSpec.containers) {
    const uid = c.securityContext?.runAsUser ?? podSpec.securityContext?.runAsUser;
    const gid = c.securityContext?.runAsGroup ?? podSpec.securityContext?.runAsGroup;
    assert.ok(uid !== undefined && gid !== undefined, `${c.name}: the pod runs it with a fixed uid and gid`);
    const volumes: ContainerSpec['volumes'] = [];
    const tmpfs: string[] = [];
    for (const m of c.volumeMounts ?? []) {
      const v = podSpec.volumes?.find((vol) => vol.name === m.name);
      assert.ok(v, `${c.name}: volume ${m.name} is defined`);
      assert.equal(m.subPath, undefined, 'a subPath mount never sees ConfigMap updates');
      if (v.configMap) {
        assert.equal(v.configMap.name, configMap.metadata.name);
        volumes.push({ source: volume.dir, target: m.mountPath, readOnly: m.readOnly ?? false });
      } else if (v.secret) {
        assert.equal(v.secret.secretName, secret.metadata.name);
        volumes.push({ source: secretVolume.dir, target: m.mountPath, readOnly: m.readOnly ?? false });
      } else if (v.emptyDir) tmpfs.push(m.mountPath);
      else assert.fail(`${c.name}: volume ${m.name} is neither a ConfigMap, a Secret nor an emptyDir`);
    }
    // Kubernetes: command replaces the image's ENTRYPOINT, args its CMD.
    const command = c.command ? [...c.command, ...(c.args ?? [])] : [...(config.entrypoint ?? []), ...(c.args ?? config.cmd ?? [])];
    // A variable from a Secret key, as the kubelet sets it: the test's Secret is the one deploy/kubernetes ships.
    const valueOf = (e: NonNullable<typeof c.env>[number]): string => {
      const ref = e.valueFrom?.secretKeyRef;
      if (e.value !== undefined || ref === undefined) return e.value ?? '';
      assert.equal(ref.name, secret.metadata.name, `${c.name}: ${e.name} comes from the pod's Secret`);
      const value = secret.stringData[ref.key];
      assert.ok(value !== undefined, `${c.name}: the Secret has ${ref.key} for ${e.name}`);
      return value;
    };
    const env = { ...config.env, ...Object.fromEntries((c.env ?? []).map((e) => [e.name, valueOf(e)])) };
    const container = await startContainer(pod, {
      name: c.name,
      rootfs: image.rootfs,
      command,
      env,
      workdir: c.workingDir ?? config.workdir,
      uid,
      gid,
      readOnlyRoot: c.securityContext?.readOnlyRootFilesystem === true,
      volumes,
      tmpfs,
    });
    t.after(() => container.remove());
    assertPidOne(container, uid);
    started[c.name] = container;
  }
  const api = started['legacy-api'];
  const gw = started.agentgate;
  assert.ok(api && gw, 'the pod has the legacy-api and agentgate containers');
  await api.stdout.waitFor((l) => l.msg === 'demo legacy API listening');
  await gw.stdout.waitFor((l) => l.msg === 'agentgate listening');

  // The kubelet's probes, on the ports they name.
  const gwSpec = podSpec.containers.find((c) => c.name === 'agentgate')!;
  for (const probe of [gwSpec.livenessProbe, gwSpec.readinessProbe]) {
    assert.ok(probe?.httpGet, 'the gateway has HTTP liveness and readiness probes');
    const port = typeof probe.httpGet.port === 'number' ? probe.httpGet.port : gwSpec.ports?.find((p) => p.name === probe.httpGet!.port)?.containerPort;
    assert.equal(port, 9090, 'probes go to the admin port');
    const reply = await pod.http(port, probe.httpGet.path);
    assert.equal(reply.status, 200, `${probe.httpGet.path}: ${reply.body}`);
  }

  // The demo's protections work through the ConfigMap's config: a retried POST runs once.
  const post = () =>
    pod.http(8080, '/orders', { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': 'k8s-1', authorization: `Bearer ${DEMO_KEY}` }, body: '{"item":"widget"}' });
  const first = await post();
  assert.equal(first.status, 201, first.body);
  const retry = await post();
  assert.equal(retry.status, 201);
  assert.equal(retry.headers['idempotent-replayed'], 'true');
  assert.equal(retry.body, first.body);
  const stats = JSON.parse((await pod.http(3000, '/_demo/stats')).body) as { executions: Record<string, number> };
  assert.equal(stats.executions['POST /orders'], 1);

  // kubectl apply of an edited ConfigMap: the kubelet swaps ..data; the gateway reloads without a restart.
  const limitNow = async () => (await pod.http(8080, '/orders/ord_1', { headers: { authorization: `Bearer ${DEMO_KEY}` } })).headers['x-ratelimit-limit'];
  assert.equal(await limitNow(), '100');
  const edited = configMap.data['gateway.yaml']!.replace('agents: {capacity: 100, per: 1m}', 'agents: {capacity: 50, per: 1m}');
  assert.notEqual(edited, configMap.data['gateway.yaml'], 'the test must change the config');
  await volume.update({ ...configMap.data, 'gateway.yaml': edited });
  await until(async () => (await limitNow()) === '50', 5000, () => `the ConfigMap edit was not applied:\n${gw.stdout.text()}`);
  const metrics = (await pod.http(9090, '/metrics')).body;
  assert.equal(metric(metrics, 'agentgate_config_reloads_total{result="success"}'), 1);

  // A broken edit is refused and counted; the last good config keeps serving.
  await volume.update({ ...configMap.data, 'gateway.yaml': edited.replace('    upstream: orders\n', '    upstream: ordrs\n') });
  const failure = await gw.stdout.waitFor((l) => l.msg === 'config reload failed; the previous config keeps serving');
  assert.match(JSON.stringify(failure.problems), /unknown upstream 'ordrs'/);
  assert.equal(metric((await pod.http(9090, '/metrics')).body, 'agentgate_config_reloads_total{result="error"}'), 1);
  assert.equal(await limitNow(), '50');
  assert.equal(gw.stdout.parsed.filter((l) => l.msg === 'agentgate listening').length, 1, 'the gateway never restarted');

  // The Secret's agents file: without a key, 401; a key removed from it (kubectl apply, the kubelet's ..data swap)
  // stops working without a restart, while the others go on.
  assert.equal((await pod.http(8080, '/orders/ord_1')).status, 401, 'no key, no entry');
  const whoami = async (key: string) => (await pod.http(8080, '/_agentgate/whoami', { headers: { authorization: `Bearer ${key}` } })).status;
  assert.equal(await whoami(BATCH_KEY), 200);
  const revoked = secret.stringData['agents.yaml']!.replace(`'${keyHash(BATCH_KEY)}'`, '');
  assert.notEqual(revoked, secret.stringData['agents.yaml'], 'the test must remove the key');
  await secretVolume.update({ ...secret.stringData, 'agents.yaml': revoked });
  await until(async () => (await whoami(BATCH_KEY)) === 401, 5000, () => `the Secret edit was not applied:\n${gw.stdout.text()}`);
  assert.equal(await whoami(DEMO_KEY), 200);
  assert.equal(metric((await pod.http(9090, '/metrics')).body, 'agentgate_agents_reloads_total{result="success"}'), 1);
  assert.equal(gw.stdout.parsed.filter((l) => l.msg === 'agentgate listening').length, 1, 'the gateway never restarted');

  gw.signal('SIGTERM');
  assert.equal(await exitWithin(gw, 10_000), 0);
  api.signal('SIGTERM');
  assert.equal(await exitWithin(api, 5000), 0);
});

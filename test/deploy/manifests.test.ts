// deploy/: the compose file against the Compose Specification's JSON schema (as dclint ships it) and dclint's rules; the
// Kubernetes manifests against the Kubernetes OpenAPI schemas (kubernetes-models) and, field names exactly, its types;
// every shipped gateway config through the project's own `agentgate validate`; and the settings that must agree across them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Ajv } from 'ajv';
import { DCLinter } from 'dclint';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { CLI, tempDir } from '../helpers/gateway.ts';
import { REPO, parseDockerfile } from './helpers/dockerfile.ts';

const DEPLOY = path.join(REPO, 'deploy');
const K8S = path.join(DEPLOY, 'kubernetes');
const COMPOSE_FILE = path.join(DEPLOY, 'docker-compose.yml');
const image = parseDockerfile().config;

type Json = Record<string, any>;

/** YAML as compose and kubectl read it: `<<` merge keys applied. */
function yamlFile(file: string): Json {
  return parseYaml(readFileSync(file, 'utf8'), { merge: true }) as Json;
}

function portOf(listen: string): number {
  return Number(listen.slice(listen.lastIndexOf(':') + 1));
}

function durationSeconds(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text);
  assert.ok(m, `duration ${text}`);
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2] as 'ms' | 's' | 'm' | 'h'];
}

/** `agentgate validate --config FILE` with `env`, exactly as a user runs it. */
function validateConfig(file: string, env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const clean = { ...process.env, ...env };
    delete clean.AGENTGATE_CONFIG;
    const child = spawn(process.execPath, [CLI, 'validate', '--config', file], { env: clean, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function expectValid(file: string, env: Record<string, string> = {}): Promise<void> {
  const run = await validateConfig(file, env);
  assert.equal(run.code, 0, `${path.relative(REPO, file)}:\n${run.stderr}`);
  assert.equal(run.stdout, 'config OK\n');
}

// ---------- Docker Compose ----------

const compose = yamlFile(COMPOSE_FILE);
const services = compose.services as Record<string, Json>;

function composeSchemaValidator() {
  const dclintDir = path.dirname(createRequire(import.meta.url).resolve('dclint/package.json'));
  const schema = JSON.parse(readFileSync(path.join(dclintDir, 'schemas/compose.schema.json'), 'utf8')) as Json;
  assert.equal(schema.$id, 'compose_spec.json', 'the Compose Specification schema (compose-spec/compose-spec schema/compose-spec.json)');
  // Draft-07 (ajv's default); its $schema URI lacks the '#' ajv registers draft-07 under. Not ajv-strict: it uses union types.
  delete schema.$schema;
  return new Ajv({ allErrors: true, strict: false, allowUnionTypes: true }).compile(schema);
}

/** A bind mount's host path, resolved like compose does (relative to the compose file's folder). */
function bindMounts(service: Json): { source: string; target: string; readOnly: boolean }[] {
  return ((service.volumes ?? []) as string[])
    .map((v) => v.split(':'))
    .filter(([source]) => source!.startsWith('.') || source!.startsWith('/'))
    .map(([source, target, mode]) => ({ source: path.resolve(DEPLOY, source!), target: target!, readOnly: mode === 'ro' }));
}

test('compose: valid against the Compose Specification schema, which refuses unknown keys', () => {
  const validate = composeSchemaValidator();
  assert.ok(validate(compose), JSON.stringify(validate.errors, null, 2));
  const typo = structuredClone(compose);
  typo.services.agentgate.restrat = 'always';
  assert.equal(validate(typo), false, 'a misspelt key must fail, or this check proves nothing');
});

test('compose: dclint finds no errors (its schema check included)', () => {
  const [result] = new DCLinter({ rules: {}, quiet: true, debug: false, exclude: [] }).lintFiles([COMPOSE_FILE], false) as { messages: { type: string; line: number; rule: string; message: string }[] }[];
  assert.ok(result);
  const errors = result.messages.filter((m) => m.type === 'error').map((m) => `${m.line}: ${m.rule}: ${m.message}`);
  assert.deepEqual(errors, []);
});

test('compose: the demo API, agentgate as its sidecar, Redis, Prometheus with the rules, Grafana with the dashboard, wired consistently', async () => {
  for (const name of ['legacy-api', 'agentgate', 'redis', 'prometheus', 'grafana']) assert.ok(services[name], `service ${name}`);
  const gw = services.agentgate!;
  const api = services['legacy-api']!;

  // Both run the image this repository's Dockerfile builds, hardened as far as that image allows.
  for (const svc of [gw, api]) {
    assert.equal(path.resolve(DEPLOY, svc.build.context, svc.build.dockerfile), path.join(REPO, 'Dockerfile'));
    assert.equal(svc.read_only, true);
    assert.deepEqual(svc.cap_drop, ['ALL']);
    assert.ok((svc.security_opt as string[]).includes('no-new-privileges:true'));
  }
  assert.equal(gw.command, undefined, "agentgate runs the image's CMD");
  const apiEntry = (api.command as string[])[1]!;
  assert.ok(existsSync(path.join(REPO, apiEntry)), `${apiEntry} is built into dist/`);

  // The config folder is mounted read-only as a folder (edits reload), where the image's CMD looks for it.
  const configDir = bindMounts(gw).find((m) => m.target === path.posix.dirname(image.cmd![image.cmd!.indexOf('--config') + 1]!));
  assert.ok(configDir, 'a folder is mounted over /etc/agentgate');
  assert.ok(statSync(configDir.source).isDirectory(), 'a folder, not a single file: a single-file bind mount never sees an editor save by rename');
  assert.equal(configDir.readOnly, true);
  const configFile = path.join(configDir.source, path.posix.basename(image.cmd![image.cmd!.indexOf('--config') + 1]!));
  await expectValid(configFile, gw.environment as Record<string, string>);

  // The agents file comes from its own folder, mounted read-only beside the config's, where the config's relative path
  // points both in the container and in this repository (so the validation above read it).
  const agentsFile = yamlFile(configFile).consumers.authenticate.api_keys.file as string;
  const agentsDir = bindMounts(gw).find((m) => m.target === path.posix.dirname(path.posix.resolve(configDir.target, agentsFile)));
  assert.ok(agentsDir, `a folder is mounted where ${agentsFile} resolves from ${configDir.target}`);
  assert.notEqual(agentsDir.target, configDir.target, 'the agents file is not part of the config folder');
  assert.ok(statSync(agentsDir.source).isDirectory(), 'a folder, not a single file: a single-file bind mount never sees an edit');
  assert.equal(agentsDir.readOnly, true);
  assert.equal(path.resolve(configDir.source, agentsFile), path.join(agentsDir.source, path.posix.basename(agentsFile)), 'the same relative path on the host');

  // Ports: published on loopback only, and the same ones the config listens on and the healthcheck and Prometheus use.
  const gwConfig = yamlFile(configFile);
  const published = (svc: Json) => ((svc.ports ?? []) as string[]).map((p) => p.split(':'));
  for (const svc of Object.values(services)) for (const [host] of published(svc).filter((p) => p.length === 3)) assert.equal(host, '127.0.0.1');
  for (const svc of Object.values(services)) assert.ok(published(svc).every((p) => p.length === 3), 'every published port names 127.0.0.1');
  const gwPorts = published(gw).map((p) => Number(p[2]));
  assert.deepEqual(gwPorts.sort(), [portOf(gwConfig.server.listen), portOf(gwConfig.server.admin_listen)].sort());
  assert.equal(new URL(gwConfig.upstreams.orders.url).host, `legacy-api:${api.environment.LEGACY_API_PORT}`);
  assert.equal(api.environment.LEGACY_API_HOST, '0.0.0.0', 'other containers call the API');
  assert.equal(new URL(gw.environment.REDIS_URL).host, 'redis:6379');
  assert.equal(gwConfig.store.type, 'redis');

  // Start and stop order: the API and Redis are healthy first; the drain fits in the grace period.
  assert.deepEqual(gw.depends_on, { 'legacy-api': { condition: 'service_healthy' }, redis: { condition: 'service_healthy' } });
  assert.ok(durationSeconds(gw.stop_grace_period) > durationSeconds(gwConfig.server.shutdown_timeout ?? '10s'));
  assert.ok(api.healthcheck && services.redis!.healthcheck);

  // Prometheus: scrapes agentgate's admin port and loads the shipped rules through its mount.
  const promMount = bindMounts(services.prometheus!).find((m) => m.target === '/etc/prometheus');
  assert.ok(promMount);
  const prom = yamlFile(path.join(promMount.source, 'prometheus.yml'));
  const ruleFiles = (prom.rule_files as string[]).map((f) => path.join(promMount.source, path.posix.relative('/etc/prometheus', f)));
  assert.deepEqual(ruleFiles, [path.join(DEPLOY, 'prometheus/alerts.yml')]);
  const job = (prom.scrape_configs as Json[]).find((j) => j.job_name === 'agentgate');
  assert.deepEqual(job?.static_configs[0].targets, [`agentgate:${portOf(gwConfig.server.admin_listen)}`]);

  // Grafana: the provisioned data source is that Prometheus, the dashboards folder is mounted where the provider reads.
  const grafana = services.grafana!;
  const provisioning = bindMounts(grafana).find((m) => m.target === '/etc/grafana/provisioning')!;
  const datasource = yamlFile(path.join(provisioning.source, 'datasources/prometheus.yml')).datasources[0];
  const promPort = published(services.prometheus!)[0]![2];
  assert.equal(datasource.url, `http://prometheus:${promPort}`, "Prometheus's service name and container port");
  const provider = yamlFile(path.join(provisioning.source, 'dashboards/agentgate.yml')).providers[0];
  const dashboards = bindMounts(grafana).find((m) => m.target === provider.options.path);
  assert.ok(dashboards && existsSync(path.join(dashboards.source, 'agentgate.json')));
  assert.equal(grafana.environment.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH, `${provider.options.path}/agentgate.json`);
});

// ---------- Kubernetes ----------

const KIND_MODULES: Record<string, string> = {
  'v1/ConfigMap': 'v1/ConfigMap',
  'v1/Secret': 'v1/Secret',
  'v1/Service': 'v1/Service',
  'apps/v1/Deployment': 'apps/v1/Deployment',
};

function k8sDocuments(): { file: string; doc: Json }[] {
  const out: { file: string; doc: Json }[] = [];
  for (const file of readdirSync(K8S).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml')) {
    for (const d of parseAllDocuments(readFileSync(path.join(K8S, file), 'utf8'))) {
      assert.deepEqual(d.errors, [], file);
      out.push({ file, doc: d.toJS() as Json });
    }
  }
  return out;
}

function moduleOf(doc: Json): string {
  const module = KIND_MODULES[`${doc.apiVersion}/${doc.kind}`];
  assert.ok(module, `${doc.apiVersion} ${doc.kind}: add it to KIND_MODULES`);
  return `kubernetes-models/${module}`;
}

test('kubernetes: every manifest is valid against the Kubernetes OpenAPI schema (kubernetes-models)', async () => {
  const docs = k8sDocuments();
  assert.deepEqual(docs.map((d) => d.doc.kind).sort(), ['ConfigMap', 'Deployment', 'Secret', 'Service']);
  for (const { file, doc } of docs) {
    const Model = (await import(moduleOf(doc)))[doc.kind] as new (data: Json) => { validate(): void };
    assert.doesNotThrow(() => new Model(doc).validate(), `${file}: ${doc.kind}`);
  }
  // The same validation refuses a wrong type, or it would prove nothing.
  const deployment = structuredClone(docs.find((d) => d.doc.kind === 'Deployment')!.doc);
  deployment.spec.template.spec.containers[1].ports[0].containerPort = 'eighty';
  const { Deployment } = await import('kubernetes-models/apps/v1/Deployment');
  assert.throws(() => new Deployment(deployment as never).validate(), /containerPort/);
});

/**
 * The OpenAPI schemas allow unknown fields (the API server's strict field validation refuses them), so a misspelt
 * `readOnlyRootFileSystem` would pass them silently. Typing every manifest as an object literal of its Kubernetes type
 * makes tsc reject any field the API does not define.
 */
async function strictFieldCheck(docs: { file: string; doc: Json }[]): Promise<string> {
  const dir = path.join(REPO, '.test-tmp');
  await mkdir(dir, { recursive: true });
  const work = await mkdtemp(path.join(dir, 'k8s-fields-'));
  try {
    const lines = docs.map(({ file, doc }, i) => `import type { I${doc.kind} as T${i} } from '${moduleOf(doc)}';\nexport const m${i}: T${i} = ${JSON.stringify(doc)}; // ${file}`);
    await writeFile(path.join(work, 'manifests.ts'), `${lines.join('\n')}\n`);
    await writeFile(
      path.join(work, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { strict: true, noEmit: true, module: 'NodeNext', moduleResolution: 'NodeNext', skipLibCheck: true, types: [] }, files: ['manifests.ts'] }),
    );
    const tsc = path.join(REPO, 'node_modules/typescript/bin/tsc');
    return await new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [tsc, '-p', work], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr.on('data', (c: Buffer) => (out += c.toString()));
      child.on('error', reject);
      child.on('close', () => resolve(out.trim()));
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

test('kubernetes: every field name is one the API defines (no silently ignored typos)', async () => {
  const docs = k8sDocuments();
  assert.equal(await strictFieldCheck(docs), '');
  const typo = structuredClone(docs);
  const deployment = typo.find((d) => d.doc.kind === 'Deployment')!.doc;
  const sc = deployment.spec.template.spec.containers[1].securityContext;
  sc.readOnlyRootFileSystem = sc.readOnlyRootFilesystem;
  delete sc.readOnlyRootFilesystem;
  assert.match(await strictFieldCheck(typo), /readOnlyRootFileSystem/);
});

test('kubernetes: the kustomization applies exactly the manifests here, with the image the Deployment uses', () => {
  const kustomization = yamlFile(path.join(K8S, 'kustomization.yaml'));
  assert.equal(kustomization.apiVersion, 'kustomize.config.k8s.io/v1beta1');
  assert.equal(kustomization.kind, 'Kustomization');
  const manifests = readdirSync(K8S).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml');
  assert.deepEqual([...(kustomization.resources as string[])].sort(), manifests.sort());
  const known = new Set(['apiVersion', 'kind', 'resources', 'images', 'namespace', 'labels', 'configMapGenerator', 'generatorOptions']);
  for (const key of Object.keys(kustomization)) assert.ok(known.has(key), `kustomization.yaml: unexpected key ${key}`);
  assert.equal(kustomization.configMapGenerator, undefined, 'a generated ConfigMap gets a hash suffix: every edit would restart the pods instead of reloading');
  const deployment = yamlFile(path.join(K8S, 'deployment.yaml'));
  const images = new Set((deployment.spec.template.spec.containers as Json[]).map((c) => String(c.image).split(':')[0]));
  for (const entry of kustomization.images as Json[]) assert.ok(images.has(entry.name), `images: ${entry.name} is used by the Deployment`);
});

test('kubernetes: the sidecar pod is locked down, probed on the admin port, fed by the ConfigMap and Secret folders, and reached only through the Service', async () => {
  const deployment = yamlFile(path.join(K8S, 'deployment.yaml'));
  const configMap = yamlFile(path.join(K8S, 'configmap.yaml'));
  const secret = yamlFile(path.join(K8S, 'secret.yaml'));
  const service = yamlFile(path.join(K8S, 'service.yaml'));
  const pod = deployment.spec.template.spec as Json;
  const containers = pod.containers as Json[];
  const gw = containers.find((c) => c.name === 'agentgate')!;
  const app = containers.find((c) => c.name !== 'agentgate')!;
  assert.ok(gw && app, 'an app container and the agentgate sidecar');

  const imageUid = Number(image.user!.split(':')[0]);
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.equal(pod.securityContext.runAsUser, imageUid, 'the same uid the image declares');
  assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
  assert.equal(pod.automountServiceAccountToken, false, 'the gateway never talks to the Kubernetes API');
  for (const c of containers) {
    assert.equal(c.securityContext.readOnlyRootFilesystem, true, c.name);
    assert.equal(c.securityContext.allowPrivilegeEscalation, false, c.name);
    assert.deepEqual(c.securityContext.capabilities.drop, ['ALL'], c.name);
    for (const kind of ['requests', 'limits']) for (const r of ['cpu', 'memory']) assert.ok(c.resources?.[kind]?.[r], `${c.name}: resources.${kind}.${r}`);
  }

  // The gateway's config, as the pod mounts it: the ConfigMap's folder at the path the image's CMD reads, and the
  // agents file the config names from the Secret's folder, each laid out at its mount path and validated together.
  const data = configMap.data as Record<string, string>;
  const gwConfig = parseYaml(data['gateway.yaml']!) as Json;
  const mount = (gw.volumeMounts as Json[]).find((m) => m.mountPath === path.posix.dirname(image.cmd![image.cmd!.indexOf('--config') + 1]!));
  assert.ok(mount, 'the ConfigMap is mounted at /etc/agentgate');
  assert.equal(mount.subPath, undefined, 'subPath mounts never receive ConfigMap updates');
  assert.equal(mount.readOnly, true);
  const volume = (pod.volumes as Json[]).find((v) => v.name === mount.name);
  assert.equal(volume?.configMap?.name, configMap.metadata.name);
  const agentsPath = path.posix.resolve(mount.mountPath, gwConfig.consumers.authenticate.api_keys.file);
  const agentsMount = (gw.volumeMounts as Json[]).find((m) => m.mountPath === path.posix.dirname(agentsPath));
  assert.ok(agentsMount, `a volume is mounted where the config's agents file resolves (${agentsPath})`);
  assert.equal(agentsMount.subPath, undefined, 'subPath mounts never receive Secret updates');
  assert.equal(agentsMount.readOnly, true);
  assert.ok(!agentsMount.mountPath.startsWith(`${mount.mountPath}/`), 'beside the ConfigMap folder, not inside it');
  assert.equal((pod.volumes as Json[]).find((v) => v.name === agentsMount.name)?.secret?.secretName, secret.metadata.name, 'from the Secret');
  const secretData = secret.stringData as Record<string, string>;
  assert.ok(secretData[path.posix.basename(agentsPath)], `the Secret holds ${path.posix.basename(agentsPath)}`);
  const root = await tempDir('agentgate-pod-files');
  try {
    for (const [where, files] of [[mount.mountPath, data], [agentsMount.mountPath, secretData]] as const) {
      await mkdir(path.join(root.dir, where), { recursive: true });
      for (const [key, value] of Object.entries(files)) await writeFile(path.join(root.dir, where, key), value);
    }
    // The container's environment as the pod gives it: each variable from its Secret key.
    const env = Object.fromEntries(
      ((gw.env ?? []) as Json[]).map((e) => [e.name as string, e.value ?? (e.valueFrom?.secretKeyRef?.name === secret.metadata.name ? secretData[e.valueFrom.secretKeyRef.key] : undefined)]),
    );
    await expectValid(path.join(root.dir, image.cmd![image.cmd!.indexOf('--config') + 1]!), env);
  } finally {
    await root.remove();
  }
  const tmp = (gw.volumeMounts as Json[]).find((m) => m.mountPath === '/tmp');
  assert.ok(tmp && (pod.volumes as Json[]).find((v) => v.name === tmp.name)?.emptyDir, 'a writable /tmp beside the read-only root');

  // Ports: the container ports are the image's EXPOSE and the config's listeners; probes use admin, the Service proxy.
  const ports = Object.fromEntries((gw.ports as Json[]).map((p) => [p.name, p.containerPort]));
  assert.deepEqual(ports, { proxy: portOf(gwConfig.server.listen), admin: portOf(gwConfig.server.admin_listen) });
  assert.deepEqual(Object.values(ports).map(String).sort(), [...image.exposed].sort());
  assert.match(gwConfig.server.listen, /^0\.0\.0\.0:/);
  assert.match(gwConfig.server.admin_listen, /^0\.0\.0\.0:/, 'the kubelet probes the pod IP');
  assert.deepEqual(gw.livenessProbe.httpGet, { path: '/healthz', port: 'admin' });
  assert.deepEqual(gw.readinessProbe.httpGet, { path: '/readyz', port: 'admin' });
  assert.deepEqual(service.spec.selector, deployment.spec.selector.matchLabels);
  for (const [k, v] of Object.entries(deployment.spec.selector.matchLabels as Record<string, string>)) assert.equal(deployment.spec.template.metadata.labels[k], v, `pod label ${k}`);
  assert.deepEqual((service.spec.ports as Json[]).map((p) => p.targetPort), ['proxy'], 'agents reach the gateway, never the app or the admin port');

  // The app listens on loopback only, where the gateway's upstream points: nothing bypasses the gateway.
  const appEnv = Object.fromEntries((app.env as Json[]).map((e) => [e.name, e.value]));
  assert.equal(appEnv.LEGACY_API_HOST, '127.0.0.1');
  for (const u of Object.values(gwConfig.upstreams as Record<string, Json>)) assert.equal(u.url, `http://127.0.0.1:${appEnv.LEGACY_API_PORT}`);
  assert.ok(existsSync(path.join(REPO, (app.command as string[])[1]!)));

  // Shutdown: the gateway stops taking new requests after its preStop, drains, and the app outlives that drain.
  const drain = durationSeconds(gwConfig.server.shutdown_timeout ?? '10s');
  const gwPreStop = gw.lifecycle.preStop.sleep.seconds as number;
  const appPreStop = app.lifecycle.preStop.sleep.seconds as number;
  assert.ok(appPreStop > gwPreStop + drain, 'the app keeps serving until the gateway has drained');
  assert.ok(pod.terminationGracePeriodSeconds > appPreStop, 'the grace period covers the longest preStop and the exits after it');
  assert.equal(deployment.spec.strategy.rollingUpdate.maxUnavailable, 0);
});

// ---------- configs shipped in deploy/ against config/gateway.yaml ----------

/** config/gateway.yaml with what a deployment legitimately changes taken out, so the demo stays the same everywhere. */
function comparable(config: Json): Json {
  const copy = structuredClone(config);
  delete copy.server;
  delete copy.store;
  for (const u of Object.values(copy.upstreams as Record<string, Json>)) delete u.url;
  for (const r of copy.routes as Json[]) if (r.silent_failure?.response_schema) r.silent_failure.response_schema = path.basename(r.silent_failure.response_schema);
  const keys = copy.consumers?.authenticate?.api_keys;
  if (keys?.file) keys.file = path.basename(keys.file);
  return copy;
}

test('deploy configs: each passes `agentgate validate`, and the compose and Kubernetes demos differ from config/gateway.yaml only where a deployment must', async () => {
  await expectValid(path.join(DEPLOY, 'docker/gateway.yaml'), { UPSTREAM_URL: 'http://127.0.0.1:3000' });
  const missing = await validateConfig(path.join(DEPLOY, 'docker/gateway.yaml'), {});
  assert.equal(missing.code, 1, 'the image default refuses to start without UPSTREAM_URL');
  assert.match(missing.stderr, /UPSTREAM_URL/);

  const reference = yamlFile(path.join(REPO, 'config/gateway.yaml'));
  const schema = readFileSync(path.join(REPO, 'config/schemas/order-list.schema.json'), 'utf8');
  const composeConfig = yamlFile(path.join(DEPLOY, 'compose/agentgate/gateway.yaml'));
  assert.deepEqual(comparable(composeConfig), comparable(reference));
  assert.equal(readFileSync(path.join(DEPLOY, 'compose/agentgate/schemas/order-list.schema.json'), 'utf8'), schema);
  const k8sData = yamlFile(path.join(K8S, 'configmap.yaml')).data as Record<string, string>;
  assert.deepEqual(comparable(parseYaml(k8sData['gateway.yaml']!) as Json), comparable(reference));
  assert.equal(k8sData['order-list.schema.json'], schema);

  // The same demo agents everywhere, so the walk-through's keys work against compose and the pod too.
  const agents = yamlFile(path.join(REPO, 'config/agents.yaml'));
  assert.deepEqual(yamlFile(path.join(DEPLOY, 'compose/agentgate-agents/agents.yaml')), agents);
  assert.deepEqual(parseYaml(yamlFile(path.join(K8S, 'secret.yaml')).stringData['agents.yaml']), agents);
});

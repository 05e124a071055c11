// approval.notify webhooks against a real receiver: a 428 sends one signed JSON notice (verified with
// verifyWebhookSignature), retried with backoff under one delivery id, never delaying or failing the agent's call,
// bounded, and the secret never shows in logs or metrics.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { startGateway, type Gateway } from '../src/gateway.ts';
import { signatureHeader, verifyWebhookSignature } from '../src/approvals/webhook.ts';
import { configYaml, LogCapture, tempDir } from './helpers/gateway.ts';
import { startUpstream, json, type TestUpstream } from './helpers/upstream.ts';
import { envelopeOf, send, type Reply } from './helpers/http.ts';
import { until } from './helpers/wait.ts';

const SECRET = 'whsec-' + randomBytes(16).toString('hex');
const ADMIN_URL = 'https://gateway-admin.example.test/';

interface Received {
  path: string;
  headers: IncomingMessage['headers'];
  raw: Buffer;
  verified: boolean;
  json: any;
  res: ServerResponse;
  /** Set when the receiver answered. */
  answered?: number;
}

/** A webhook receiver: records every POST, verifies its signature, and answers per path (a status, or never). */
async function startReceiver(): Promise<{ url: string; got: Received[]; script: Map<string, (number | 'hold')[]>; close(): Promise<void>; server: Server }> {
  const got: Received[] = [];
  const script = new Map<string, (number | 'hold')[]>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const path = req.url ?? '/';
      const header = req.headers['x-agentgate-signature'];
      const entry: Received = {
        path,
        headers: req.headers,
        raw,
        verified: verifyWebhookSignature(SECRET, typeof header === 'string' ? header : undefined, raw),
        json: JSON.parse(raw.toString('utf8')),
        res,
      };
      got.push(entry);
      const plan = script.get(path);
      const next = plan && plan.length > 1 ? plan.shift()! : (plan?.[0] ?? 200);
      if (next === 'hold') return; // holds the request open, never answers
      entry.answered = Date.now();
      res.writeHead(next, { 'content-type': 'text/plain' }).end(next === 200 ? 'ok' : 'not now');
    });
  });
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    got,
    script,
    server,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A port nothing listens on (bound, then let go). */
async function closedPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function startWith(yaml: string, approvalWebhook: NonNullable<Parameters<typeof startGateway>[0]['approvalWebhook']>) {
  const tmp = await tempDir('agentgate-webhook');
  const configFile = path.join(tmp.dir, 'gateway.yaml');
  await writeFile(configFile, yaml);
  const logs = new LogCapture();
  const gateway = await startGateway({ configFile, logDestination: logs, env: { ...process.env, WEBHOOK_SECRET: SECRET }, watchConfig: false, approvalWebhook });
  return {
    gateway,
    logs,
    close: async () => {
      await gateway.shutdown();
      await tmp.remove();
    },
  };
}

function metricValue(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

function required(reply: Reply): { id: string } {
  assert.equal(reply.status, 428, reply.text);
  assert.equal(envelopeOf(reply).code, 'APPROVAL_REQUIRED');
  return envelopeOf(reply).approval;
}

const route = (name: string, method: string, path: string, by: string, webhook: string) => `  - name: ${name}
    match: {methods: [${method}], path: '${path}'}
    upstream: crm
    approval: {by: ${by}, ttl: 15m, notify: {webhook: '${webhook}', secret: '\${WEBHOOK_SECRET}'}}
`;

describe('approval webhooks', () => {
  let upstream: TestUpstream;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let gw: Awaited<ReturnType<typeof startWith>>;
  let gateway: Gateway;
  const metricsText = async () => (await send(`${gateway.adminUrl}/metrics`)).text;

  before(async () => {
    upstream = await startUpstream({ '*': (_req, res) => json(res, 200, { done: true }) });
    receiver = await startReceiver();
    receiver.script.set('/hooks/flaky', [503, 503, 200]);
    receiver.script.set('/hooks/held', ['hold']);
    const nowhere = await closedPort();
    gw = await startWith(
      configYaml(`  admin_url: '${ADMIN_URL}'
upstreams:
  crm: {url: '${upstream.url}'}
routes:
${route('delete-customer', 'DELETE', '/customers/{id}', 'human', `${receiver.url}/hooks/approvals?channel=ops`)}${route('flaky', 'POST', '/flaky', 'human', `${receiver.url}/hooks/flaky`)}${route('held', 'POST', '/held', 'human', `${receiver.url}/hooks/held`)}${route('nowhere', 'POST', '/nowhere', 'human', `http://127.0.0.1:${nowhere}/hooks`)}`),
      { baseDelayMs: 20, maxAttempts: 4, timeoutMs: 60_000 },
    );
    gateway = gw.gateway;
  });
  after(async () => {
    await gw?.close();
    await receiver?.close();
    await upstream?.close();
  });

  test('a 428 sends one signed POST: the approval (id, route, preview) and its page under server.admin_url', async () => {
    const payload = JSON.stringify({ note: 'customer asked', password: 'hunter2-do-not-show' });
    // node:http sends a DELETE's body unframed unless told its length.
    const reply = await send(`${gateway.proxyUrl}/customers/42?reason=churn`, {
      method: 'DELETE',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      body: payload,
    });
    const approval = required(reply);
    await until(async () => receiver.got.some((r) => r.json.approval?.id === approval.id), 5000, () => `no notice for ${approval.id}`);
    const notices = receiver.got.filter((r) => r.json.approval?.id === approval.id);
    assert.equal(notices.length, 1);
    const notice = notices[0]!;
    assert.equal(notice.path, '/hooks/approvals?channel=ops');
    assert.equal(notice.verified, true, 'the signature verifies under the secret');
    assert.equal(notice.headers['content-type'], 'application/json');
    assert.equal(notice.headers['x-agentgate-event'], 'approval.pending');
    assert.match(String(notice.headers['x-agentgate-delivery']), /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.match(String(notice.headers['x-agentgate-signature']), /^t=\d+,v1=[0-9a-f]{64}$/);
    const body = notice.json;
    assert.equal(body.type, 'approval.pending');
    assert.ok(!Number.isNaN(Date.parse(body.sent_at)));
    assert.equal(body.page_url, `https://gateway-admin.example.test/approvals/#${approval.id}`);
    assert.equal(body.approval.route, 'delete-customer');
    assert.equal(body.approval.status, 'pending');
    assert.equal(body.approval.by, 'human');
    assert.equal(body.approval.url, `${gateway.proxyUrl}/_agentgate/approvals/${approval.id}`);
    assert.equal(body.approval.preview.method, 'DELETE');
    assert.equal(body.approval.preview.path, '/customers/42');
    assert.equal(body.approval.preview.query, 'reason=churn');
    assert.match(body.approval.preview.body, /customer asked/, JSON.stringify(body.approval.preview));
    assert.doesNotMatch(notice.raw.toString(), /hunter2/, 'the preview is redacted in the notice too');
    assert.deepEqual(body.approval.preview, envelopeOf(reply).preview, 'the same preview the agent was shown');
  });

  test('503, 503, then 200: delivered on the 3rd attempt under the same delivery id; the metric counts retried and delivered', async () => {
    const approval = required(await send(`${gateway.proxyUrl}/flaky`, { method: 'POST', body: 'x' }));
    await until(async () => receiver.got.filter((r) => r.path === '/hooks/flaky').length >= 3 && receiver.got.at(-1)?.answered !== undefined, 5000, () => 'three attempts');
    const attempts = receiver.got.filter((r) => r.path === '/hooks/flaky');
    assert.equal(attempts.length, 3);
    assert.ok(attempts.every((a) => a.json.approval.id === approval.id && a.verified));
    assert.equal(new Set(attempts.map((a) => a.headers['x-agentgate-delivery'])).size, 1, 'one delivery id on every retry');
    assert.equal(new Set(attempts.map((a) => a.raw.toString())).size, 1, 'the same bytes on every retry');
    await until(async () => metricValue(await metricsText(), 'agentgate_approval_webhooks_total{route="flaky",result="delivered"}') === 1, 5000, () => 'delivered counted');
    const text = await metricsText();
    assert.equal(metricValue(text, 'agentgate_approval_webhooks_total{route="flaky",result="retried"}'), 2);
    assert.equal(metricValue(text, 'agentgate_approval_webhooks_total{route="flaky",result="failed"}'), 0);
    const warnings = gw.logs.lines.filter((l) => l.msg === 'approval webhook attempt failed; retrying' && l.route === 'flaky');
    assert.deepEqual(
      warnings.map((w) => [w.level, w.attempt, w.status, w.approval_id]),
      [
        ['warn', 1, 503, approval.id],
        ['warn', 2, 503, approval.id],
      ],
    );
  });

  test('a receiver that never answers does not hold up the 428, nor does a webhook where nothing listens', async () => {
    // The first notice is held open by the receiver...
    const first = await send(`${gateway.proxyUrl}/held`, { method: 'POST', body: 'one' });
    required(first);
    await until(async () => receiver.got.some((r) => r.path === '/hooks/held'), 5000, () => 'the held notice reached the receiver');
    const held = receiver.got.find((r) => r.path === '/hooks/held')!;
    // ...and while it is, another call on the same route is answered.
    const second = await send(`${gateway.proxyUrl}/held`, { method: 'POST', body: 'two' });
    required(second);
    assert.equal(held.answered, undefined, 'the 428 arrived while the receiver still held the notice unanswered');
    assert.equal(held.res.socket?.destroyed, false, 'and the connection still open');

    const nowhere = await send(`${gateway.proxyUrl}/nowhere`, { method: 'POST', body: 'x' });
    const approval = required(nowhere);
    await until(
      async () => metricValue(await metricsText(), 'agentgate_approval_webhooks_total{route="nowhere",result="failed"}') === 1,
      5000,
      () => 'the unreachable webhook given up after its attempts',
    );
    const text = await metricsText();
    assert.equal(metricValue(text, 'agentgate_approval_webhooks_total{route="nowhere",result="retried"}'), 3);
    const failures = gw.logs.lines.filter((l) => l.route === 'nowhere' && l.level === 'warn' && String(l.msg).startsWith('approval webhook'));
    assert.equal(failures.length, 4);
    assert.ok(failures.every((l) => l.approval_id === approval.id && l.error === 'ECONNREFUSED'), JSON.stringify(failures));
    assert.deepEqual(failures.map((l) => l.attempt), [1, 2, 3, 4]);
    assert.match(String(failures.at(-1)!.msg), /failed 4 times; giving up/);
  });

  test('verifyWebhookSignature refuses forgeries: wrong secret, a changed byte, a stale timestamp, a malformed header', () => {
    const body = Buffer.from(JSON.stringify({ type: 'approval.pending', approval: { id: 'apr_x' } }));
    const now = Date.now();
    const t = Math.floor(now / 1000);
    const header = signatureHeader(SECRET, t, body);
    assert.equal(verifyWebhookSignature(SECRET, header, body, { now }), true);
    assert.equal(verifyWebhookSignature(SECRET, header, body.toString(), { now }), true, 'a string body as well');
    assert.equal(verifyWebhookSignature('another-secret-of-some-length', header, body, { now }), false, 'wrong secret');
    const changed = Buffer.from(body);
    changed[changed.length - 3]! ^= 1;
    assert.equal(verifyWebhookSignature(SECRET, header, changed, { now }), false, 'one byte changed');
    const old = signatureHeader(SECRET, t - 301, body);
    assert.equal(verifyWebhookSignature(SECRET, old, body, { now }), false, 'older than the tolerance');
    assert.equal(verifyWebhookSignature(SECRET, old, body, { now, toleranceSeconds: 600 }), true, 'within a wider tolerance');
    assert.equal(verifyWebhookSignature(SECRET, signatureHeader(SECRET, t + 3600, body), body, { now }), false, 'far in the future');
    const v1 = header.split('v1=')[1]!;
    // The timestamp is signed: moving it forward invalidates the signature.
    assert.equal(verifyWebhookSignature(SECRET, `t=${t + 1},v1=${v1}`, body, { now }), false, 'a replayed signature under a new timestamp');
    for (const malformed of [undefined, '', 'garbage', `v1=${v1}`, `t=${t}`, `t=abc,v1=${v1}`, `t=${t},v1=${v1.toUpperCase()}`, `t=${t},v1=${v1.slice(2)}`, `t=${t},t=${t},v1=${v1}`, `t=${t};v1=${v1}`]) {
      assert.equal(verifyWebhookSignature(SECRET, malformed, body, { now }), false, `malformed: ${malformed}`);
    }
    assert.equal(verifyWebhookSignature(SECRET, `t=${t},v1=${'0'.repeat(64)},v1=${v1}`, body, { now }), true, 'one of several v1 (a secret being rotated)');
  });

  test('the secret, the signatures and the previewed body never show in the logs or the metrics', async () => {
    await new Promise<void>((resolve) => gateway.logger.flush(() => resolve()));
    const logs = gw.logs.text;
    assert.ok(logs.includes('approval webhook'), 'there are webhook log lines to look at');
    assert.equal(logs.includes(SECRET), false, 'no secret in the logs');
    for (const r of receiver.got) {
      const v1 = String(r.headers['x-agentgate-signature']).split('v1=')[1]!;
      assert.equal(logs.includes(v1), false, 'no signature in the logs');
    }
    assert.equal(logs.includes('customer asked'), false, 'no preview of the body in the logs');
    assert.equal(logs.includes('channel=ops'), false, "no webhook path or query in the logs (they may hold the receiver's token)");
    assert.equal((await metricsText()).includes(SECRET), false, 'no secret in the metrics');
  });
});

describe('approval webhooks: without server.admin_url, and bounded', () => {
  let upstream: TestUpstream;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let gw: Awaited<ReturnType<typeof startWith>>;

  before(async () => {
    upstream = await startUpstream({ '*': (_req, res) => json(res, 200, { done: true }) });
    receiver = await startReceiver();
    receiver.script.set('/hooks/held', ['hold', 200]);
    gw = await startWith(
      configYaml(`upstreams:
  crm: {url: '${upstream.url}'}
routes:
${route('purge', 'POST', '/purge', 'human', `${receiver.url}/hooks/held`)}`),
      { baseDelayMs: 20, maxAttempts: 2, timeoutMs: 60_000, maxPending: 1 },
    );
  });
  after(async () => {
    await gw?.close();
    await receiver?.close();
    await upstream?.close();
  });

  test('the page link is on the admin listener; past maxPending a notice is dropped, counted and logged; the memory store is warned of', async () => {
    const first = required(await send(`${gw.gateway.proxyUrl}/purge`, { method: 'POST', body: 'a' }));
    await until(async () => receiver.got.length === 1, 5000, () => 'the first notice held by the receiver');
    assert.equal(receiver.got[0]!.json.page_url, `${gw.gateway.adminUrl}/approvals/#${first.id}`);
    const second = required(await send(`${gw.gateway.proxyUrl}/purge`, { method: 'POST', body: 'b' }));
    const text = (await send(`${gw.gateway.adminUrl}/metrics`)).text;
    assert.equal(metricValue(text, 'agentgate_approval_webhooks_total{route="purge",result="dropped"}'), 1);
    const dropped = gw.logs.lines.filter((l) => l.level === 'warn' && String(l.msg).startsWith('approval webhook dropped'));
    assert.deepEqual(dropped.map((l) => l.approval_id), [second.id]);
    const memory = gw.logs.lines.filter((l) => String(l.msg).startsWith("approvals live in this process's memory"));
    assert.equal(memory.length, 1);
    assert.equal(memory[0]!.level, 'warn');
    assert.deepEqual(memory[0]!.routes, ['purge']);
  });
});

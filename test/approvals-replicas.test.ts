// Approvals across replicas: two built gateway processes (A and B) on one Redis and one key prefix, a recording upstream:
// asked on A, listed and decided on B, executed on A exactly once, however many re-sends or decisions race on both, across
// a restart of A; and every approval key in Redis carries the {approvals} hash tag and a TTL.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { configYaml, startCliGateway, tempDir, type CliGateway } from './helpers/gateway.ts';
import { json, startUpstream, type TestUpstream } from './helpers/upstream.ts';
import { envelopeOf, send, type Reply } from './helpers/http.ts';
import { cleanupPrefix, keysUnder, REDIS_URL, skipWithoutRedis, uniquePrefix, withRedis } from './helpers/redis.ts';
import { until } from './helpers/idempotency.ts';
import { keyHash, newKey } from '../src/agents/keys.ts';

// Throws (fails the file) instead of skipping when Redis is missing and AGENTGATE_REQUIRE_REDIS=1.
const skipRedis = await skipWithoutRedis();

const ADMIN_TOKEN = 'admin-token-' + randomBytes(12).toString('hex');
const alice = newKey();
const AGENTS = `agents:\n  - {id: alice, keys: ['${keyHash(alice)}']}\n`;
/** The routes' approval ttl, and how long a record is kept past it (RETAIN_MS in src/approvals/store.ts): the most a key's TTL can be. */
const TTL_MS = 15 * 60_000;
const RETAIN_MS = 60 * 60_000;
const ID = /^apr_[A-Za-z0-9_-]{22}$/;

const CONFIG = (prefix: string, upstreamUrl: string) =>
  configYaml(`  admin_token: \${ADMIN_TOKEN}
store: {type: redis, url: '${REDIS_URL}', key_prefix: ${prefix}}
consumers:
  authenticate: {api_keys: {file: agents.yaml}}
upstreams:
  crm: {url: '${upstreamUrl}', timeout: 10s}
rate_limits:
  agents: {capacity: 100000, per: 1h}
defaults: {rate_limit: agents}
routes:
  - name: delete-customer
    match: {methods: [DELETE], path: '/customers/{id}'}
    upstream: crm
    approval: {by: human, ttl: 15m, max_pending: 10000}
  - name: purge
    match: {methods: [POST], path: '/purge/{id}'}
    upstream: crm
    approval: {by: agent, ttl: 15m, max_pending: 10000}
`);

/** SIGTERM, and the exit code once the process has ended; SIGKILL (and a failure) when it does not end within timeoutMs. */
async function stop(g: CliGateway, timeoutMs = 10_000): Promise<number | null> {
  if (g.child.exitCode !== null || g.child.signalCode !== null) return g.exited;
  g.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
  const code = await Promise.race([g.exited, timedOut]);
  clearTimeout(timer);
  if (code !== 'timeout') return code;
  g.child.kill('SIGKILL');
  await g.exited;
  throw new Error(`gateway did not exit within ${timeoutMs} ms of SIGTERM; stderr:\n${g.stderr()}`);
}

/** The Redis Cluster hash tag of a key, by Redis's rule: between the first '{' and the next '}', when not empty. */
function hashTag(key: string): string | undefined {
  const open = key.indexOf('{');
  if (open === -1) return undefined;
  const close = key.indexOf('}', open + 1);
  return close === -1 || close === open + 1 ? undefined : key.slice(open + 1, close);
}

describe('approvals on two gateway processes sharing one Redis', { skip: skipRedis, timeout: 120_000 }, () => {
  const prefix = uniquePrefix('approvals-replicas');
  let upstream: TestUpstream | undefined;
  let configFile = '';
  let removeDir: () => Promise<void> = async () => {};
  /** Every process started, so that after() stops each, restarted ones included. */
  const started: CliGateway[] = [];
  let a: CliGateway;
  let b: CliGateway;
  /** Every approval id a 428 gave, on either replica. */
  const issued = new Set<string>();

  async function startReplica(): Promise<CliGateway> {
    const g = await startCliGateway(configFile, { ...process.env, ADMIN_TOKEN });
    started.push(g);
    // 'listening' comes before the Redis connection is up.
    await until('the replica to be ready', 10_000, async () => (await fetch(`${g.adminUrl}/readyz`)).status === 200);
    return g;
  }

  before(async () => {
    upstream = await startUpstream({ '*': (req, res) => json(res, req.method === 'POST' ? 201 : 200, { done: `${req.method} ${req.url}` }) });
    const tmp = await tempDir('agentgate-approvals-replicas');
    removeDir = tmp.remove;
    configFile = path.join(tmp.dir, 'gateway.yaml');
    await writeFile(path.join(tmp.dir, 'agents.yaml'), AGENTS);
    await writeFile(configFile, CONFIG(prefix, upstream.url));
    [a, b] = await Promise.all([startReplica(), startReplica()]);
  });

  after(async () => {
    const stopped = await Promise.allSettled(started.map((g) => stop(g)));
    await upstream?.close();
    await removeDir();
    await cleanupPrefix(REDIS_URL, prefix);
    const failed = stopped.find((s) => s.status === 'rejected');
    if (failed) throw failed.reason;
  });

  const call = (g: CliGateway, method: string, p: string, options: { body?: string; approvalId?: string } = {}) =>
    send(`${g.url}${p}`, {
      method,
      headers: {
        authorization: `Bearer ${alice}`,
        ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...(options.approvalId !== undefined ? { 'approval-id': options.approvalId } : {}),
      },
      body: options.body,
    });
  const admin = (g: CliGateway, method: string, p: string, body?: unknown) =>
    send(`${g.adminUrl}${p}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  /** A 428 APPROVAL_REQUIRED: its approval, recorded as issued. */
  function required(reply: Reply): { id: string; by: string; status: string } {
    assert.equal(reply.status, 428, reply.text);
    const envelope = envelopeOf(reply);
    assert.equal(envelope.code, 'APPROVAL_REQUIRED');
    assert.equal(envelope.retryable, false);
    assert.match(envelope.approval.id, ID);
    assert.equal(envelope.approval.status, 'pending');
    // The same request asked again while its approval is pending may be given that approval again: ids can repeat.
    issued.add(envelope.approval.id);
    return envelope.approval;
  }
  /** How many requests the upstream received with this method and path. */
  const forwarded = (method: string, p: string) => upstream!.received.filter((r) => r.method === method && r.url === p).length;
  const statusOn = async (g: CliGateway, id: string) => {
    const reply = await admin(g, 'GET', `/approvals/${id}`);
    assert.equal(reply.status, 200, reply.text);
    return reply.json() as { status: string; decided_by?: string };
  };
  const storedRecord = (id: string) =>
    withRedis(REDIS_URL, async (client) => {
      const raw = await client.get(`${prefix}:{approvals}:approval:${id}`);
      assert.ok(raw !== null, `approval ${id} is in Redis`);
      return JSON.parse(raw) as { status: string; executed_request_id?: string };
    });

  test('by: human — asked on A, listed and approved on B, executed on A once; re-sent on B it needs a new approval', async () => {
    const p = '/customers/a-1';
    const asked = required(await call(a, 'DELETE', p));
    assert.equal(asked.by, 'human');

    const listed = await admin(b, 'GET', '/approvals?status=pending&route=delete-customer');
    assert.equal(listed.status, 200, listed.text);
    assert.equal(listed.json().store, 'redis');
    const entry = listed.json().approvals.find((x: { id: string }) => x.id === asked.id);
    assert.ok(entry, `B lists the approval A created: ${listed.text}`);
    assert.equal(entry.agent, 'agent:alice');
    assert.equal(entry.status, 'pending');
    assert.equal(entry.preview.method, 'DELETE');
    assert.equal(entry.preview.path, p);

    const pending = await call(b, 'DELETE', p, { approvalId: asked.id });
    assert.equal(pending.status, 409, pending.text);
    assert.equal(envelopeOf(pending).code, 'APPROVAL_PENDING');
    assert.equal(forwarded('DELETE', p), 0, 'nothing forwarded before the approval');

    const approved = await admin(b, 'POST', `/approvals/${asked.id}/approve`, { by: 'dana@ops', reason: 'verified' });
    assert.equal(approved.status, 200, approved.text);
    assert.equal(approved.json().status, 'approved');
    assert.equal(approved.json().decided_by, 'dana@ops');
    assert.equal((await statusOn(a, asked.id)).status, 'approved', 'A sees the decision made on B');

    const executed = await call(a, 'DELETE', p, { approvalId: asked.id });
    assert.equal(executed.status, 200, executed.text);
    assert.equal(executed.json().done, `DELETE ${p}`);
    assert.equal(forwarded('DELETE', p), 1, 'the upstream received it once');
    assert.equal(upstream!.received.at(-1)!.headers['approval-id'], undefined, 'the Approval-Id is not forwarded');

    const again = required(await call(b, 'DELETE', p, { approvalId: asked.id }));
    assert.notEqual(again.id, asked.id);
    assert.equal(forwarded('DELETE', p), 1, 'a used approval runs nothing again, on the other replica either');
    assert.equal((await statusOn(b, asked.id)).status, 'executed');
  });

  for (const by of ['human', 'agent'] as const) {
    test(`by: ${by} — 10 identical re-sends racing over A and B with one approval: exactly one executes`, async () => {
      const [method, p, body] = by === 'human' ? ['DELETE', '/customers/b-1', undefined] : ['POST', '/purge/b-1', '{"all": true}'];
      const asked = required(await call(a, method, p, { body }));
      assert.equal(asked.by, by);
      if (by === 'human') assert.equal((await admin(b, 'POST', `/approvals/${asked.id}/approve`, { by: 'dana@ops' })).status, 200);

      const replies = await Promise.all(Array.from({ length: 10 }, (_, i) => call(i % 2 === 0 ? a : b, method, p, { body, approvalId: asked.id })));
      const statuses = replies.map((r) => r.status).join(',');
      const ok = replies.filter((r) => r.status >= 200 && r.status < 300);
      assert.equal(ok.length, 1, `exactly one 2xx: ${statuses}`);
      assert.ok(replies.every((r) => (r.status >= 200 && r.status < 300) || r.status === 428 || r.status === 429), `only 2xx, 428 or 429: ${statuses}`);
      assert.equal(forwarded(method, p), 1, 'the upstream received it exactly once');

      const fresh = replies.filter((r) => r.status === 428).map((r) => required(r).id);
      assert.ok(!fresh.includes(asked.id), 'the used approval is never given out again');
      // The record names the one request that executed, and it is the one the upstream received.
      const record = await storedRecord(asked.id);
      assert.equal(record.status, 'executed');
      assert.equal(record.executed_request_id, ok[0]!.headers['x-request-id']);
      assert.equal(upstream!.received.filter((r) => r.method === method && r.url === p)[0]!.headers['x-request-id'], ok[0]!.headers['x-request-id']);
      // Approvals created at once on both replicas all reach the shared index.
      const listed = (await admin(b, 'GET', `/approvals?route=${by === 'human' ? 'delete-customer' : 'purge'}`)).json();
      const ids = new Set(listed.approvals.map((x: { id: string }) => x.id));
      for (const id of [asked.id, ...fresh]) assert.ok(ids.has(id), `${id} is listed on B`);
    });
  }

  test('approve on A and deny on B at once: one wins (200), the other is 409, and the approval is what the winner decided', async (t) => {
    const winners: string[] = [];
    for (let round = 0; round < 6; round++) {
      const p = `/customers/c-${round}`;
      const asked = required(await call(round % 2 === 0 ? a : b, 'DELETE', p));
      // Alternate which request is sent first, so that neither side wins only by going first.
      const approve = () => admin(a, 'POST', `/approvals/${asked.id}/approve`, { by: 'approver-on-a' });
      const deny = () => admin(b, 'POST', `/approvals/${asked.id}/deny`, { by: 'denier-on-b', reason: 'raced' });
      const [approved, denied] = round % 2 === 0 ? await Promise.all([approve(), deny()]) : (await Promise.all([deny(), approve()])).reverse();
      const pair = `approve on A: ${approved!.status} ${approved!.text}; deny on B: ${denied!.status} ${denied!.text}`;
      assert.deepEqual([approved!.status, denied!.status].sort(), [200, 409], pair);
      const [winner, loser] = approved!.status === 200 ? [approved!, denied!] : [denied!, approved!];
      const won = winner.json() as { status: string; decided_by: string };
      assert.ok(won.status === 'approved' || won.status === 'denied', pair);
      assert.equal(won.decided_by, won.status === 'approved' ? 'approver-on-a' : 'denier-on-b', pair);
      assert.equal(loser.json().error, 'not_pending', pair);
      assert.equal(loser.json().status, won.status, `the loser is told what the winner decided: ${pair}`);
      for (const g of [a, b]) {
        const final = await statusOn(g, asked.id);
        assert.equal(final.status, won.status, pair);
        assert.equal(final.decided_by, won.decided_by, pair);
      }
      // And the agent gets what was decided.
      const resent = await call(a, 'DELETE', p, { approvalId: asked.id });
      if (won.status === 'approved') {
        assert.equal(resent.status, 200, resent.text);
        assert.equal(forwarded('DELETE', p), 1);
      } else {
        assert.equal(resent.status, 403, resent.text);
        assert.equal(envelopeOf(resent).code, 'APPROVAL_DENIED');
        assert.equal(forwarded('DELETE', p), 0);
      }
      winners.push(won.status);
    }
    t.diagnostic(`winners: ${winners.join(', ')}`);
  });

  test('a restart loses nothing: asked on A, A stopped, approved on B, executed once on the new A', async () => {
    const p = '/customers/d-1';
    const asked = required(await call(a, 'DELETE', p));
    const old = a;
    assert.equal(await stop(old), 0, 'A exits cleanly on SIGTERM');
    await assert.rejects(send(`${old.url}${p}`), 'the old A no longer answers');

    assert.equal((await statusOn(b, asked.id)).status, 'pending');
    const approved = await admin(b, 'POST', `/approvals/${asked.id}/approve`, { by: 'dana@ops' });
    assert.equal(approved.status, 200, approved.text);

    a = await startReplica();
    const listed = (await admin(a, 'GET', '/approvals?status=approved')).json();
    assert.ok(listed.approvals.some((x: { id: string }) => x.id === asked.id), 'the new A lists the approval');
    const executed = await call(a, 'DELETE', p, { approvalId: asked.id });
    assert.equal(executed.status, 200, executed.text);
    assert.equal(forwarded('DELETE', p), 1);
    required(await call(a, 'DELETE', p, { approvalId: asked.id }));
    assert.equal(forwarded('DELETE', p), 1, 'executed once');
  });

  test('every approval key in Redis carries the {approvals} hash tag and a TTL', async (t) => {
    assert.ok(issued.size >= 10, `approvals given by the tests above: ${issued.size}`);
    const keys = await keysUnder(REDIS_URL, prefix);
    // Any key of approvals, whatever its kind (the prefix itself says "approvals": only what follows it counts).
    const approvalKeys = keys.filter((k) => /approval/i.test(k.slice(prefix.length))).sort();
    const kinds = [...new Set(approvalKeys.map((k) => k.slice(prefix.length).replace(/:apr_[A-Za-z0-9_-]{22}$|:[A-Za-z0-9_-]{43}$/, ':<id>')))];
    t.diagnostic(`${approvalKeys.length} approval keys of ${keys.length} under the prefix; kinds: ${kinds.join(', ')}`);
    // Found by the scan: the record of every approval given, and the index.
    const present = new Set(approvalKeys);
    for (const id of issued) assert.ok(present.has(`${prefix}:{approvals}:approval:${id}`), `the record of ${id} is in Redis`);
    assert.ok(present.has(`${prefix}:{approvals}:approval-index`), 'the index is in Redis');
    const ttls = await withRedis(REDIS_URL, (client) => Promise.all(approvalKeys.map((k) => client.pttl(k))));
    approvalKeys.forEach((key, i) => {
      assert.ok(key.startsWith(`${prefix}:`), key);
      assert.equal(hashTag(key), 'approvals', `${key}: its hash tag`);
      // -1: no TTL; -2: gone. Nothing is kept longer than a ttl (a grant's runs from its decision) and RETAIN_MS more.
      assert.ok(ttls[i]! > 0 && ttls[i]! <= TTL_MS + RETAIN_MS + 1_000, `${key}: pttl ${ttls[i]}`);
    });
    // On B, the index lists every one of them.
    const listed = (await admin(b, 'GET', '/approvals')).json();
    assert.deepEqual(listed.approvals.map((x: { id: string }) => x.id).sort(), [...issued].sort());
  });
});

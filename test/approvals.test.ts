// Approvals over real sockets, on the memory store: a destructive call is not forwarded without an approval (428), the
// identical request with Approval-Id runs exactly once when the approval allows it, and every way around that (another
// agent, another request, a guessed or used id, racing re-sends, a decision on a decided or expired approval, a
// cross-site or tokenless decision) is refused with its own code while nothing reaches the upstream.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startUpstream, json, type TestUpstream } from './helpers/upstream.ts';
import { startTestGateway, type TestGateway } from './helpers/gateway.ts';
import { envelopeOf, send, type Reply } from './helpers/http.ts';
import { ADMIN_TOKEN, alice, mallory, AGENTS, approvalsConfig } from './helpers/approvals.ts';



const CONFIG = (upstreamUrl: string) =>
  approvalsConfig(
    upstreamUrl,
    `  down: {url: 'http://127.0.0.1:9', connect_timeout: 500ms}
rate_limits:
  agents: {capacity: 100, per: 1h}
  tiny: {capacity: 3, per: 1h}
defaults: {rate_limit: agents}
routes:
  - name: delete-customer
    match: {methods: [DELETE], path: '/customers/{id}'}
    upstream: crm
    approval: {by: human, ttl: 15m}
  - name: refund
    match: {methods: [POST], path: /refunds}
    upstream: crm
    idempotency: {required: true, ttl: 1h}
    approval: {by: agent, ttl: 15m}
  - name: purge
    match: {methods: [POST], path: /purge}
    upstream: crm
    rate_limit: tiny
    cost: 2
    approval: {by: agent, ttl: 15m}
  - name: short
    match: {methods: [POST], path: /short}
    upstream: crm
    approval: {by: human, ttl: 1s}
  - name: unreachable
    match: {methods: [POST], path: /unreachable}
    upstream: down
    approval: {by: agent, ttl: 15m}
  - {name: everything-else, match: {path: /*}, upstream: crm}
`);

describe('approvals', () => {
  let upstream: TestUpstream;
  let gw: TestGateway;
  let executed = 0;

  before(async () => {
    upstream = await startUpstream({
      '*': (req, res, body) => {
        executed++;
        json(res, req.method === 'POST' ? 201 : 200, { done: `${req.method} ${req.url}`, body: body.toString(), n: executed });
      },
    });
    gw = await startTestGateway(CONFIG(upstream.url), { files: { 'agents.yaml': AGENTS }, env: { ...process.env, ADMIN_TOKEN } });
  });
  after(async () => {
    await gw.close();
    await upstream.close();
  });

  const call = (agentKey: string, method: string, path: string, options: { body?: string; headers?: Record<string, string> } = {}) =>
    send(`${gw.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${agentKey}`, ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}), ...options.headers },
      body: options.body,
    });
  const admin = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
    send(`${gw.adminUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  function required(reply: Reply): { id: string; by: string; status: string; expires_at: string; url: string; preview: Record<string, unknown> } {
    assert.equal(reply.status, 428, reply.text);
    const envelope = envelopeOf(reply);
    assert.equal(envelope.code, 'APPROVAL_REQUIRED');
    assert.equal(envelope.retryable, false);
    assert.match(envelope.approval.id, /^apr_[A-Za-z0-9_-]{22}$/);
    return { ...envelope.approval, preview: envelope.preview };
  }
  const forwardedSince = (before: number) => upstream.received.length - before;

  test('without an approval a call is not forwarded: 428 with the approval, its status URL and a preview; asking costs nothing', async () => {
    const before = upstream.received.length;
    const budget = async () => (await call(alice, 'GET', '/_agentgate/budget')).json();
    const remainingBefore = (await budget()).budgets[0].remaining;
    const reply = await call(alice, 'DELETE', '/customers/42?reason=churn&api_key=s3cret');
    const approval = required(reply);
    assert.equal(approval.by, 'human');
    assert.equal(approval.status, 'pending');
    assert.ok(Date.parse(approval.expires_at) > Date.now() + 14 * 60_000);
    assert.equal(approval.url, `${gw.url}/_agentgate/approvals/${approval.id}`);
    assert.equal(approval.preview.method, 'DELETE');
    assert.equal(approval.preview.path, '/customers/42');
    assert.equal(approval.preview.query, 'reason=churn&api_key=%5Bredacted%5D', 'a secret-looking parameter is not shown');
    assert.equal(forwardedSince(before), 0);
    assert.equal((await budget()).budgets[0].remaining, remainingBefore, 'a 428 is charged nothing');
    const status = await call(alice, 'GET', `/_agentgate/approvals/${approval.id}`);
    assert.equal(status.status, 200);
    assert.equal(status.json().status, 'pending');
    assert.equal((await call(mallory, 'GET', `/_agentgate/approvals/${approval.id}`)).status, 404, "another agent does not see it");
  });

  test('the same request asked again while its approval is pending gets that approval, not another: a person sees one entry', async () => {
    const first = required(await call(alice, 'DELETE', '/customers/11'));
    const again = required(await call(alice, 'DELETE', '/customers/11'));
    assert.equal(again.id, first.id);
    assert.notEqual(required(await call(alice, 'DELETE', '/customers/12')).id, first.id, 'another request, another approval');
    assert.notEqual(required(await call(mallory, 'DELETE', '/customers/11')).id, first.id, 'another agent, another approval');
    const listed = (await admin('GET', '/approvals?status=pending&route=delete-customer&agent=agent:alice')).json();
    assert.equal(listed.approvals.filter((a: { id: string }) => a.id === first.id).length, 1);
  });

  test('by: human — pending until a person approves (409, retryable), then the identical request runs once; sent again it needs a new approval', async () => {
    const approval = required(await call(alice, 'DELETE', '/customers/7'));
    const before = upstream.received.length;
    const pending = await call(alice, 'DELETE', '/customers/7', { headers: { 'approval-id': approval.id } });
    assert.equal(pending.status, 409);
    assert.equal(envelopeOf(pending).code, 'APPROVAL_PENDING');
    assert.equal(envelopeOf(pending).retryable, true);
    assert.ok(Number(pending.headers['retry-after']) >= 1);
    assert.equal(forwardedSince(before), 0);

    const listed = (await admin('GET', '/approvals?status=pending&route=delete-customer')).json();
    assert.ok(listed.approvals.some((a: { id: string; agent: string }) => a.id === approval.id && a.agent === 'agent:alice'));
    const approved = await admin('POST', `/approvals/${approval.id}/approve`, { by: 'dana@ops', reason: 'verified churn' });
    assert.equal(approved.status, 200, approved.text);
    assert.equal(approved.json().status, 'approved');
    assert.equal(approved.json().decided_by, 'dana@ops');

    const executedReply = await call(alice, 'DELETE', '/customers/7', { headers: { 'approval-id': approval.id } });
    assert.equal(executedReply.status, 200, executedReply.text);
    assert.equal(forwardedSince(before), 1);
    assert.equal(upstream.received.at(-1)!.headers['approval-id'], undefined, 'the Approval-Id is the gateway\'s, never forwarded');
    const again = required(await call(alice, 'DELETE', '/customers/7', { headers: { 'approval-id': approval.id } }));
    assert.notEqual(again.id, approval.id);
    assert.equal(forwardedSince(before), 1, 'a used approval runs nothing again');
    assert.equal((await call(alice, 'GET', `/_agentgate/approvals/${approval.id}`)).json().status, 'executed');
  });

  test('a denial is 403 APPROVAL_DENIED with the reason, not retryable; deciding again is 409 and changes nothing', async () => {
    const approval = required(await call(alice, 'DELETE', '/customers/8'));
    assert.equal((await admin('POST', `/approvals/${approval.id}/deny`, { by: 'dana@ops', reason: 'customer has open invoices' })).status, 200);
    const denied = await call(alice, 'DELETE', '/customers/8', { headers: { 'approval-id': approval.id } });
    assert.equal(denied.status, 403);
    const envelope = envelopeOf(denied);
    assert.equal(envelope.code, 'APPROVAL_DENIED');
    assert.equal(envelope.retryable, false);
    assert.equal(envelope.reason, 'customer has open invoices');
    const twice = await admin('POST', `/approvals/${approval.id}/approve`, { by: 'eve' });
    assert.equal(twice.status, 409);
    assert.equal(twice.json().status, 'denied');
  });

  test('an approval covers one agent and one exact request: one changed byte, another path or another agent is 422; the approval stays usable', async () => {
    const body = '{"amount": 100, "order": "ord_1"}';
    const approval = required(await call(alice, 'POST', '/refunds', { body, headers: { 'idempotency-key': 'refund-1' } }));
    assert.equal(approval.by, 'agent');
    const before = upstream.received.length;
    for (const [key, changed] of [
      [alice, { body: body.replace('100', '101') }],
      [alice, { body: body + ' ' }],
      [mallory, { body }],
    ] as const) {
      const reply = await call(key, 'POST', '/refunds', { ...changed, headers: { 'idempotency-key': 'refund-1', 'approval-id': approval.id } });
      assert.equal(reply.status, 422, reply.text);
      assert.equal(envelopeOf(reply).code, 'APPROVAL_MISMATCH');
    }
    assert.equal(forwardedSince(before), 0);
    const confirmed = await call(alice, 'POST', '/refunds', { body, headers: { 'idempotency-key': 'refund-1', 'approval-id': approval.id } });
    assert.equal(confirmed.status, 201, confirmed.text);
    assert.equal(forwardedSince(before), 1);
  });

  test('by: agent with idempotency — the confirmed call is recorded under its key: sent again, it is replayed, not run or approved again', async () => {
    const body = '{"amount": 5}';
    const approval = required(await call(alice, 'POST', '/refunds', { body, headers: { 'idempotency-key': 'refund-2' } }));
    const before = upstream.received.length;
    const first = await call(alice, 'POST', '/refunds', { body, headers: { 'idempotency-key': 'refund-2', 'approval-id': approval.id } });
    assert.equal(first.status, 201);
    const retry = await call(alice, 'POST', '/refunds', { body, headers: { 'idempotency-key': 'refund-2', 'approval-id': approval.id } });
    assert.equal(retry.status, 201);
    assert.equal(retry.headers['idempotent-replayed'], 'true');
    assert.equal(retry.text, first.text);
    assert.equal(forwardedSince(before), 1);
  });

  test('re-sends racing with one approval execute exactly once', async () => {
    const approval = required(await call(alice, 'POST', '/purge', { body: '{"all": true}' }));
    const before = upstream.received.length;
    const replies = await Promise.all(Array.from({ length: 8 }, () => call(alice, 'POST', '/purge', { body: '{"all": true}', headers: { 'approval-id': approval.id } })));
    assert.equal(replies.filter((r) => r.status === 201).length, 1, replies.map((r) => r.status).join(','));
    assert.ok(replies.every((r) => r.status === 201 || r.status === 428 || r.status === 429), replies.map((r) => r.status).join(','));
    assert.equal(forwardedSince(before), 1);
  });

  test('rate limits come first: over budget, a call is refused 429 and asks for no approval', async () => {
    // purge costs 2 of 3: the racing test spent 2; what is left cannot pay for another.
    const before = (await admin('GET', '/approvals?route=purge')).json().approvals.length;
    const reply = await call(alice, 'POST', '/purge', { body: '{"all": false}' });
    assert.equal(reply.status, 429, reply.text);
    assert.equal((await admin('GET', '/approvals?route=purge')).json().approvals.length, before);
  });

  test('a guessed id asks anew, a malformed one is 400; nothing runs', async () => {
    const before = upstream.received.length;
    const guessed = required(await call(alice, 'DELETE', '/customers/9', { headers: { 'approval-id': `apr_${randomBytes(16).toString('base64url')}` } }));
    assert.match(envelopeOf(await call(alice, 'DELETE', '/customers/9', { headers: { 'approval-id': 'apr_nope' } })).code, /INVALID_REQUEST/);
    assert.equal(guessed.status, 'pending');
    assert.equal(forwardedSince(before), 0);
  });

  test('an approval that expires while a person looks at it cannot be decided, and a re-send asks anew', async () => {
    const approval = required(await call(alice, 'POST', '/short', { body: '{}' }));
    await new Promise((resolve) => setTimeout(resolve, 1200));
    const late = await admin('POST', `/approvals/${approval.id}/approve`, { by: 'dana@ops' });
    assert.equal(late.status, 409);
    assert.equal(late.json().status, 'expired');
    const again = required(await call(alice, 'POST', '/short', { body: '{}', headers: { 'approval-id': approval.id } }));
    assert.notEqual(again.id, approval.id);
  });

  test('an approved call that never reached the upstream keeps its approval for the next try', async () => {
    const approval = required(await call(alice, 'POST', '/unreachable', { body: '{}' }));
    const failed = await call(alice, 'POST', '/unreachable', { body: '{}', headers: { 'approval-id': approval.id } });
    assert.equal(failed.status, 503, failed.text);
    const status = (await call(alice, 'GET', `/_agentgate/approvals/${approval.id}`)).json();
    assert.equal(status.status, 'pending', 'given back: by: agent, so pending is confirmable again');
  });

  test('decisions need the admin token, are POSTs from this origin only, and are not on the proxy port', async () => {
    const approval = required(await call(alice, 'DELETE', '/customers/10'));
    assert.equal((await admin('POST', `/approvals/${approval.id}/approve`, { by: 'x' }, { authorization: 'Bearer wrong-token-wrong-token' })).status, 401);
    assert.equal((await send(`${gw.adminUrl}/approvals/${approval.id}/approve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"by":"x"}' })).status, 401);
    assert.equal((await send(`${gw.adminUrl}/approvals`)).status, 401);
    assert.equal((await admin('POST', `/approvals/${approval.id}/approve`, { by: 'x' }, { origin: 'https://evil.example' })).status, 403);
    assert.equal((await admin('GET', `/approvals/${approval.id}/approve`)).status, 405);
    const fromAgent = await call(alice, 'POST', `/_agentgate/approvals/${approval.id}/approve`, { body: '{"by":"me"}' });
    assert.ok(fromAgent.status === 404 || fromAgent.status === 405, `${fromAgent.status}`);
    assert.equal((await call(alice, 'GET', `/_agentgate/approvals/${approval.id}`)).json().status, 'pending');
  });

  test('a POST whose body names another method (Rails\' and Laravel\'s _method) cannot run, through a catch-all route, what an approval route holds', async () => {
    const before = upstream.received.length;
    const post = (body: string, contentType: string, path = '/customers/42') => call(alice, 'POST', path, { body, headers: { 'content-type': contentType } });
    // No Content-Type at all: Rack parses a POST's body as a form then.
    const untyped = await send(`${gw.url}/customers/42`, { method: 'POST', headers: { authorization: `Bearer ${alice}` }, body: '%5Fmethod=DELETE' });
    assert.equal(untyped.status, 400, untyped.text);
    for (const [body, type] of [
      ['_method=DELETE', 'application/x-www-form-urlencoded'],
      ['name=x&_METHOD=delete', 'application/x-www-form-urlencoded; charset=utf-8'],
      ['{"_method": "DELETE"}', 'application/json'],
      ['--b\r\nContent-Disposition: form-data; name="_method"\r\n\r\nDELETE\r\n--b--\r\n', 'multipart/form-data; boundary=b'],
    ]) {
      const reply = await post(body!, type!);
      assert.equal(reply.status, 400, `${type}: ${reply.text}`);
      assert.match(envelopeOf(reply).detail, /_method.*route 'delete-customer'/);
    }
    assert.equal(forwardedSince(before), 0, 'nothing reached the API');
    const plain = await post('{"note": "a plain POST"}', 'application/json');
    assert.equal(plain.status, 201, 'a POST without an override goes its way');
    assert.equal(upstream.received.at(-1)!.body.toString(), '{"note": "a plain POST"}', 'its body read by the guard is forwarded whole');
  });

  test('metrics count what happened, by route and outcome', async () => {
    const text = (await send(`${gw.adminUrl}/metrics`)).text;
    for (const outcome of ['requested', 'pending', 'approved', 'denied', 'executed', 'mismatch', 'expired']) {
      assert.match(text, new RegExp(`agentgate_approvals_total\\{route="[a-z-]+",outcome="${outcome}"\\} [1-9]`), outcome);
    }
    assert.ok(!text.includes(ADMIN_TOKEN));
  });
});

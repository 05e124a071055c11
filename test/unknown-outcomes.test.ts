// When the gateway cannot know what happened upstream, it says so and never invites a blind retry: a timed-out keyless
// write is not retryable, an invalid upstream status is no answer, and a claim ends even when a step throws.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { startUpstream, json, type TestUpstream } from './helpers/upstream.ts';
import { startTestGateway, configYaml, type TestGateway } from './helpers/gateway.ts';
import { send, envelopeOf } from './helpers/http.ts';
import { Exchange } from '../src/policies/contract.ts';
import { Forwarder } from '../src/proxy/forwarder.ts';

describe('a lost answer to a write that no key protects is not retryable', () => {
  let upstream: TestUpstream;
  let gw: TestGateway;
  let executed = 0;

  before(async () => {
    const slow = (_req: unknown, res: Parameters<typeof json>[0]) => {
      executed++;
      setTimeout(() => json(res, 200, { late: true }), 600);
    };
    upstream = await startUpstream({
      '/slow': slow,
      '/keyed/slow': slow,
      '/reset': (req) => {
        executed++;
        req.socket.destroy();
      },
    });
    gw = await startTestGateway(
      configYaml(`upstreams: {api: {url: '${upstream.url}', timeout: 150ms}}
routes:
  - {name: keyed, match: {path: /keyed/*}, upstream: api, idempotency: {required: true, ttl: 1h}}
  - {name: all, match: {path: /*}, upstream: api}
`),
    );
  });
  after(async () => {
    await gw.close();
    await upstream.close();
  });

  for (const method of ['POST', 'PATCH']) {
    test(`a ${method} that timed out is 504 with retryable false and a suggestion to check state first`, async () => {
      const reply = await send(`${gw.url}/slow`, { method, body: '{}', headers: { 'content-type': 'application/json' } });
      assert.equal(reply.status, 504);
      const body = envelopeOf(reply);
      assert.equal(body.code, 'UPSTREAM_TIMEOUT');
      assert.equal(body.retryable, false);
      assert.equal(reply.headers['x-should-retry'], 'false');
      assert.match(body.suggestion, /Check the current state first/);
      assert.match(body.suggestion, /Idempotency-Key/);
    });
  }

  test('a POST whose connection was reset after sending is 502, not retryable', async () => {
    const reply = await send(`${gw.url}/reset`, { method: 'POST', body: '{}' });
    assert.equal(reply.status, 502);
    assert.equal(envelopeOf(reply).retryable, false);
  });

  for (const method of ['GET', 'PUT', 'DELETE']) {
    test(`an idempotent ${method} that timed out stays retryable`, async () => {
      const reply = await send(`${gw.url}/slow`, { method });
      assert.equal(reply.status, 504);
      assert.equal(envelopeOf(reply).retryable, true);
      assert.equal(reply.headers['x-should-retry'], 'true');
    });
  }

  test('a POST protected by an Idempotency-Key stays retryable: its retry is answered by the record, never executed twice', async () => {
    const before = executed;
    const headers = { 'idempotency-key': 'timeout-keyed', 'content-type': 'application/json' };
    const reply = await send(`${gw.url}/keyed/slow`, { method: 'POST', body: '{}', headers });
    assert.equal(reply.status, 504);
    assert.equal(envelopeOf(reply).retryable, true);
    const retry = await send(`${gw.url}/keyed/slow`, { method: 'POST', body: '{}', headers });
    assert.equal(envelopeOf(retry).code, 'IDEMPOTENCY_OUTCOME_UNKNOWN');
    assert.equal(executed - before, 1);
  });
});

describe('an upstream status that is no valid final HTTP status is 502 UPSTREAM_ERROR, never delivered or stored', () => {
  let raw: Server;
  let gw: TestGateway;
  const requests: string[] = [];

  before(async () => {
    // A raw upstream: Node's own HTTP server refuses to write these status lines.
    raw = createServer((socket: Socket) => {
      let head = '';
      socket.on('data', (chunk) => {
        head += chunk.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end === -1) return;
        const path = head.split(' ')[1]!;
        requests.push(path);
        const status = path.split('/')[2]!;
        const extra = status === '101' ? 'Upgrade: websocket\r\nConnection: Upgrade\r\n' : 'Content-Type: application/json\r\nContent-Length: 2\r\n';
        socket.end(`HTTP/1.1 ${status} Whatever\r\n${extra}\r\n${status === '101' ? '' : '{}'}`);
        head = '';
      });
      socket.on('error', () => {});
    });
    raw.listen(0, '127.0.0.1');
    await new Promise((resolve) => raw.once('listening', resolve));
    const url = `http://127.0.0.1:${(raw.address() as AddressInfo).port}`;
    gw = await startTestGateway(
      configYaml(`upstreams: {raw: {url: '${url}', timeout: 2s}}
routes:
  - {name: keyed, match: {methods: [POST], path: /keyed/*}, upstream: raw, idempotency: {required: true, ttl: 1h}}
  - {name: status, match: {path: /status/*}, upstream: raw}
`),
    );
  });
  after(async () => {
    await gw.close();
    raw.close();
  });

  for (const status of ['000', '099', '600', '999', '101']) {
    test(`status ${status}`, async () => {
      const reply = await send(`${gw.url}/status/${status}`);
      assert.equal(reply.status, 502);
      const body = envelopeOf(reply);
      assert.equal(body.code, 'UPSTREAM_ERROR');
      assert.match(body.detail, new RegExp(`status ${Number(status)}\\b`));
    });

    test(`status ${status} on an idempotent route is not stored: the retry is told the outcome is unknown`, async () => {
      const headers = { 'idempotency-key': `status-${status}`, 'content-type': 'application/json' };
      const first = await send(`${gw.url}/keyed/${status}`, { method: 'POST', body: '{}', headers });
      assert.equal(first.status, 502);
      const executions = requests.filter((p) => p === `/keyed/${status}`).length;
      const retry = await send(`${gw.url}/keyed/${status}`, { method: 'POST', body: '{}', headers });
      assert.equal(envelopeOf(retry).code, 'IDEMPOTENCY_OUTCOME_UNKNOWN', `retry got ${retry.status} ${retry.text}`);
      assert.equal(requests.filter((p) => p === `/keyed/${status}`).length, executions, 'the retry was not sent again');
    });
  }
});

describe('an unexpected exception after the claim ends the claim: no key is left pending', () => {
  let upstream: TestUpstream;
  let gw: TestGateway;
  let executed = 0;

  before(async () => {
    upstream = await startUpstream({
      '*': (_req, res) => {
        executed++;
        json(res, 201, { created: executed });
      },
    });
    gw = await startTestGateway(
      configYaml(`upstreams: {api: {url: '${upstream.url}'}}
routes:
  - {name: orders, match: {methods: [POST], path: /orders}, upstream: api, idempotency: {required: true, ttl: 1h, lease: 10s}}
`),
    );
  });
  after(async () => {
    await gw.close();
    await upstream.close();
  });

  const post = (key: string) => send(`${gw.url}/orders`, { method: 'POST', body: '{}', headers: { 'idempotency-key': key, 'content-type': 'application/json' } });

  test('a step that throws after forwarding: 500, and the retry learns the outcome is unknown (not "in progress")', async (t) => {
    // The first step after forwarding: telling the policies how it ended.
    const planted = t.mock.method(Exchange.prototype, 'upstreamResult', () => {
      throw new Error('planted failure after forwarding');
    });
    const before = executed;
    const first = await post('throws-after');
    assert.equal(first.status, 500);
    assert.equal(envelopeOf(first).code, 'GATEWAY_ERROR');
    assert.equal(executed - before, 1);
    planted.mock.restore();
    const retry = await post('throws-after');
    assert.equal(retry.status, 409);
    assert.equal(envelopeOf(retry).code, 'IDEMPOTENCY_OUTCOME_UNKNOWN', 'the claim was left pending');
    assert.equal(executed - before, 1, 'never executed twice');
  });

  test('a step that throws before forwarding: 500, the key is released, and the retry executes once', async (t) => {
    // The last step before forwarding: the forwarder itself, before it sends anything.
    const planted = t.mock.method(Forwarder.prototype, 'send', () => {
      throw new Error('planted failure before forwarding');
    });
    const before = executed;
    const first = await post('throws-before');
    assert.equal(first.status, 500);
    assert.equal(executed, before);
    planted.mock.restore();
    const retry = await post('throws-before');
    assert.equal(retry.status, 201, `retry got ${retry.status} ${retry.text}`);
    assert.equal(executed - before, 1);
  });

});

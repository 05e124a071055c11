// A request its client abandons is still recorded exactly once: 499 client_closed in agentgate_requests_total and in the
// access log, whether the client left while waiting for the answer or in the middle of sending its body.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { startUpstream, json, type TestUpstream } from './helpers/upstream.ts';
import { startTestGateway, configYaml, type TestGateway } from './helpers/gateway.ts';
import { send } from './helpers/http.ts';
import { until } from './helpers/wait.ts';

let upstream: TestUpstream;
let gw: TestGateway;

before(async () => {
  upstream = await startUpstream({
    '/slow': (_req, res) => setTimeout(() => res.writable && json(res, 200, { late: true }), 1500),
    'stream:/upload': (req, res) => {
      req.resume();
      req.on('end', () => json(res, 200, { ok: true }));
    },
  });
  gw = await startTestGateway(
    configYaml(`  timeouts: {request_body_idle: 5s}
upstreams: {api: {url: '${upstream.url}', timeout: 5s}}
routes:
  - {name: slow, match: {path: /slow}, upstream: api}
  - {name: upload, match: {path: /upload}, upstream: api}
`),
  );
});

after(async () => {
  await gw.close();
  await upstream.close();
});

/** The value of agentgate_requests_total with exactly these labels (0 when absent). */
async function requestsTotal(labels: Record<string, string>): Promise<number> {
  const text = (await send(`${gw.adminUrl}/metrics`)).text;
  for (const line of text.split('\n')) {
    const m = /^agentgate_requests_total\{(.*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const found = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1]!, l[2]!]));
    if (Object.keys(found).length === Object.keys(labels).length && Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(m[2]);
  }
  return 0;
}

/** Writes `payload`, waits `ms`, then cuts the connection without reading an answer. */
function abandon(payload: string, ms: number): Promise<void> {
  const { hostname, port } = new URL(gw.url);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname, () => {
      socket.write(payload);
      setTimeout(() => {
        socket.destroy();
        resolve();
      }, ms);
    });
    socket.on('error', () => {});
  });
}

test('a client that leaves while the upstream works is counted once as 499 client_closed, and logged so', async () => {
  await abandon('GET /slow HTTP/1.1\r\nHost: a\r\n\r\n', 200);
  const labels = { route: 'slow', method: 'GET', status_code: '499', outcome: 'client_closed' };
  await until(async () => (await requestsTotal(labels)) === 1, 5000, () => 'agentgate_requests_total never counted the abandoned request as 499 client_closed');
  const lines = gw.logs.requestLines().filter((l) => l.route === 'slow');
  assert.equal(lines.length, 1);
  assert.equal(lines[0]!.status, 499);
  assert.equal(lines[0]!.outcome, 'client_closed');
});

test('a client cut off in the middle of its body is counted once as 499 client_closed', async () => {
  await abandon('POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n' + 'x'.repeat(10), 200);
  const labels = { route: 'upload', method: 'POST', status_code: '499', outcome: 'client_closed' };
  await until(async () => (await requestsTotal(labels)) === 1, 5000, () => 'agentgate_requests_total never counted the request cut mid-body as 499 client_closed');
  assert.equal(gw.logs.requestLines().filter((l) => l.route === 'upload').length, 1, 'exactly one log line');
});

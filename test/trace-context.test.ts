// W3C Trace Context end to end: what the upstream receives as traceparent and tracestate for each kind of caller header.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { configYaml, startTestGateway, type TestGateway } from './helpers/gateway.ts';
import { json, startUpstream, type TestUpstream } from './helpers/upstream.ts';
import { send } from './helpers/http.ts';
import { until } from './helpers/wait.ts';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_ID = '00f067aa0ba902b7';
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const TRACESTATE = 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7';

let upstream: TestUpstream;
let tg: TestGateway;

before(async () => {
  upstream = await startUpstream({ '*': (_req, res) => json(res, 200, { ok: true }) });
  tg = await startTestGateway(configYaml(`upstreams:\n  api: {url: '${upstream.url}'}\nroutes:\n  - {name: all, match: {path: /*}, upstream: api}\n`));
});

after(async () => {
  await tg.close();
  await upstream.close();
});

/** Sends one request with the given trace headers; returns what the upstream received and the request's log line. */
async function through(id: string, headers: Record<string, string>) {
  const reply = await send(`${tg.url}/t/${id}`, { headers: { 'x-request-id': id, ...headers } });
  assert.equal(reply.status, 200);
  const seen = upstream.received.filter((r) => r.headers['x-request-id'] === id);
  assert.equal(seen.length, 1);
  const m = TRACEPARENT.exec(String(seen[0]!.headers.traceparent));
  assert.ok(m, `the upstream got no valid version-00 traceparent: ${String(seen[0]!.headers.traceparent)}`);
  return { traceId: m[1]!, parentId: m[2]!, flags: m[3]!, tracestate: seen[0]!.headers.tracestate };
}

test("a traceparent of a future version keeps its trace id and sampled flag; what follows its fields is ignored", async () => {
  const cases: [string, string, string][] = [
    ['future-extra', `01-${TRACE_ID}-${PARENT_ID}-01-what-the-next-version-adds`, '01'],
    ['future-exact', `01-${TRACE_ID}-${PARENT_ID}-01`, '01'],
    ['future-flags', `cc-${TRACE_ID}-${PARENT_ID}-09-x`, '01'],
    ['future-unsampled', `cc-${TRACE_ID}-${PARENT_ID}-00-x`, '00'],
  ];
  for (const [id, traceparent, flags] of cases) {
    const got = await through(id, { traceparent });
    assert.deepEqual([got.traceId, got.flags], [TRACE_ID, flags], id);
    assert.notEqual(got.parentId, PARENT_ID, `${id}: the gateway is a hop of its own`);
  }
  // The log line is written when the answer has gone out, which may be just after the client has read it.
  const logged = () => tg.logs.requestLines().filter((l) => String(l.request_id).startsWith('future-'));
  await until(async () => logged().length === cases.length, 2000, () => `${logged().length} of ${cases.length} log lines`);
  for (const line of logged()) assert.equal(line.trace_id, TRACE_ID, String(line.request_id));
  // Version 00 has exactly four fields; ff is no version at all.
  for (const [id, traceparent] of [
    ['v00-extra', `00-${TRACE_ID}-${PARENT_ID}-01-extra`],
    ['vff', `ff-${TRACE_ID}-${PARENT_ID}-01`],
    ['future-glued', `01-${TRACE_ID}-${PARENT_ID}-01extra`],
  ]) {
    assert.notEqual((await through(id!, { traceparent: traceparent! })).traceId, TRACE_ID, id);
  }
});

test('tracestate travels only with the traceparent it belongs to', async () => {
  const valid = await through('state-valid', { traceparent: `00-${TRACE_ID}-${PARENT_ID}-01`, tracestate: TRACESTATE });
  assert.equal(valid.tracestate, TRACESTATE, 'with a continued trace, tracestate passes unchanged');
  const future = await through('state-future', { traceparent: `01-${TRACE_ID}-${PARENT_ID}-01-x`, tracestate: TRACESTATE });
  assert.equal(future.tracestate, TRACESTATE);
  for (const [id, headers] of [
    ['state-invalid', { traceparent: `00-${TRACE_ID.toUpperCase()}-${PARENT_ID}-01`, tracestate: TRACESTATE }],
    ['state-zero', { traceparent: `00-${'0'.repeat(32)}-${PARENT_ID}-01`, tracestate: TRACESTATE }],
    ['state-alone', { tracestate: TRACESTATE }],
  ] as const) {
    const fresh = await through(id, headers);
    assert.notEqual(fresh.traceId, TRACE_ID, id);
    assert.equal(fresh.tracestate, undefined, `${id}: the caller's tracestate describes another trace and must not travel with the new one`);
  }
});

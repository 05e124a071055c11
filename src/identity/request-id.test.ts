// Request ids and trace context: well-formed, unique, time-ordered, and a caller's valid values are kept.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requestIdFrom, traceContextFrom, uuidv7 } from './request-id.ts';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test('fresh ids are RFC 9562 UUIDv7s, unique across many pool refills, carrying the current time', () => {
  const before = Date.now();
  const ids = Array.from({ length: 20_000 }, () => uuidv7());
  const after = Date.now();
  for (const id of ids) assert.match(id, UUID_V7);
  assert.equal(new Set(ids).size, ids.length);
  const millis = (id: string) => Number.parseInt(id.replaceAll('-', '').slice(0, 12), 16);
  assert.ok(millis(ids[0]!) >= before && millis(ids.at(-1)!) <= after);
  for (let i = 1; i < ids.length; i++) assert.ok(millis(ids[i]!) >= millis(ids[i - 1]!), 'ids sort by creation time');
  // All four variant digits and all sixteen random digits occur: the random part is not stuck.
  assert.equal(new Set(ids.map((id) => id[19])).size, 4);
  assert.equal(new Set(ids.map((id) => id.at(-1))).size, 16);
});

test("a caller's valid request id is kept; an invalid or repeated header gets a fresh one", () => {
  assert.equal(requestIdFrom('agent-run-42:step.7'), 'agent-run-42:step.7');
  assert.match(requestIdFrom('has space'), UUID_V7);
  assert.match(requestIdFrom('x'.repeat(129)), UUID_V7);
  assert.match(requestIdFrom(['a', 'b']), UUID_V7);
  assert.match(requestIdFrom(undefined), UUID_V7);
});

test("a valid traceparent continues the caller's trace with a new parent id; anything else starts a new trace", () => {
  const incoming = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  const continued = traceContextFrom(incoming);
  assert.equal(continued.traceId, '0af7651916cd43dd8448eb211c80319c');
  assert.match(continued.traceparent, /^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
  assert.notEqual(continued.traceparent, incoming);
  for (const invalid of [undefined, 'garbage', 'ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', '00-00000000000000000000000000000000-b7ad6b7169203331-01']) {
    const fresh = traceContextFrom(invalid);
    assert.match(fresh.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    assert.notEqual(fresh.traceId, '0af7651916cd43dd8448eb211c80319c');
    assert.equal(fresh.traceparent.slice(3, 35), fresh.traceId);
  }
  const traces = new Set(Array.from({ length: 1000 }, () => traceContextFrom(undefined).traceId));
  assert.equal(traces.size, 1000);
});

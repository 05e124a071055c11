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

test('W3C Trace Context edge cases: which traceparents are continued, with which trace id and flags', () => {
  const T = '4bf92f3577b34da6a3ce929d0e0e4736';
  const P = '00f067aa0ba902b7';
  /** [name, header, continued trace flags (undefined: a new trace is started)] */
  const table: [string, string | string[] | undefined, string | undefined][] = [
    ['version 00, sampled', `00-${T}-${P}-01`, '01'],
    ['version 00, not sampled', `00-${T}-${P}-00`, '00'],
    ['version 00, flags unknown to level 1 are kept', `00-${T}-${P}-03`, '03'],
    ['surrounding whitespace', `  00-${T}-${P}-01 `, '01'],
    ['future version, exactly the version-00 fields', `01-${T}-${P}-01`, '01'],
    ['future version, what follows a dash is ignored', `01-${T}-${P}-01-what-the-next-version-adds`, '01'],
    ['future version: only the sampled flag is carried on', `cc-${T}-${P}-09-x`, '01'],
    ['future version, not sampled', `fe-${T}-${P}-02-x`, '00'],
    ['version 00 with a fifth field', `00-${T}-${P}-01-extra`, undefined],
    ['version 00 with a trailing dash', `00-${T}-${P}-01-`, undefined],
    ['version ff', `ff-${T}-${P}-01`, undefined],
    ['version ff with more', `ff-${T}-${P}-01-x`, undefined],
    ['uppercase version', `0A-${T}-${P}-01`, undefined],
    ['non-hex version', `zz-${T}-${P}-01`, undefined],
    ['uppercase trace id', `00-${T.toUpperCase()}-${P}-01`, undefined],
    ['uppercase parent id', `00-${T}-${P.toUpperCase()}-01`, undefined],
    ['uppercase flags', `00-${T}-${P}-0A`, undefined],
    ['all-zero trace id', `00-${'0'.repeat(32)}-${P}-01`, undefined],
    ['all-zero parent id', `00-${T}-${'0'.repeat(16)}-01`, undefined],
    ['future version, all-zero trace id', `01-${'0'.repeat(32)}-${P}-01-x`, undefined],
    ['future version, uppercase trace id', `01-${T.toUpperCase()}-${P}-01-x`, undefined],
    ['future version, flags glued to more', `01-${T}-${P}-01x`, undefined],
    ['future version, too short', `01-${T}-${P}-1`, undefined],
    ['short trace id', `00-${T.slice(1)}-${P}-01`, undefined],
    ['non-hex flags', `00-${T}-${P}-zz`, undefined],
    ['two traceparents folded into one', `00-${T}-${P}-01,00-${T}-${P}-01`, undefined],
    ['two traceparent headers', [`00-${T}-${P}-01`, `00-${T}-${P}-01`], undefined],
    ['empty', '', undefined],
    ['absent', undefined, undefined],
  ];
  for (const [name, header, flags] of table) {
    const trace = traceContextFrom(header);
    const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(trace.traceparent);
    assert.ok(m, `${name}: ${trace.traceparent} is no version-00 traceparent`);
    assert.equal(m[1], trace.traceId, name);
    assert.notEqual(m[2], P, `${name}: the gateway sends its own parent id`);
    assert.doesNotMatch(m[2]!, /^0+$/, name);
    if (flags === undefined) {
      assert.equal(trace.continued, false, `${name}: a new trace`);
      assert.notEqual(trace.traceId, T, name);
      assert.doesNotMatch(trace.traceId, /^0+$/, name);
      assert.equal(m[3], '01', `${name}: a new trace is sampled`);
    } else {
      assert.equal(trace.continued, true, `${name}: the caller's trace is continued`);
      assert.equal(trace.traceId, T, name);
      assert.equal(m[3], flags, name);
    }
  }
});

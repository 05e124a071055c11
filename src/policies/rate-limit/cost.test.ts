// Pricing a request: fixed costs, items counted in a JSON body (bounded), and the errors when the body is not what the rule expects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { PassThrough } from 'node:stream';
import { CostRule } from './cost.ts';

function request(body: string | undefined, headers: Record<string, string> = {}): IncomingMessage {
  const stream = new PassThrough();
  Object.assign(stream, { headers: { ...(body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) }), ...headers } });
  stream.end(body ?? '');
  return stream as unknown as IncomingMessage;
}

const rule = (items: string, extra: Partial<{ base: number; per_item: number; max_body: string }> = {}) =>
  new CostRule({ base: 1, per_item: 1, max_body: '1kb', items, ...extra });

test('a fixed cost never reads the body', async () => {
  const req = request('{"not":"read"}');
  assert.deepEqual(await new CostRule(5).evaluate(req, 'r', undefined, 10_000), { kind: 'cost', cost: 5, body: undefined });
  assert.equal(req.readableLength > 0 || !req.readableEnded, true, 'the body is left for forwarding');
  assert.equal(new CostRule(5).readsBody, false);
  assert.equal(new CostRule(5).quote(100), 5);
});

test('items: base plus per_item for each element of the array at the JSON Pointer; the body is kept for forwarding', async () => {
  const body = JSON.stringify({ order: { lines: [{ sku: 'a' }, { sku: 'b' }, { sku: 'c' }] } });
  const result = await rule('/order/lines', { base: 2, per_item: 3 }).evaluate(request(body), 'bulk', undefined, 10_000);
  assert.equal(result.kind, 'cost');
  assert.equal(result.kind === 'cost' && result.cost, 2 + 3 * 3);
  assert.equal(result.kind === 'cost' && result.body!.toString(), body);
  assert.equal((await rule('').evaluate(request('[1,2]'), 'r', undefined, 10_000)).kind === 'cost', true, 'the empty pointer is the whole body');
  assert.equal(rule('/x', { base: 2, per_item: 3 }).quote(4), 14);
  const escaped = await rule('/a~1b/~0c').evaluate(request(JSON.stringify({ 'a/b': { '~c': [1] } })), 'r', undefined, 10_000);
  assert.equal(escaped.kind === 'cost' && escaped.cost, 2);
  const indexed = await rule('/batches/1').evaluate(request(JSON.stringify({ batches: [[1], [1, 2, 3]] })), 'r', undefined, 10_000);
  assert.equal(indexed.kind === 'cost' && indexed.cost, 4);
});

test('a body that is not what the rule expects gets a clear 400, naming the route and the pointer', async () => {
  const cases: [string | undefined, RegExp][] = [
    [undefined, /route 'bulk' prices a request by the number of items in '\/orders' of its JSON body, but the request has no body/i],
    ['not json', /the body is not valid JSON/],
    ['{"order": []}', /the body has no '\/orders'/],
    ['{"orders": {"a": 1}}', /'\/orders' is an object, not a list/],
    ['{"orders": 3}', /'\/orders' is a number, not a list/],
    ['{"orders": null}', /'\/orders' is null, not a list/],
  ];
  for (const [body, detail] of cases) {
    const result = await rule('/orders').evaluate(request(body), 'bulk', undefined, 10_000);
    assert.equal(result.kind, 'invalid', String(body));
    if (result.kind !== 'invalid') continue;
    assert.equal(result.code, 'INVALID_REQUEST');
    assert.match(result.detail, detail);
    assert.equal(result.connectionClose, false);
  }
});

test('a body over max_body gets 413 without reading it: at once by Content-Length, or as soon as it grows past the limit', async () => {
  const big = JSON.stringify({ orders: Array.from({ length: 400 }, (_, i) => i) });
  const declared = await rule('/orders').evaluate(request(big), 'bulk', undefined, 10_000);
  assert.equal(declared.kind === 'invalid' && declared.code, 'PAYLOAD_TOO_LARGE');
  assert.equal(declared.kind === 'invalid' && declared.connectionClose, true);
  const stream = new PassThrough();
  Object.assign(stream, { headers: { 'transfer-encoding': 'chunked' } });
  stream.write(big.slice(0, 800));
  stream.write(big.slice(800));
  const streamed = await rule('/orders').evaluate(stream as unknown as IncomingMessage, 'bulk', undefined, 10_000);
  assert.equal(streamed.kind === 'invalid' && streamed.code, 'PAYLOAD_TOO_LARGE');
  assert.match(streamed.kind === 'invalid' ? streamed.detail : '', /at most 1024 bytes/);
});

test('a client that leaves mid-body is reported as gone, not as a bad request', async () => {
  const stream = new PassThrough();
  Object.assign(stream, { headers: {} });
  stream.write('{"orders": [1,');
  setImmediate(() => stream.destroy());
  assert.deepEqual(await rule('/orders').evaluate(stream as unknown as IncomingMessage, 'r', undefined, 10_000), { kind: 'client_closed' });
});

test('a body an earlier step read (idempotency) is priced from memory: counted, or 413 past max_body with the connection kept', async () => {
  const spent = request(undefined);
  const counted = await rule('/orders').evaluate(spent, 'r', Buffer.from('{"orders":[1,2,3]}'), 10_000);
  assert.deepEqual(counted, { kind: 'cost', cost: 4, body: Buffer.from('{"orders":[1,2,3]}') });
  const big = Buffer.from(JSON.stringify({ orders: Array.from({ length: 400 }, (_, i) => i) }));
  const tooLarge = await rule('/orders').evaluate(spent, 'r', big, 10_000);
  assert.deepEqual([tooLarge.kind, tooLarge.kind === 'invalid' && tooLarge.code, tooLarge.kind === 'invalid' && tooLarge.connectionClose], ['invalid', 'PAYLOAD_TOO_LARGE', false]);
  assert.deepEqual(await new CostRule(5).evaluate(spent, 'r', big, 10_000), { kind: 'cost', cost: 5, body: big }, 'a fixed cost hands the body on');
});

// Decoding a body for inspection: content codings undone, bounded, prefixes tolerated, the unknown reported.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { decodeBody } from './body.ts';

const text = JSON.stringify({ ok: false, error: 'quota exhausted' });

test('identity, gzip, x-gzip, deflate and br are decoded; stacked codings are undone last first', () => {
  const plain = Buffer.from(text);
  assert.deepEqual(decodeBody(plain, undefined, 1024), { kind: 'decoded', body: plain });
  assert.deepEqual(decodeBody(plain, 'identity', 1024), { kind: 'decoded', body: plain });
  for (const [coding, bytes] of [['gzip', gzipSync(plain)], ['X-Gzip', gzipSync(plain)], ['deflate', deflateSync(plain)], ['br', brotliCompressSync(plain)]] as const) {
    const decoded = decodeBody(bytes, coding, 1024);
    assert.equal(decoded.kind === 'decoded' && decoded.body.toString(), text, coding);
  }
  const stacked = decodeBody(brotliCompressSync(gzipSync(plain)), 'gzip, br', 1024);
  assert.equal(stacked.kind === 'decoded' && stacked.body.toString(), text);
});

test('a body that decodes beyond the limit is too large; garbage and unknown codings are unreadable', () => {
  assert.deepEqual(decodeBody(gzipSync(Buffer.alloc(100_000)), 'gzip', 10_000), { kind: 'too_large' });
  assert.equal(decodeBody(Buffer.from('not gzip at all'), 'gzip', 1024).kind, 'unreadable');
  assert.match((decodeBody(Buffer.from(text), 'compress', 1024) as { reason: string }).reason, /'compress' is not supported/);
});

test('a prefix of a compressed body decodes as far as it goes when partial', () => {
  const long = Buffer.from(JSON.stringify({ message: 'x'.repeat(5000) }));
  const prefix = gzipSync(long).subarray(0, 40);
  assert.equal(decodeBody(prefix, 'gzip', 1024).kind, 'unreadable');
  const decoded = decodeBody(prefix, 'gzip', 64 * 1024, true);
  assert.equal(decoded.kind, 'decoded');
  assert.ok(decoded.kind === 'decoded' && long.toString().startsWith(decoded.body.toString()) && decoded.body.length > 0);
});

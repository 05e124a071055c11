// Redaction of injected secrets in every spelling an upstream may echo them in, whole or cut off, and clipping after it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clipStrings, clipText, redactSecrets, secretSet } from './redact.ts';

const TOKEN = 'sk-live/9f8e7d6c5b4';
const KEY = 'lk"0a1b+c3d/4e5f~9';
const SECRETS = secretSet([`Bearer ${TOKEN}`, TOKEN, KEY]);
const redact = (text: string) => redactSecrets(text, SECRETS);

test('raw, URL-encoded (either hex case, + for spaces), JSON-escaped, JSON Pointer and mixed spellings', () => {
  const spellings = [
    `Bearer ${TOKEN}`,
    encodeURIComponent(`Bearer ${TOKEN}`),
    encodeURIComponent(`Bearer ${TOKEN}`).toLowerCase().replace('bearer', 'Bearer').replace('sk-live', 'sk-live'),
    new URLSearchParams({ a: `Bearer ${TOKEN}` }).toString().slice(2),
    JSON.stringify(KEY).slice(1, -1),
    JSON.stringify(TOKEN).slice(1, -1).replaceAll('/', '\\/'),
    KEY.replace('"', '\\u0022').replace('/', '\\u002F'),
    KEY.replace('~', '~0').replace('/', '~1'),
    'sk-live%2f9f8e7d6c5b4',
    `sk\\u002dlive/9f8e%37d6c5b4`,
  ];
  for (const spelling of spellings) assert.equal(redact(`<${spelling}>`), '<[redacted]>', spelling);
});

test('base64 and base64url of a value and of each word, in every alignment, padded or not', () => {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const cases = [
    b64(TOKEN),
    b64(TOKEN).replace(/=+$/, ''),
    Buffer.from(KEY).toString('base64url'),
    b64(`Bearer ${TOKEN}`),
    b64(`Authorization: Bearer ${TOKEN}`),
    b64(`x${KEY}`),
    b64(`xy${KEY}`),
    Buffer.from(`xyz${TOKEN}!`).toString('base64url'),
  ];
  for (const encoded of cases) {
    const redacted = redact(encoded);
    assert.match(redacted, /\[redacted\]/, encoded);
    // Whatever is left decodes to at most a few characters of the secret, in any alignment.
    for (const run of redacted.split('[redacted]')) {
      for (let offset = 0; offset < 4; offset++) {
        const decoded = Buffer.from(run.slice(offset), 'base64').toString('latin1');
        for (const secret of [TOKEN, KEY]) assert.ok(!decoded.includes(secret.slice(0, 8)), `${encoded} -> ${redacted}`);
      }
    }
  }
});

test('a secret cut off after 8 or more of its characters is redacted; the start of a several-word value alone is not', () => {
  for (let n = 8; n < TOKEN.length; n++) assert.equal(redact(`token ${TOKEN.slice(0, n)}`), 'token [redacted]', `${n} characters`);
  assert.equal(redact(`key ${encodeURIComponent(KEY.slice(0, 12))}...`), 'key [redacted]...');
  const b64 = Buffer.from(TOKEN).toString('base64');
  assert.equal(redact(`${b64.slice(0, 16)}`), '[redacted]');
  // Seven characters are not told apart from ordinary words; 'Bearer s' is the scheme and one letter, no secret.
  assert.equal(redact(`token ${TOKEN.slice(0, 7)}`), `token ${TOKEN.slice(0, 7)}`);
  assert.equal(redact('use Bearer schemes'), 'use Bearer schemes');
});

test('overlapping occurrences (a value and its word, adjacent echoes) become one [redacted]; the rest is kept', () => {
  assert.equal(redact(`a Bearer ${TOKEN} b ${TOKEN}${TOKEN} c`), 'a [redacted] b [redacted] c');
  assert.equal(redact('nothing to hide here'), 'nothing to hide here');
});

test('documents: keys, values, nested, and numbers that hold a secret', () => {
  const numeric = secretSet(['12345678901']);
  assert.deepEqual(redactSecrets({ [TOKEN]: [{ v: `x ${KEY} y` }, 7, null, true] }, SECRETS), { '[redacted]': [{ v: 'x [redacted] y' }, 7, null, true] });
  assert.deepEqual(redactSecrets({ id: 12345678901, other: 42 }, numeric), { id: '[redacted]', other: 42 });
});

test('secrets beyond ASCII: their UTF-8 URL encoding and JSON surrogate escapes', () => {
  const secret = 'pässwörd-\u{1F511}-42';
  const secrets = secretSet([secret]);
  for (const spelling of [secret, encodeURIComponent(secret), JSON.stringify(secret).slice(1, -1), secret.replace('\u{1F511}', '\\ud83d\\udd11'), Buffer.from(secret).toString('base64')]) {
    assert.equal(redactSecrets(`(${spelling})`, secrets), '([redacted])', spelling);
  }
});

test('a list made without secretSet works the same (compiled on first use)', () => {
  assert.equal(redactSecrets(`x ${encodeURIComponent(TOKEN)}`, [TOKEN]), 'x [redacted]');
  assert.equal(redactSecrets('x', []), 'x');
  assert.equal(redactSecrets('x', undefined), 'x');
});

test('clipping: at most max characters ending in ..., never inside a surrogate pair, keys too', () => {
  assert.equal(clipText('abcdef', 6), 'abcdef');
  assert.equal(clipText('abcdefg', 6), 'abc...');
  assert.equal(clipText(`ab\u{1F511}cdef`, 6), 'ab...');
  assert.deepEqual(clipStrings({ ['k'.repeat(10)]: ['v'.repeat(10), 1] }, 8), { 'kkkkk...': ['vvvvv...', 1] });
});

test('secrets starting or made of characters with several spellings (%, \\, ~) are found in each', () => {
  for (const secret of ['%abc1234xyz', '\\abc1234xyz', '~abc1234xyz', 'ab%\\~"/+ 1234']) {
    const secrets = secretSet([secret]);
    const spellings = [secret, encodeURIComponent(secret), JSON.stringify(secret).slice(1, -1), JSON.stringify(JSON.stringify(secret)).slice(3, -3), secret.replaceAll('~', '~0').replaceAll('/', '~1')];
    for (const spelling of spellings) assert.equal(redactSecrets(`<${spelling}>`, secrets), '<[redacted]>', `${secret} as ${spelling}`);
  }
});

// JWT verification against a real local JWKS server and real keys: what passes, what is refused and why, and how the key set is kept.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { pino, type Logger } from 'pino';
import { looksLikeJwt } from './keys.ts';
import { JwtVerifier, type JwksLimits, type JwtRefusal, type JwtSettings, type JwtVerification } from './jwt.ts';

const ISSUER = 'https://idp.example/';

interface SigningKey {
  alg: string;
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  /** The public key as the IdP publishes it. */
  jwk: JWK;
}

async function signingKey(alg: string, kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { alg, kid, privateKey, publicKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

const rsa = await signingKey('RS256', 'rsa-1');
const ec = await signingKey('ES256', 'ec-1');
const ed = await signingKey('EdDSA', 'ed-1');
const rotated = await signingKey('RS256', 'rsa-2');

const now = () => Math.floor(Date.now() / 1000);

/** A token the IdP would issue for billing-bot, with `claims` replacing (or, set to undefined, removing) the usual ones. */
function sign(key: SigningKey, claims: Record<string, unknown> = {}, kid: string = key.kid): Promise<string> {
  const payload = { iss: ISSUER, aud: 'agentgate', sub: 'billing-bot', scope: 'orders:read orders:write', iat: now(), exp: now() + 300, ...claims };
  return new SignJWT(payload).setProtectedHeader({ alg: key.alg, kid }).sign(key.privateKey);
}

/** A local IdP serving its JWKS over http on 127.0.0.1, counting fetches; `answer` replaces the JWKS with anything. */
class FakeIdp {
  keys: JWK[];
  fetches = 0;
  answer: ((res: ServerResponse) => void) | undefined;
  readonly url: string;
  private readonly server: ReturnType<typeof createServer>;

  static async start(t: TestContext, keys: JWK[]): Promise<FakeIdp> {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const idp = new FakeIdp(server, keys);
    t.after(() => idp.stop());
    return idp;
  }

  private constructor(server: ReturnType<typeof createServer>, keys: JWK[]) {
    this.server = server;
    this.keys = keys;
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
    server.on('request', (_req, res: ServerResponse) => {
      this.fetches++;
      res.on('error', () => {});
      if (this.answer) return this.answer(res);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: this.keys }));
    });
  }

  async stop(): Promise<void> {
    if (!this.server.listening) return;
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

const SETTINGS: JwtSettings = {
  jwksUrl: undefined,
  jwksFile: undefined,
  issuer: ISSUER,
  audience: 'agentgate',
  agentClaim: 'sub',
  scopesClaim: 'scope',
  clockSkewSeconds: 30,
  algorithms: ['RS256', 'ES256', 'EdDSA'],
};

function verifier(t: TestContext, settings: Partial<JwtSettings>, limits?: JwksLimits, logger: Logger = pino({ level: 'silent' })): JwtVerifier {
  const v = new JwtVerifier({ ...SETTINGS, ...settings }, logger, limits);
  t.after(() => v.close());
  return v;
}

/** A logger whose lines are kept, parsed. */
function capturingLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  return { logger: pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) }), lines };
}

async function assertVerified(v: JwtVerifier, token: string): Promise<Extract<JwtVerification, { kind: 'verified' }>> {
  const result = await v.verify(token);
  assert.equal(result.kind, 'verified', JSON.stringify(result));
  return result as Extract<JwtVerification, { kind: 'verified' }>;
}

/** Asserts the refusal's reason, and that its detail quotes no part of the token. */
async function assertRefused(v: JwtVerifier, token: string, reason: JwtRefusal | readonly JwtRefusal[]): Promise<string> {
  const result = await v.verify(token);
  assert.equal(result.kind, 'refused', JSON.stringify(result));
  const { reason: actual, detail } = result as Extract<JwtVerification, { kind: 'refused' }>;
  assert.ok(([] as JwtRefusal[]).concat(reason).includes(actual), `reason ${actual}, expected ${String(reason)}: ${detail}`);
  assert.match(detail, /^[A-Z].{10,200}\.$/);
  for (const part of token.split('.')) if (part.length >= 4) assert.ok(!detail.includes(part), `detail quotes the token: ${detail}`);
  return detail;
}

const randomKid = () => `kid-${Math.random().toString(36).slice(2)}`;

test('RS256, ES256 and EdDSA tokens verify, naming the agent, its scopes and when the token expires', async (t) => {
  const idp = await FakeIdp.start(t, [rsa.jwk, ec.jwk, ed.jwk]);
  const v = verifier(t, { jwksUrl: idp.url });
  for (const key of [rsa, ec, ed]) {
    const exp = now() + 120;
    const result = await assertVerified(v, await sign(key, { exp }));
    assert.deepEqual(result, { kind: 'verified', agentId: 'billing-bot', scopes: ['orders:read', 'orders:write'], expiresAt: exp });
  }
  assert.equal(idp.fetches, 1, 'the key set is fetched once and cached');
});

test('scopes are read from a space-separated string or an array of strings, and the agent from the configured claim', async (t) => {
  const idp = await FakeIdp.start(t, [rsa.jwk]);
  const v = verifier(t, { jwksUrl: idp.url, agentClaim: 'client_id', scopesClaim: 'scp' });
  const asString = await assertVerified(v, await sign(rsa, { client_id: 'reporter', scp: ' reports:read  reports:list ' }));
  assert.deepEqual([asString.agentId, asString.scopes], ['reporter', ['reports:read', 'reports:list']]);
  assert.deepEqual((await assertVerified(v, await sign(rsa, { client_id: 'reporter', scp: ['a', 'b'] }))).scopes, ['a', 'b']);
  assert.deepEqual((await assertVerified(v, await sign(rsa, { client_id: 'reporter' }))).scopes, [], 'no scope claim: no scopes');
});

test('a scope claim of the wrong type, or an agent claim missing or not a string, is refused as bad_claims without echoing values', async (t) => {
  const idp = await FakeIdp.start(t, [rsa.jwk]);
  const v = verifier(t, { jwksUrl: idp.url });
  for (const scope of [42, { 'orders:write': true }, ['orders:read', 7], [null]]) {
    const detail = await assertRefused(v, await sign(rsa, { scope }), 'bad_claims');
    assert.match(detail, /'scope'/);
    assert.doesNotMatch(detail, /orders|42/);
  }
  for (const sub of [undefined, 7, '', ['billing-bot']]) {
    const detail = await assertRefused(v, await sign(rsa, { sub }), 'bad_claims');
    assert.match(detail, /'sub'/);
    assert.doesNotMatch(detail, /billing/);
  }
  // A token that never expires would work for good once stolen.
  assert.match(await assertRefused(v, await sign(rsa, { exp: undefined }), 'bad_claims'), /no 'exp' claim/);
});

test("alg none and HS256 signed with the IdP's public key (algorithm confusion) are refused", async (t) => {
  const idp = await FakeIdp.start(t, [rsa.jwk]);
  const v = verifier(t, { jwksUrl: idp.url });
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const claims = { iss: ISSUER, aud: 'agentgate', sub: 'billing-bot', scope: 'admin', exp: now() + 300 };
  await assertRefused(v, `${encode({ alg: 'none', kid: rsa.kid })}.${encode(claims)}.`, 'algorithm_refused');
  await assertRefused(v, `${encode({ alg: 'none' })}.${encode(claims)}.`, 'algorithm_refused');
  for (const secret of [Buffer.from(await exportSPKI(rsa.publicKey)), Buffer.from(JSON.stringify(rsa.jwk))]) {
    const forged = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', kid: rsa.kid }).sign(secret);
    await assertRefused(v, forged, ['algorithm_refused', 'bad_signature']);
  }
});

test('a signature that does not verify with the named key is refused as bad_signature', async (t) => {
  const idp = await FakeIdp.start(t, [rsa.jwk]);
  const v = verifier(t, { jwksUrl: idp.url });
  await assertRefused(v, await sign(rotated, {}, rsa.kid), 'bad_signature');
  const [header, , signature] = (await sign(rsa)).split('.');
  const claims = Buffer.from(JSON.stringify({ iss: ISSUER, aud: 'agentgate', sub: 'root', exp: now() + 300 })).toString('base64url');
  await assertRefused(v, `${header}.${claims}.${signature}`, 'bad_signature');
});

test('a token without a kid verifies when one key could have signed it, and is refused as unknown_key when several could', async (t) => {
  const idp = await FakeIdp.start(t, [rsa.jwk, ec.jwk]);
  const v = verifier(t, { jwksUrl: idp.url });
  const withoutKid = (key: SigningKey) => new SignJWT({ iss: ISSUER, aud: 'agentgate', sub: 'billing-bot', exp: now() + 300 }).setProtectedHeader({ alg: key.alg }).sign(key.privateKey);
  await assertVerified(v, await withoutKid(rsa));
  idp.keys = [rsa.jwk, rotated.jwk, ec.jwk];
  const several = verifier(t, { jwksUrl: idp.url });
  await assertRefused(several, await withoutKid(rsa), 'unknown_key');
  await assertVerified(several, await withoutKid(ec));
});

test('expired and not-yet-valid tokens are refused saying by how much; within the clock skew they pass', async (t) => {
  const idp = await FakeIdp.start(t, [ec.jwk]);
  const v = verifier(t, { jwksUrl: idp.url, clockSkewSeconds: 30 });
  const expired = await assertRefused(v, await sign(ec, { exp: now() - 100 }), 'expired');
  assert.match(expired, /^The token expired 10[01] seconds ago\.$/);
  const early = await assertRefused(v, await sign(ec, { nbf: now() + 100 }), 'not_yet_valid');
  assert.match(early, /^The token is not valid for another (99|100) seconds\.$/);
  await assertVerified(v, await sign(ec, { exp: now() - 10 }));
  await assertVerified(v, await sign(ec, { nbf: now() + 10 }));
  await assertRefused(v, await sign(ec, { exp: 'tomorrow' }), 'bad_claims');
});

test('a wrong issuer or audience is refused naming what was expected; an audience list accepts any of its members', async (t) => {
  const idp = await FakeIdp.start(t, [ed.jwk]);
  const v = verifier(t, { jwksUrl: idp.url });
  assert.equal(await assertRefused(v, await sign(ed, { iss: 'https://evil.example/' }), 'wrong_issuer'), "The token's issuer is not 'https://idp.example/'.");
  await assertRefused(v, await sign(ed, { iss: undefined }), 'wrong_issuer');
  assert.equal(await assertRefused(v, await sign(ed, { aud: 'someone-else' }), 'wrong_audience'), "The token's audience is not 'agentgate'.");
  await assertRefused(v, await sign(ed, { aud: undefined }), 'wrong_audience');
  await assertVerified(v, await sign(ed, { aud: ['another-api', 'agentgate'] }));

  const either = verifier(t, { jwksUrl: idp.url, audience: ['agentgate', 'agentgate-staging'] });
  await assertVerified(either, await sign(ed, { aud: 'agentgate-staging' }));
  assert.match(await assertRefused(either, await sign(ed, { aud: 'other' }), 'wrong_audience'), /any of 'agentgate', 'agentgate-staging'/);
});

test('tokens naming unknown kids make at most one JWKS fetch per cooldown, however many arrive', async (t) => {
  const idp = await FakeIdp.start(t, [rsa.jwk]);
  const v = verifier(t, { jwksUrl: idp.url }, { cooldownMs: 300 });
  await assertVerified(v, await sign(rsa));
  assert.equal(idp.fetches, 1);
  await sleep(350);
  const forged = await Promise.all(Array.from({ length: 50 }, () => sign(rsa, {}, randomKid())));
  await Promise.all(forged.map((token) => assertRefused(v, token, 'unknown_key')));
  assert.equal(idp.fetches, 2, 'fifty unknown kids at once: one fetch');
  for (const token of forged) await assertRefused(v, token, 'unknown_key');
  assert.equal(idp.fetches, 2, 'fifty more within the cooldown: none');
  await assertVerified(v, await sign(rsa));
});

test('a key added at the IdP (rotation) is picked up without a restart, and a key it removed stops working', async (t) => {
  const idp = await FakeIdp.start(t, [rsa.jwk]);
  const v = verifier(t, { jwksUrl: idp.url }, { cooldownMs: 0 });
  await assertVerified(v, await sign(rsa));
  idp.keys = [rotated.jwk];
  await assertVerified(v, await sign(rotated));
  assert.equal(idp.fetches, 2);
  await assertRefused(v, await sign(rsa), 'unknown_key');
});

test('keys held longer than their maximum age are renewed in the background, so a key the IdP removed stops working', async (t) => {
  const idp = await FakeIdp.start(t, [rsa.jwk, rotated.jwk]);
  const v = verifier(t, { jwksUrl: idp.url }, { maxAgeMs: 100, cooldownMs: 50 });
  await assertVerified(v, await sign(rsa));
  idp.keys = [rotated.jwk];
  await sleep(150);
  await assertVerified(v, await sign(rsa)); // served from the old set while the new one is fetched
  const removed = await sign(rsa);
  for (let waited = 0; waited < 2000 && (await v.verify(removed)).kind === 'verified'; waited += 10) await sleep(10);
  await assertRefused(v, removed, 'unknown_key');
  assert.equal(idp.fetches, 2);
  await assertVerified(v, await sign(rotated));
});

test('with the IdP down, tokens signed by cached keys still verify; a new kid gets jwks_unavailable, logged with the URL', async (t) => {
  const idp = await FakeIdp.start(t, [rsa.jwk]);
  const { logger, lines } = capturingLogger();
  const v = verifier(t, { jwksUrl: idp.url }, { cooldownMs: 0 }, logger);
  await assertVerified(v, await sign(rsa));
  await idp.stop();
  await assertVerified(v, await sign(rsa));
  const newKid = await sign(rotated);
  await assertRefused(v, newKid, 'jwks_unavailable');
  const warning = lines.find((l) => l.level === 40);
  assert.ok(warning, 'the failed fetch is logged at warn');
  assert.equal(warning.policy, 'authenticate');
  assert.equal(warning.jwks_url, idp.url);
  assert.match(String(warning.err), /ECONNREFUSED/);
  assert.ok(!JSON.stringify(lines).includes(newKid.split('.')[2]!), 'no token in the logs');
});

test('a slow IdP times out without holding up tokens signed by cached keys', async (t) => {
  const idp = await FakeIdp.start(t, [rsa.jwk]);
  const { logger, lines } = capturingLogger();
  const v = verifier(t, { jwksUrl: idp.url }, { cooldownMs: 0, fetchTimeoutMs: 300 }, logger);
  await assertVerified(v, await sign(rsa));
  idp.answer = () => {}; // never answers
  const [known, unknown] = [await sign(rsa), await sign(rotated)];
  const started = performance.now();
  let timedOut = false;
  const waiting = assertRefused(v, unknown, 'jwks_unavailable').then(() => (timedOut = true));
  await assertVerified(v, known);
  assert.equal(timedOut, false, 'the cached key answered while the fetch was still waiting');
  await waiting;
  assert.ok(performance.now() - started >= 290);
  assert.ok(lines.some((l) => l.level === 40 && /within 300 ms/.test(String(l.err))));
});

test('a JWKS answer that is garbage, not a key set, an error or 10 MB is refused and logged; the cached keys keep working', async (t) => {
  const idp = await FakeIdp.start(t, [rsa.jwk]);
  const { logger, lines } = capturingLogger();
  const v = verifier(t, { jwksUrl: idp.url }, { cooldownMs: 0 }, logger);
  await assertVerified(v, await sign(rsa));
  const tenMegabytes = Buffer.alloc(10 * 1024 * 1024, ' ');
  const answers: [string, (res: ServerResponse) => void][] = [
    ['not JSON', (res) => res.end('<html>{"keys": oops')],
    ['not a JSON Web Key Set', (res) => res.end('{"keys": 5}')],
    ['HTTP 503', (res) => res.writeHead(503).end()],
    ['HTTP 302', (res) => res.writeHead(302, { location: 'http://evil.example/jwks.json' }).end()],
    ['bytes, more than the 262144', (res) => res.writeHead(200, { 'content-length': tenMegabytes.length }).end(tenMegabytes)],
    ['larger than the 262144', (res) => res.write(tenMegabytes, () => res.end())], // chunked: no length declared
  ];
  for (const [logged, answer] of answers) {
    idp.answer = answer;
    const before = lines.length;
    await assertRefused(v, await sign(rotated), 'jwks_unavailable');
    await assertVerified(v, await sign(rsa));
    const warning = lines.slice(before).find((l) => l.level === 40);
    assert.ok(warning && String(warning.err).includes(logged), `${logged}: ${JSON.stringify(lines.slice(before))}`);
    assert.ok(!JSON.stringify(warning).includes('oops'), 'the answer is not logged');
  }
  idp.answer = undefined;
  idp.keys = [rsa.jwk, rotated.jwk];
  await assertVerified(v, await sign(rotated));
});

test('tokens that are empty, not base64url, malformed or over 16 KiB are refused as malformed without fetching anything', async (t) => {
  const idp = await FakeIdp.start(t, [rsa.jwk]);
  const v = verifier(t, { jwksUrl: idp.url });
  await assertVerified(v, await sign(rsa));
  const valid = await sign(rsa);
  const huge = `${valid.split('.')[0]}.${'A'.repeat(100 * 1024)}.${valid.split('.')[2]}`;
  assert.equal(await assertRefused(v, huge, 'malformed'), 'The token is longer than 16384 characters.');
  for (const token of ['', 'agk_notajwt', 'a$b.c%d.e', `${valid}=`, 'a.b', 'a.b.c.d', 'Zm9v.YmFy.YmF6', `bm90IGpzb24.${valid.split('.').slice(1).join('.')}`]) {
    await assertRefused(v, token, 'malformed');
  }
  assert.equal(idp.fetches, 1);
  assert.equal(looksLikeJwt(valid), true);
  assert.equal(looksLikeJwt('agk_abc'), false);
});

test('a JWKS file is read at construction, a bad one fails then naming the file, and an unknown kid re-reads it at most once per cooldown', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'agentgate-jwks-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'jwks.json');
  writeFileSync(file, JSON.stringify({ keys: [ec.jwk] }));
  const v = verifier(t, { jwksFile: file }, { cooldownMs: 0 });
  await assertVerified(v, await sign(ec));

  const patient = verifier(t, { jwksFile: file }, { cooldownMs: 60_000 });
  writeFileSync(file, JSON.stringify({ keys: [ec.jwk, ed.jwk] }));
  await assertVerified(v, await sign(ed));
  await assertRefused(patient, await sign(ed), 'unknown_key');

  writeFileSync(file, 'SECRET-LOOKING {not json');
  assert.throws(() => verifier(t, { jwksFile: file }), (err: Error) => err.message.includes(file) && err.message.includes('not JSON') && !err.message.includes('SECRET'));
  assert.throws(() => verifier(t, { jwksFile: path.join(dir, 'missing.json') }), /missing\.json cannot be used: it cannot be opened \(ENOENT\)/);
  writeFileSync(file, JSON.stringify({ keys: [ec.jwk] }) + ' '.repeat(300 * 1024));
  assert.throws(() => verifier(t, { jwksFile: file }), /larger than the 262144 bytes/);
  await assertRefused(v, await sign(rotated), 'jwks_unavailable');
  await assertVerified(v, await sign(ed)); // a file that went bad on re-reading leaves the keys already held
});

test('settings that would weaken verification are refused at construction', (t) => {
  const make = (settings: Partial<JwtSettings>) => () => verifier(t, settings);
  assert.throws(make({ jwksUrl: 'http://idp.example/jwks.json' }), /must use https/);
  assert.throws(make({}), /exactly one/);
  assert.throws(make({ jwksUrl: 'https://idp.example/jwks.json', jwksFile: '/etc/jwks.json' }), /exactly one/);
  assert.throws(make({ jwksFile: 'jwks.json' }), /absolute path/);
  assert.throws(make({ jwksUrl: 'https://idp.example/jwks.json', algorithms: ['RS256', 'HS256'] }), /'HS256' is not allowed/);
  assert.throws(make({ jwksUrl: 'https://idp.example/jwks.json', algorithms: ['none'] }), /'none' is not allowed/);
});

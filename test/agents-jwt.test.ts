// Agents with tokens from an identity provider (consumers.authenticate.jwt), end to end: a local IdP serving its JWKS,
// tokens it signs, scopes from the token, per-agent budgets from the agents file, and a key rotation at the IdP picked
// up without a restart.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { startUpstream, json, type TestUpstream } from './helpers/upstream.ts';
import { startTestGateway, configYaml, type TestGateway } from './helpers/gateway.ts';
import { send, envelopeOf } from './helpers/http.ts';
import { keyHash, newKey } from '../src/agents/keys.ts';

/** A minimal identity provider: a JWKS endpoint whose keys the test changes, and a signer for each key. */
async function startIdp() {
  const keys: { kid: string; privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey']; jwk: JWK }[] = [];
  let fetches = 0;
  const addKey = async (kid: string) => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    keys.push({ kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } });
  };
  const server: Server = createServer((_req, res) => {
    fetches++;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: keys.map((k) => k.jwk) }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
  const sign = (kid: string, claims: Record<string, unknown>, expiresIn = '5m') => {
    const key = keys.find((k) => k.kid === kid)!;
    return new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', kid })
      .setIssuer('https://idp.test/')
      .setAudience('agentgate')
      .setIssuedAt()
      .setExpirationTime(expiresIn)
      .sign(key.privateKey);
  };
  const privateKeyOf = (kid: string) => keys.find((k) => k.kid === kid)!.privateKey;
  return { url, addKey, sign, privateKeyOf, fetches: () => fetches, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** An API-key agent whose id a token's subject will copy. */
const readerBotKey = newKey();

/** jwks_min_refresh at its floor, so that a rotation is seen within the test, and still a bound on fetches. */
const REFRESH_MS = 1000;

describe('agents with JWTs from an identity provider', () => {
  let idp: Awaited<ReturnType<typeof startIdp>>;
  let upstream: TestUpstream;
  let gw: TestGateway;

  before(async () => {
    idp = await startIdp();
    await idp.addKey('key-1');
    upstream = await startUpstream({ '*': (_req, res) => json(res, 200, { ok: true }) });
    gw = await startTestGateway(
      configYaml(`consumers:
  authenticate:
    api_keys: {file: agents.yaml}
    jwt: {jwks_url: '${idp.url}', issuer: 'https://idp.test/', audience: agentgate, jwks_min_refresh: ${REFRESH_MS}ms}
upstreams: {api: {url: '${upstream.url}'}}
rate_limits:
  agents: {capacity: 10, per: 1h}
defaults: {rate_limit: agents}
routes:
  - {name: write, match: {methods: [POST], path: /orders}, upstream: api, scopes: [orders:write]}
  - {name: rest, match: {path: /*}, upstream: api}
`),
      // The agents file gives a JWT agent its own budget: the token says who, the file says how much.
      { files: { 'agents.yaml': `agents:\n  - {id: planner, token_subject: planner, rate_limits: {agents: {capacity: 25}}}\n  - {id: reader-bot, keys: ['${keyHash(readerBotKey)}'], scopes: [orders:read, orders:write]}\n` } },
    );
  });
  after(async () => {
    await gw.close();
    await upstream.close();
    await idp.close();
  });

  const call = (token: string, method = 'GET', path = '/orders/1') =>
    send(`${gw.url}${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: method === 'POST' ? '{}' : undefined });

  test('a token the IdP signed is verified: the agent, its scopes and its expiry; the token never reaches the upstream', async () => {
    const token = await idp.sign('key-1', { sub: 'planner', scope: 'orders:read orders:write' });
    const me = (await call(token, 'GET', '/_agentgate/whoami')).json();
    assert.equal(me.agent, 'planner');
    assert.deepEqual(me.scopes, ['orders:read', 'orders:write']);
    assert.equal(me.authenticated_with, 'jwt');
    assert.ok(Date.parse(me.expires_at) > Date.now());
    const before = upstream.received.length;
    const written = await call(token, 'POST', '/orders');
    assert.equal(written.status, 200, written.text);
    assert.equal(upstream.received[before]!.headers.authorization, undefined);
    assert.equal(written.headers['x-ratelimit-limit'], '25', "the agents file's override for a JWT agent");
  });

  test('scopes come from the token: without orders:write the write is refused (403), nothing forwarded', async () => {
    const token = await idp.sign('key-1', { sub: 'reader-bot', scope: ['orders:read'] });
    const before = upstream.received.length;
    const reply = await call(token, 'POST', '/orders');
    assert.equal(reply.status, 403);
    assert.deepEqual(envelopeOf(reply).missing_scopes, ['orders:write']);
    assert.equal(upstream.received.length, before);
  });

  test('an expired token, a wrong audience and a token from another key are refused (401) with their reason', async () => {
    const expired = await idp.sign('key-1', { sub: 'planner' }, '-10m');
    assert.equal(envelopeOf(await call(expired)).reason, 'expired');
    const other = await startIdp();
    await other.addKey('key-1');
    const forged = await other.sign('key-1', { sub: 'planner' });
    await other.close();
    const refused = await call(forged);
    assert.equal(refused.status, 401);
    assert.equal(envelopeOf(refused).reason, 'bad_signature');
    assert.ok(!refused.text.includes(forged.split('.')[1]!), 'the token is never echoed');
  });

  test("a token whose subject equals an API-key agent's id is another agent: its own consumer, budget and records", async () => {
    const token = await idp.sign('key-1', { sub: 'reader-bot', scope: 'orders:read' });
    const viaToken = (await call(token, 'GET', '/_agentgate/whoami')).json();
    const viaKey = (await send(`${gw.url}/_agentgate/whoami`, { headers: { authorization: `Bearer ${readerBotKey}` } })).json();
    assert.equal(viaToken.consumer, 'jwt:reader-bot');
    assert.equal(viaKey.consumer, 'agent:reader-bot');
    const remaining = async () => (await call(token, 'GET', '/_agentgate/budget')).json().budgets[0].remaining;
    const before = await remaining();
    await send(`${gw.url}/spend`, { headers: { authorization: `Bearer ${readerBotKey}` } });
    assert.equal(await remaining(), before, "the key agent's spending is not the token agent's");
  });

  test('a subject that is no usable agent name, or an expiry centuries ahead, is refused (401 bad_claims)', async () => {
    for (const claims of [{ sub: 'x","route":"forged"}\n{"level":"error' }, { sub: 'a'.repeat(10_000) }, { sub: 'a}{b' }]) {
      const reply = await call(await idp.sign('key-1', claims));
      assert.equal(reply.status, 401);
      assert.equal(envelopeOf(reply).reason, 'bad_claims');
    }
    const forever = await new SignJWT({ sub: 'planner' })
      .setProtectedHeader({ alg: 'ES256', kid: 'key-1' })
      .setIssuer('https://idp.test/')
      .setAudience('agentgate')
      .setExpirationTime(1e12)
      .sign(idp.privateKeyOf('key-1'));
    assert.equal(envelopeOf(await call(forever)).reason, 'bad_claims');
    assert.ok(!gw.logs.lines.some((l) => l.route === 'forged'), 'no forged log field');
  });

  test('a key rotation at the IdP (a new kid) is picked up without a restart, and the old key keeps working while listed', async () => {
    await idp.addKey('key-2');
    // The IdP publishes the new key; the gateway may have fetched the set less than jwks_min_refresh ago.
    await new Promise((resolve) => setTimeout(resolve, REFRESH_MS + 50));
    const rotated = await idp.sign('key-2', { sub: 'planner' });
    assert.equal((await call(rotated)).status, 200, 'the unknown kid made the gateway fetch the JWKS again');
    assert.equal((await call(await idp.sign('key-1', { sub: 'planner' }))).status, 200);
  });

  test('tokens naming kids the IdP never had cannot make the gateway hammer the IdP', async () => {
    await new Promise((resolve) => setTimeout(resolve, REFRESH_MS + 50));
    const fetchesBefore = idp.fetches();
    const started = Date.now();
    const payload = Buffer.from(JSON.stringify({ sub: 'x' })).toString('base64url');
    for (let i = 0; i < 30; i++) {
      const header = Buffer.from(JSON.stringify({ alg: 'ES256', kid: `never-issued-${i}` })).toString('base64url');
      const fake = `${header}.${payload}.${Buffer.from('sig').toString('base64url')}`;
      assert.equal((await call(fake)).status, 401);
    }
    // At most one fetch per jwks_min_refresh, however many unknown kids arrive.
    const allowed = 1 + Math.floor((Date.now() - started) / REFRESH_MS);
    assert.ok(idp.fetches() - fetchesBefore <= allowed, `${idp.fetches() - fetchesBefore} JWKS fetches for 30 unknown kids (at most ${allowed})`);
  });
});

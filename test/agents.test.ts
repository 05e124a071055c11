// Authenticated agents (consumers.authenticate.api_keys): every request proves who it is before anything is read,
// charged or forwarded; scopes gate routes; budgets and idempotency records belong to the verified agent, whatever
// headers it sends; keys rotate without a restart; the key never leaves the gateway.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { startUpstream, json, type TestUpstream } from './helpers/upstream.ts';
import { startTestGateway, configYaml, tempDir, type TestGateway } from './helpers/gateway.ts';
import { send, rawExchange, parseRawResponse, envelopeOf } from './helpers/http.ts';
import { keyHash, newKey } from '../src/agents/keys.ts';
import { ConfigError, loadConfigFile } from '../src/config/load.ts';
import { until } from './helpers/wait.ts';

const billingKey = newKey();
const readerKey = newKey();

const agentsFile = (entries: string) => `agents:\n${entries}`;
const AGENTS = agentsFile(`  - id: billing-bot
    keys: ['${keyHash(billingKey)}']
    scopes: [orders:read, orders:write]
    rate_limits: {agents: {capacity: 50}}
  - id: reader
    keys: ['${keyHash(readerKey)}']
    scopes: [orders:read]
`);

const config = (upstreamUrl: string, consumers = 'consumers:\n  authenticate: {api_keys: {file: agents.yaml}}\n') =>
  configYaml(`${consumers}upstreams: {api: {url: '${upstreamUrl}'}}
rate_limits:
  agents: {capacity: 10, per: 1h}
defaults: {rate_limit: agents}
routes:
  - {name: create-order, match: {methods: [POST], path: /orders}, upstream: api, scopes: [orders:write], idempotency: {required: false, ttl: 1h}}
  - {name: get-order, match: {methods: [GET], path: '/orders/{id}'}, upstream: api, scopes: [orders:read]}
  - {name: everything-else, match: {path: /*}, upstream: api}
`);

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

describe('agents with keys', () => {
  let upstream: TestUpstream;
  let gw: TestGateway;
  let created = 0;

  before(async () => {
    upstream = await startUpstream({
      'POST /orders': (_req, res) => json(res, 201, { id: ++created }),
      '*': (_req, res) => json(res, 200, { ok: true }),
    });
    gw = await startTestGateway(config(upstream.url), { files: { 'agents.yaml': AGENTS }, watchConfig: true });
  });
  after(async () => {
    await gw.close();
    await upstream.close();
  });

  const metrics = async () => (await send(`${gw.adminUrl}/metrics`)).text;
  const failures = async (reason: string) => Number(new RegExp(`agentgate_auth_failures_total\\{reason="${reason}"\\} (\\d+)`).exec(await metrics())?.[1] ?? 0);

  test('a valid key (Bearer or X-Agent-Key) is let through, and neither the key nor its header reaches the upstream', async () => {
    const before = upstream.received.length;
    const viaBearer = await send(`${gw.url}/orders/1`, { headers: bearer(billingKey) });
    assert.equal(viaBearer.status, 200, viaBearer.text);
    const viaHeader = await send(`${gw.url}/orders/2`, { headers: { 'x-agent-key': readerKey, authorization: 'Basic dXBzdHJlYW06b3du' } });
    assert.equal(viaHeader.status, 200, viaHeader.text);
    const [first, second] = upstream.received.slice(before);
    assert.equal(first!.headers.authorization, undefined, 'the bearer key is the gateway\'s, not the upstream\'s');
    assert.equal(second!.headers['x-agent-key'], undefined);
    assert.equal(second!.headers.authorization, 'Basic dXBzdHJlYW06b3du', "an Authorization that is not the agent's credential is the upstream's business");
  });

  test('the key header spelled with underscores (read as X-Agent-Key by CGI-style upstreams) is refused, never forwarded', async () => {
    const before = upstream.received.length;
    const raw = await rawExchange(
      gw.url,
      `GET /orders/3 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${billingKey}\r\nX_Agent_Key: ${readerKey}\r\nConnection: close\r\n\r\n`,
    );
    const reply = parseRawResponse(raw);
    assert.equal(reply.status, 401);
    assert.match(JSON.parse(reply.body).detail, /An agent key was sent in the X_Agent_Key header/);
    assert.equal(upstream.received.length, before);
  });

  test('no credential: 401 UNAUTHENTICATED with a Bearer challenge, not retryable, nothing forwarded', async () => {
    const before = upstream.received.length;
    const counted = await failures('missing');
    const reply = await send(`${gw.url}/anything`, { headers: { 'x-agent-id': 'billing-bot' } });
    assert.equal(reply.status, 401);
    assert.match(String(reply.headers['www-authenticate']), /^Bearer realm="agentgate"$/);
    assert.equal(reply.headers['x-should-retry'], 'false');
    const envelope = envelopeOf(reply);
    assert.equal(envelope.code, 'UNAUTHENTICATED');
    assert.equal(envelope.retryable, false);
    assert.equal(envelope.upstream_status, null);
    assert.match(envelope.detail, /no credential/);
    assert.equal(upstream.received.length, before);
    assert.equal(await failures('missing'), counted + 1);
  });

  const hostile: [string, Record<string, string>, string][] = [
    ['an empty bearer', { authorization: 'Bearer ' }, 'malformed'],
    ['a bearer of the wrong shape', { authorization: 'Bearer agk_!!!not-base64!!!' }, 'malformed'],
    ['a key of the right shape that was never issued', { authorization: `Bearer ${newKey()}` }, 'unknown_key'],
    ['a key with another prefix', { authorization: `Bearer sk_${billingKey.slice(4)}` }, 'malformed'],
    ['a key one character short', { authorization: `Bearer ${billingKey.slice(0, -1)}` }, 'malformed'],
    ['two credentials', { authorization: `Bearer ${billingKey}`, 'x-agent-key': readerKey }, 'ambiguous'],
    ['an X-Agent-Key of 8 KB', { 'x-agent-key': `agk_${'a'.repeat(8 * 1024)}` }, 'malformed'],
  ];
  for (const [what, headers, reason] of hostile) {
    test(`${what}: 401 (${reason}) with invalid_token, the credential never echoed, nothing forwarded`, async () => {
      const before = upstream.received.length;
      const counted = await failures(reason);
      const reply = await send(`${gw.url}/anything`, { headers });
      assert.equal(reply.status, 401, reply.text);
      assert.match(String(reply.headers['www-authenticate']), /error="invalid_token"/);
      assert.equal(envelopeOf(reply).reason, reason);
      for (const value of Object.values(headers)) {
        const secret = value.replace(/^Bearer /, '');
        if (secret.length >= 8) assert.ok(!reply.text.includes(secret.slice(4, 20)), 'the envelope never quotes the credential');
      }
      assert.equal(upstream.received.length, before);
      assert.equal(await failures(reason), counted + 1);
    });
  }

  test('an agent key anywhere else (another header, another scheme, the query, URL-encoded) is refused, never forwarded', async () => {
    const before = upstream.received.length;
    const strays: Record<string, string>[] = [
      { authorization: billingKey },
      { authorization: `Token ${billingKey}` },
      { 'x-api-key': billingKey },
      { 'x-agent-key': readerKey, authorization: `agk ${billingKey}` },
    ];
    for (const headers of strays) {
      const reply = await send(`${gw.url}/anything`, { headers });
      assert.equal(reply.status, 401, JSON.stringify(Object.keys(headers)));
      assert.match(envelopeOf(reply).detail, /An agent key was sent in the .* header/);
    }
    for (const query of [`?api_key=${billingKey}`, `?k=${billingKey.replace('_', '%5F')}`]) {
      const reply = await send(`${gw.url}/anything${query}`, { headers: bearer(readerKey) });
      assert.equal(reply.status, 401);
      assert.match(envelopeOf(reply).detail, /in the URL/);
    }
    assert.equal(upstream.received.length, before);
  });

  test('a request refused at the door with a large body unread closes its connection instead of swallowing the body', async () => {
    const raw = await rawExchange(gw.url, 'POST /anything HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\nContent-Type: application/json\r\n\r\n{"start":', 5000);
    const reply = parseRawResponse(raw);
    assert.equal(reply.status, 401);
    assert.equal(reply.headers.connection, 'close');
  });

  test('a bearer of 100 KB is refused before it is read (431), and nothing is forwarded', async () => {
    const before = upstream.received.length;
    const raw = await rawExchange(gw.url, `GET /anything HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer agk_${'A'.repeat(100 * 1024)}\r\nConnection: close\r\n\r\n`);
    assert.equal(parseRawResponse(raw).status, 431);
    assert.equal(upstream.received.length, before);
  });

  test('a scope the agent lacks: 403 FORBIDDEN from the gateway, naming the scope; the upstream never hears of it', async () => {
    const before = upstream.received.length;
    const counted = await failures('missing_scope');
    const reply = await send(`${gw.url}/orders`, { method: 'POST', body: '{}', headers: { ...bearer(readerKey), 'content-type': 'application/json' } });
    assert.equal(reply.status, 403);
    const envelope = envelopeOf(reply);
    assert.equal(envelope.code, 'FORBIDDEN');
    assert.equal(envelope.upstream_status, null);
    assert.equal(envelope.retryable, false);
    assert.match(envelope.detail, /'reader' lacks scope 'orders:write'/);
    assert.deepEqual(envelope.missing_scopes, ['orders:write']);
    assert.equal(upstream.received.length, before);
    assert.equal(await failures('missing_scope'), counted + 1);
    const allowed = await send(`${gw.url}/orders`, { method: 'POST', body: '{}', headers: { ...bearer(billingKey), 'content-type': 'application/json' } });
    assert.equal(allowed.status, 201);
  });

  test('a new x-agent-id per request does not escape the budget: it belongs to the verified agent', async () => {
    const limits: string[] = [];
    let status = 0;
    for (let i = 0; i < 11 && status !== 429; i++) {
      const reply = await send(`${gw.url}/spend`, { headers: { ...bearer(readerKey), 'x-agent-id': `fresh-identity-${i}` } });
      status = reply.status;
      limits.push(String(reply.headers['x-ratelimit-limit']));
    }
    assert.equal(status, 429, 'the reader ran out of its 10 units whatever it called itself');
    assert.ok(limits.every((l) => l === '10'));
  });

  test("copying another agent's id spends, reads and blocks nothing of its: budgets and idempotency records are the verified agent's", async () => {
    const budgetOf = async (key: string) => (await send(`${gw.url}/_agentgate/budget`, { headers: bearer(key) })).json();
    const billingBefore = (await budgetOf(billingKey)).budgets[0];
    assert.equal(billingBefore.capacity, 50, "the budget endpoint shows the agent's own capacity");
    // The reader pretends to be billing-bot in every header an identify config would have believed.
    await send(`${gw.url}/spend`, { headers: { ...bearer(readerKey), 'x-agent-id': 'billing-bot' } });
    const billingAfter = (await budgetOf(billingKey)).budgets[0];
    assert.equal(billingAfter.remaining, billingBefore.remaining, "billing-bot's budget is untouched");
    // The same Idempotency-Key from two agents names two records: the second agent's write is not a replay of the first's.
    const write = (key: string) =>
      send(`${gw.url}/orders`, { method: 'POST', body: '{"n":1}', headers: { ...bearer(key), 'content-type': 'application/json', 'idempotency-key': 'shared-key-1', 'x-agent-id': 'billing-bot' } });
    const first = await write(billingKey);
    assert.equal(first.status, 201);
    const second = await write(readerKey);
    assert.equal(second.status, 403, 'the reader may not write at all: its copy of the key is no way in');
    const replay = await write(billingKey);
    assert.equal(replay.headers['idempotent-replayed'], 'true', "billing-bot's own retry is a replay");
  });

  test('per-agent budgets: the agent\'s own capacity is on its headers', async () => {
    const reply = await send(`${gw.url}/headers-check`, { headers: bearer(billingKey) });
    assert.equal(reply.headers['x-ratelimit-limit'], '50');
    assert.match(String(reply.headers['ratelimit-policy']), /"agents";q=50;/);
  });

  test('GET /_agentgate/whoami: the verified agent, its scopes and how it authenticated; without a credential, 401', async () => {
    const me = await send(`${gw.url}/_agentgate/whoami`, { headers: bearer(billingKey) });
    assert.equal(me.status, 200);
    assert.deepEqual(me.json(), {
      authenticated: true,
      agent: 'billing-bot',
      scopes: ['orders:read', 'orders:write'],
      authenticated_with: 'api_key',
      expires_at: null,
      consumer: 'agent:billing-bot',
    });
    assert.equal((await send(`${gw.url}/_agentgate/whoami`)).status, 401);
  });

  test('logs name the agent, never its key', async () => {
    await send(`${gw.url}/orders/9`, { headers: bearer(billingKey) });
    const lines = gw.logs.lines.filter((l) => l.path === '/orders/9');
    assert.ok(lines.some((l) => l.consumer === 'agent:billing-bot'), JSON.stringify(lines));
    const everything = JSON.stringify(gw.logs.lines) + (await metrics());
    for (const key of [billingKey, readerKey]) {
      assert.ok(!everything.includes(key.slice(4, 24)), 'no key in logs or metrics');
      assert.ok(!everything.includes(keyHash(key).slice(7, 30)), 'nor its hash');
    }
  });

  test('rotation without a restart: a key added works, a key removed stops working; a broken file keeps the last good one', async () => {
    const file = path.join(path.dirname(gw.configFile), 'agents.yaml');
    const rotated = newKey();
    const reloads = async (result: string) => Number(new RegExp(`agentgate_agents_reloads_total\\{result="${result}"\\} (\\d+)`).exec(await metrics())?.[1] ?? 0);
    const successes = await reloads('success');
    // Step 1: the new key beside the old one.
    await writeFile(file, (await readFile(file, 'utf8')).replace(`keys: ['${keyHash(readerKey)}']`, `keys: ['${keyHash(readerKey)}', '${keyHash(rotated)}']`));
    // The reader spent its budget above: a key that works is answered 429, one that does not, 401.
    const works = async (key: string) => (await send(`${gw.url}/orders/1`, { headers: bearer(key) })).status !== 401;
    await until(() => works(rotated), 5000, () => 'the new key works');
    assert.ok(await works(readerKey), 'the old key still works meanwhile');
    // Step 2: the old key removed.
    await writeFile(file, (await readFile(file, 'utf8')).replace(`'${keyHash(readerKey)}', `, ''));
    await until(async () => !(await works(readerKey)), 5000, () => 'the old key stops working');
    assert.ok(await works(rotated));
    assert.ok((await reloads('success')) >= successes + 2);
    // A broken edit: refused, counted and logged; the agents in force keep working.
    const errors = await reloads('error');
    await writeFile(file, (await readFile(file, 'utf8')) + `  - id: reader\n    keys: []\n`);
    await until(async () => (await reloads('error')) === errors + 1, 5000, () => 'the broken file is counted');
    assert.ok(await works(rotated), 'the last good file serves');
    const logged = gw.logs.lines.find((l) => l.msg === 'agents file reload failed; the previous agents keep their keys');
    assert.match(JSON.stringify(logged?.problems), /duplicate agent id 'reader'/);
  });
});

describe('anonymous: identify', () => {
  let upstream: TestUpstream;
  let gw: TestGateway;

  before(async () => {
    upstream = await startUpstream({ '*': (_req, res) => json(res, 200, { ok: true }) });
    const consumers = 'consumers:\n  authenticate: {api_keys: {file: agents.yaml}}\n  anonymous: identify\n  identify: [{header: x-agent-id}]\n';
    gw = await startTestGateway(config(upstream.url, consumers), { files: { 'agents.yaml': AGENTS } });
  });
  after(async () => {
    await gw.close();
    await upstream.close();
  });

  test('a request without a credential is identified as before (self-asserted); one with a bad credential is still refused', async () => {
    const anonymous = await send(`${gw.url}/_agentgate/whoami`, { headers: { 'x-agent-id': 'legacy-bot' } });
    assert.equal(anonymous.status, 200);
    assert.equal(anonymous.json().authenticated, false);
    assert.equal(anonymous.json().identified_by, 'header:x-agent-id');
    assert.equal((await send(`${gw.url}/anything`, { headers: { 'x-agent-id': 'legacy-bot' } })).status, 200);
    assert.equal((await send(`${gw.url}/anything`, { headers: bearer(newKey()) })).status, 401);
  });

  test('a scoped route asks an anonymous caller for a credential (401), and the upstream never hears of it', async () => {
    const before = upstream.received.length;
    const reply = await send(`${gw.url}/orders/1`, { headers: { 'x-agent-id': 'legacy-bot' } });
    assert.equal(reply.status, 401);
    assert.deepEqual(envelopeOf(reply).required_scopes, ['orders:read']);
    assert.equal(upstream.received.length, before);
  });
});

describe('the agents file is checked like a config', () => {
  const problemsOf = async (agents: string, extra = ''): Promise<string> => {
    const tmp = await tempDir();
    try {
      await writeFile(path.join(tmp.dir, 'agents.yaml'), agents);
      await writeFile(path.join(tmp.dir, 'gateway.yaml'), config('http://127.0.0.1:1') + extra);
      await loadConfigFile(path.join(tmp.dir, 'gateway.yaml'));
      return 'OK';
    } catch (err) {
      assert.ok(err instanceof ConfigError, String(err));
      return err.message;
    }
  };
  const hash = keyHash(newKey());
  const pasted = newKey();

  const cases: [string, string, RegExp][] = [
    ['a duplicate agent id', agentsFile(`  - {id: a, keys: []}\n  - {id: a, keys: []}\n`), /agents\.yaml:3:\d+: agents\[1\]\.id: duplicate agent id 'a'/],
    ['a key hash listed twice', agentsFile(`  - {id: a, keys: ['${hash}']}\n  - {id: b, keys: ['${hash}']}\n`), /agents\[1\]\.keys\[0\]: this key hash is already listed for agent 'a'/],
    ['a malformed hash', agentsFile(`  - {id: a, keys: ['sha256:abc']}\n`), /agents\[0\]\.keys\[0\]: .*must match/],
    ['a raw key instead of its hash', agentsFile(`  - {id: a, keys: ['${pasted}']}\n`), /agents\[0\]\.keys\[0\]: 'agk_<redacted/],
    ['an override of an unknown policy', agentsFile(`  - {id: a, rate_limits: {agentz: {capacity: 5}}}\n`), /agents\[0\]\.rate_limits\.agentz: unknown rate-limit policy 'agentz'/],
    ['an unknown key', agentsFile(`  - {id: a, scope: [x]}\n`), /agents\[0\]\.scope: unknown key 'scope'/],
    ['a key pasted as a mapping key', agentsFile(`  - id: a\n    ${pasted}: x\n`), /agents\[0\]\.agk_<redacted/],
    ['a key pasted as an id', agentsFile(`  - {id: '${pasted}'}\n`), /agents\[0\]\.id: this id is an agent key/],
  ];
  for (const [what, text, expected] of cases) {
    test(`${what} is a problem with file, line and key path`, async () => {
      const message = await problemsOf(text);
      assert.match(message, expected);
      assert.ok(!message.includes(pasted.slice(4)), 'a raw key is never quoted back');
    });
  }

  test('a JWKS refresh floor below 1s, a clock skew above 5m and a JWKS file that is no key set are config problems', async () => {
    const jwt = "  authenticate: {jwt: {jwks_url: 'https://idp.example/jwks', issuer: i, audience: a, jwks_min_refresh: 0ms, clock_skew: 3650d}}\n";
    const tmp = await tempDir();
    try {
      await writeFile(path.join(tmp.dir, 'gateway.yaml'), config('http://127.0.0.1:1', `consumers:\n${jwt}`));
      await assert.rejects(loadConfigFile(path.join(tmp.dir, 'gateway.yaml')), (err: Error) => {
        assert.match(err.message, /jwt\.jwks_min_refresh: must be at least 1s/);
        assert.match(err.message, /jwt\.clock_skew: must be at most 5m/);
        return true;
      });
      await writeFile(path.join(tmp.dir, 'jwks.json'), '{"keys": ');
      const fileJwt = '  authenticate: {jwt: {jwks_file: jwks.json, issuer: i, audience: a}}\n';
      await writeFile(path.join(tmp.dir, 'gateway.yaml'), config('http://127.0.0.1:1', `consumers:\n${fileJwt}`));
      await assert.rejects(loadConfigFile(path.join(tmp.dir, 'gateway.yaml')), /jwt\.jwks_file: .*jwks\.json is not JSON/);
    } finally {
      await tmp.remove();
    }
  });

  test('scopes on a route without consumers.authenticate are a config problem', async () => {
    const tmp = await tempDir();
    try {
      await writeFile(path.join(tmp.dir, 'gateway.yaml'), config('http://127.0.0.1:1', ''));
      await assert.rejects(loadConfigFile(path.join(tmp.dir, 'gateway.yaml')), /routes\[0\]\.scopes: scopes need consumers\.authenticate/);
    } finally {
      await tmp.remove();
    }
  });
});

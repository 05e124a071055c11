// Config hardening: rules between settings refused at load, injected headers that could never be sent, secrets from
// ${VAR} that must never be printed, and hostile files (deep nesting, duplicate keys, size) refused cheaply.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { validateHeaderValue } from 'node:http';
import path from 'node:path';
import pino from 'pino';
import { parseConfig, loadConfigFile, headerValueProblem, ConfigError, MAX_CONFIG_BYTES, MAX_NESTING_DEPTH, type ConfigProblem } from '../src/config/load.ts';
import { idempotencySettingsProblems, type IdempotencySettings } from '../src/policies/idempotency/schema.ts';
import { compileIdempotency } from '../src/policies/idempotency/policy.ts';
import { MemoryStore } from '../src/store/memory.ts';
import { GatewayMetrics } from '../src/observability/metrics.ts';
import { CLI, configYaml, startTestGateway, tempDir } from './helpers/gateway.ts';
import { GOOD, problemsOf, onlyProblem } from './helpers/config.ts';

const withRouteKey = (line: string) => GOOD.replace('    upstream: orders\n', `    upstream: orders\n    ${line}\n`);

// ---------- idempotency: ttl at least twice the lease, refused at load rather than stretched ----------

test('an idempotency ttl shorter than twice the lease is refused at its key, with the reason and the fix', () => {
  const p = onlyProblem(withRouteKey('idempotency: {required: true, ttl: 3s}'));
  assert.deepEqual({ line: p.line, column: p.column, keyPath: p.keyPath }, { line: 9, column: 35, keyPath: 'routes[0].idempotency.ttl' });
  assert.equal(
    p.message,
    "3s is shorter than twice the lease (10s): a record must outlive its claim's lease; set ttl to at least 20s or shorten lease",
  );
  // Twice the lease exactly is enough; the lease may be shortened instead.
  assert.doesNotThrow(() => parseConfig(withRouteKey('idempotency: {required: true, ttl: 20s}'), 'f.yaml', {}));
  assert.doesNotThrow(() => parseConfig(withRouteKey('idempotency: {required: true, ttl: 3s, lease: 1500ms}'), 'f.yaml', {}));
});

test('a lease too short to be renewed in time is refused (0s let concurrent duplicates both run)', () => {
  for (const lease of ['0s', '50ms']) {
    const problems = problemsOf(withRouteKey(`idempotency: {required: true, ttl: 1h, lease: ${lease}}`));
    assert.ok(problems.some((p) => p.keyPath === 'routes[0].idempotency.lease' && /too short/.test(p.message)), JSON.stringify(problems));
  }
  assert.doesNotThrow(() => parseConfig(withRouteKey('idempotency: {required: true, ttl: 1h, lease: 100ms}'), 'f.yaml', {}));
});

test('the ttl rule holds for defaults.idempotency and for a route whose ttl is the default', () => {
  const d = onlyProblem(`${GOOD}defaults:\n  idempotency: {required: true, ttl: 15s, lease: 8s}\n`);
  assert.deepEqual({ line: d.line, keyPath: d.keyPath }, { line: 10, keyPath: 'defaults.idempotency.ttl' });
  assert.match(d.message, /^15s is shorter than twice the lease \(8s\).*at least 16s/);
  // A route's own mapping gets ttl 24h from the schema: a lease of 13h needs 26h. Named at the mapping, whose line has the lease.
  const r = onlyProblem(withRouteKey('idempotency: {required: true, lease: 13h}'));
  assert.deepEqual({ line: r.line, keyPath: r.keyPath }, { line: 9, keyPath: 'routes[0].idempotency.ttl' });
  assert.match(r.message, /^24h is shorter than twice the lease \(13h\).*at least 26h/);
});

test('the rule is the policy\'s own, and the policy then uses ttl exactly as configured', () => {
  assert.deepEqual(idempotencySettingsProblems({ ttl: '1m', lease: '10s' }), []);
  assert.deepEqual(idempotencySettingsProblems(false), []);
  assert.deepEqual(idempotencySettingsProblems({ ttl: 'forever', lease: '10s' }), [], 'a malformed duration is the schema\'s to report');
  assert.deepEqual(idempotencySettingsProblems({ ttl: '250ms', lease: '200ms' }).map((p) => p.key), ['ttl']);
  const settings = parseConfig(withRouteKey('idempotency: {required: true, ttl: 25s}'), 'f.yaml', {}).routes[0]!.idempotency as IdempotencySettings;
  const deps = { store: new MemoryStore({ maxEntries: 10, maxBytes: 1 << 20 }), keyPrefix: 't', metrics: new GatewayMetrics(), logger: pino({ level: 'silent' }), requestBodyIdleMs: 10_000 };
  assert.equal(compileIdempotency(settings, 'r', deps)!.settings.ttlMs, 25_000);
  // No silent stretching (it used to become 2 × lease): what the operator wrote is what runs.
  assert.equal(compileIdempotency({ ...settings, ttl: '3s' }, 'r', deps)!.settings.ttlMs, 3_000);
});

// ---------- injected upstream headers ----------

const withHeaders = (headers: string) => GOOD.replace('url: http://127.0.0.1:3000', `url: http://127.0.0.1:3000\n    headers:\n${headers}`);

test('an injected header value with a line break (a secret read from a file) is refused at load, without the value', () => {
  const token = 'tok_live_4f3c2b1a0z9y8x7w\n';
  const p = onlyProblem(withHeaders("      Authorization: 'Bearer ${LEGACY_TOKEN}'"), { LEGACY_TOKEN: token });
  assert.deepEqual({ line: p.line, keyPath: p.keyPath }, { line: 6, keyPath: 'upstreams.orders.headers.Authorization' });
  assert.match(p.message, /contains a line break.*a secret read from a file often ends with one: strip it/);
  assert.ok(!p.message.includes('tok_live'), p.message);
  // CR, NUL and DEL likewise; a character Node cannot send as Latin-1 too. Tab is allowed, as is any byte 0x80-0xFF.
  assert.match(onlyProblem(withHeaders('      X-Key: "abc\\r"')).message, /line break/);
  assert.match(onlyProblem(withHeaders('      X-Key: "a\\0b"')).message, /control character \(U\+0000\)/);
  assert.match(onlyProblem(withHeaders('      X-Key: "a\\x7Fb"')).message, /control character \(U\+007F\)/);
  assert.match(onlyProblem(withHeaders('      X-Key: "caf\\u20AC"')).message, /beyond U\+00FF/);
  assert.doesNotThrow(() => parseConfig(withHeaders('      X-Key: "a\\tb caf\\xE9"'), 'f.yaml', {}));
});

test('a header value is refused exactly when Node\'s http module would refuse it', () => {
  const samples = [...Array.from({ length: 0x300 }, (_, i) => String.fromCharCode(i)), '\u20ac', '\ud83d\ude00', '\u2028'];
  for (const char of samples) {
    let nodeAccepts = true;
    try {
      validateHeaderValue('x-test', `a${char}b`);
    } catch {
      nodeAccepts = false;
    }
    assert.equal(headerValueProblem(`a${char}b`) === undefined, nodeAccepts, `U+${char.codePointAt(0)!.toString(16)}`);
  }
});

test('headers the gateway controls cannot be injected, and a header is given once whatever its case', () => {
  for (const name of ['Host', 'Content-Length', 'transfer-encoding', 'Connection', 'Keep-Alive', 'TE', 'Upgrade', 'Trailer', 'Expect', 'Proxy-Connection']) {
    const p = onlyProblem(withHeaders(`      ${name}: x`));
    assert.equal(p.keyPath, `upstreams.orders.headers.${name}`);
    assert.match(p.message, new RegExp(`^${name.toLowerCase()} cannot be injected: the gateway itself controls`));
  }
  const dup = onlyProblem(withHeaders("      Authorization: 'Bearer a'\n      authorization: 'Bearer b'"));
  assert.equal(dup.keyPath, 'upstreams.orders.headers.authorization');
  assert.match(dup.message, /the same header as 'Authorization' \(header names are case-insensitive\)/);
  assert.doesNotThrow(() => parseConfig(withHeaders("      Authorization: 'Bearer a'\n      X-Tenant: acme"), 'f.yaml', {}));
});

test('an upstream or Redis URL that matches its pattern but cannot be parsed is refused at load, not at start', () => {
  const p = onlyProblem(GOOD.replace('http://127.0.0.1:3000', 'http://legacy.internal:99999'));
  assert.equal(p.keyPath, 'upstreams.orders.url');
  assert.match(p.message, /is not a URL that can be parsed/);
  const r = onlyProblem(GOOD.replace('version: 1\n', "version: 1\nstore: {type: redis, url: 'redis://:pw@cache:70000'}\n"));
  assert.equal(r.keyPath, 'store.url');
  assert.ok(!r.message.includes('pw@'), r.message);
});

// ---------- values from the environment are never printed ----------

/** Realistic secrets: a password inside a Redis URL, a token from a file (trailing newline), a key with a quote and a backslash. */
const SECRETS = {
  REDIS_URL: 'redis//:Zq8-s3cr3tPassw0rd@cache.internal:6379/0', // "redis//" misses its colon: fails ^rediss?://
  LEGACY_TOKEN: 'tok_live_4f3c2b1a0z9y8x7w\n',
  PARTNER_KEY: 'k3y"with\\quote-7Hx2Qp',
};

/** Every form a message could carry a secret in: as is, JSON-escaped, URL-encoded, and its core (a truncated quote). */
function assertNoSecret(text: string, where: string): void {
  for (const secret of Object.values(SECRETS)) {
    const core = secret.trim().slice(-14);
    for (const form of [secret, secret.trim(), JSON.stringify(secret).slice(1, -1), encodeURIComponent(secret), core, JSON.stringify(core).slice(1, -1), encodeURIComponent(core)]) {
      assert.ok(!text.includes(form), `${where} contains a secret (${JSON.stringify(form)}):\n${text}`);
    }
  }
}

/** One config that gets a problem wherever a secret sits: a URL failing its pattern, a header with a newline, a value quoted by a cross-check. */
const LEAKY = configYaml(`store:
  type: redis
  url: \${REDIS_URL}
upstreams:
  orders:
    url: http://127.0.0.1:3000
    headers:
      Authorization: 'Bearer \${LEGACY_TOKEN}'
      X-Partner-Key: \${PARTNER_KEY}
partner: &key \${PARTNER_KEY}
routes:
  - name: create
    match: {path: /orders}
    upstream: \${PARTNER_KEY}
  - name: other
    match: {path: /other}
    upstream: *key
`);

test('a problem at a substituted key says which variable, never its value, and every message is scrubbed of every value', () => {
  const problems = problemsOf(LEAKY, SECRETS);
  assertNoSecret(problems.map((p) => `${p.keyPath}: ${p.message}`).join('\n'), 'the problems');
  const byPath = Object.fromEntries(problems.map((p) => [p.keyPath, p.message]));
  assert.match(byPath['store.url']!, /^the value from \$\{REDIS_URL\} \(not shown\) is not allowed here: must match/);
  assert.match(byPath['upstreams.orders.headers.Authorization']!, /contains a line break/);
  assert.match(byPath['routes[0].upstream']!, /^unknown upstream '\$\{PARTNER_KEY\}'/);
  // An alias carries the value to a key that was not substituted: scrubbed all the same.
  assert.match(byPath['routes[1].upstream']!, /^unknown upstream '\$\{PARTNER_KEY\}'/);
  // A value too long to quote whole is scrubbed before it is shortened, not after.
  const longSecret = `svc-${'Zx9'.repeat(30)}`;
  const cut = problemsOf(`${GOOD}x: &l '\${LONG}'\nlogging: {level: *l}\n`, { LONG: longSecret });
  assert.equal(cut.find((p) => p.keyPath === 'logging.level')?.message, 'must be one of fatal, error, warn, info, debug, trace, silent, got \'${LONG}\'');
  const named = onlyProblem(GOOD.replace('    upstream: orders\n', '    upstream: ${LONG}\n'), { LONG: longSecret });
  assert.equal(named.message, "unknown upstream '${LONG}' (defined: orders)");
  // A value that is only part of a scalar is not shown either.
  const long = onlyProblem(GOOD.replace('version: 1\n', "version: 1\nstore: {type: redis, url: 'tcp://a-long-prefix-that-pushes-the-value-past-the-quoted-length/${PARTNER_KEY}'}\n"), SECRETS);
  assert.match(long.message, /^the value from \$\{PARTNER_KEY\} \(not shown\)/);
});

test('a problem message stays on one line: control characters in a quoted value are escaped', () => {
  const err = (() => {
    try {
      parseConfig(GOOD.replace('version: 1\n', 'version: 1\nlogging: {level: "in\\nfo"}\n'), 'f.yaml', {});
    } catch (e) {
      return e as ConfigError;
    }
    assert.fail('accepted');
  })();
  assert.equal(err.problems.length, 1);
  assert.equal(err.message.split('\n').length, 1, err.message);
  assert.match(err.message, /got 'in\\nfo'/);
});

test('agentgate validate prints no substituted value, in any form', async () => {
  const tmp = await tempDir('config-hardening');
  try {
    const file = path.join(tmp.dir, 'gateway.yaml');
    await writeFile(file, LEAKY);
    const run = spawnSync(process.execPath, [CLI, 'validate', '--config', file], { env: { ...process.env, ...SECRETS }, encoding: 'utf8' });
    assert.equal(run.status, 1, run.stderr);
    assertNoSecret(run.stdout + run.stderr, 'agentgate validate');
    assert.match(run.stderr, /store\.url: the value from \$\{REDIS_URL\} \(not shown\)/);
    assert.match(run.stderr, /upstreams\.orders\.headers\.Authorization: contains a line break/);
  } finally {
    await tmp.remove();
  }
});

test('a reload that fails logs its problems without any substituted value', async () => {
  const tg = await startTestGateway(configYaml('upstreams:\n  orders: {url: "http://127.0.0.1:3000"}\nroutes:\n  - {name: r, match: {path: /x}, upstream: orders}\n'), {
    env: { ...process.env, ...SECRETS },
  });
  try {
    await writeFile(tg.configFile, LEAKY);
    assert.equal(await tg.gateway.reload('test'), false);
    const failed = tg.logs.lines.find((l) => l.msg === 'config reload failed; the previous config keeps serving');
    assert.ok(failed, tg.logs.text);
    assertNoSecret(tg.logs.text, 'the log');
    assert.ok((failed.problems as string[]).some((p) => /store\.url: the value from \$\{REDIS_URL\} \(not shown\)/.test(p)), JSON.stringify(failed));
  } finally {
    await tg.close();
  }
});

// ---------- hostile files: refused cheaply ----------

test('nesting deeper than the limit is refused with its line, in flow and block style alike', () => {
  const deep = MAX_NESTING_DEPTH + 10;
  const cases = {
    'flow lists': `a: ${'['.repeat(deep)}${']'.repeat(deep)}\n`,
    'flow mappings': `a: ${'{a: '.repeat(deep)}1${'}'.repeat(deep)}\n`,
    'block mappings': Array.from({ length: deep }, (_, i) => `${' '.repeat(i)}a:\n`).join('') + `${' '.repeat(deep)}x\n`,
    'block lists on one line': `a:\n${'- '.repeat(deep)}x\n`,
    'block lists': 'a:\n' + Array.from({ length: deep }, (_, i) => `${' '.repeat(i)}-\n`).join('') + `${' '.repeat(deep)}x\n`,
  };
  for (const [name, text] of Object.entries(cases)) {
    const p = onlyProblem(text);
    assert.match(p.message, new RegExp(`^nested more than ${MAX_NESTING_DEPTH} levels deep`), name);
    assert.ok(p.line >= 1, `${name}: line ${p.line}`);
  }
  assert.equal(onlyProblem(cases['block mappings']).line, MAX_NESTING_DEPTH + 1);
  // Brackets inside quoted and plain scalars and comments are no nesting.
  const brackets = '['.repeat(100) + '{'.repeat(100);
  const scalars = withHeaders(`      X-Quoted: '${brackets}'   # ${brackets}\n      X-Plain: a${brackets}\n      # ${brackets}`);
  assert.equal(parseConfig(scalars, 'f.yaml', {}).upstreams.orders!.headers!['X-Plain'], `a${brackets}`);
});

test('refusing a deeply nested 400 KB file stays cheap (measured in a child process)', () => {
  // The child warms up first (module loading and ajv's compiled schema are not what is measured), then compares peak RSS.
  const child = `
    import { parseConfig } from ${JSON.stringify(path.resolve(import.meta.dirname, '../src/config/load.ts'))};
    const attempt = (text) => { try { parseConfig(text, 'f.yaml', {}); return 'accepted'; } catch (err) { return err.message; } };
    attempt('version: 1\\n');
    const before = process.resourceUsage().maxRSS;
    const n = 200000;
    const messages = ['a: ' + '['.repeat(n) + ']'.repeat(n) + '\\n', 'a:\\n' + '- '.repeat(n) + 'x\\n'].map(attempt);
    console.log(JSON.stringify({ peakGrowthKB: process.resourceUsage().maxRSS - before, messages }));
  `;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', child], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  const result = JSON.parse(run.stdout) as { peakGrowthKB: number; messages: string[] };
  // Before the bound these took 430 MB and 330 MB of peak RSS to refuse; now next to nothing. Generous: machines are noisy.
  assert.ok(result.peakGrowthKB < 64 * 1024, `peak RSS grew by ${result.peakGrowthKB} KB`);
  for (const message of result.messages) assert.match(message, /nested more than 64 levels deep/);
});

test('a key given twice is refused, every duplicate named, and a mapping of many keys is checked in linear time', () => {
  // yaml's own check compares every key with every other: 40,000 keys took 12 s (38 s on a busy machine); now about 2.5 s.
  let many = `${GOOD}extra:\n`;
  for (let i = 0; i < 40_000; i++) many += ` k${i}: 1\n`;
  const started = performance.now();
  assert.match(onlyProblem(many).message, /unknown key 'extra'/);
  assert.ok(performance.now() - started < 8_000, `took ${Math.round(performance.now() - started)} ms`);
  const problems = problemsOf(`${GOOD}version: 1\nupstreams:\n  x: {url: http://x}\n`);
  assert.deepEqual(
    problems.map((p) => [p.line, p.keyPath, p.message]),
    [
      [9, 'version', "duplicate key 'version' (first on line 1): give each key once"],
      [10, 'upstreams', "duplicate key 'upstreams' (first on line 2): give each key once"],
    ],
  );
  const nested = onlyProblem(GOOD.replace('    upstream: orders\n', '    upstream: orders\n    upstream: orders\n'));
  assert.equal(nested.keyPath, 'routes[0].upstream');
});

test(`a file larger than ${MAX_CONFIG_BYTES / 1024} KiB is refused before parsing; a config of a thousand routes fits`, async () => {
  const tmp = await tempDir('config-hardening');
  try {
    let routes = 'routes:\n';
    for (let i = 0; i < 1000; i++) {
      routes += `  - name: route-${i}   # what route ${i} is for\n    match: {methods: [POST], path: '/v1/resources-${i}/{id}'}\n    upstream: orders\n    cost: 5\n    idempotency: {required: true, ttl: 24h}\n`;
    }
    const big = path.join(tmp.dir, 'big.yaml');
    await writeFile(big, GOOD.slice(0, GOOD.indexOf('routes:')) + routes);
    assert.equal((await loadConfigFile(big, {})).config.routes.length, 1000);
    const huge = path.join(tmp.dir, 'huge.yaml');
    await writeFile(huge, `${GOOD}# ${'x'.repeat(MAX_CONFIG_BYTES)}\n`);
    await assert.rejects(loadConfigFile(huge, {}), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, new RegExp(`a config may be at most ${MAX_CONFIG_BYTES}`));
      return true;
    });
    assert.ok(MAX_CONFIG_BYTES < 1024 * 1024, 'smaller than the 1 MiB that let a file of tiny nodes take 600 MB');
  } finally {
    await tmp.remove();
  }
});

test('server.trusted_proxies takes IP addresses and CIDR ranges, and names an entry that is neither', async () => {
  const base = (entries: string) =>
    `version: 1\nserver: {trusted_proxies: [${entries}]}\nupstreams: {api: {url: 'http://127.0.0.1:1'}}\nroutes: [{name: all, match: {path: /*}, upstream: api}]\n`;
  assert.doesNotThrow(() => parseConfig(base("'10.0.0.0/8', '192.0.2.7', 'fd00::/8', '::1'"), 'gw.yaml'));
  for (const bad of ['999.1.1.1', '10.0.0.0/33', 'fd00::/129', '1.2.3', '::ffff::1']) {
    assert.throws(
      () => parseConfig(base(`'${bad}'`), 'gw.yaml'),
      (err: Error) => err.message.includes('server.trusted_proxies[0]') && err.message.includes('not an IP address or a CIDR range'),
      bad,
    );
  }
});

test('a secret written in the file itself is never quoted by a config error: the admin token, a webhook secret, an injected header', () => {
  const problems = (yaml: string) => {
    try {
      parseConfig(yaml, 'f.yaml', {});
    } catch (err) {
      return (err as ConfigError).problems.map((p) => `${p.keyPath}: ${p.message}`).join('\n');
    }
    return assert.fail('the config was accepted');
  };
  const base = "version: 1\nupstreams: {api: {url: 'http://127.0.0.1:9', headers: {X-Key: 17}}}\n";
  const shown = problems(`${base}server: {admin_token: tooshort1}\nroutes:\n  - name: a\n    match: {path: /a}\n    upstream: api\n    approval: {by: human, notify: {webhook: 'http://h.example', secret: tooshort2}}\n`);
  assert.match(shown, /admin_token: must NOT have fewer than 16 characters, got a value that is not shown \(a secret\)/);
  assert.match(shown, /secret: must NOT have fewer than 16 characters, got a value that is not shown/);
  assert.match(shown, /X-Key: must be a string, got a value that is not shown/);
  for (const secret of ['tooshort1', 'tooshort2', '17']) assert.ok(!shown.includes(secret), `${secret} in: ${shown}`);
});

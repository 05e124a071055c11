// Config loading: defaults from the schema, and a precise file:line:key message for every kind of bad input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseConfig, ConfigError, type ConfigProblem } from '../src/config/load.ts';
import { renderSchema, SCHEMA_FILE } from '../scripts/write-schema.ts';
import { GOOD, problemsOf, onlyProblem } from './helpers/config.ts';

test('a minimal config gets every default from the schema', () => {
  const config = parseConfig(GOOD, 'f.yaml', {});
  assert.equal(config.server.listen, '0.0.0.0:8080');
  assert.equal(config.server.admin_listen, '127.0.0.1:9090');
  assert.equal(config.server.shutdown_timeout, '10s');
  assert.equal(config.server.limits.max_header_bytes, '16kb');
  assert.equal(config.store.type, 'memory');
  assert.equal(config.store.memory.max_entries, 100000);
  assert.deepEqual(config.consumers.identify, [{ header: 'x-agent-id' }, { header: 'authorization' }, { ip: true }]);
  assert.equal(config.upstreams.orders!.timeout, '10s');
  assert.equal(config.upstreams.orders!.max_sockets, 256);
  assert.equal(config.logging.level, 'info');
});

test('the shipped config and the example config are valid', () => {
  for (const file of ['config/gateway.yaml']) {
    assert.doesNotThrow(() => parseConfig(readFileSync(new URL(`../${file}`, import.meta.url), 'utf8'), file, {}));
  }
});

test('the shipped JSON Schema is exactly what the TypeBox schema renders', () => {
  assert.equal(readFileSync(SCHEMA_FILE, 'utf8'), renderSchema(), 'schema/gateway.schema.json is stale: run npm run build');
});

test('an unknown key names its line and path, with a suggestion for a typo', () => {
  const p = onlyProblem(GOOD.replace("    upstream: orders\n", "    upstream: orders\n    timout: 5s\n"));
  assert.deepEqual({ line: p.line, column: p.column, keyPath: p.keyPath }, { line: 9, column: 5, keyPath: 'routes[0].timout' });
  assert.match(p.message, /unknown key 'timout' \(did you mean 'timeout'\?\)/);
});

test('a wrong type names the expected and the actual type', () => {
  const p = onlyProblem(GOOD.replace('version: 1\n', 'version: 1\nstore:\n  memory:\n    max_entries: lots\n'));
  assert.equal(p.keyPath, 'store.memory.max_entries');
  assert.equal(p.line, 4);
  assert.match(p.message, /must be an integer, got 'lots'/);
});

test('more than one worker needs the Redis store, and the problem names server.workers and its line', () => {
  for (const workers of ['2', 'auto']) {
    const p = onlyProblem(GOOD.replace('version: 1\n', `version: 1\nserver:\n  workers: ${workers}\n`));
    assert.deepEqual({ line: p.line, keyPath: p.keyPath }, { line: 3, keyPath: 'server.workers' });
    assert.match(p.message, /needs store type redis/);
  }
  const redis = GOOD.replace('version: 1\n', 'version: 1\nserver:\n  workers: 2\nstore:\n  type: redis\n  url: redis://127.0.0.1:6379\n');
  assert.equal(parseConfig(redis, 'f.yaml', {}).server.workers, 2);
  assert.equal(parseConfig(GOOD, 'f.yaml', {}).server.workers, 1);
  assert.match(onlyProblem(redis.replace('workers: 2', 'workers: 0')).message, /a whole number from 1 to 64, or auto .*got number 0/);
});

test('a bad duration says what a duration looks like', () => {
  const p = onlyProblem(GOOD.replace('url: http://127.0.0.1:3000', 'url: http://127.0.0.1:3000\n    timeout: 10 seconds'));
  assert.equal(p.keyPath, 'upstreams.orders.timeout');
  assert.equal(p.line, 5);
  assert.match(p.message, /must be a duration with a unit such as 250ms, 10s, 5m, 24h, got '10 seconds'/);
});

test('a method outside the allowed set lists the allowed ones once', () => {
  const p = onlyProblem(GOOD.replace('methods: [GET]', 'methods: [GET, FETCH]'));
  assert.equal(p.keyPath, 'routes[0].match.methods[1]');
  assert.match(p.message, /must be one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, got 'FETCH'/);
});

test('a route pointing at an unknown upstream is named, with the likely intended one', () => {
  const p = onlyProblem(GOOD.replace('    upstream: orders', '    upstream: ordres'));
  assert.deepEqual({ line: p.line, keyPath: p.keyPath }, { line: 8, keyPath: 'routes[0].upstream' });
  assert.match(p.message, /unknown upstream 'ordres' \(did you mean 'orders'\?\)/);
});

test('duplicate route names point at the second one', () => {
  const p = onlyProblem(`${GOOD}  - name: get-order\n    match: {path: /x}\n    upstream: orders\n`);
  assert.deepEqual({ line: p.line, keyPath: p.keyPath }, { line: 9, keyPath: 'routes[1].name' });
  assert.match(p.message, /duplicate route name 'get-order' \(first used by routes\[0\]\)/);
});

test('a malformed path template is explained', () => {
  const p = onlyProblem(GOOD.replace("'/orders/{id}'", "'/orders/{id}x/*/more'"));
  assert.equal(p.keyPath, 'routes[0].match.path');
  assert.match(p.message, /segment '\{id\}x' of '\/orders\/\{id\}x\/\*\/more' is not allowed/);
});

test('every problem in a file is reported, not just the first', () => {
  const problems = problemsOf(GOOD.replace('version: 1', 'version: 2').replace('    upstream: orders', '    upstream: 42\n    colour: red'));
  assert.deepEqual(problems.map((p) => p.keyPath).sort(), ['routes[0].colour', 'routes[0].upstream', 'version']);
});

test('a missing required section is named', () => {
  const p = onlyProblem('version: 1\nupstreams:\n  a: {url: http://x}\n');
  assert.equal(p.keyPath, '');
  assert.match(p.message, /missing required key 'routes'/);
});

test('${NAME} is replaced from the environment; a missing variable is an error, never an empty string', () => {
  const yaml = GOOD.replace('http://127.0.0.1:3000', 'http://${API_HOST}:3000');
  assert.equal(parseConfig(yaml, 'f.yaml', { API_HOST: 'legacy.internal' }).upstreams.orders!.url, 'http://legacy.internal:3000');
  const p = onlyProblem(yaml, {});
  assert.deepEqual({ line: p.line, keyPath: p.keyPath }, { line: 4, keyPath: 'upstreams.orders.url' });
  assert.match(p.message, /environment variable API_HOST is not set/);
});

test('$${ stands for a literal ${', () => {
  const config = parseConfig(GOOD.replace('http://127.0.0.1:3000', () => 'http://127.0.0.1:3000/$${kept}'), 'f.yaml', {});
  assert.equal(config.upstreams.orders!.url, 'http://127.0.0.1:3000/${kept}');
});

test('text that is not YAML gets the first error with its position and a hint for unquoted braces', () => {
  const p = onlyProblem(GOOD.replace("path: '/orders/{id}'", 'path: /orders/{id}'));
  assert.equal(p.line, 7);
  assert.match(p.message, /not valid YAML: .*quote values that contain \{ \}/);
  const q = onlyProblem('version: 1\nroutes: [\n');
  assert.match(q.message, /not valid YAML/);
  assert.ok(q.line >= 2);
});

test('an empty file, a comment-only file and a scalar are refused with a clear message', () => {
  assert.match(onlyProblem('').message, /the file is empty/);
  assert.match(onlyProblem('# nothing here\n').message, /the file is empty/);
  assert.match(onlyProblem('just a string\n').message, /top level must be a mapping/);
});

test('a YAML bomb (billion laughs) is refused instead of expanded', () => {
  const bomb = [
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]',
    'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]',
    'd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]',
    'e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]',
    'f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]',
    'g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]',
    'h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]',
    'i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]',
  ].join('\n');
  const p = onlyProblem(bomb);
  assert.match(p.message, /cannot expand the YAML: .*alias/i);
});

test('store type redis needs a url or cluster nodes', () => {
  const p = onlyProblem(GOOD.replace('version: 1\n', 'version: 1\nstore: {type: redis}\n'));
  assert.equal(p.keyPath, 'store');
  assert.match(p.message, /needs either 'url'/);
});

test('an identify source must be exactly one of header or ip', () => {
  const p = onlyProblem(GOOD.replace('version: 1\n', 'version: 1\nconsumers:\n  identify: [{header: x-agent-id, ip: true}]\n'));
  assert.equal(p.keyPath, 'consumers.identify[0]');
  assert.match(p.message, /one source of caller identity/);
});

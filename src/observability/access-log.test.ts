// The hand-written access line must be exactly the line pino would write for the same fields, and valid JSON for any path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createLogger } from './logger.ts';
import { AccessLog, type AccessEntry } from './access-log.ts';

function capture(level: string, bindings?: Record<string, unknown>) {
  const lines: string[] = [];
  const logger = createLogger(level, { write: (line: string) => void lines.push(line) }, bindings);
  return { logger, lines, accessLog: new AccessLog(logger) };
}

const withoutTime = (line: string) => line.replace(/"time":"[^"]+"/, '"time":"T"');

const FULL: AccessEntry = {
  request_id: '01a20367-d314-7152-8345-ae2a71194b5e',
  trace_id: 'ff48db49f6668203a84409ee437e8670',
  route: 'create-order',
  consumer: 'UnbpdRsp0r21PN63Qt1ZK6',
  method: 'POST',
  path: '/orders',
  status: 502,
  upstream_status: 500,
  duration_ms: 12.34,
  upstream_duration_ms: 11.5,
  outcome: 'upstream_error',
  code: 'UPSTREAM_ERROR',
  idempotency_key_hash: 'k3Jf0aZ-x_1',
};

test('the line is byte for byte what pino writes for the same fields, undefined ones left out', () => {
  const sparse: AccessEntry = { ...FULL, consumer: undefined, method: undefined, upstream_status: undefined, upstream_duration_ms: undefined, code: undefined, idempotency_key_hash: undefined };
  for (const [entry, bindings] of [[FULL], [sparse], [FULL, { worker: 2 }]] as const) {
    const { logger, lines, accessLog } = capture('info', bindings);
    accessLog.write(entry);
    accessLog.flush();
    logger.info({ ...entry }, 'request');
    assert.equal(lines.length, 2);
    assert.equal(withoutTime(lines[0]!), withoutTime(lines[1]!));
    assert.match(lines[0]!, /"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"/);
  }
});

test('any path and route name stays valid JSON and reads back unchanged', () => {
  const { lines, accessLog } = capture('info');
  const path = '/a"b\\c\n\u0000\u2028ü/%22';
  accessLog.write({ ...FULL, path, route: 'odd "name"' });
  accessLog.flush();
  const parsed = JSON.parse(lines[0]!) as Record<string, unknown>;
  assert.equal(parsed.path, path);
  assert.equal(parsed.route, 'odd "name"');
  assert.ok(lines[0]!.endsWith('}\n') && !lines[0]!.slice(0, -1).includes('\n'), 'one line');
});

test('nothing is written when the logger is above info, and the level can change at run time', () => {
  const { logger, lines, accessLog } = capture('warn');
  accessLog.write(FULL);
  accessLog.flush();
  assert.equal(lines.length, 0);
  logger.level = 'info';
  accessLog.write(FULL);
  accessLog.flush();
  assert.equal(lines.length, 1);
});

test('the lines of one turn of the event loop reach the destination as one write, in order, and a full batch at once', async () => {
  const { lines, accessLog } = capture('info');
  for (const id of ['a', 'b', 'c']) accessLog.write({ ...FULL, request_id: id });
  assert.equal(lines.length, 0, 'nothing is written before the turn ends');
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(lines.length, 1);
  assert.deepEqual(lines[0]!.trimEnd().split('\n').map((line) => (JSON.parse(line) as { request_id: string }).request_id), ['a', 'b', 'c']);

  // A turn that ends very many requests does not hold them all: about 16 KiB of lines go out at a time.
  const written = lines.length;
  for (let i = 0; i < 200; i++) accessLog.write({ ...FULL, request_id: `r${i}` });
  assert.ok(lines.length > written, 'a full batch is written within the turn');
  await new Promise((resolve) => setImmediate(resolve));
  const ids = lines.slice(written).join('').trimEnd().split('\n').map((line) => (JSON.parse(line) as { request_id: string }).request_id);
  assert.deepEqual(ids, Array.from({ length: 200 }, (_, i) => `r${i}`));
  for (const batch of lines.slice(written)) assert.ok(batch.length <= 16 * 1024 + 1024 && batch.endsWith('\n'), 'whole lines, bounded');
});

test('the time is new Date().toISOString() to the millisecond, across seconds, minutes and days', (t) => {
  const start = Date.UTC(2026, 10, 22, 23, 59, 58, 995);
  t.mock.timers.enable({ apis: ['Date'], now: start });
  const { lines, accessLog } = capture('info');
  const expected: string[] = [];
  for (const step of [0, 1, 4, 9, 90, 901, 1, 999, 1000, 86_400_000, 5]) {
    t.mock.timers.tick(step);
    expected.push(new Date().toISOString());
    accessLog.write(FULL);
  }
  accessLog.flush();
  const times = lines.join('').trimEnd().split('\n').map((line) => (JSON.parse(line) as { time: string }).time);
  assert.deepEqual(times, expected);
});

test('a process that crashes mid-turn still writes the request lines of that turn', () => {
  const here = import.meta.dirname;
  const script = `
    import { createLogger } from ${JSON.stringify(`${here}/logger.ts`)};
    import { AccessLog } from ${JSON.stringify(`${here}/access-log.ts`)};
    const accessLog = new AccessLog(createLogger('info'));
    for (const id of ['a', 'b']) accessLog.write({ ...${JSON.stringify(FULL)}, request_id: id });
    throw new Error('crash before the turn ends');`;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(child.status, 1, child.stderr);
  assert.match(child.stderr, /crash before the turn ends/);
  const ids = child.stdout.trimEnd().split('\n').map((line) => (JSON.parse(line) as { request_id: string }).request_id);
  assert.deepEqual(ids, ['a', 'b']);
});

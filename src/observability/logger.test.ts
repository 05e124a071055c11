// The logger's redaction backstop: credentials under a headers object never reach a log line, whatever logged them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger } from './logger.ts';

test('credential headers are redacted wherever a headers object is logged, the agent key among them', () => {
  const lines: string[] = [];
  const sink = new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) });
  const logger = createLogger('info', sink as unknown as Parameters<typeof createLogger>[1]);
  const headers = { authorization: 'Bearer agk_secret-one', 'x-agent-key': 'agk_secret-two', 'x-api-key': 'k3', cookie: 'c=4', 'idempotency-key': 'k5', accept: '*/*' };
  logger.info({ headers }, 'top level');
  logger.info({ req: { headers } }, 'nested');
  for (const line of lines) {
    for (const secret of ['agk_secret-one', 'agk_secret-two', 'k3', 'c=4', 'k5']) assert.ok(!line.includes(secret), `${secret} in ${line}`);
    assert.match(line, /"accept":"\*\/\*"/, 'the rest of the headers stay readable');
  }
  assert.equal(lines.length, 2);
});

// Shared pieces of the idempotency tests: a counting "create order" upstream handler, keyed POSTs, metric reading.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { send, envelopeOf, type Reply } from './http.ts';

/**
 * A legacy "create" endpoint that is not idempotent: every execution makes a new id. It answers after `delayMs`, with a
 * Set-Cookie and an upstream request id (neither may be replayed) and a Location and ETag (both must be).
 */
export function createHandler(delayMs: number, counter: { n: number }) {
  return (req: IncomingMessage, res: ServerResponse, body: Buffer): void => {
    const n = ++counter.n;
    setTimeout(() => {
      const text = JSON.stringify({ id: `ord_${n}`, agent: req.headers['x-agent-id'] ?? null, received: body.toString(), padding: 'x'.repeat(2000) });
      res.writeHead(201, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(text),
        location: `/orders/ord_${n}`,
        etag: `"v${n}"`,
        'set-cookie': [`session=s${n}; HttpOnly`, `tracking=t${n}`],
        'x-request-id': `upstream-${n}`,
        'x-internal-debug': 'do-not-replay',
      });
      res.end(text);
    }, delayMs);
  };
}

export function freshKey(): string {
  return `key-${randomUUID()}`;
}

export function post(url: string, key: string | undefined, body = '{"item":"widget"}', headers: Record<string, string> = {}): Promise<Reply> {
  return send(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key === undefined ? {} : { 'idempotency-key': key }), ...headers },
    body,
  });
}

/** Asserts an envelope with the given code and returns it. */
export function expectError(reply: Reply, status: number, code: string, retryable: boolean): Record<string, any> {
  assert.equal(reply.status, status, `expected ${status} ${code}, got ${reply.status}: ${reply.text.slice(0, 300)}`);
  const envelope = envelopeOf(reply);
  assert.equal(envelope.code, code);
  assert.equal(envelope.retryable, retryable);
  assert.equal(reply.headers['x-should-retry'], String(retryable));
  assert.equal(reply.headers['idempotent-replayed'], undefined, 'an error is never marked as a replay');
  return envelope;
}

/** A replay: same status and body bytes as the original, its allow-listed headers, marked, with its own request id. */
export function expectReplayOf(replay: Reply, original: Reply): void {
  assert.equal(replay.status, original.status);
  assert.ok(replay.body.equals(original.body), `replayed body differs:\n${replay.text.slice(0, 200)}\nvs\n${original.text.slice(0, 200)}`);
  assert.equal(replay.headers['idempotent-replayed'], 'true');
  assert.equal(replay.headers['x-idempotent-replayed'], 'true');
  for (const name of ['content-type', 'location', 'etag']) assert.equal(replay.headers[name], original.headers[name], name);
  assert.equal(replay.headers['set-cookie'], undefined, 'Set-Cookie is never replayed');
  assert.equal(replay.headers['x-internal-debug'], undefined, 'headers outside the allow-list are not replayed');
  assert.equal(replay.headers['content-length'], String(original.body.length));
  assert.ok(replay.headers['x-request-id'], 'a replay carries a request id');
  assert.notEqual(replay.headers['x-request-id'], original.headers['x-request-id'], "a replay carries the new request's own id");
}

export function expectFresh(reply: Reply): void {
  assert.equal(reply.headers['idempotent-replayed'], undefined, 'a fresh answer is never marked as a replay');
  assert.equal(reply.headers['x-idempotent-replayed'], undefined, 'a fresh answer is never marked as a replay');
}

/** agentgate_idempotency_events_total of one route from Prometheus text, by event. */
export function eventsIn(metricsText: string, route: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of metricsText.split('\n')) {
    const m = /^agentgate_idempotency_events_total\{(.*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    if (labels.route === route) out[labels.event!] = Number(m[2]);
  }
  return out;
}

export async function eventsOf(adminUrl: string, route: string): Promise<Record<string, number>> {
  return eventsIn((await send(`${adminUrl}/metrics`)).text, route);
}

/** Polls until check() returns true. */
export async function until(what: string, timeoutMs: number, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

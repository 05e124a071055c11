// Small HTTP clients for tests: a buffered request over node:http, and a raw-socket exchange for requests node:http refuses to send.
import { request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { connect } from 'node:net';

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  text: string;
  json: () => any;
}

export function send(url: string, options: { method?: string; headers?: OutgoingHttpHeaders; body?: string | Buffer } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      // A connection cut mid-response ends the response without 'end' (and, for a head alone, without 'error').
      res.on('close', () => res.complete || reject(new Error('response closed before it was complete')));
      res.on('end', () => {
        if (!res.complete) return reject(new Error('response incomplete'));
        const body = Buffer.concat(chunks);
        resolve({
          status: res.statusCode!,
          headers: res.headers,
          body,
          text: body.toString(),
          json: () => JSON.parse(body.toString()),
        });
      });
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Writes raw bytes to host:port and resolves with everything received until the server closes (or `timeoutMs`). */
export function rawExchange(url: string, payload: string, timeoutMs = 5000): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let data = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(data);
    }, timeoutMs);
    socket.on('data', (c) => (data += c.toString()));
    socket.on('error', (err) => {
      clearTimeout(timer);
      if (data) resolve(data);
      else reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(data);
    });
    socket.write(payload);
  });
}

/** Splits a raw HTTP/1.1 response into status, lower-cased headers and body. */
export function parseRawResponse(raw: string): { status: number; headers: Record<string, string>; body: string } {
  const end = raw.indexOf('\r\n\r\n');
  const head = raw.slice(0, end).split('\r\n');
  const status = Number(head[0]!.split(' ')[1]);
  const headers: Record<string, string> = {};
  for (const line of head.slice(1)) {
    const i = line.indexOf(':');
    headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return { status, headers, body: raw.slice(end + 4) };
}

/** Asserts the contract's error envelope shape and returns the parsed body. */
export function envelopeOf(reply: { status: number; headers: Record<string, string | string[] | undefined>; text?: string; body?: string | Buffer }): Record<string, any> {
  const text = reply.text ?? String(reply.body);
  if (!String(reply.headers['content-type']).startsWith('application/problem+json')) {
    throw new Error(`expected application/problem+json, got ${String(reply.headers['content-type'])}: ${text.slice(0, 200)}`);
  }
  const body = JSON.parse(text) as Record<string, any>;
  for (const key of ['type', 'title', 'status', 'detail', 'code', 'retryable', 'retry_after_seconds', 'suggestion', 'request_id', 'upstream_status']) {
    if (!(key in body)) throw new Error(`envelope lacks '${key}': ${text}`);
  }
  if (body.status !== reply.status) throw new Error(`envelope status ${body.status} differs from HTTP status ${reply.status}`);
  if (reply.headers['x-should-retry'] !== String(body.retryable)) throw new Error(`X-Should-Retry ${String(reply.headers['x-should-retry'])} differs from retryable ${body.retryable}`);
  if (reply.headers['x-request-id'] !== body.request_id) throw new Error(`X-Request-Id ${String(reply.headers['x-request-id'])} differs from request_id ${body.request_id}`);
  if (body.type !== `/_agentgate/errors/${body.code}`) throw new Error(`type ${body.type} does not name code ${body.code}`);
  return body;
}

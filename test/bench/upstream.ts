// The benchmark's upstream, run in its own process: as fast as node:http allows, so it is never what is measured.
//   GET  /bench/item          200, a small JSON object
//   POST /bench/item          201, the request's JSON body echoed inside a small JSON object
//   GET  /bench/blob/{KiB}    200, a valid JSON document of about KiB kibibytes (for the response_schema cost)
//   GET  /__stats             how many requests of each kind it served, and connections it accepted (the harness
//                             checks that replays never reach it and that proxies reuse their connections)
// Listens on 127.0.0.1, an ephemeral port, and tells the parent the port over IPC.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { blobDocument, ITEM } from './payloads.ts';

const ITEM_BODY = Buffer.from(JSON.stringify(ITEM));
const blobs = new Map<number, Buffer>();
const served: Record<string, number> = {};

function count(kind: string): void {
  served[kind] = (served[kind] ?? 0) + 1;
}

function send(res: import('node:http').ServerResponse, status: number, body: Buffer): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
}

const server = createServer((req, res) => {
  const url = req.url ?? '/';
  if (req.method === 'POST') {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      count('POST');
      const echo = chunks.length === 0 ? 'null' : Buffer.concat(chunks).toString('utf8');
      send(res, 201, Buffer.from(`{"status":"created","echo":${echo}}`));
    });
    return;
  }
  if (url === '/bench/item') {
    count('GET item');
    send(res, 200, ITEM_BODY);
    return;
  }
  if (url.startsWith('/bench/blob/')) {
    const kib = Number(url.slice('/bench/blob/'.length));
    if (!Number.isInteger(kib) || kib < 1 || kib > 4096) {
      send(res, 400, Buffer.from('{"message":"blob size must be 1..4096 KiB"}'));
      return;
    }
    let body = blobs.get(kib);
    if (!body) {
      body = Buffer.from(blobDocument(kib));
      blobs.set(kib, body);
    }
    count(`GET blob/${kib}`);
    send(res, 200, body);
    return;
  }
  if (url === '/__stats') {
    send(res, 200, Buffer.from(JSON.stringify(served)));
    return;
  }
  send(res, 404, Buffer.from('{"message":"not found"}'));
});
// Proxies keep their pooled connections open: never close an idle one under them during a run.
server.keepAliveTimeout = 120_000;
server.headersTimeout = 125_000;
server.on('connection', () => count('connections'));
server.on('clientError', (_err, socket) => socket.destroy());
server.listen(0, '127.0.0.1', () => {
  process.send?.({ port: (server.address() as AddressInfo).port });
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
process.on('disconnect', () => process.exit(0));

// The soak and streaming runs' upstream, in its own process (tells the parent its port over IPC):
//   GET  /soak/items/{id}          200, a small JSON item
//   POST /soak/orders              201, a small JSON order numbered by execution (the body is read whole)
//   GET  /stream/download?bytes=N&id=X   N bytes of a generated pattern (Content-Length), never held in memory; its
//                                  length and SHA-256 are kept under X for GET /__transfer/X
//   POST /stream/upload?id=X       reads the body as a stream: 200 {"bytes","sha256"} of what arrived (also under X)
//   GET  /__stats                  {"executions": POSTs executed, "gets": GETs served}
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { patternChunks } from './pattern.ts';

const transfers = new Map<string, { bytes: number; sha256: string }>();
let executions = 0;
let gets = 0;

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function download(res: ServerResponse, bytes: number, id: string): Promise<void> {
  const hash = createHash('sha256');
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes });
  let sent = 0;
  for (const chunk of patternChunks(bytes)) {
    hash.update(chunk);
    sent += chunk.length;
    if (!res.write(chunk)) {
      const ok = await new Promise<boolean>((resolve) => {
        const onDrain = () => (res.off('close', onClose), resolve(true));
        const onClose = () => (res.off('drain', onDrain), resolve(false));
        res.once('drain', onDrain).once('close', onClose);
      });
      if (!ok) return;
    }
  }
  transfers.set(id, { bytes: sent, sha256: hash.digest('hex') });
  res.end();
}

function upload(req: IncomingMessage, res: ServerResponse, id: string): void {
  const hash = createHash('sha256');
  let bytes = 0;
  req.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    bytes += chunk.length;
  });
  req.on('end', () => {
    const result = { bytes, sha256: hash.digest('hex') };
    transfers.set(id, result);
    json(res, 200, result);
  });
}

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://upstream');
  const path = url.pathname;
  if (req.method === 'GET' && path.startsWith('/soak/items/')) {
    gets++;
    json(res, 200, { id: path.slice('/soak/items/'.length), name: 'widget', price: 12.5, currency: 'EUR', in_stock: true });
    return;
  }
  if (req.method === 'POST' && path === '/soak/orders') {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const n = ++executions;
      json(res, 201, { order_id: `ord_${n}`, status: 'created', request: Buffer.concat(chunks).toString('utf8') });
    });
    return;
  }
  if (req.method === 'GET' && path === '/stream/download') {
    void download(res, Number(url.searchParams.get('bytes')), url.searchParams.get('id') ?? '');
    return;
  }
  if (req.method === 'POST' && path === '/stream/upload') {
    upload(req, res, url.searchParams.get('id') ?? '');
    return;
  }
  if (path.startsWith('/__transfer/')) {
    const transfer = transfers.get(path.slice('/__transfer/'.length));
    json(res, transfer ? 200 : 404, transfer ?? { message: 'unknown transfer' });
    return;
  }
  if (path === '/__stats') {
    json(res, 200, { executions, gets });
    return;
  }
  json(res, 404, { message: 'not found' });
});
// The gateway keeps pooled connections open: never close an idle one under it during a run.
server.keepAliveTimeout = 120_000;
server.headersTimeout = 125_000;
server.requestTimeout = 0;
server.on('clientError', (_err, socket) => socket.destroy());
server.listen(0, '127.0.0.1', () => process.send?.({ port: (server.address() as AddressInfo).port }));
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
process.on('disconnect', () => process.exit(0));

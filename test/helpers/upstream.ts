// A real HTTP upstream for tests: per-path handlers, and a record of every request it received.
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type Handler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void;

export interface ReceivedRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
  remotePort: number;
}

export interface TestUpstream {
  url: string;
  port: number;
  received: ReceivedRequest[];
  /** Distinct client sockets the upstream has seen (to check connection reuse). */
  sockets: Set<Socket>;
  server: Server;
  close(): Promise<void>;
}

/**
 * `handlers` maps "METHOD /path" or "/path" (any method) to a handler; the request body is read first,
 * unless the handler is registered under "stream:/path", which gets the request unread.
 */
export async function startUpstream(handlers: Record<string, Handler>): Promise<TestUpstream> {
  const received: ReceivedRequest[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    sockets.add(req.socket);
    const path = (req.url ?? '/').split('?')[0]!;
    const streaming = handlers[`stream:${path}`];
    if (streaming) {
      received.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.alloc(0), remotePort: req.socket.remotePort! });
      streaming(req, res, Buffer.alloc(0));
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      received.push({ method: req.method!, url: req.url!, headers: req.headers, body, remotePort: req.socket.remotePort! });
      const handler = handlers[`${req.method} ${path}`] ?? handlers[path] ?? handlers['*'];
      if (handler) handler(req, res, body);
      else {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ message: 'no test handler' }));
      }
    });
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    received,
    sockets,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

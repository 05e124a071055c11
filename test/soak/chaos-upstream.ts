// The chaos run's legacy API, in the harness's process so it can be switched between behaviours at any moment, and so
// it can count how often each write really ran:
//   GET  /chaos/items/{id}   200, a small JSON item (Content-Length)
//   GET  /chaos/feed         200, FEED as a chunked stream in four parts
//   POST /chaos/orders       201, a JSON order; every execution is counted under the request's Idempotency-Key
// Modes: ok; refuse (the listener is closed and every idle connection destroyed, a busy one once its answer is out:
// new connections are refused, and no answer is cut mid-body, a failure the contract answers differently); hang (requests
// are read, and counted as executed, but never answered); reset (half the requests are reset as soon as their head
// arrives, the other half after their body was read and the write counted as executed: the worst case, an effect
// without an answer).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { once } from 'node:events';

export type UpstreamMode = 'ok' | 'refuse' | 'hang' | 'reset';

/** The feed's exact body: a client checks every byte of it. */
export const FEED = Array.from({ length: 40 }, (_, i) => JSON.stringify({ seq: i, event: 'order.updated', detail: 'x'.repeat(60) })).join('\n') + '\n';

export function itemBody(id: string): string {
  return JSON.stringify({ id, name: 'widget', price: 12.5, currency: 'EUR', in_stock: true });
}

export class ChaosUpstream {
  readonly port: number;
  readonly url: string;
  /** Executions per Idempotency-Key (POST /chaos/orders that the upstream received whole). */
  readonly executions = new Map<string, number>();
  readonly served: Record<string, number> = {};
  private mode: UpstreamMode = 'ok';
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  /** Sockets with a request being handled. */
  private readonly busy = new Set<Socket>();
  private listening = true;
  private resetToggle = false;

  private constructor(server: Server, port: number) {
    this.server = server;
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
  }

  static async start(port: number): Promise<ChaosUpstream> {
    let upstream: ChaosUpstream | undefined;
    const server = createServer((req, res) => upstream!.handle(req, res));
    // The gateway pools connections: an idle one closed under it would look like a flap of our own making.
    server.keepAliveTimeout = 120_000;
    server.headersTimeout = 125_000;
    server.requestTimeout = 0;
    server.on('connection', (socket: Socket) => {
      upstream!.sockets.add(socket);
      socket.once('close', () => upstream!.sockets.delete(socket));
    });
    server.on('clientError', (_err, socket) => socket.destroy());
    upstream = new ChaosUpstream(server, port);
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    return upstream;
  }

  get currentMode(): UpstreamMode {
    return this.mode;
  }

  async setMode(mode: UpstreamMode): Promise<void> {
    if (mode === this.mode) return;
    this.mode = mode;
    if (mode === 'refuse') {
      if (this.listening) {
        this.listening = false;
        this.server.close();
        for (const socket of this.sockets) if (!this.busy.has(socket)) socket.destroy();
      }
      return;
    }
    if (!this.listening) {
      this.server.listen(this.port, '127.0.0.1');
      await once(this.server, 'listening');
      this.listening = true;
    }
  }

  /** Total executions beyond the first, over every key: what idempotency must keep at 0. */
  duplicates(): number {
    let extra = 0;
    for (const n of this.executions.values()) if (n > 1) extra += n - 1;
    return extra;
  }

  async close(): Promise<void> {
    this.listening = false;
    const closed = once(this.server, 'close');
    this.server.close();
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  private count(kind: string): void {
    this.served[kind] = (this.served[kind] ?? 0) + 1;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const mode = this.mode;
    const socket = req.socket;
    this.busy.add(socket);
    res.once('close', () => {
      this.busy.delete(socket);
      // Refusing: the connection ends with its answer, so the next request needs a new one, which is refused.
      if (!this.listening) socket.destroy();
    });
    const path = (req.url ?? '/').split('?')[0]!;
    if (mode === 'reset') {
      this.resetToggle = !this.resetToggle;
      if (this.resetToggle) {
        this.count('reset before body');
        req.socket.resetAndDestroy();
        return;
      }
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const isOrder = req.method === 'POST' && path === '/chaos/orders';
      const key = req.headers['idempotency-key'];
      let execution = 0;
      if (isOrder && typeof key === 'string') {
        execution = (this.executions.get(key) ?? 0) + 1;
        this.executions.set(key, execution);
      }
      if (mode === 'reset') {
        this.count('reset after body');
        req.socket.resetAndDestroy();
        return;
      }
      if (mode === 'hang') {
        this.count('hung');
        return; // never answered; the gateway's timeout (or a later refuse) ends it
      }
      if (isOrder) {
        this.count('order');
        const text = JSON.stringify({ order_id: `ord-${String(key)}-${execution}`, key: key ?? null, execution, request: Buffer.concat(chunks).toString('utf8') });
        res.writeHead(201, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), location: `/chaos/orders/${execution}` });
        res.end(text);
        return;
      }
      if (req.method === 'GET' && path.startsWith('/chaos/items/')) {
        this.count('item');
        const text = itemBody(path.slice('/chaos/items/'.length));
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
        return;
      }
      if (req.method === 'GET' && path === '/chaos/feed') {
        this.count('feed');
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        const quarter = Math.ceil(FEED.length / 4);
        let i = 0;
        const writeNext = () => {
          if (res.destroyed) return;
          const part = FEED.slice(i * quarter, (i + 1) * quarter);
          i++;
          if (i >= 4) res.end(part);
          else {
            res.write(part);
            setImmediate(writeNext);
          }
        };
        writeNext();
        return;
      }
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{"message":"not found"}');
    });
  }
}

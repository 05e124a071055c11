// The admin port: /metrics for Prometheus, /healthz (the process is alive), /readyz (config loaded and store reachable).
import { createServer, type Server } from 'node:http';

export interface AdminDeps {
  /** The exposition text: one process's registry, or (workers) every worker's, aggregated. */
  metrics: () => Promise<string>;
  metricsContentType: string;
  /** Why the gateway is not ready, or undefined when it is. */
  notReadyReason: () => Promise<string | undefined>;
}

export function createAdminServer(deps: AdminDeps): Server {
  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const reply = (status: number, contentType: string, body: string) => {
      res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      reply(405, 'application/json', JSON.stringify({ error: 'use GET' }));
      return;
    }
    switch (path) {
      case '/healthz':
        reply(200, 'application/json', JSON.stringify({ status: 'ok' }));
        return;
      case '/readyz':
        void deps.notReadyReason().then(
          (reason) => {
            if (reason === undefined) reply(200, 'application/json', JSON.stringify({ status: 'ready' }));
            else reply(503, 'application/json', JSON.stringify({ status: 'not ready', reason }));
          },
          (err: Error) => reply(503, 'application/json', JSON.stringify({ status: 'not ready', reason: err.message })),
        );
        return;
      case '/metrics':
        void deps.metrics().then(
          (text) => reply(200, deps.metricsContentType, text),
          (err: Error) => reply(500, 'text/plain', `metrics collection failed: ${err.message}`),
        );
        return;
      default:
        reply(404, 'application/json', JSON.stringify({ error: 'not found', endpoints: ['/metrics', '/healthz', '/readyz'] }));
    }
  });
}

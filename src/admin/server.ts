// The admin port: /metrics for Prometheus, /healthz (the process is alive), /readyz (config loaded and store reachable).
import { createServer, type Server } from 'node:http';
import { handleApprovals, type ApprovalsAdminDeps } from '../approvals/admin.ts';

export interface AdminDeps {
  /** The exposition text: one process's registry, or (workers) every worker's, aggregated. */
  metrics: () => Promise<string>;
  metricsContentType: string;
  /** Why the gateway is not ready, or undefined when it is. */
  notReadyReason: () => Promise<string | undefined>;
  /** The approvals API and page (/approvals); absent where the admin port serves none (server.workers > 1). */
  approvals?: ApprovalsAdminDeps;
}

/**
 * Connections the admin port holds at once: Prometheus, probes and an operator need a handful. Bounded so that a flood
 * of the admin port cannot take the process's descriptors (the proxy port's bound keeps room for these).
 */
export const ADMIN_MAX_CONNECTIONS = 64;

/**
 * The admin port's own timeouts, apart from the proxy port's: its clients are scrapers and probes on a private
 * network, which send a request head at once and reconnect when a connection is gone.
 */
const ADMIN_TIMEOUTS = {
  headersTimeout: 5000,
  requestTimeout: 10_000,
  keepAliveTimeout: 5000,
  connectionsCheckingInterval: 1000,
} as const;

export function createAdminServer(deps: AdminDeps): Server {
  const server = createServer(ADMIN_TIMEOUTS, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const reply = (status: number, contentType: string, body: string) => {
      res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (deps.approvals && handleApprovals(req, res, path!, deps.approvals)) return;
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
        reply(404, 'application/json', JSON.stringify({ error: 'not found', endpoints: ['/metrics', '/healthz', '/readyz', ...(deps.approvals ? ['/approvals', '/approvals/'] : [])] }));
    }
  });
  server.maxConnections = ADMIN_MAX_CONNECTIONS;
  return server;
}

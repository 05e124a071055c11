// Scenario B: the floor of the library agentgate is built on. A bare http-proxy-3 reverse proxy with the same
// keep-alive pool settings agentgate uses (src/runtime.ts), nothing else: no request id, no logs, no metrics.
// Usage: node bare-proxy.ts http://127.0.0.1:PORT — listens on 127.0.0.1, an ephemeral port, reported over IPC.
import { Agent, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createProxyServer } from 'http-proxy-3';

const target = process.argv[2];
if (!target) {
  process.stderr.write('usage: bare-proxy.ts UPSTREAM_URL\n');
  process.exit(2);
}
const agent = new Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64, scheduling: 'lifo' });
const proxy = createProxyServer({ target, agent, changeOrigin: true });
proxy.on('error', (_err, _req, res) => {
  if ('writeHead' in res && !res.headersSent) {
    res.writeHead(502, { 'content-type': 'application/json' });
    res.end('{"message":"bad gateway"}');
  } else res.destroy();
});
const server = createServer((req, res) => proxy.web(req, res));
server.on('clientError', (_err, socket) => socket.destroy());
server.listen(0, '127.0.0.1', () => {
  process.send?.({ port: (server.address() as AddressInfo).port });
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
process.on('disconnect', () => process.exit(0));

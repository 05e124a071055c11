// Scenario B: the floor of the library agentgate is built on. A bare http-proxy-3 reverse proxy with the same
// keep-alive pool settings agentgate uses (src/runtime.ts), nothing else: no request id, no logs, no metrics.
// Usage: node bare-proxy.ts http://127.0.0.1:PORT [--gateway-headers] — listens on 127.0.0.1, an ephemeral port,
// reported over IPC. --gateway-headers (scenario BH): every upstream request also carries the seven headers agentgate
// adds (X-Request-Id, traceparent, X-Forwarded-For/-Proto/-Host, X-Real-IP, Forwarded), as fixed values of the same
// length, so that forwarding them is not counted as agentgate's own cost (docs/performance.md, "Cores": 1-3 µs).
import { Agent, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createProxyServer } from 'http-proxy-3';

const target = process.argv[2];
if (!target) {
  process.stderr.write('usage: bare-proxy.ts UPSTREAM_URL\n');
  process.exit(2);
}
const agent = new Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64, scheduling: 'lifo' });
const GATEWAY_HEADERS = {
  'x-request-id': '01a2490f-71f4-7bce-b6a0-a79ea7e98b53',
  traceparent: '00-e95f68fa969f40caa9c6cf0eb7046ba4-f50c6b2acfca2247-01',
  'x-forwarded-for': '127.0.0.1',
  'x-forwarded-proto': 'http',
  'x-forwarded-host': '127.0.0.1:8080',
  'x-real-ip': '127.0.0.1',
  forwarded: 'for=127.0.0.1;proto=http;host="127.0.0.1:8080"',
};
const headers = process.argv.includes('--gateway-headers') ? GATEWAY_HEADERS : undefined;
const proxy = createProxyServer({ target, agent, changeOrigin: true, ...(headers ? { headers } : {}) });
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

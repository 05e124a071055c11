// Scenario X (issue 23): what a user would build instead of agentgate with express — http-proxy-middleware to the
// upstream (through a keep-alive agent with agentgate's pool settings: without one it opens a connection per request)
// behind express-rate-limit (a limit per client IP, in its memory store, with a capacity no benchmark reaches) and
// express-idempotency on POST (keyed by the Idempotency-Key header, its default in-memory store). Versions pinned in
// package.json's devDependencies; everything else is the defaults.
//
// express-idempotency keeps a response only when the route calls res.send(); a proxy pipes the upstream's answer
// instead, so every key stays "in progress" forever: a retry gets 409, never a replay. The bench sends a fresh key per
// request, so what it measures is the first request of each key (201). Its memory store is an array searched from the
// start for every key, and it is never pruned: POST gets slower the longer the process runs.
// Usage: node express.ts http://127.0.0.1:PORT — listens on 127.0.0.1, an ephemeral port, reported over IPC.
import { Agent } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { rateLimit } from 'express-rate-limit';
import { idempotency } from 'express-idempotency';
import { createProxyMiddleware } from 'http-proxy-middleware';

const target = process.argv[2];
if (!target) {
  process.stderr.write('usage: express.ts UPSTREAM_URL\n');
  process.exit(2);
}
const agent = new Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64, scheduling: 'lifo' });
process.env.NODE_ENV ??= 'production'; // as deployed: express reads it when the app is made
const app = express();
app.use(rateLimit({ windowMs: 1000, limit: 1_000_000_000 }));
app.post('/{*path}', idempotency());
app.use(createProxyMiddleware({ target, changeOrigin: true, agent }));
const server = app.listen(0, '127.0.0.1', () => {
  process.send?.({ port: (server.address() as AddressInfo).port });
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
process.on('disconnect', () => process.exit(0));

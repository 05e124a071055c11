// Scenario H (issue 23): what a user would build instead of agentgate with fastify — @fastify/http-proxy to the
// upstream (its default client: an undici pool, keep-alive, 128 connections) behind @fastify/rate-limit (a limit per
// client IP, in memory, with a capacity no benchmark reaches, as agentgate's every-policy profile has). No
// idempotency: fastify has none. Versions pinned in package.json's devDependencies; everything else is the defaults.
// Usage: node fastify.ts http://127.0.0.1:PORT — listens on 127.0.0.1, an ephemeral port, reported over IPC.
import type { AddressInfo } from 'node:net';
import Fastify from 'fastify';
import httpProxy from '@fastify/http-proxy';
import rateLimit from '@fastify/rate-limit';

const upstream = process.argv[2];
if (!upstream) {
  process.stderr.write('usage: fastify.ts UPSTREAM_URL\n');
  process.exit(2);
}
const app = Fastify({ logger: false });
await app.register(rateLimit, { max: 1_000_000_000, timeWindow: 1000 });
await app.register(httpProxy, { upstream });
await app.listen({ host: '127.0.0.1', port: 0 });
process.send?.({ port: (app.server.address() as AddressInfo).port });
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
process.on('disconnect', () => process.exit(0));

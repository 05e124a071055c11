// The forwarder on real sockets: what it resolves with when the client is gone before its request could be sent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import type { RequestContext } from '../context.ts';
import { startUpstream, json } from '../../test/helpers/upstream.ts';
import { compileRuntime } from '../../test/helpers/runtime.ts';
import { until } from '../../test/helpers/wait.ts';
import { Forwarder } from './forwarder.ts';
import type { UpstreamResult } from '../upstream-result.ts';

test('a request whose client left before it was sent never reaches the upstream, and says nothing was sent', async (t) => {
  const upstream = await startUpstream({ '/r': (_req, res) => json(res, 200, { ok: true }) });
  const { runtime, pools } = compileRuntime(`version: 1\nupstreams: {u: {url: '${upstream.url}'}}\nroutes:\n  - {name: r, match: {path: /r}, upstream: u}\n`);
  const route = runtime.router.routes[0]!;
  const forwarder = new Forwarder();

  // The gateway side: forwards every request; for /r?leave the client goes away right after the decision to forward.
  const results: UpstreamResult[] = [];
  const gateway = createServer((req: IncomingMessage, res: ServerResponse) => {
    const ctx = {
      requestId: 'req-1',
      trace: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', continued: true },
      responseHeaders: {},
      peerTrusted: false,
      clientAddress: '127.0.0.1',
    } as unknown as RequestContext;
    const sending = forwarder.send(req, res, ctx, route, undefined, false, 10_000);
    if (req.url === '/r?leave') res.destroy();
    void sending.then((result) => {
      results.push(result);
      if (result.kind === 'response') result.response.pipe(res);
    });
  });
  gateway.listen(0, '127.0.0.1');
  await once(gateway, 'listening');
  const base = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
  t.after(async () => {
    forwarder.close();
    pools.destroyAll();
    gateway.close();
    await upstream.close();
  });

  const ask = (path: string) =>
    new Promise<number | string>((resolve) => {
      request(`${base}${path}`, (res) => {
        res.resume();
        resolve(res.statusCode!);
      })
        .on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
        .end();
    });

  assert.equal(await ask('/r'), 200, 'the route forwards when the client stays');
  assert.equal(upstream.received.length, 1);
  assert.equal(await ask('/r?leave'), 'ECONNRESET');
  await until(async () => results.length === 2, 2000, () => `results: ${JSON.stringify(results)}`);
  assert.deepEqual(results[1], { kind: 'client_closed', reachedUpstream: false });
  assert.equal(upstream.received.length, 1, 'the upstream never saw the abandoned request');
});

// One of several gateway processes (server.workers > 1): serves the proxy port it shares with its siblings and answers its primary.
import cluster from 'node:cluster';
import { pino } from 'pino';
import type { Gateway } from '../gateway.ts';
import type { Logger } from '../observability/logger.ts';
import { isMessage, type AnswerMessage, type ListeningMessage, type QueryMessage } from './messages.ts';

/**
 * Tells the primary this worker listens, then answers its queries for the admin port. (A worker whose primary is
 * gone, its IPC channel closed, is ended at once by node:cluster itself.) Returns the gateway with a shutdown that
 * also lets go of the channel, which would otherwise keep the process alive.
 */
export function serveAsWorker(gateway: Gateway): Gateway {
  const send = (message: ListeningMessage | AnswerMessage) => {
    // The channel may close between a query and its answer; the primary then no longer waits for it.
    if (process.connected) process.send!(message);
  };
  const onQuery = (message: unknown) => {
    if (!isMessage<QueryMessage>(message, 'agentgate:query')) return;
    const answer =
      message.what === 'metrics'
        ? gateway.metrics.registry.getMetricsAsJSON().then((metrics) => ({ metrics }))
        : gateway.notReadyReason().then((reason) => ({ notReady: reason ?? null }));
    void answer.then(
      (fields) => send({ type: 'agentgate:answer', id: message.id, ...fields }),
      (err: Error) => send({ type: 'agentgate:answer', id: message.id, error: err.message }),
    );
  };
  let leaving = false;
  process.on('message', onQuery);
  // Ahead of node:cluster's own listener, which ends the worker at once: with the primary gone nobody reads this
  // worker's stdout, and pino's final synchronous flush (sonic-boom 4) retries a broken pipe forever, which kept
  // orphaned workers alive. Dropping the lines is all that can be done with them, as pino itself does on EPIPE.
  process.prependOnceListener('disconnect', () => {
    if (!leaving) dropLogLines(gateway.logger);
  });
  send({ type: 'agentgate:listening', proxyUrl: gateway.proxyUrl });
  return {
    ...gateway,
    shutdown: async () => {
      await gateway.shutdown();
      process.off('message', onQuery);
      leaving = true;
      // As a worker that chose to leave: any other disconnect, to node:cluster, means the primary is gone.
      if (process.connected) cluster.worker!.disconnect();
    },
  };
}

function dropLogLines(logger: Logger): void {
  const destination = (logger as unknown as Record<symbol, Record<string, unknown>>)[pino.symbols.streamSym]!;
  const noop = () => {};
  for (const method of ['write', 'flush', 'flushSync', 'end']) destination[method] = noop;
}

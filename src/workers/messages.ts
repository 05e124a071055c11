// What a primary and its workers say to each other over the cluster IPC channel (server.workers > 1).
import type { MetricObjectWithValues, MetricValue } from 'prom-client';

/** Worker → primary, once its proxy server listens. */
export interface ListeningMessage {
  type: 'agentgate:listening';
  proxyUrl: string;
}

/** Primary → worker: the admin port needs this worker's part of /metrics or /readyz. */
export interface QueryMessage {
  type: 'agentgate:query';
  id: number;
  what: 'metrics' | 'ready';
}

/** Worker → primary, the answer to query `id`. */
export interface AnswerMessage {
  type: 'agentgate:answer';
  id: number;
  /** what: metrics — the worker registry's getMetricsAsJSON(). */
  metrics?: MetricObjectWithValues<MetricValue<string>>[];
  /** what: ready — why the worker is not ready, or null when it is. */
  notReady?: string | null;
  /** The worker could not answer. */
  error?: string;
}

export function isMessage<T extends { type: string }>(message: unknown, type: T['type']): message is T {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === type;
}

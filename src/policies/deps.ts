// What every policy is built with: the shared state store and the gateway's observability.
import type { Logger } from 'pino';
import type { Store } from '../store/store.ts';
import type { GatewayMetrics } from '../observability/metrics.ts';
import type { ApprovalNotifier } from '../approvals/webhook.ts';

export interface PolicyDeps {
  store: Store;
  /** store.key_prefix: the first argument of every storeKey() call. */
  keyPrefix: string;
  metrics: GatewayMetrics;
  logger: Logger;
  /** server.timeouts.request_body_idle: how long a policy reading a request body waits for its next bytes. */
  requestBodyIdleMs: number;
  /** Sends approval.notify webhooks, retried in the background; absent where nothing is to be notified (tests). */
  approvalNotifier?: ApprovalNotifier;
}

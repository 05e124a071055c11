// approval.notify.webhook: tells people an approval is waiting.
import type { Approval } from './record.ts';

export interface WebhookTarget {
  readonly webhook: string;
  readonly secret: string;
}

/** Sends a pending approval to a webhook in the background: never delays or fails the agent's request. */
export interface ApprovalNotifier {
  notify(approval: Approval, target: WebhookTarget): void;
}

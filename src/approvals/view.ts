// An approval as agents, people and webhooks are shown it: times as ISO 8601, its status as of now, and where to ask.
import type { Approval, ApprovalStatus } from './record.ts';

export interface ApprovalView {
  readonly id: string;
  readonly by: Approval['by'];
  readonly status: ApprovalStatus;
  readonly route: string;
  readonly created_at: string;
  readonly expires_at: string;
  /** The status URL on the proxy port (GET, the requesting agent only). */
  readonly url: string;
  readonly decided_by?: string;
  readonly decided_at?: string;
  readonly reason?: string;
  readonly executed_at?: string;
}

/** Where the requesting agent reads an approval's status on the proxy port. */
export function statusPath(id: string): string {
  return `/_agentgate/approvals/${id}`;
}

/** `base`: the gateway's proxy URL as the caller reached it. */
export function approvalView(approval: Approval, status: ApprovalStatus, base: string): ApprovalView {
  return {
    id: approval.id,
    by: approval.by,
    status,
    route: approval.route,
    created_at: iso(approval.created_at),
    expires_at: iso(approval.expires_at),
    url: `${base}${statusPath(approval.id)}`,
    ...(approval.decided_by !== undefined ? { decided_by: approval.decided_by } : {}),
    ...(approval.decided_at !== undefined ? { decided_at: iso(approval.decided_at) } : {}),
    ...(approval.reason !== undefined ? { reason: approval.reason } : {}),
    ...(approval.executed_at !== undefined ? { executed_at: iso(approval.executed_at) } : {}),
  };
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

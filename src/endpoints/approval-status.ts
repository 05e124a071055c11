// GET /_agentgate/approvals/{id} on the proxy port: the requesting agent's view of its own approval. Anyone else, and
// any id that is not one, gets the same 404: an id reveals nothing about approvals that are not the caller's.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestContext } from '../context.ts';
import { GatewayError, storeUnavailable } from '../errors/problem.ts';
import { StoreError } from '../store/store.ts';
import type { ApprovalStore } from '../approvals/store.ts';
import { APPROVAL_ID_PATTERN, statusAt } from '../approvals/record.ts';
import { approvalView } from '../approvals/view.ts';
import { gatewayUrl } from '../proxy/gateway-url.ts';
import { sendJson } from './json.ts';

/** What the agent should do next, by status. */
const NEXT: Record<string, string> = {
  pending: 'Wait: a person has not decided yet (or, by: agent, confirm by sending the identical request with Approval-Id).',
  approved: 'Send the identical request again with the header Approval-Id to execute it, once.',
  denied: 'Do not send it again: it was denied.',
  executed: 'It ran. Sending it again needs a new approval.',
  expired: 'It expired. Send the request without Approval-Id to ask for a new approval.',
};

export async function serveApprovalStatus(id: string, req: IncomingMessage, res: ServerResponse, ctx: RequestContext, approvals: ApprovalStore): Promise<void> {
  const notFound = new GatewayError('NOT_FOUND', `You have no approval ${APPROVAL_ID_PATTERN.test(id) ? id : 'with that id'}.`);
  if (!APPROVAL_ID_PATTERN.test(id)) throw notFound;
  let approval;
  let now: number;
  try {
    [approval, now] = await Promise.all([approvals.get(id), approvals.now()]);
  } catch (err) {
    if (!(err instanceof StoreError)) throw err;
    throw storeUnavailable('The approval store cannot be reached.', err);
  }
  if (approval === undefined || approval.agent !== (ctx.consumer?.id ?? 'anonymous')) throw notFound;
  const status = statusAt(approval, now);
  sendJson(res, 200, JSON.stringify({ ...approvalView(approval, status, gatewayUrl(req, ctx.peerTrusted)), preview: approval.preview, next: NEXT[status] }));
}

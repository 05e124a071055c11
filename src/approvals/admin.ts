// The approvals API on the admin port, where people decide: GET /approvals (JSON, filtered), GET /approvals/{id},
// POST /approvals/{id}/approve and /deny, and the web page at /approvals/ (src/approvals/page.ts). Decisions are
// never possible on the proxy port, where agents are: an agent cannot approve its own call.
import { createHmac, timingSafeEqual, hash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import { isLoopbackHost, parseDuration } from '../config/units.ts';
import type { GatewayMetrics } from '../observability/metrics.ts';
import { StoreError } from '../store/store.ts';
import { readRequestBody } from '../proxy/body.ts';
import { APPROVAL_ID_PATTERN, statusAt, type Approval, type ApprovalStatus } from './record.ts';
import type { ApprovalStore } from './store.ts';
import { approvalView } from './view.ts';
import { html, loginPage, servePageAsset } from './page.ts';

export interface ApprovalsAdminDeps {
  readonly approvals: ApprovalStore;
  /** The config in force (admin_token, listen addresses, each route's ttl), read per request: a reload applies at once. */
  readonly config: () => Config;
  /** The proxy port's URL, for the agents' status links in the JSON. */
  readonly proxyUrl: () => string | undefined;
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
}

/** Most bytes of a decision's JSON body. */
const MAX_DECISION_BYTES = 8 * 1024;
/** Longest a client may stay silent while sending one. */
const BODY_IDLE_MS = 5000;
/** A session cookie lets the page's own requests in for this long after the token was given. */
export const SESSION_MS = 12 * 60 * 60 * 1000;
export const SESSION_COOKIE = 'agentgate_admin';
const STATUSES: ReadonlySet<string> = new Set(['pending', 'approved', 'denied', 'executed', 'expired']);

/** An approval as the admin port shows it: who asked, what exactly, and where things stand. */
export function adminView(approval: Approval, status: ApprovalStatus, proxyUrl: string | undefined): Record<string, unknown> {
  return { ...approvalView(approval, status, proxyUrl ?? ''), agent: approval.agent, request_id: approval.request_id, preview: approval.preview };
}

/** Answers a request under /approvals on the admin port; false when the path is not one of its own. */
export function handleApprovals(req: IncomingMessage, res: ServerResponse, path: string, deps: ApprovalsAdminDeps): boolean {
  if (path !== '/approvals' && !path.startsWith('/approvals/')) return false;
  void serve(req, res, path, deps).catch((err: unknown) => {
    if (err instanceof StoreError) return json(res, 503, { error: 'store_unavailable', detail: 'The approval store cannot be reached; try again shortly.' });
    deps.logger.error({ err }, 'approvals admin request failed');
    json(res, 500, { error: 'internal', detail: 'The request failed inside the gateway.' });
  });
  return true;
}

async function serve(req: IncomingMessage, res: ServerResponse, path: string, deps: ApprovalsAdminDeps): Promise<void> {
  const config = deps.config();
  const method = req.method ?? 'GET';
  const rebinding = refuseRebinding(req, config);
  if (rebinding) return json(res, 403, { error: 'forbidden', detail: rebinding });
  // State changes only by POST, and never from another site: a page elsewhere cannot make a person's browser decide.
  if (method === 'POST' && !sameOrigin(req)) return json(res, 403, { error: 'forbidden', detail: 'cross-site request refused: the Origin is not this admin port' });

  if (path === '/approvals/session') {
    if (method !== 'POST') return json(res, 405, { error: 'method_not_allowed', detail: 'POST the token to sign in' }, { allow: 'POST' });
    return signIn(req, res, config);
  }
  const asset = path.startsWith('/approvals/') ? path.slice('/approvals/'.length) : undefined;
  // The style sheet holds nothing secret, and the sign-in form uses it too.
  if (asset === 'page.css' && (method === 'GET' || method === 'HEAD') && servePageAsset(asset, res)) return;
  const token = config.server.admin_token;
  if (!authorized(req, token)) {
    // The page itself answers with its sign-in form (no approval in it); the API with 401.
    if (asset === '' && (method === 'GET' || method === 'HEAD')) return html(res, 401, loginPage(undefined));
    return json(res, 401, { error: 'unauthorized', detail: 'send Authorization: Bearer <server.admin_token>' }, { 'www-authenticate': 'Bearer realm="agentgate-admin"' });
  }
  if (asset !== undefined && !asset.startsWith('apr_')) {
    if (method !== 'GET' && method !== 'HEAD') return json(res, 405, { error: 'method_not_allowed', detail: 'use GET' }, { allow: 'GET' });
    if (servePageAsset(asset, res)) return;
    return json(res, 404, { error: 'not_found', detail: `no ${path} on the admin port` });
  }
  if (path === '/approvals') {
    if (method !== 'GET' && method !== 'HEAD') return json(res, 405, { error: 'method_not_allowed', detail: 'use GET' }, { allow: 'GET' });
    return list(req, res, deps);
  }
  const [id, action, ...more] = asset!.split('/');
  if (!APPROVAL_ID_PATTERN.test(id!) || more.length > 0 || (action !== undefined && action !== 'approve' && action !== 'deny')) {
    return json(res, 404, { error: 'not_found', detail: `no ${path} on the admin port` });
  }
  if (action === undefined) {
    if (method !== 'GET' && method !== 'HEAD') return json(res, 405, { error: 'method_not_allowed', detail: 'use GET' }, { allow: 'GET' });
    const [approval, now] = await Promise.all([deps.approvals.get(id!), deps.approvals.now()]);
    if (!approval) return json(res, 404, { error: 'not_found', detail: `no approval ${id}` });
    return json(res, 200, adminView(approval, statusAt(approval, now), deps.proxyUrl()));
  }
  // A decision changes state: POST only, never a link a person could be tricked into following.
  if (method !== 'POST') return json(res, 405, { error: 'method_not_allowed', detail: 'decisions are POSTed' }, { allow: 'POST' });
  return decide(req, res, id!, action, deps, config);
}

async function list(req: IncomingMessage, res: ServerResponse, deps: ApprovalsAdminDeps): Promise<void> {
  const query = new URL(req.url ?? '/', 'http://admin').searchParams;
  const wanted = { status: query.get('status'), route: query.get('route'), agent: query.get('agent') };
  if (wanted.status !== null && !STATUSES.has(wanted.status)) {
    return json(res, 400, { error: 'bad_request', detail: `status must be one of ${[...STATUSES].join(', ')}` });
  }
  const { approvals, now } = await deps.approvals.list();
  const shown = approvals
    .map((a) => ({ approval: a, status: statusAt(a, now) }))
    .filter(({ approval, status }) => (wanted.status === null || status === wanted.status) && (wanted.route === null || approval.route === wanted.route) && (wanted.agent === null || approval.agent === wanted.agent));
  json(res, 200, {
    // Memory: approvals live in this process and are lost with it (a restart forgets the pending ones).
    store: deps.approvals.kind,
    now: new Date(now).toISOString(),
    approvals: shown.map(({ approval, status }) => adminView(approval, status, deps.proxyUrl())),
  });
}

async function decide(req: IncomingMessage, res: ServerResponse, id: string, action: 'approve' | 'deny', deps: ApprovalsAdminDeps, config: Config): Promise<void> {
  const body = await readJson(req);
  if (body === undefined) return json(res, 400, { error: 'bad_request', detail: 'send a JSON object: {"by": "who decides", "reason": "why (optional)"}' });
  const by = typeof body.by === 'string' ? body.by.trim() : '';
  const reason = typeof body.reason === 'string' ? body.reason.trim() : undefined;
  if (!by || by.length > 200 || /[\x00-\x1F\x7F]/.test(by)) return json(res, 400, { error: 'bad_request', detail: '"by" is required: who decides, 1 to 200 printable characters' });
  if (reason !== undefined && (reason.length > 2000 || /[\x00-\x08\x0B-\x1F\x7F]/.test(reason))) return json(res, 400, { error: 'bad_request', detail: '"reason" is at most 2000 printable characters' });
  const current = await deps.approvals.get(id);
  if (!current) return json(res, 404, { error: 'not_found', detail: `no approval ${id}` });
  const route = config.routes.find((r) => r.name === current.route);
  // A grant is valid for the route's ttl as configured now; a route gone from the config keeps the approval's own.
  const ttlMs = route?.approval ? parseDuration(route.approval.ttl) : current.expires_at - current.created_at;
  const decision = await deps.approvals.decide(id, action, by, reason || undefined, ttlMs);
  if (decision.kind === 'not_pending') {
    const status = decision.status;
    const detail =
      status === 'expired'
        ? `approval ${id} expired before this decision: nothing was changed; the agent must ask again`
        : current.by === 'agent'
          ? `approval ${id} is the agent's own confirmation (by: agent): no person decides it`
          : status === 'unknown'
            ? `approval ${id} is gone (it ended and was removed while this decision was on its way): nothing was changed`
            : `approval ${id} is ${status} already: nothing was changed`;
    return json(res, 409, { error: 'not_pending', status, detail, ...(decision.approval ? { approval: adminView(decision.approval, status as ApprovalStatus, deps.proxyUrl()) } : {}) });
  }
  const outcome = action === 'approve' ? 'approved' : 'denied';
  deps.metrics.approvals.inc({ route: decision.approval.route, outcome });
  deps.logger.info({ approval_id: id, route: decision.approval.route, agent: decision.approval.agent, decided_by: by, decision: outcome, reason }, `approval ${outcome} by ${by}`);
  json(res, 200, adminView(decision.approval, decision.approval.status, deps.proxyUrl()));
}

/**
 * Without admin_token, approvals are served only to this host: the connection must have arrived on a loopback address
 * (an admin port on 0.0.0.0 is reachable from elsewhere, whatever Host a client claims), and the Host must name
 * loopback, since a web page elsewhere could reach it through a person's browser by pointing its own name at
 * 127.0.0.1 (DNS rebinding).
 */
function refuseRebinding(req: IncomingMessage, config: Config): string | undefined {
  if (config.server.admin_token !== undefined) return undefined;
  const host = hostName(req.headers.host);
  const local = req.socket.localAddress?.replace(/^::ffff:/, '');
  if (local !== undefined && isLoopbackHost(local) && host !== undefined && isLoopbackHost(host)) return undefined;
  return 'without server.admin_token, approvals are served only on a loopback address, under a loopback name (localhost, 127.0.0.1)';
}

/** Browsers send Origin with every POST; a client that sends none (curl, a script) is no browser on another site. */
function sameOrigin(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}

function authorized(req: IncomingMessage, token: string | undefined): boolean {
  if (token === undefined) return true;
  const auth = req.headers.authorization;
  if (auth !== undefined && /^Bearer\s+/i.test(auth) && equalSecrets(auth.replace(/^Bearer\s+/i, '').trim(), token)) return true;
  const cookie = cookieValue(req.headers.cookie, SESSION_COOKIE);
  return cookie !== undefined && validSession(cookie, token);
}

/** POST /approvals/session with the token (form or JSON): a session cookie for the page, so the token is typed once. */
async function signIn(req: IncomingMessage, res: ServerResponse, config: Config): Promise<void> {
  const token = config.server.admin_token;
  const text = await readText(req);
  const given = text === undefined ? undefined : (new URLSearchParams(text).get('token') ?? undefined);
  if (token === undefined) return redirect(res, '/approvals/');
  if (given === undefined || !equalSecrets(given.trim(), token)) return html(res, 401, loginPage('That token is not the admin token.'));
  const expires = Date.now() + SESSION_MS;
  res.setHeader('set-cookie', `${SESSION_COOKIE}=${expires}.${sessionMac(expires, token)}; HttpOnly; SameSite=Strict; Path=/approvals; Max-Age=${SESSION_MS / 1000}`);
  redirect(res, '/approvals/');
}

/** A session is its expiry and an HMAC of it under the token: nothing to store, and a new token ends every session. */
function validSession(cookie: string, token: string): boolean {
  const [expires, mac] = cookie.split('.');
  const until = Number(expires);
  if (!Number.isSafeInteger(until) || until < Date.now() || mac === undefined) return false;
  return equalSecrets(mac, sessionMac(until, token));
}

function sessionMac(expires: number, token: string): string {
  return createHmac('sha256', token).update(`agentgate admin session ${expires}`).digest('base64url');
}

/** Compared as hashes, so that neither the length nor the content of the token leaks through timing. */
function equalSecrets(given: string, expected: string): boolean {
  return timingSafeEqual(hash('sha256', given, 'buffer'), hash('sha256', expected, 'buffer'));
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const [key, ...value] = part.trim().split('=');
    if (key === name) return value.join('=');
  }
  return undefined;
}

function hostName(host: string | undefined): string | undefined {
  if (host === undefined) return undefined;
  const m = /^(\[[^\]]+\]|[^:]+)(?::\d+)?$/.exec(host);
  return m ? m[1] : undefined;
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown> | undefined> {
  if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) return undefined;
  const text = await readText(req);
  if (text === undefined) return undefined;
  try {
    const parsed = JSON.parse(text) as unknown;
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** A decision's or a sign-in's body, bounded, as text; undefined when too large, stalled, or abandoned. */
async function readText(req: IncomingMessage): Promise<string | undefined> {
  const body = await readRequestBody(req, MAX_DECISION_BYTES, BODY_IDLE_MS);
  return Buffer.isBuffer(body) ? body.toString('utf8') : undefined;
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : text);
}

function redirect(res: ServerResponse, location: string): void {
  res.writeHead(303, { location, 'cache-control': 'no-store', 'content-length': 0 });
  res.end();
}

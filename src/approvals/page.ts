// The approvals web page on the admin port (/approvals/): a person sees the pending actions and approves or denies them.
// The HTML holds no data: its script (/approvals/page.js, src/approvals/page-assets.ts) reads GET /approvals every 2 s
// and renders every value as text, so a request body (the agent's bytes) is never markup. The CSP admits only these files.
import type { ServerResponse } from 'node:http';
import { PAGE_CSS, PAGE_JS } from './page-assets.ts';

/** The sign-in form shown instead of the page when admin_token is set and the browser has no session. */
export function loginPage(message: string | undefined): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,"><title>agentgate approvals: sign in</title></head><body><main><h1>agentgate approvals</h1>${
    message ? `<p role="alert">${escapeHtml(message)}</p>` : ''
  }<form method="post" action="/approvals/session"><label for="token">Admin token</label> <input type="password" id="token" name="token" autocomplete="current-password" required autofocus> <button type="submit">Sign in</button></form></main></body></html>`;
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>agentgate approvals</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/approvals/page.css">
<script src="/approvals/page.js" defer></script>
</head>
<body>
<main>
<h1>agentgate approvals</h1>
<p class="lede">Agents' calls on routes with <code>approval: {by: human}</code> wait here. An approved call runs once, when the agent sends it again.</p>
<p id="updated">Loading…</p>
<noscript><p>This page needs its script to list and decide approvals. Without it, use the JSON API: <code>GET /approvals</code>, <code>POST /approvals/{id}/approve</code> or <code>/deny</code>.</p></noscript>
<div class="decider">
<div class="field"><label for="by">Your name</label><input id="by" name="by" required maxlength="200" autocomplete="name" aria-describedby="by-help"></div>
<div class="field"><label for="reason">Reason (optional)</label><input id="reason" name="reason" maxlength="2000"></div>
<p id="by-help">Your name is recorded with each decision (and remembered in this browser); the reason goes to the agent.</p>
</div>
<div id="notice" role="status"></div>
<div id="problem" role="alert"></div>
<section aria-labelledby="pending-title">
<h2 id="pending-title">Waiting for a decision</h2>
<p id="pending-none" hidden>Nothing is waiting for a decision.</p>
<ul id="pending" class="approvals"></ul>
</section>
<section aria-labelledby="recent-title">
<h2 id="recent-title">Recent decisions</h2>
<p id="recent-none" hidden>None yet.</p>
<ul id="recent" class="approvals"></ul>
</section>
<p id="store"></p>
</main>
</body>
</html>
`;

const ASSETS: Readonly<Record<string, { type: string; body: string }>> = {
  '': { type: 'text/html; charset=utf-8', body: PAGE },
  'page.js': { type: 'text/javascript; charset=utf-8', body: PAGE_JS },
  'page.css': { type: 'text/css; charset=utf-8', body: PAGE_CSS },
};

/** The page and its assets by their name under /approvals/; false for a name that is none of them. */
export function servePageAsset(asset: string, res: ServerResponse): boolean {
  const found = Object.hasOwn(ASSETS, asset) ? ASSETS[asset] : undefined;
  if (!found) return false;
  send(res, 200, found.type, found.body);
  return true;
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function html(res: ServerResponse, status: number, body: string): void {
  send(res, status, 'text/html; charset=utf-8', body);
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), ...PAGE_HEADERS });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/** The page loads nothing from elsewhere, runs only its own script, and is never framed (clickjacking a decision). */
export const PAGE_HEADERS = {
  'cache-control': 'no-store',
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  // Not no-referrer: under it a browser sends Origin: null with the sign-in form's POST, which the admin port's same-origin
  // check refuses (403). same-origin still sends no referrer to any other site.
  'referrer-policy': 'same-origin',
} as const;

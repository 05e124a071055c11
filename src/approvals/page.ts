// The approvals web page on the admin port (/approvals/): a person sees the pending actions and approves or denies them.
import type { ServerResponse } from 'node:http';

/** The sign-in form shown instead of the page when admin_token is set and the browser has no session. */
export function loginPage(message: string | undefined): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>agentgate approvals: sign in</title></head><body><main><h1>agentgate approvals</h1>${
    message ? `<p role="alert">${escapeHtml(message)}</p>` : ''
  }<form method="post" action="/approvals/session"><label>Admin token <input type="password" name="token" autocomplete="current-password" required></label> <button type="submit">Sign in</button></form></main></body></html>`;
}

/** The page and its assets by their name under /approvals/; false for a name that is none of them. */
export function servePageAsset(asset: string, res: ServerResponse): boolean {
  if (asset !== '') return false;
  html(res, 200, '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>agentgate approvals</title></head><body><main><h1>agentgate approvals</h1></main></body></html>');
  return true;
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function html(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(body), ...PAGE_HEADERS });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/** The page loads nothing from elsewhere, runs only its own script, and is never framed (clickjacking a decision). */
export const PAGE_HEADERS = {
  'cache-control': 'no-store',
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
} as const;

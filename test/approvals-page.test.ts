// The approvals page in a real browser (Debian's chromium via playwright-core): a person signs in with the admin token,
// sees an agent's pending call appear without reloading, approves or denies it (and the agent's re-send runs once or is
// refused), sees expiry and refusals; a hostile request body stays text, and nothing breaks the page's CSP or console.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { startUpstream, json, type TestUpstream } from './helpers/upstream.ts';
import { startTestGateway, type TestGateway } from './helpers/gateway.ts';
import { envelopeOf, send, type Reply } from './helpers/http.ts';
import { until } from './helpers/wait.ts';
import { launchChromium } from './helpers/browser.ts';
import { keyHash } from '../src/agents/keys.ts';
import { ADMIN_TOKEN, alice, approvalsConfig } from './helpers/approvals.ts';

const HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">';

const CONFIG = (upstreamUrl: string) =>
  approvalsConfig(
    upstreamUrl,
    `routes:
  - name: delete-customer
    match: {methods: [DELETE], path: '/customers/{id}'}
    upstream: crm
    approval: {by: human, ttl: 15m}
  - name: erase
    match: {methods: [POST], path: '/customers/{id}/erase'}
    upstream: crm
    approval: {by: human, ttl: 15m}
  - name: short
    match: {methods: [POST], path: /short}
    upstream: crm
    approval: {by: human, ttl: 2s}
`);

/** What the browser may log as an error because a test provoked it: a response status on a URL (Chromium logs every 4xx). */
interface Expected {
  status: number;
  url: RegExp;
}

describe('the approvals page in a browser', () => {
  let upstream: TestUpstream;
  let gw: TestGateway;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  /** Console errors, page errors, CSP violations and dialogs no test expected. */
  const problems: string[] = [];
  /** The sign-in form is the page's 401 answer without a session. */
  const expected: Expected[] = [{ status: 401, url: /\/approvals\/$/ }];
  const consoleErrors: string[] = [];
  let launchError: Error | undefined;

  /** A test that needs the browser: without one it fails with the reason chromium did not start. */
  const pageTest = (name: string, timeout: number, fn: () => Promise<void>) =>
    test(name, { timeout }, async () => {
      if (launchError) throw launchError;
      await fn();
    });

  before(async () => {
    upstream = await startUpstream({ '*': (req, res) => json(res, 200, { done: `${req.method} ${req.url}` }) });
    gw = await startTestGateway(CONFIG(upstream.url), { files: { 'agents.yaml': `agents:\n  - {id: alice, keys: ['${keyHash(alice)}']}\n` }, env: { ...process.env, ADMIN_TOKEN } });
    try {
      browser = await launchChromium();
    } catch (err) {
      launchError = err as Error; // every test fails with it: a page test never passes or skips without a browser
      return;
    }
    context = await newContext();
    page = await context.newPage();
  });
  after(async () => {
    await browser?.close().catch(() => undefined);
    await gw?.close();
    await upstream?.close();
  });

  /** A browser context (its own cookies and storage) whose every page reports problems to `problems`. */
  async function newContext(): Promise<BrowserContext> {
    const ctx = await browser.newContext();
    ctx.setDefaultTimeout(10_000);
    await ctx.exposeFunction('__reportViolation', (text: string) => problems.push(`CSP violation: ${text}`));
    await ctx.addInitScript({
      content: "document.addEventListener('securitypolicyviolation', (e) => window.__reportViolation(e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') + ' in ' + e.sourceFile + ':' + e.lineNumber));",
    });
    ctx.on('page', watch);
    return ctx;
  }

  function watch(p: Page): void {
    p.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      const text = msg.text();
      const url = msg.location().url;
      consoleErrors.push(`${text} (${url})`);
      const status = /^Failed to load resource: the server responded with a status of (\d+)/.exec(text);
      if (status && expected.some((e) => e.status === Number(status[1]) && e.url.test(url))) return;
      problems.push(`console error: ${text} (${url})`);
    });
    p.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    p.on('dialog', (dialog) => {
      problems.push(`dialog (${dialog.type()}): ${dialog.message()}`);
      void dialog.dismiss();
    });
  }

  const call = (method: string, path: string, options: { body?: string; contentType?: string; approvalId?: string } = {}) =>
    send(`${gw.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${alice}`,
        ...(options.body !== undefined ? { 'content-type': options.contentType ?? 'application/json' } : {}),
        ...(options.approvalId ? { 'approval-id': options.approvalId } : {}),
      },
      body: options.body,
    });
  const admin = (method: string, path: string, body?: unknown) =>
    send(`${gw.adminUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  const approvalNow = async (id: string) => (await admin('GET', `/approvals/${id}`)).json();
  function required(reply: Reply): string {
    assert.equal(reply.status, 428, reply.text);
    assert.equal(envelopeOf(reply).code, 'APPROVAL_REQUIRED');
    return envelopeOf(reply).approval.id as string;
  }
  const received = (method: string, url: string) => upstream.received.filter((r) => r.method === method && r.url === url).length;

  const button = (p: Page, action: 'Approve' | 'Deny', id: string) => p.getByRole('button', { name: `${action} ${id}`, exact: true });
  const item = (p: Page, list: 'pending' | 'recent', id: string) => p.locator(`#${list} > li[id="${id}"]`);
  const problemText = (p: Page) => p.locator('#problem');

  /** Opens the page without a session (the sign-in form, 401), types the token and submits it. */
  async function signIn(p: Page, token: string): Promise<void> {
    const first = await p.goto(`${gw.adminUrl}/approvals/`);
    assert.equal(first?.status(), 401, 'without a session the page is the sign-in form');
    await p.getByLabel('Admin token').fill(token);
    await p.getByRole('button', { name: 'Sign in' }).click();
  }

  pageTest('(a) signing in: a wrong token is refused with a message; the right one opens the page, which loads the list', 30_000, async () => {
    expected.push({ status: 401, url: /\/approvals\/session$/ });
    await signIn(page, 'not-the-admin-token');
    await page.getByRole('alert').filter({ hasText: 'That token is not the admin token.' }).waitFor();
    assert.equal(await page.getByLabel('Admin token').count(), 1, 'the form is shown again');
    assert.deepEqual(await context.cookies(), [], 'a wrong token gets no session');

    await signIn(page, ADMIN_TOKEN);
    await page.getByRole('heading', { name: 'Waiting for a decision' }).waitFor();
    assert.equal(new URL(page.url()).pathname, '/approvals/');
    const [cookie] = await context.cookies();
    assert.equal(cookie?.name, 'agentgate_admin');
    assert.equal(cookie?.httpOnly, true);
    assert.equal(cookie?.sameSite, 'Strict');
    await page.locator('#updated').filter({ hasText: /^Updated / }).waitFor();
    assert.equal(await page.locator('#pending-none').isVisible(), true, 'nothing pending yet, and the page says so');
    assert.match((await page.locator('#store').textContent()) ?? '', /restart forgets them/);
  });

  pageTest('(b) a pending DELETE appears without a reload; approving it with a name records that name, and the re-send runs once', 30_000, async () => {
    await page.evaluate('window.__sameDocument = 42');
    let navigations = 0;
    const counted = (frame: unknown) => frame === page.mainFrame() && navigations++;
    page.on('framenavigated', counted);

    const id = required(await call('DELETE', '/customers/77?reason=churn'));
    const approve = button(page, 'Approve', id);
    await approve.waitFor({ timeout: 6000 });
    assert.equal(await page.evaluate('window.__sameDocument'), 42, 'the page was not reloaded');
    assert.equal(navigations, 0);
    page.off('framenavigated', counted);
    const shown = (await item(page, 'pending', id).textContent()) ?? '';
    for (const part of ['DELETE /customers/77', 'agent:alice', 'delete-customer', 'reason=churn', 'asked', 'expires in 14 min']) assert.ok(shown.includes(part), `"${part}" in: ${shown}`);
    assert.equal(await button(page, 'Deny', id).isEnabled(), true);

    // Without a name nothing is sent.
    await page.getByLabel('Your name', { exact: true }).fill('');
    await approve.click();
    await problemText(page).filter({ hasText: 'Enter your name first' }).waitFor();
    assert.equal(await page.getByLabel('Your name', { exact: true }).getAttribute('aria-invalid'), 'true');
    assert.equal((await approvalNow(id)).status, 'pending');

    await page.getByLabel('Your name', { exact: true }).fill('Dana Ops');
    await approve.click();
    await page.locator('#notice').filter({ hasText: `Approved DELETE /customers/77 (${id}) as Dana Ops.` }).waitFor();
    const approved = await approvalNow(id);
    assert.equal(approved.status, 'approved');
    assert.equal(approved.decided_by, 'Dana Ops');
    await item(page, 'recent', id).filter({ hasText: 'approved' }).filter({ hasText: 'by Dana Ops' }).waitFor();
    assert.equal(await item(page, 'pending', id).count(), 0);

    assert.equal(received('DELETE', '/customers/77?reason=churn'), 0);
    const executed = await call('DELETE', '/customers/77?reason=churn', { approvalId: id });
    assert.equal(executed.status, 200, executed.text);
    const again = await call('DELETE', '/customers/77?reason=churn', { approvalId: id });
    assert.notEqual(required(again), id, 'used once: sent again, it needs a new approval');
    assert.equal(received('DELETE', '/customers/77?reason=churn'), 1, 'the upstream got it exactly once');
    await item(page, 'recent', id).filter({ hasText: 'executed' }).waitFor({ timeout: 6000 });
  });

  pageTest('(c) a request body with markup is shown as literal text and nothing of it runs', 30_000, async () => {
    const id = required(await call('POST', '/customers/13/erase', { body: HOSTILE, contentType: 'text/plain' }));
    await button(page, 'Approve', id).waitFor({ timeout: 6000 });
    const body = item(page, 'pending', id).locator('pre.body');
    assert.equal(await body.textContent(), HOSTILE);
    assert.equal(await body.getAttribute('aria-label'), `Request body of ${id}`);
    assert.equal(await page.locator('main script, main img').count(), 0, 'no element was made from the body');
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(await page.evaluate('typeof window.__pwned'), 'undefined');
  });

  pageTest('(d) denying with a reason: the agent is refused with that reason; the name is remembered across a reload', 30_000, async () => {
    await page.reload();
    assert.equal(await page.getByLabel('Your name', { exact: true }).inputValue(), 'Dana Ops');
    const id = required(await call('DELETE', '/customers/88'));
    await button(page, 'Deny', id).waitFor({ timeout: 6000 });
    await page.getByLabel('Reason (optional)').fill('customer has open invoices');
    await button(page, 'Deny', id).click();
    await page.locator('#notice').filter({ hasText: `Denied DELETE /customers/88 (${id}) as Dana Ops.` }).waitFor();
    const denied = await approvalNow(id);
    assert.equal(denied.status, 'denied');
    assert.equal(denied.decided_by, 'Dana Ops');
    assert.equal(denied.reason, 'customer has open invoices');
    assert.equal(await page.getByLabel('Reason (optional)').inputValue(), '', 'a reason is for one decision');
    await item(page, 'recent', id).filter({ hasText: 'denied' }).filter({ hasText: 'Reason: customer has open invoices' }).waitFor();

    const refused = await call('DELETE', '/customers/88', { approvalId: id });
    assert.equal(refused.status, 403, refused.text);
    assert.equal(envelopeOf(refused).code, 'APPROVAL_DENIED');
    assert.equal(envelopeOf(refused).reason, 'customer has open invoices');
    assert.equal(received('DELETE', '/customers/88'), 0);
  });

  pageTest('(e) an approval that expires on screen is shown expired; a decision on it is refused (409), and a stale page says so', 40_000, async () => {
    // A second person's page whose clock stands still: it still offers the buttons after the gateway's clock passed expiry.
    const staleContext = await newContext();
    const stale = await staleContext.newPage();
    await stale.clock.install();
    await signIn(stale, ADMIN_TOKEN);
    await stale.locator('#updated').filter({ hasText: /^Updated / }).waitFor();
    await stale.clock.pauseAt(Date.now() + 1000);

    const id = required(await call('POST', '/short', { body: '{"all": true}' }));
    await stale.clock.runFor(2100); // its next poll, once
    await button(stale, 'Approve', id).waitFor({ timeout: 5000 });
    await button(page, 'Approve', id).waitFor({ timeout: 5000 });

    // The live page: expired within the ttl and a poll, with no button left for it.
    await item(page, 'recent', id).locator('.status.expired').waitFor({ timeout: 8000 });
    assert.match((await item(page, 'recent', id).textContent()) ?? '', /nobody decided in time/);
    assert.equal(await button(page, 'Approve', id).count(), 0);
    assert.equal(await button(page, 'Deny', id).count(), 0);

    const late = await admin('POST', `/approvals/${id}/approve`, { by: 'api person' });
    assert.equal(late.status, 409, late.text);
    assert.equal(late.json().status, 'expired');

    // The stale page still offers Approve; clicking it shows the gateway's refusal.
    assert.equal(await button(stale, 'Approve', id).isEnabled(), true);
    expected.push({ status: 409, url: new RegExp(`/approvals/${id}/approve$`) });
    await stale.getByLabel('Your name', { exact: true }).fill('Late Larry');
    await button(stale, 'Approve', id).click();
    await problemText(stale).filter({ hasText: `The gateway refused (409): approval ${id} expired before this decision` }).waitFor();
    assert.equal(await button(stale, 'Approve', id).count(), 0, 'the refusal refreshed the list: the approval is no longer pending there');
    const afterwards = await approvalNow(id);
    assert.equal(afterwards.status, 'expired');
    assert.equal(afterwards.decided_by, undefined);
    await staleContext.close();
  });

  pageTest('(e2) a decision after the session ended is refused (401) and the page says the person is signed out', 30_000, async () => {
    const ctx = await newContext();
    const p = await ctx.newPage();
    await signIn(p, ADMIN_TOKEN);
    const id = required(await call('DELETE', '/customers/99'));
    await button(p, 'Approve', id).waitFor({ timeout: 6000 });
    await ctx.clearCookies();
    expected.push({ status: 401, url: new RegExp(`/approvals/${id}/approve$`) });
    await p.getByLabel('Your name', { exact: true }).fill('Signed Out Sam');
    await button(p, 'Approve', id).click();
    await problemText(p).filter({ hasText: 'You are signed out (the gateway refused the decision (401)' }).waitFor();
    assert.equal(await problemText(p).getByRole('link', { name: 'Sign in again' }).getAttribute('href'), '/approvals/');
    assert.equal(await button(p, 'Approve', id).isDisabled(), true);
    assert.equal((await approvalNow(id)).status, 'pending');
    await ctx.close();
  });

  pageTest('(e3) a link to one approval (/approvals/#apr_..., as webhooks send) brings it into view and focus', 30_000, async () => {
    const id = required(await call('DELETE', '/customers/55'));
    await page.goto(`${gw.adminUrl}/approvals/#${id}`);
    await page.reload(); // a fresh load with the fragment, as when the link is opened
    await item(page, 'pending', id).and(page.locator('.linked')).waitFor({ timeout: 6000 });
    assert.equal(await page.evaluate('document.activeElement.id'), id);
    assert.equal(await page.locator('.linked').count(), 1);
  });

  pageTest('(f) no console error, page error, dialog or CSP violation on any page; the watch itself does catch a violation', 30_000, async () => {
    await new Promise((resolve) => setTimeout(resolve, 2500)); // one more poll of the main page
    assert.deepEqual(problems, [], `browser console errors seen (expected ones included):\n${consoleErrors.join('\n')}`);
    // The canary: inline script is what the CSP forbids, and the watch above reports it.
    const p = await context.newPage();
    await p.goto(`${gw.adminUrl}/approvals/`);
    await p.evaluate("document.body.insertAdjacentHTML('beforeend', '<img src=\"data:,\" onerror=\"window.__pwned=3\">')");
    const reported = (): string[] => problems;
    await until(async () => reported().some((m) => m.startsWith('CSP violation: script-src')), 5000, () => `no CSP violation reported; problems: ${reported().join('; ')}`);
    assert.equal(await p.evaluate('typeof window.__pwned'), 'undefined');
    await p.close();
  });
});

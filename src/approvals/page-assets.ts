// The approvals page's script and style sheet, served by src/approvals/page.ts as /approvals/page.js and /approvals/page.css
// (strings here, so that the build ships them in dist/ with no copy step). The page's CSP allows only these two files:
// no inline script, no inline style. The script is plain browser JavaScript, kept free of backticks and dollar-brace.

export const PAGE_JS = String.raw`// The approvals page: polls GET /approvals every 2 s and lets a person approve or deny what waits for a decision.
// Everything the gateway sends is put on the page as text (textContent), never parsed as HTML: a request body is
// whatever the agent sent.
'use strict';

const POLL_MS = 2000;
const RECENT_MAX = 50;
const NAME_KEY = 'agentgate.approvals.by';

const byId = (id) => document.getElementById(id);
const nameInput = byId('by');
const reasonInput = byId('reason');
const pendingList = byId('pending');
const recentList = byId('recent');

/** The gateway's clock minus this browser's: ages and time left count by the gateway's clock. */
let skew = 0;
let signedOut = false;
let failing = false;
let requested = 0;
let rendered = 0;
let recentKey = '';
/** The pending approvals on the page by id: {item, buttons, expires, busy}. */
const shown = new Map();

const now = () => Date.now() + skew;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function duration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return s + ' s';
  const m = Math.floor(s / 60);
  if (m < 10) return m + ' min ' + (s % 60) + ' s';
  if (m < 60) return m + ' min';
  return Math.floor(m / 60) + ' h ' + (m % 60) + ' min';
}

/** A time that keeps itself current: "asked 2 min ago" (kind ago) or "expires in 13 min" (kind left). */
function relative(label, at, kind) {
  const node = el('span', 'time');
  node.dataset.at = String(at);
  node.dataset.label = label;
  node.dataset.kind = kind;
  updateTime(node);
  return node;
}

function updateTime(node) {
  const at = Number(node.dataset.at);
  const label = node.dataset.label ? node.dataset.label + ' ' : '';
  if (node.dataset.kind === 'left') node.textContent = at > now() ? label + 'in ' + duration(at - now()) : 'expired';
  else node.textContent = label + (now() - at < 5000 ? 'just now' : duration(now() - at) + ' ago');
}

function title(a) {
  const p = a.preview || {};
  return (p.method || '?') + ' ' + (p.path || '?');
}

/** What the agent asked for: who, on which route, and the request as the gateway recorded it. */
function preview(a) {
  const p = a.preview || {};
  const box = el('div', 'preview');
  const facts = el('dl');
  const fact = (name, value, className) => {
    if (value === undefined || value === '') return;
    facts.append(el('dt', '', name), el('dd', className, value));
  };
  fact('Agent', a.agent);
  fact('Route', a.route);
  fact('Method', p.method);
  fact('Path', p.path, 'code');
  fact('Query', p.query, 'code');
  fact('Content type', p.content_type);
  fact('Body', p.body_bytes ? p.body_bytes + ' bytes' + (p.body_truncated ? ' (shown cut short)' : '') : 'none');
  box.append(facts);
  if (p.body !== undefined) {
    const body = el('pre', 'body', p.body);
    body.tabIndex = 0;
    body.setAttribute('aria-label', 'Request body of ' + a.id);
    box.append(body);
  }
  return box;
}

function button(label, action, a) {
  const b = el('button', action, label);
  b.type = 'button';
  b.setAttribute('aria-label', label + ' ' + a.id);
  b.addEventListener('click', () => decide(a, action));
  return b;
}

function pendingEntry(a) {
  const item = el('li', 'approval');
  item.id = a.id;
  const times = el('p', 'times');
  times.append(relative('asked', Date.parse(a.created_at), 'ago'), ' · ', relative('expires', Date.parse(a.expires_at), 'left'));
  const buttons = [button('Approve', 'approve', a), button('Deny', 'deny', a)];
  const actions = el('div', 'actions');
  actions.append(...buttons);
  item.append(el('h3', '', title(a)), preview(a), times, el('p', 'id', a.id), actions);
  return { item, buttons, expires: Date.parse(a.expires_at), busy: false };
}

/** Buttons are live only while the approval can still be decided and no decision on it is on its way. */
function settle(entry) {
  const expired = now() >= entry.expires;
  entry.item.classList.toggle('expired', expired);
  for (const b of entry.buttons) b.disabled = signedOut || entry.busy || expired;
}

function lastEvent(a) {
  return Date.parse(a.status === 'expired' ? a.expires_at : a.executed_at || a.decided_at || a.created_at);
}

function recentItem(a) {
  const item = el('li', 'approval done');
  item.id = a.id;
  const outcome = el('p', 'outcome');
  outcome.append(el('strong', 'status ' + a.status, a.status), ' ');
  if (a.status === 'approved') outcome.append('by ' + a.decided_by + ', ', relative('', Date.parse(a.decided_at), 'ago'), '; the agent may run it once: ', relative('expires', Date.parse(a.expires_at), 'left'));
  else if (a.status === 'denied') outcome.append('by ' + a.decided_by + ', ', relative('', Date.parse(a.decided_at), 'ago'));
  else if (a.status === 'executed') outcome.append(relative('', Date.parse(a.executed_at), 'ago'), a.decided_by ? ', approved by ' + a.decided_by : '');
  else outcome.append(relative('', Date.parse(a.expires_at), 'ago'), a.decided_by ? ', approved by ' + a.decided_by + ' but never run' : ', nobody decided in time');
  item.append(el('h3', '', title(a)), outcome);
  if (a.reason) item.append(el('p', 'reason', 'Reason: ' + a.reason));
  const details = el('details');
  details.append(el('summary', '', 'Request'), preview(a), el('p', 'id', a.id));
  item.append(details);
  return item;
}

function render(data) {
  skew = Date.parse(data.now) - Date.now();
  // by: agent approvals are the agents' own confirmations: no person decides them.
  const all = data.approvals.filter((a) => a.by === 'human');
  const pending = all.filter((a) => a.status === 'pending').sort((x, y) => Date.parse(x.expires_at) - Date.parse(y.expires_at));
  const ids = new Set(pending.map((a) => a.id));
  for (const [id, entry] of shown) {
    if (!ids.has(id)) {
      entry.item.remove();
      shown.delete(id);
    }
  }
  // Items stay in place (and keep focus) while they are pending; a new one is inserted where it belongs.
  pending.forEach((a, i) => {
    let entry = shown.get(a.id);
    if (!entry) shown.set(a.id, (entry = pendingEntry(a)));
    if (pendingList.children[i] !== entry.item) pendingList.insertBefore(entry.item, pendingList.children[i] || null);
  });
  byId('pending-none').hidden = pending.length > 0;

  const done = all.filter((a) => a.status !== 'pending').sort((x, y) => lastEvent(y) - lastEvent(x)).slice(0, RECENT_MAX);
  byId('recent-none').hidden = done.length > 0;
  const key = done.map((a) => a.id + ':' + a.status).join(' ');
  if (key !== recentKey) {
    recentKey = key;
    recentList.replaceChildren(...done.map(recentItem));
  }
  showLinked();
  byId('store').textContent = data.store === 'memory' ? 'Approvals are kept in this gateway process: a restart forgets them.' : 'Approvals are kept in the shared store (' + data.store + ').';
  tick();
}

/** A link to one approval (/approvals/#apr_..., as webhooks send) brings it into view once it is on the page. */
let linkedDone = false;
function showLinked() {
  const id = location.hash.slice(1);
  if (linkedDone || !/^apr_[A-Za-z0-9_-]+$/.test(id)) return;
  linkedDone = true;
  const target = byId(id);
  for (const node of document.querySelectorAll('.linked')) node.classList.remove('linked');
  if (!target) return notice('The linked approval ' + id + ' is not on this page: it may be older than the store keeps, or not for a person to decide.');
  target.classList.add('linked');
  target.tabIndex = -1;
  target.scrollIntoView({ block: 'center' });
  target.focus({ preventScroll: true });
}
window.addEventListener('hashchange', () => {
  linkedDone = false;
  showLinked();
});

function tick() {
  for (const node of document.querySelectorAll('[data-at]')) updateTime(node);
  for (const entry of shown.values()) settle(entry);
}

function notice(text) {
  byId('problem').replaceChildren();
  byId('notice').textContent = text;
}

function problem(...parts) {
  byId('notice').replaceChildren();
  byId('problem').replaceChildren(...parts);
}

function signOut(detail) {
  signedOut = true;
  const again = el('a', '', 'Sign in again');
  again.href = '/approvals/';
  problem('You are signed out (' + detail + '): the session ended or the admin token changed. Nothing can be decided here until you sign in again. ', again);
  byId('updated').textContent = 'Not updated any more: signed out.';
  tick();
}

async function refresh() {
  if (signedOut) return;
  const seq = ++requested;
  let reply;
  try {
    reply = await fetch('/approvals', { credentials: 'same-origin', cache: 'no-store', headers: { accept: 'application/json' } });
  } catch {
    return stale('the gateway did not answer');
  }
  const data = await reply.json().catch(() => ({}));
  // A slower, older answer never overwrites a newer one.
  if (seq < rendered) return;
  rendered = seq;
  if (reply.status === 401) return signOut('the list answered 401');
  if (!reply.ok || !Array.isArray(data.approvals)) return stale(data.detail || 'the gateway answered ' + reply.status);
  if (failing) notice('Connected again: the list is current.');
  failing = false;
  byId('updated').textContent = 'Updated ' + new Date(now()).toLocaleTimeString() + '.';
  render(data);
}

function stale(why) {
  if (!failing) problem('The list may be out of date: ' + why + '. Trying again every ' + POLL_MS / 1000 + ' s.');
  failing = true;
  byId('updated').textContent = 'Not current: ' + why + '.';
}

async function decide(a, action) {
  const entry = shown.get(a.id);
  const by = nameInput.value.trim();
  const done = action === 'approve' ? 'Approved' : 'Denied';
  if (!by) {
    nameInput.setAttribute('aria-invalid', 'true');
    problem('Enter your name first: it is recorded as who decided. Nothing was sent.');
    nameInput.focus();
    return;
  }
  nameInput.removeAttribute('aria-invalid');
  const reason = reasonInput.value.trim();
  if (entry) {
    entry.busy = true;
    settle(entry);
  }
  try {
    const reply = await fetch('/approvals/' + encodeURIComponent(a.id) + '/' + action, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(reason ? { by, reason } : { by }),
    });
    const result = await reply.json().catch(() => ({}));
    if (reply.ok) {
      notice(done + ' ' + title(a) + ' (' + a.id + ') as ' + by + '.');
      reasonInput.value = '';
    } else if (reply.status === 401) {
      signOut('the gateway refused the decision (401): ' + (result.detail || 'unauthorized') + '; nothing was decided');
    } else {
      problem('Not ' + done.toLowerCase() + ': ' + title(a) + ' (' + a.id + '). The gateway refused (' + reply.status + '): ' + (result.detail || 'no reason given') + '.');
    }
  } catch {
    problem('Not ' + done.toLowerCase() + ': ' + title(a) + ' (' + a.id + '). The gateway did not answer; the list shows whether anything changed.');
  }
  if (entry) entry.busy = false;
  await refresh();
  if (entry) settle(entry);
}

function rememberName() {
  try {
    localStorage.setItem(NAME_KEY, nameInput.value.trim());
  } catch {
    // storage is off: the name is typed again next time
  }
}

try {
  nameInput.value = localStorage.getItem(NAME_KEY) || '';
} catch {
  // storage is off
}
nameInput.addEventListener('input', () => {
  nameInput.removeAttribute('aria-invalid');
  rememberName();
});

async function poll() {
  await refresh();
  if (!signedOut) setTimeout(poll, POLL_MS);
}
void poll();
setInterval(tick, 1000);
`;

export const PAGE_CSS = `:root { color-scheme: light dark; font-family: system-ui, sans-serif; line-height: 1.45; }
body { margin: 0 auto; max-width: 62rem; padding: 1rem 1.25rem 3rem; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; }
h3 { font-size: 1.05rem; margin: 0 0 .5rem; font-family: ui-monospace, monospace; overflow-wrap: anywhere; }
.lede, #updated, #store { color: GrayText; margin: .25rem 0; }
.decider { display: flex; flex-wrap: wrap; gap: .75rem 1.5rem; align-items: flex-end; padding: .75rem 1rem; border: 1px solid #8886; border-radius: 6px; }
.field { display: flex; flex-direction: column; gap: .2rem; }
.field label { font-weight: 600; }
#by-help { flex-basis: 100%; margin: 0; font-size: .9rem; }
.decider input { font: inherit; padding: .3rem .45rem; min-width: 16rem; }
input[aria-invalid="true"] { outline: 2px solid #c4320a; }
#notice, #problem { padding: .5rem .75rem; border-radius: 6px; margin: .75rem 0; }
#notice { background: #1a7f3722; }
#problem { background: #c4320a22; font-weight: 600; }
#notice:empty, #problem:empty { display: none; }
.approvals { list-style: none; padding: 0; margin: 0; }
.approval { border: 1px solid #8887; border-radius: 6px; padding: .75rem 1rem; margin: .75rem 0; }
.approval.expired { border-style: dashed; opacity: .75; }
.approval.linked { border: 2px solid #2f6feb; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: 0 0 .5rem; }
dt { font-weight: 600; }
dd { margin: 0; overflow-wrap: anywhere; }
.code, .id { font-family: ui-monospace, monospace; }
.id { font-size: .85rem; color: GrayText; }
pre.body { white-space: pre-wrap; overflow-wrap: anywhere; max-height: 20rem; overflow: auto; margin: 0 0 .5rem; padding: .5rem .75rem; background: #8882; border-radius: 4px; }
.times { margin: .25rem 0; }
.actions { display: flex; gap: .75rem; }
button { font: inherit; padding: .35rem 1.1rem; border-radius: 4px; border: 1px solid transparent; color: #fff; cursor: pointer; }
button.approve { background: #1a7f37; }
button.deny { background: #b42318; }
button:disabled { opacity: .4; cursor: not-allowed; }
:focus-visible { outline: 3px solid #2f6feb; outline-offset: 2px; }
.status { text-transform: uppercase; font-size: .8rem; letter-spacing: .04em; }
.status.approved, .status.executed { color: #1a7f37; }
.status.denied { color: #b42318; }
.status.expired { color: GrayText; }
details summary { cursor: pointer; }
`;

// The console shell: session, navigation and the hash router. Each page is a module with
// `render(root, ctx)`; it may return a function that stops what it started (timers, the
// live feed), called before the next page renders.

import { api, configure, exchangeKey } from './api.js';
import { errorBox, h, replace } from './dom.js';
import * as actions from './pages/actions.js';
import * as approvals from './pages/approvals.js';
import * as fleet from './pages/fleet.js';
import * as incident from './pages/incident.js';
import * as incidents from './pages/incidents.js';
import * as ask from './pages/ask.js';
import * as login from './pages/login.js';
import * as policies from './pages/policies.js';
import * as reports from './pages/reports.js';
import * as runbook from './pages/runbook.js';
import * as stats from './pages/stats.js';

const PAGES = [
  { path: /^\/fleet$/, page: fleet, nav: 'fleet' },
  { path: /^\/incidents$/, page: incidents, nav: 'incidents' },
  { path: /^\/incidents\/([\w-]+)$/, page: incident, nav: 'incidents' },
  { path: /^\/ask$/, page: ask, nav: 'ask', may: 'ask' },
  { path: /^\/stats$/, page: stats, nav: 'stats' },
  { path: /^\/reports$/, page: reports, nav: 'reports' },
  { path: /^\/approvals$/, page: approvals, nav: 'approvals' },
  { path: /^\/actions$/, page: actions, nav: 'actions' },
  { path: /^\/policies$/, page: policies, nav: 'policies', may: 'policy_bundle' },
  { path: /^\/runbooks\/(RB-\d+)$/, page: runbook, nav: null },
];
const STORED = 'seawatch.session';

// The token lives for this tab only (sessionStorage), never the API key.
let session = JSON.parse(sessionStorage.getItem(STORED) || 'null');
let leave = null; // what the current page must stop
let page = null; // aborts the current page's requests when another one renders

const main = document.getElementById('main');

function hashParts() {
  const [path, query = ''] = location.hash.replace(/^#/, '').split('?');
  return { path: path || '/fleet', query: new URLSearchParams(query) };
}

/** A page's filters belong in its address (shareable, kept on reload), without a new
 * history entry or a re-render for every change. */
function setQuery(query) {
  const { path } = hashParts();
  const text = new URLSearchParams(
    Object.entries(query).filter(([, v]) => v !== '' && v !== null && v !== undefined),
  ).toString();
  history.replaceState(null, '', `#${path}${text ? `?${text}` : ''}`);
}

function may(action) {
  return Boolean(session && session.may.includes(action));
}

function chrome(current) {
  const signedIn = Boolean(session);
  document.getElementById('nav').hidden = !signedIn;
  document.getElementById('signout').hidden = !signedIn;
  const who = document.getElementById('who');
  who.hidden = !signedIn;
  if (signedIn) replace(who, session.name, ' · ', h('strong', { class: 'role' }, session.role));
  for (const link of document.querySelectorAll('#nav a')) {
    link.hidden = Boolean(link.dataset.may) && !may(link.dataset.may);
    if (link.dataset.nav === current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (!signedIn) setLive(null);
}

/** The header's live-feed indicator: null hides it. */
function setLive(state) {
  const el = document.getElementById('live');
  el.hidden = !state;
  el.dataset.state = state || '';
  el.textContent = state === 'live' ? 'Live' : state ? 'Reconnecting…' : '';
}

function signOut(message) {
  sessionStorage.removeItem(STORED);
  session = null;
  configure(null);
  route(message);
}

async function signIn(key) {
  const issued = await exchangeKey(key);
  configure(issued.token);
  const me = await api('/api/v3/me');
  session = { token: issued.token, ...me };
  sessionStorage.setItem(STORED, JSON.stringify(session));
  location.hash = '#/fleet';
  route();
}

async function route(message) {
  if (leave) leave();
  leave = null;
  if (page) page.abort();
  page = new AbortController();
  const { signal } = page;
  if (!session) {
    chrome(null);
    document.title = 'Sign in · Seawatch';
    login.render(main, { signIn, message });
    return;
  }
  const { path, query } = hashParts();
  const found = PAGES.map((p) => ({ ...p, match: path.match(p.path) })).find((p) => p.match);
  if (!found || (found.may && !may(found.may))) {
    location.replace('#/fleet');
    return;
  }
  chrome(found.nav);
  replace(main, h('p', { class: 'muted' }, 'Loading…'));
  const ctx = { signal, query, setQuery, may, setLive, user: session.name, params: found.match.slice(1) };
  try {
    const stop = await found.page.render(main, ctx);
    if (!signal.aborted) leave = stop || null;
    else if (stop) stop(); // another page took over meanwhile
  } catch (err) {
    if (!signal.aborted) replace(main, errorBox(err));
  }
}

document.getElementById('signout').addEventListener('click', () => signOut());
document.getElementById('skip').addEventListener('click', (event) => {
  event.preventDefault(); // "#main" is not a route
  main.focus();
});
window.addEventListener('hashchange', () => route());

configure(session && session.token, () => signOut('Your session ended: sign in again.'));
if (session) {
  // The role (and what it may do) is read again: a key's role can change between visits.
  api('/api/v3/me')
    .then((me) => {
      session = { ...session, ...me };
      sessionStorage.setItem(STORED, JSON.stringify(session));
      route();
    })
    .catch(() => session && route()); // a refused token has signed out already
} else {
  route();
}

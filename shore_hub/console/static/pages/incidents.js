// Incidents across the fleet: filters (kept in the address), counts, live updates from the
// SSE feed, and keyboard navigation (j/k or arrows move, Enter opens).

import { api, follow, terms } from '../api.js';
import { badge, errorBox, field, h, replace, select, when, words } from '../dom.js';

const PAGE = 100;
const PERIODS = [
  ['', 'Any time'],
  ['1h', 'Last hour'],
  ['24h', 'Last 24 hours'],
  ['7d', 'Last 7 days'],
  ['30d', 'Last 30 days'],
];
const PERIOD_S = { '1h': 3600, '24h': 86400, '7d': 7 * 86400, '30d': 30 * 86400 };

export async function render(root, { signal, query, setQuery, setLive }) {
  const vocabulary = await terms();
  const fleet = await api('/api/v3/fleet', { signal });
  const filters = {};
  for (const name of ['ship', 'severity', 'type', 'status', 'period']) filters[name] = query.get(name) || '';

  let items = [];
  let next = null;
  let selected = 0;
  const fresh = new Set(); // ids changed live since the page opened

  const counts = h('p', { class: 'summary', 'aria-live': 'polite' });
  const body = h('tbody');
  const more = h('button', { type: 'button', hidden: true, onclick: () => reload(true) }, 'Load more');
  const problem = h('div', { 'aria-live': 'assertive' });
  const announce = h('p', { class: 'sr-only', role: 'status' });

  function choice(name, label, values) {
    const options = [['', `Any ${label.toLowerCase()}`], ...values.map((v) => [v, words(v)])];
    return field(label, select(name, options, filters[name], (event) => {
      filters[name] = event.target.value;
      reload();
      if (name === 'ship') listen(); // the feed is asked for this ship's changes only
    }));
  }

  const ships = fleet.map((s) => s.ship_id);
  const bar = h(
    'div',
    { class: 'filters' },
    choice('ship', 'Ship', ships),
    choice('severity', 'Severity', [...vocabulary.severity].reverse()),
    choice('type', 'Type', vocabulary.type),
    choice('status', 'Status', vocabulary.status),
    field('Time', select('period', PERIODS, filters.period, (event) => {
      filters.period = event.target.value;
      reload();
    })),
  );

  function params() {
    const p = { ship: filters.ship, severity: filters.severity, type: filters.type, status: filters.status };
    if (filters.period) p.since = new Date(Date.now() - PERIOD_S[filters.period] * 1000).toISOString();
    return p;
  }

  let latest = 0; // filters change faster than answers come: only the last one counts
  async function load(append) {
    setQuery(filters);
    const mine = ++latest;
    const page = await api('/api/v3/incidents', {
      signal,
      query: { ...params(), limit: PAGE, cursor: append ? next : undefined },
    });
    if (mine !== latest) return;
    const keep = items[selected] && items[selected].id;
    items = append ? [...items, ...page.items] : page.items;
    next = page.next_cursor;
    const at = items.findIndex((i) => i.id === keep);
    selected = at >= 0 ? at : Math.min(selected, Math.max(items.length - 1, 0));
    draw();
  }

  function reload(append = false) {
    load(append).then(
      () => replace(problem),
      (err) => signal.aborted || replace(problem, errorBox(err)),
    );
  }

  function draw() {
    const bySeverity = {};
    for (const i of items) bySeverity[i.severity] = (bySeverity[i.severity] || 0) + 1;
    const many = items.length !== 1 || next;
    replace(
      counts,
      `${items.length}${next ? '+' : ''} incident${many ? 's' : ''}`,
      [...vocabulary.severity].reverse().filter((s) => bySeverity[s]).map((s) => [' ', h('span', { class: `badge sev-${s}` }, `${bySeverity[s]} ${s}`)]),
    );
    replace(
      body,
      items.length
        ? items.map((inc, n) => row(inc, n))
        : h('tr', {}, h('td', { colspan: 8 }, 'No incident matches these filters.')),
    );
    more.hidden = !next;
  }

  function row(inc, n) {
    const summary = inc.narrative || (inc.evidence[0] && inc.evidence[0].summary) || '';
    return h(
      'tr',
      {
        'data-id': inc.id,
        class: [n === selected ? 'selected' : '', fresh.has(inc.id) ? 'fresh' : ''].join(' ').trim() || null,
        'aria-current': n === selected ? 'true' : null,
        tabindex: n === selected ? '0' : '-1',
        onclick: (event) => {
          if (event.target.closest('a')) return;
          location.hash = `#/incidents/${inc.id}`;
        },
      },
      h('td', { 'data-label': 'Severity' }, badge('sev', inc.severity)),
      h('th', { scope: 'row', 'data-label': 'Incident' }, h('a', { href: `#/incidents/${inc.id}` }, words(inc.type))),
      h('td', { 'data-label': 'Ship' }, inc.ship_id),
      h('td', { 'data-label': 'Device' }, inc.device),
      h('td', { 'data-label': 'Status' }, badge('status', inc.status)),
      h('td', { 'data-label': 'First seen' }, when(inc.first_seen)),
      h('td', { 'data-label': 'Last seen' }, when(inc.last_seen)),
      h('td', { 'data-label': 'Summary', class: 'text', title: summary }, summary),
    );
  }

  function move(to) {
    if (!items.length) return;
    selected = Math.max(0, Math.min(items.length - 1, to));
    draw();
    const tr = body.querySelector('tr.selected');
    tr.focus();
    tr.scrollIntoView({ block: 'nearest' });
  }

  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest('input, select, textarea, button, a')) return;
    if (event.key === 'j' || event.key === 'ArrowDown') move(selected + 1);
    else if (event.key === 'k' || event.key === 'ArrowUp') move(selected - 1);
    else if (event.key === 'Enter' && items[selected]) location.hash = `#/incidents/${items[selected].id}`;
    else return;
    event.preventDefault();
  }

  // Live: a change from the feed reloads the list with its filters (the server's filter
  // is the one that counts); rows that changed are marked.
  let stopFeed = null;
  let pending = null;
  function listen() {
    if (stopFeed) stopFeed();
    stopFeed = follow({ ship: filters.ship }, (change) => {
      fresh.add(change.id);
      replace(announce, `${words(change.type)} on ${change.ship_id} is ${change.status}`);
      clearTimeout(pending);
      pending = setTimeout(reload, 250);
    }, setLive);
  }

  replace(
    root,
    h('h1', {}, 'Incidents'),
    bar,
    problem,
    counts,
    h('p', { class: 'muted keys' }, 'Keys: j / k or ↓ / ↑ to move, Enter to open.'),
    h(
      'div',
      { class: 'scroll' },
      h(
        'table',
        { class: 'grid incidents' },
        h('caption', { class: 'sr-only' }, 'Incidents, newest first'),
        h('thead', {}, h('tr', {}, ['Severity', 'Incident', 'Ship', 'Device', 'Status', 'First seen', 'Last seen', 'Summary'].map((c) => h('th', { scope: 'col' }, c)))),
        body,
      ),
    ),
    more,
    announce,
  );
  await load(false);
  listen();
  document.addEventListener('keydown', onKey);
  return () => {
    document.removeEventListener('keydown', onKey);
    clearTimeout(pending);
    if (stopFeed) stopFeed();
    setLive(null);
  };
}

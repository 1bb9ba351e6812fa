// Fleet overview: one row per ship from GET /api/v3/fleet, sortable and filterable, reloaded
// every 30 s (ships send a heartbeat a minute). No map: heartbeats carry no position.

import { api, terms } from '../api.js';
import { badge, duration, field, h, replace, select, since, when } from '../dom.js';

const REFRESH_MS = 30000;
const LINK_ORDER = ['down', 'degraded', 'unknown', 'up'];

export async function render(root, { signal, query, setQuery }) {
  const { severity } = await terms();
  const worstFirst = [...severity].reverse();
  const state = {
    text: query.get('q') || '',
    link: query.get('link') || '',
    sort: query.get('sort') || 'link',
    desc: query.get('desc') === '1',
  };
  let ships = await api('/api/v3/fleet', { signal });

  // Sort keys: the worst first when ascending (down links, most critical incidents).
  const keys = {
    ship: (s) => s.ship_id,
    link: (s) => LINK_ORDER.indexOf(s.link_state),
    heartbeat: (s) => (s.heartbeat_age_s === null ? Infinity : s.heartbeat_age_s),
    backlog: (s) => -s.backlog,
    oldest: (s) => -(s.oldest_unsent_s || 0),
    incidents: (s) => worstFirst.map((sev) => -(s.open_incidents[sev] || 0)),
    version: (s) => `${s.agent_version || ''} ${s.policy_version || ''}`,
  };
  const columns = [
    ['ship', 'Ship'],
    ['link', 'Link'],
    ['heartbeat', 'Last heartbeat'],
    ['backlog', 'Outbox backlog'],
    ['oldest', 'Oldest unsent'],
    ['incidents', 'Open incidents'],
    ['version', 'Agent / policy'],
  ];

  const summary = h('p', { class: 'summary', 'aria-live': 'polite' });
  const table = h('table', { class: 'grid fleet' });
  const search = h('input', {
    type: 'search',
    name: 'q',
    value: state.text,
    oninput: () => {
      state.text = search.value.trim();
      draw();
    },
  });
  const linkStates = [['', 'Any link state'], ...LINK_ORDER.map((l) => [l, l])];
  const controls = h(
    'div',
    { class: 'filters' },
    field('Filter ships', search),
    field(
      'Link state',
      select('link', linkStates, state.link, (event) => {
        state.link = event.target.value;
        draw();
      }),
    ),
  );

  function compare(a, b) {
    const [x, y] = [keys[state.sort](a), keys[state.sort](b)];
    const order = Array.isArray(x)
      ? x.reduce((c, v, i) => c || v - y[i], 0)
      : typeof x === 'string'
        ? x.localeCompare(y)
        : x - y;
    return (state.desc ? -order : order) || a.ship_id.localeCompare(b.ship_id);
  }

  function header() {
    return h(
      'tr',
      {},
      columns.map(([key, label]) =>
        h(
          'th',
          {
            scope: 'col',
            'aria-sort': state.sort === key ? (state.desc ? 'descending' : 'ascending') : null,
          },
          h(
            'button',
            {
              type: 'button',
              class: 'sort',
              onclick: () => {
                state.desc = state.sort === key ? !state.desc : false;
                state.sort = key;
                draw();
              },
            },
            label,
          ),
        ),
      ),
    );
  }

  function row(s) {
    const open = worstFirst.filter((sev) => s.open_incidents[sev]);
    return h(
      'tr',
      { 'data-ship': s.ship_id },
      h('th', { scope: 'row', 'data-label': 'Ship' },
        h('a', { href: `#/incidents?ship=${encodeURIComponent(s.ship_id)}` }, s.ship_id)),
      h('td', { 'data-label': 'Link', class: 'link' },
        badge('link', s.link_state),
        s.link_since ? h('span', { class: 'muted', title: when(s.link_since) }, ` for ${since(s.link_since)}`) : null),
      h('td', { 'data-label': 'Last heartbeat', title: when(s.last_heartbeat) },
        s.last_heartbeat ? `${duration(s.heartbeat_age_s)} ago` : 'never'),
      h('td', { 'data-label': 'Outbox backlog', class: 'num',
        title: Object.entries(s.queue_depths).map(([k, v]) => `${k}: ${v}`).join(', ') || null },
        String(s.backlog)),
      h('td', { 'data-label': 'Oldest unsent', class: 'num' }, duration(s.oldest_unsent_s)),
      h('td', { 'data-label': 'Open incidents', class: 'open' },
        open.length
          ? open.map((sev) => h('a', {
              class: `badge sev-${sev}`,
              href: `#/incidents?ship=${encodeURIComponent(s.ship_id)}&severity=${sev}&status=open`,
            }, `${s.open_incidents[sev]} ${sev}`))
          : h('span', { class: 'muted' }, 'none')),
      h('td', { 'data-label': 'Agent / policy' },
        s.agent_version ? `${s.agent_version} / ${s.policy_version}` : '—'),
    );
  }

  function draw() {
    setQuery({ q: state.text, link: state.link, sort: state.sort, desc: state.desc ? '1' : '' });
    const needle = state.text.toLowerCase();
    const shown = ships
      .filter((s) => !state.link || s.link_state === state.link)
      .filter((s) => !needle || s.ship_id.toLowerCase().includes(needle))
      .sort(compare);
    const count = (link) => ships.filter((s) => s.link_state === link).length;
    replace(
      summary,
      `${ships.length} ships: ${count('up')} up, ${count('degraded')} degraded, ${count('down')} down`,
      shown.length < ships.length ? ` (${shown.length} shown)` : '',
    );
    replace(
      table,
      h('caption', { class: 'sr-only' }, 'Ships, their link and outbox, open incidents'),
      h('thead', {}, header()),
      h('tbody', {}, shown.length ? shown.map(row) : h('tr', {}, h('td', { colspan: 7 }, 'No ship matches.'))),
    );
  }

  replace(root, h('h1', {}, 'Fleet'), summary, controls, h('div', { class: 'scroll' }, table));
  draw();
  const timer = setInterval(async () => {
    try {
      ships = await api('/api/v3/fleet', { signal });
      draw();
    } catch {
      // the next round tries again; leaving the page aborts it
    }
  }, REFRESH_MS);
  return () => clearInterval(timer);
}

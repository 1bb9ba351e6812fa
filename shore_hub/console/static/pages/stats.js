// Statistics from GET /api/v3/stats: incidents over time by severity, type or ship
// (stacked bars), MTTA/MTTR, counts by type and ship, top devices.

import { api, terms } from '../api.js';
import { hbars, legend, PALETTE, stackedBars } from '../charts.js';
import { duration, errorBox, field, h, replace, select, words } from '../dom.js';

const PERIODS = [
  ['1', 'Last 24 hours'],
  ['7', 'Last 7 days'],
  ['30', 'Last 30 days'],
  ['90', 'Last 90 days'],
];
const GROUPS = [
  ['severity', 'Severity'],
  ['type', 'Type'],
  ['ship', 'Ship'],
];
const SEVERITY_COLORS = {
  critical: '#b42318',
  high: '#d9480f',
  medium: '#b08900',
  low: '#1f6feb',
  info: '#6b7280',
};

export async function render(root, { signal, query, setQuery }) {
  const { severity } = await terms();
  const state = { days: query.get('days') || '30', by: query.get('by') || 'severity' };
  const body = h('div');
  let stats = null;
  let latest = 0; // only the last period asked for is drawn

  async function load() {
    setQuery(state);
    const mine = ++latest;
    const until = new Date();
    const since = new Date(until.getTime() - Number(state.days) * 86400000);
    const found = await api('/api/v3/stats', {
      signal,
      query: { since: since.toISOString(), until: until.toISOString() },
    });
    if (mine !== latest) return;
    stats = found;
    draw();
  }

  function colors(by, names) {
    if (by === 'severity') return Object.fromEntries(names.map((n) => [n, SEVERITY_COLORS[n] || PALETTE[0]]));
    return Object.fromEntries(names.map((n, i) => [n, PALETTE[i % PALETTE.length]]));
  }

  function draw() {
    const over = stats.over_time;
    const series = over[`by_${state.by}`];
    const order =
      state.by === 'severity'
        ? [...severity].reverse().filter((s) => series[s])
        : Object.keys(series).sort((a, b) => stats[`by_${state.by}`][b] - stats[`by_${state.by}`][a]);
    const palette = colors(state.by, order);
    const ranked = (counts) => Object.entries(counts).sort((a, b) => b[1] - a[1]);
    replace(
      body,
      h('dl', { class: 'tiles' },
        tile('Incidents', stats.total),
        tile('Acknowledged', stats.acked),
        tile('Resolved', stats.resolved),
        tile('MTTA', duration(stats.mtta_s), 'mean time from first seen to acknowledged'),
        tile('MTTR', duration(stats.mttr_s), 'mean time from first seen to resolved'),
        tile('Suppressed', stats.suppressed),
        tile('Repeats folded in', stats.dedup, 'anomalies counted into an incident without new evidence'),
      ),
      h('section', { 'aria-labelledby': 'h-time' },
        h('h2', { id: 'h-time' }, `Incidents over time by ${state.by}`),
        stackedBars(over.buckets, Object.fromEntries(order.map((k) => [k, series[k]])), palette, {
          label: `Incidents per ${duration(over.step_s)} by ${state.by}: ${order.map((k) => `${words(k)} ${stats[`by_${state.by}`][k]}`).join(', ') || 'none'}`,
          step: over.step_s,
          width: Math.max(320, body.clientWidth - 2),
        }),
        legend(palette),
      ),
      h('div', { class: 'columns' },
        h('section', { 'aria-labelledby': 'h-type' },
          h('h2', { id: 'h-type' }, 'By type'),
          hbars(ranked(stats.by_type), { label: 'Incidents by type' })),
        h('section', { 'aria-labelledby': 'h-ship' },
          h('h2', { id: 'h-ship' }, 'By ship'),
          hbars(ranked(stats.by_ship), { label: 'Incidents by ship' })),
      ),
      h('section', { 'aria-labelledby': 'h-devices' },
        h('h2', { id: 'h-devices' }, 'Top devices'),
        h('table', { class: 'grid' },
          h('thead', {}, h('tr', {}, ['Ship', 'Device', 'Incidents'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, stats.top_devices.map((d) =>
            h('tr', {},
              h('td', { 'data-label': 'Ship' }, d.ship_id),
              h('td', { 'data-label': 'Device' }, d.device),
              h('td', { 'data-label': 'Incidents', class: 'num' }, String(d.count))))))),
      h('section', { 'aria-labelledby': 'h-lag' },
        h('h2', { id: 'h-lag' }, 'Sync lag per ship'),
        h('p', { class: 'muted' }, 'From the ship’s commit to the hub, outages included'),
        h('table', { class: 'grid' },
          h('thead', {}, h('tr', {}, ['Ship', 'Versions', 'Median', '95th percentile', 'Longest']
            .map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, stats.sync_lag.map((r) =>
            h('tr', {},
              h('td', { 'data-label': 'Ship' }, r.ship_id),
              h('td', { 'data-label': 'Versions', class: 'num' }, String(r.versions)),
              h('td', { 'data-label': 'Median', class: 'num' }, duration(r.p50_s)),
              h('td', { 'data-label': '95th percentile', class: 'num' }, duration(r.p95_s)),
              h('td', { 'data-label': 'Longest', class: 'num' }, duration(r.max_s))))))),
    );
  }

  const period = (event) => {
    state.days = event.target.value;
    load().catch((err) => signal.aborted || replace(body, errorBox(err)));
  };
  const grouping = (event) => {
    state.by = event.target.value;
    setQuery(state);
    if (stats) draw(); // else the answer on its way draws it
  };
  replace(
    root,
    h('h1', {}, 'Statistics'),
    h('div', { class: 'filters' },
      field('Period', select('days', PERIODS, state.days, period)),
      field('Over time by', select('by', GROUPS, state.by, grouping))),
    body,
  );
  await load();
}

function tile(label, value, title) {
  return h('div', { class: 'tile', title }, h('dt', {}, label), h('dd', {}, String(value)));
}

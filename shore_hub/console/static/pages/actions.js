// Finished remediations (GET /api/v3/actions): what ran where, who approved it, the result
// and each step the ship reported, rejected and interrupted ones too. Results arrive
// when ships report them, so the list is read again every 5 s.

import { api, repeat } from '../api.js';
import { badge, errorBox, h, replace, when, words } from '../dom.js';

// The ship's detail: "[executor] pre_check ok: ...; run FAILED: ...; rollback ok: ..."
const STEP = /(pre_check|run|post_check|rollback) (ok|FAILED): /g;

export async function render(root, { signal }) {
  document.title = 'Actions · Seawatch';
  const body = h('tbody');
  const problem = h('div', { 'aria-live': 'assertive' });

  async function load() {
    try {
      const rows = await api('/api/v3/actions', { signal, query: { limit: 200 } });
      if (signal.aborted) return;
      replace(body, rows.length ? rows.map(row) : h('tr', {}, h('td', { colspan: 6 }, 'No remediation has finished yet.')));
      replace(problem);
    } catch (err) {
      if (!signal.aborted) replace(problem, errorBox(err));
    }
  }

  replace(
    root,
    h('h1', {}, 'Actions'),
    problem,
    h('table', { class: 'grid actions-run' },
      h('caption', { class: 'sr-only' }, 'Finished remediations, newest first'),
      h('thead', {}, h('tr', {}, ['When', 'Action', 'Ship', 'Approved by', 'Result', 'Steps'].map((c) => h('th', { scope: 'col' }, c)))),
      body),
  );
  return repeat(load, 5000);
}

function row(r) {
  return h('tr', { 'data-id': r.id },
    h('td', { 'data-label': 'When' }, when(r.ts)),
    h('th', { scope: 'row', 'data-label': 'Action' }, `${words(r.action)} on ${r.target}`,
      h('div', {}, h('a', { href: `#/incidents/${r.incident_id}` }, 'incident'),
        r.runbook ? [' · ', h('a', { href: `#/runbooks/${r.runbook}` }, r.runbook)] : null)),
    h('td', { 'data-label': 'Ship' }, r.ship_id),
    h('td', { 'data-label': 'Approved by' }, r.approvers.join(', ') || '—'),
    h('td', { 'data-label': 'Result' }, badge('status', r.status)),
    h('td', { 'data-label': 'Steps', class: 'steps' }, steps(r.detail)));
}

/** Each step with its outcome, or the detail as the ship wrote it when it names none
 * (a rejection's reason, an interrupted run). */
function steps(detail) {
  const found = [...detail.matchAll(STEP)];
  if (!found.length) return detail || '—';
  const items = found.map((m, n) => {
    const end = n + 1 < found.length ? found[n + 1].index : detail.length;
    const output = detail.slice(m.index + m[0].length, end).replace(/;\s*$/, '');
    return h('li', { 'data-step': m[1] },
      h('strong', {}, words(m[1])), ' ', badge('step', m[2].toLowerCase()), ' ', output);
  });
  const executor = detail.match(/^\[([\w-]+)\]/);
  return [executor ? h('span', { class: 'muted' }, `${executor[1]} executor`) : null, h('ol', {}, items)];
}

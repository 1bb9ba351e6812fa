// Policies (admin): one ship's effective policy against the fleet defaults, with the diff
// its overrides make (GET /api/v3/policies/effective); the bundle's files to edit and roll
// out to some or all ships (POST /api/v3/policies/check first: the hub names file and key
// of what would not load on any of them; then /rollout); each ship's progress
// (GET /api/v3/policies/rollouts/{version}), its version kept in the address.

import { api, repeat } from '../api.js';
import { badge, errorBox, field, h, replace, select } from '../dom.js';

const FINAL = new Set(['applied', 'rejected']);

export async function render(root, { signal, query, setQuery }) {
  document.title = 'Policies · Seawatch';
  const ships = await api('/api/v3/ships', { signal });
  const state = { ship: query.get('ship') || ships[0] || '', rollout: query.get('rollout') || '' };
  const first = await api('/api/v3/policies/effective', { signal, query: { ship: state.ship } });

  const view = h('div');
  const progress = h('div', { 'aria-live': 'polite' });
  const problem = h('div', { 'aria-live': 'assertive' });
  let stopProgress = null;

  function show(doc) {
    const lines = doc.diff.slice(2); // after the "--- fleet" / "+++ ship" header
    const changed = lines.filter((l) => l[0] === '+' || l[0] === '-').length;
    replace(view,
      h('p', {}, doc.ship
        ? [`${doc.ship} reports policy `, h('strong', {}, doc.running || 'unknown'), '. ']
        : null,
        changed ? `Its overrides change ${changed} line${changed === 1 ? '' : 's'} of the fleet defaults:` : 'No overrides: the fleet defaults apply as they are.'),
      changed ? h('pre', { class: 'diff', 'aria-label': 'Differences from the fleet defaults' },
        lines.map((l) => h('span', { class: l[0] === '+' ? 'add' : l[0] === '-' ? 'del' : l[0] === '@' ? 'hunk' : null }, `${l}\n`))) : null,
      h('details', {}, h('summary', {}, 'Effective policy (YAML)'), h('pre', { class: 'yaml' }, doc.effective)));
  }

  async function pick(event) {
    state.ship = event.target.value;
    setQuery(state);
    try {
      show(await api('/api/v3/policies/effective', { signal, query: { ship: state.ship } }));
    } catch (err) {
      if (!signal.aborted) replace(view, errorBox(err));
    }
  }

  function follow(version) {
    if (stopProgress) stopProgress();
    state.rollout = version;
    setQuery(state);
    const stop = repeat(async () => {
      try {
        const doc = await api(`/api/v3/policies/rollouts/${encodeURIComponent(version)}`, { signal });
        replace(progress, rolloutTable(doc));
        if (doc.ships.every((s) => FINAL.has(s.status))) stop();
      } catch (err) {
        if (!signal.aborted) replace(progress, errorBox(err));
        stop();
      }
    }, 2000);
    stopProgress = stop;
  }

  // The editor: one text area per file of the bundle, the version, the target ships.
  const version = h('input', { id: 'version', name: 'version', required: true, pattern: '[A-Za-z0-9._\\-]{1,64}', value: '' });
  const files = Object.entries(first.files).map(([name, text]) => {
    const rows = Math.min(20, Math.max(4, text.split('\n').length + 1));
    const area = h('textarea', { id: `file-${name}`, name, rows, spellcheck: 'false', class: 'yaml' });
    area.value = text;
    return h('details', { class: 'file', open: name === 'policy.yaml' }, h('summary', {}, name),
      h('label', { for: area.id, class: 'sr-only' }, name), area);
  });
  const all = h('input', { type: 'checkbox', id: 'to-all', name: 'all' });
  const boxes = ships.map((s) => h('input', { type: 'checkbox', id: `to-${s}`, name: 'ship', value: s }));
  const reason = h('input', { id: 'rollout-reason', name: 'reason', maxlength: 500 });
  const send = h('button', { type: 'submit' }, 'Validate and roll out');
  const form = h('form', {
    class: 'rollout',
    onsubmit: async (event) => {
      event.preventDefault();
      const targets = all.checked ? 'all' : boxes.filter((b) => b.checked).map((b) => b.value);
      const body = { version: version.value.trim(), reason: reason.value.trim(), ships: targets, files: {} };
      for (const area of form.querySelectorAll('textarea')) body.files[area.name] = area.value;
      send.disabled = true;
      replace(problem);
      try {
        const found = await api('/api/v3/policies/check', { method: 'POST', body });
        if (found.problem) {
          replace(problem, errorBox({ message: found.problem }));
          return;
        }
        const done = await api('/api/v3/policies/rollout', { method: 'POST', body });
        follow(done.version);
      } catch (err) {
        replace(problem, errorBox(err));
      } finally {
        send.disabled = false;
      }
    },
  },
  h('p', { class: 'muted' }, 'The version must match policy.yaml’s own version: ships report it in their heartbeats.'),
  field('Version', version),
  files,
  h('fieldset', {}, h('legend', {}, 'Ships'),
    h('div', { class: 'row' },
      h('label', {}, all, ' All ships'),
      ships.map((s, n) => h('label', {}, boxes[n], ` ${s}`)))),
  field('Reason', reason),
  h('div', { class: 'row' }, send),
  problem);

  replace(
    root,
    h('h1', {}, 'Policies'),
    progress,
    h('section', { 'aria-labelledby': 'h-effective' },
      h('h2', { id: 'h-effective' }, 'Effective policy'),
      h('div', { class: 'filters' }, field('Ship', select('ship', ships.map((s) => [s, s]), state.ship, pick))),
      view),
    h('section', { 'aria-labelledby': 'h-rollout' },
      h('h2', { id: 'h-rollout' }, 'Edit and roll out'),
      form),
  );
  show(first);
  if (state.rollout) follow(state.rollout);
  return () => stopProgress && stopProgress();
}

function rolloutTable(doc) {
  return h('table', { class: 'grid rollout-progress' },
    h('caption', {}, `Rollout of ${doc.version} by ${doc.by}`),
    h('thead', {}, h('tr', {}, ['Ship', 'Progress', 'Running', 'Detail'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, doc.ships.map((s) => h('tr', { 'data-ship': s.ship },
      h('th', { scope: 'row', 'data-label': 'Ship' }, s.ship),
      h('td', { 'data-label': 'Progress' }, badge('status', s.status)),
      h('td', { 'data-label': 'Running' }, s.running || '—'),
      h('td', { 'data-label': 'Detail', class: 'text', title: s.detail }, s.detail || '—')))));
}

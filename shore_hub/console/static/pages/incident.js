// One incident: what and where, the insight with its citations linked, evidence with
// sparklines, the timeline, similar incidents across the fleet, and ack / resolve /
// suppress for roles that may send them (POST /api/v3/ships/{ship}/commands).

import { api } from '../api.js';
import { seriesLine, sparkline } from '../charts.js';
import { badge, cited, duration, errorBox, h, replace, runbookLink, when, words } from '../dom.js';

const ACTIONS = [
  ['ack', 'Acknowledge'],
  ['resolve', 'Resolve'],
  ['suppress', 'Suppress'],
];

export async function render(root, { signal, params, may }) {
  const [id] = params;
  const doc = await api(`/api/v3/incidents/${encodeURIComponent(id)}`, { signal });
  const inc = doc.incident;
  const evidenceByRef = new Map(doc.evidence.filter((e) => e.ref).map((e) => [e.ref, e]));
  document.title = `${words(inc.type)} on ${inc.ship_id} · Seawatch`;

  function evidenceLink(ref) {
    if (!evidenceByRef.has(ref)) return runbookLink(ref);
    return h(
      'a',
      {
        class: 'cite',
        href: `#/incidents/${inc.id}`,
        'aria-describedby': `ev-${ref}`,
        onclick: (event) => {
          event.preventDefault(); // the address is the router's: scroll instead
          const item = document.getElementById(`ev-${ref}`);
          item.scrollIntoView({ block: 'center' });
          item.focus();
        },
      },
      ref,
    );
  }

  replace(
    root,
    h('p', { class: 'crumbs' }, h('a', { href: `#/incidents?ship=${encodeURIComponent(inc.ship_id)}` }, `Incidents on ${inc.ship_id}`)),
    h('h1', {}, `${words(inc.type)} on ${inc.device}`, ' ', badge('sev', inc.severity), ' ', badge('status', inc.status)),
    facts(inc, doc),
    actions(inc, may),
    h('div', { class: 'columns' },
      h('div', {},
        section('Insight', insight(inc, doc.insight, evidenceLink)),
        section('Evidence', evidence(inc, doc.evidence)),
      ),
      h('div', {},
        section('Timeline', timeline(doc.timeline)),
        section('Similar incidents across the fleet', similar(doc.similar, inc.id)),
      ),
    ),
  ); // one column on narrow screens (style.css)
}

function section(title, ...content) {
  const id = `h-${title.toLowerCase().replace(/\W+/g, '-')}`;
  return h('section', { 'aria-labelledby': id }, h('h2', { id }, title), content);
}

function facts(inc, doc) {
  const rows = [
    ['Ship', inc.ship_id],
    ['Devices', inc.devices.join(', ')],
    ['Path', inc.path || '—'],
    ['First seen', when(inc.first_seen)],
    ['Last seen', when(inc.last_seen)],
    ['Anomalies', String(inc.anomaly_count)],
    ['Version', String(inc.version)],
    ['At the hub', when(doc.received_at)],
  ];
  if (inc.suppressed_reason) rows.push(['Suppressed', inc.suppressed_reason]);
  return h('dl', { class: 'facts' }, rows.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v))));
}

function actions(inc, may) {
  const allowed = ACTIONS.filter(([action]) => may(action));
  if (!allowed.length || inc.status === 'resolved') return null;
  const status = h('div', { 'aria-live': 'polite' });
  const reason = h('textarea', { id: 'reason', name: 'reason', rows: 2, required: true, maxlength: 500 });
  const send = h('button', { type: 'submit' });
  let chosen = null;
  const form = h(
    'form',
    {
      class: 'command',
      hidden: true,
      onsubmit: async (event) => {
        event.preventDefault();
        send.disabled = true;
        try {
          const done = await api(`/api/v3/ships/${encodeURIComponent(inc.ship_id)}/commands`, {
            method: 'POST',
            body: { action: chosen, incident_id: inc.id, reason: reason.value.trim() },
          });
          form.hidden = true;
          replace(status, h('p', { class: 'ok' },
            `${words(chosen)} queued for ${inc.ship_id} (command ${done.command_id}). `,
            'The incident changes here once the ship has applied it and reported back.'));
        } catch (err) {
          replace(status, errorBox(err));
        } finally {
          send.disabled = false;
        }
      },
    },
    h('label', { for: 'reason' }, 'Reason (recorded with the command and on the ship)'),
    reason,
    h('div', { class: 'row' }, send,
      h('button', { type: 'button', class: 'quiet', onclick: () => { form.hidden = true; } }, 'Cancel')),
  );
  const buttons = allowed.map(([action, label]) =>
    h('button', {
      type: 'button',
      'data-action': action,
      onclick: () => {
        chosen = action;
        replace(send, `${label}: send to ${inc.ship_id}`);
        replace(status);
        form.hidden = false;
        reason.focus();
      },
    }, label),
  );
  return h('div', { class: 'actions' }, h('div', { class: 'row' }, buttons), form, status);
}

function insight(inc, found, link) {
  if (!found && !inc.narrative) return h('p', { class: 'muted' }, 'No explanation yet.');
  const text = found ? found.narrative : inc.narrative;
  const source = found
    ? `${found.fallback ? 'Rule-based explanation' : `Written by ${found.model}`} on the ship, ${when(found.ts)}`
    : 'The ship’s correlator';
  return [h('p', { class: 'narrative' }, cited(text, link)), h('p', { class: 'muted' }, source)];
}

function evidence(inc, items) {
  if (!items.length) return h('p', { class: 'muted' }, 'No evidence recorded.');
  const t0 = Date.parse(inc.first_seen);
  const t1 = Math.max(Date.parse(inc.last_seen), ...items.map((e) => Date.parse(e.ts)));
  const groups = new Map();
  for (const e of items) {
    const key = `${e.device} · ${e.detector}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(e);
  }
  return [...groups].map(([key, group]) =>
    h('div', { class: 'evidence' },
      h('h3', {}, key),
      recentValues(key, group),
      sparkline(
        group.map((e) => ({ t: Date.parse(e.ts), y: e.score, label: `${when(e.ts)} score ${e.score.toFixed(2)}` })),
        { t0, t1, label: `Anomaly score of ${key} from ${when(t0 / 1000)} to ${when(t1 / 1000)}` },
      ),
      h('ol', {}, group.map((e) =>
        h('li', { id: e.ref ? `ev-${e.ref}` : null, tabindex: e.ref ? '-1' : null },
          e.ref ? h('span', { class: 'ref' }, e.ref) : null,
          h('span', { class: 'muted' }, `${when(e.ts)} · score ${e.score.toFixed(2)} `),
          e.summary))),
    ),
  );
}

/** The metric itself up to the anomaly, when the ship sent its recent values. */
function recentValues(key, group) {
  const e = group.find((item) => Array.isArray(item.values) && item.values.length > 1);
  if (!e) return null;
  return [
    h('p', { class: 'muted' }, `Last ${e.values.length} readings up to the anomaly`),
    seriesLine(e.values, {
      label: `Last ${e.values.length} values of ${key} up to ${when(e.ts)}: ${e.values.join(', ')}`,
    }),
    h('p', { class: 'muted' }, 'Anomaly scores'),
  ];
}

function timeline(steps) {
  if (!steps.length) return h('p', { class: 'muted' }, 'No steps recorded.');
  return h('ol', { class: 'timeline' }, steps.map((t) =>
    h('li', {},
      h('span', { class: 'muted' }, `${when(t.ts)} · v${t.version} `),
      h('strong', {}, words(t.event)),
      t.detail ? ` — ${t.detail}` : '')));
}

function similar(found, own) {
  const others = found.filter((f) => f.id !== own);
  if (!others.length) return h('p', { class: 'muted' }, 'Nothing similar found yet.');
  return h('ul', { class: 'similar' }, others.map((f) =>
    h('li', {},
      h('a', { href: `#/incidents/${f.id}` }, `${words(f.type)} on ${f.ship} (${f.device})`),
      ' ', badge('status', f.status),
      h('span', { class: 'muted' }, ` ${when(f.ts)} · similarity ${f.score.toFixed(2)}`),
      f.resolution
        ? h('p', {}, 'Resolved', f.time_to_resolve_s !== null ? ` in ${duration(f.time_to_resolve_s)}` : '', ': ', f.resolution)
        : null)));
}

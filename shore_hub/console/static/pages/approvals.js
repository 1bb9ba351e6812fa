// Remediations ships propose, waiting for people ashore (GET /api/v3/approvals), with
// approve / reject for approvers (POST /api/v3/approvals/{id}/decision), and the
// decisions this user took. The API enforces the rules (quorum, one decision per person,
// never the requester); the page only offers what they allow.

import { api } from '../api.js';
import { badge, errorBox, h, replace, when, words } from '../dom.js';

// "My approvals" reads the decisions of requests in every state the hub keeps.
const DECIDED = ['approved', 'running', 'succeeded', 'failed', 'rejected', 'interrupted'];

export async function render(root, { signal, may, user }) {
  document.title = 'Approvals · Seawatch';
  const pending = h('div', { class: 'requests' });
  const mine = h('div');
  const problem = h('div', { 'aria-live': 'assertive' });
  const done = h('div', { 'aria-live': 'polite' });

  async function load() {
    try {
      const [open, ...decided] = await Promise.all(
        ['pending', ...DECIDED].map((status) =>
          api('/api/v3/approvals', { signal, query: { status, limit: 50 } })),
      );
      if (signal.aborted) return;
      replace(pending, open.length ? open.map(card) : h('p', { class: 'muted' }, 'Nothing waits for a decision.'));
      replace(mine, myDecisions([...open, ...decided.flat()], user));
      replace(problem);
    } catch (err) {
      if (!signal.aborted) replace(problem, errorBox(err));
    }
  }

  function card(r) {
    const decisions = r.decisions || [];
    const approvers = decisions.filter((d) => d.decision === 'approved').map((d) => d.actor);
    const facts = [
      ['Ship', r.ship_id],
      ['Incident', h('a', { href: `#/incidents/${r.incident_id}` }, r.incident_id)],
      ['Runbook', r.runbook ? h('a', { href: `#/runbooks/${r.runbook}` }, r.runbook) : '—'],
      ['Risk', badge('risk', r.risk)],
      ['Blast radius', r.blast_radius.join(', ') || r.target],
      ['Checks', [r.pre_check && 'pre-check', r.post_check && 'post-check'].filter(Boolean).join(', ') || 'none'],
      ['Approvals', `${approvers.length} of ${r.approvals_needed}${approvers.length ? `: ${approvers.join(', ')}` : ''}`],
      ['Requested', `${when(r.ts)} by ${r.requested_by}`],
    ];
    return h(
      'article',
      { class: 'request', 'data-id': r.id },
      h('h2', {}, `${words(r.action)} on ${r.target}`, ' ', badge('approval', r.approval)),
      r.approval === 'two_person'
        ? h('p', { class: 'note' }, 'Two-person rule: two different approvers, neither of them the requester.')
        : null,
      h('dl', { class: 'facts' }, facts.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v)))),
      may('approve') ? decide(r, decisions) : null,
    );
  }

  function decide(r, decisions) {
    const own = decisions.find((d) => d.actor === user);
    const why = own
      ? `You ${own.decision} this request ${when(own.ts)}.`
      : r.requested_by === user ? 'You requested this: someone else decides.' : null;
    const reason = h('textarea', {
      id: `reason-${r.id}`, name: 'reason', rows: 2, maxlength: 1024, disabled: Boolean(why),
    });
    const send = (decision) => async () => {
      for (const b of buttons) b.disabled = true;
      try {
        const out = await api(`/api/v3/approvals/${encodeURIComponent(r.id)}/decision`, {
          method: 'POST',
          body: { decision, reason: reason.value.trim() },
        });
        replace(done, h('p', { class: 'ok' }, `${words(r.action)} on ${r.ship_id}: ${out.decision} `,
          `(${out.approvers.length} of ${out.needed}). `,
          out.sent ? `The decision was sent to ${r.ship_id}; its result shows under Actions.` : 'Waiting for another approver.'));
      } catch (err) {
        replace(done, errorBox(err));
      }
      await load();
    };
    const buttons = [
      h('button', { type: 'button', disabled: Boolean(why), onclick: send('approve') }, 'Approve'),
      h('button', { type: 'button', class: 'quiet', disabled: Boolean(why), onclick: send('reject') }, 'Reject'),
    ];
    return h('div', { class: 'command' },
      h('label', { for: reason.id }, 'Reason (recorded with the decision and on the ship)'),
      reason,
      h('div', { class: 'row' }, buttons, why ? h('span', { class: 'muted' }, why) : null));
  }

  replace(
    root,
    h('h1', {}, 'Approvals'),
    may('approve') ? null : h('p', { class: 'note' }, 'Deciding on remediations needs the approver role.'),
    problem,
    done,
    pending,
    h('h2', {}, 'My approvals'),
    mine,
  );
  await load();
}

function myDecisions(requests, user) {
  const rows = [];
  for (const r of requests) {
    for (const d of r.decisions || []) {
      if (d.actor === user) rows.push({ r, d });
    }
  }
  if (!rows.length) return h('p', { class: 'muted' }, 'You have not decided on any request yet.');
  rows.sort((a, b) => b.d.ts.localeCompare(a.d.ts));
  return h('table', { class: 'grid mine' },
    h('thead', {}, h('tr', {}, ['Decided', 'Decision', 'Action', 'Ship', 'Now', 'Reason'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows.map(({ r, d }) => h('tr', { 'data-id': r.id },
      h('td', { 'data-label': 'Decided' }, when(d.ts)),
      h('td', { 'data-label': 'Decision' }, badge('status', d.decision)),
      h('th', { scope: 'row', 'data-label': 'Action' }, `${words(r.action)} on ${r.target}`),
      h('td', { 'data-label': 'Ship' }, r.ship_id),
      h('td', { 'data-label': 'Now' }, badge('status', r.status)),
      h('td', { 'data-label': 'Reason', class: 'text', title: d.reason }, d.reason || '—')))));
}

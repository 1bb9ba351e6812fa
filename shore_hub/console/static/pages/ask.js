// Questions to the fleet's evidence (POST /api/v3/ask): each answer cites incidents ([I1])
// and runbooks ([RB-01]) the hub retrieved, linked to their pages. Turns of one
// conversation stay on the page until "New conversation".

import { api } from '../api.js';
import { cited, errorBox, field, h, replace, runbookLink, select } from '../dom.js';

const PERIODS = [
  ['', 'Any time'],
  ['7', 'Last 7 days'],
  ['30', 'Last 30 days'],
  ['90', 'Last 90 days'],
];

export async function render(root, { signal }) {
  const fleet = await api('/api/v3/fleet', { signal });
  let conversation = null;
  const turns = h('div', { class: 'turns', 'aria-live': 'polite' });
  const question = h('textarea', { id: 'question', name: 'question', rows: 3, required: true, maxlength: 2000 });
  const ship = select('ship', [['', 'Whole fleet'], ...fleet.map((s) => [s.ship_id, s.ship_id])], '');
  const period = select('period', PERIODS, '');
  const send = h('button', { type: 'submit' }, 'Ask');
  const restart = h('button', {
    type: 'button',
    class: 'quiet',
    hidden: true,
    onclick: () => {
      conversation = null;
      restart.hidden = true;
      replace(turns);
      question.focus();
    },
  }, 'New conversation');

  async function ask(event) {
    event.preventDefault();
    const text = question.value.trim();
    if (!text) return;
    send.disabled = true;
    const waiting = h('p', { class: 'muted', role: 'status' }, 'Looking through the fleet’s incidents…');
    turns.append(waiting);
    root.setAttribute('aria-busy', 'true');
    try {
      const days = Number(period.value);
      const answer = await api('/api/v3/ask', {
        method: 'POST',
        signal,
        body: {
          question: text,
          conversation_id: conversation,
          ship: ship.value || null,
          since: days ? new Date(Date.now() - days * 86400000).toISOString() : null,
        },
      });
      conversation = answer.conversation_id;
      restart.hidden = false;
      waiting.replaceWith(turn(text, answer));
      question.value = '';
    } catch (err) {
      waiting.replaceWith(errorBox(err));
    } finally {
      send.disabled = false;
      root.removeAttribute('aria-busy');
    }
  }

  replace(
    root,
    h('h1', {}, 'Ask the fleet'),
    h('form', { class: 'ask', onsubmit: ask },
      h('label', { for: 'question' }, 'Question'),
      question,
      h('div', { class: 'filters' }, field('Ship', ship), field('Period', period)),
      h('div', { class: 'row' }, send, restart),
    ),
    turns,
  );
  question.focus();
}

function turn(text, answer) {
  const byRef = new Map(answer.citations.map((c) => [c.ref, c]));
  const link = (ref) => {
    const c = byRef.get(ref);
    if (c && c.kind === 'incident') return h('a', { class: 'cite', href: `#/incidents/${c.id}`, title: c.title }, ref);
    return runbookLink(ref);
  };
  return h('article', { class: 'turn' },
    h('p', { class: 'question' }, text),
    h('p', { class: 'answer' }, cited(answer.answer, link)),
    answer.fallback
      ? h('p', { class: 'note' }, `Answer built from the retrieved items, not by the model: ${answer.reason}`)
      : h('p', { class: 'muted' }, `Model ${answer.model}, ${Math.round(answer.latency_ms)} ms`),
    answer.citations.length
      ? h('ul', { class: 'citations' }, answer.citations.map((c) =>
          h('li', {}, link(c.ref), ' ', c.title)))
      : null,
  );
}

// A runbook (GET /api/v3/runbooks/{id}), where [RB-..] citations lead.

import { api } from '../api.js';
import { h, replace, words } from '../dom.js';

export async function render(root, { signal, params }) {
  const [id] = params;
  const book = await api(`/api/v3/runbooks/${encodeURIComponent(id)}`, { signal });
  document.title = `${book.id} ${book.title} · Seawatch`;
  const facts = [
    ['For incidents', book.incident_types.map(words).join(', ')],
    ['Device roles', book.roles.map(words).join(', ')],
    ['Actions remediation may take', book.allowed_actions.map(words).join(', ') || 'none'],
  ];
  replace(
    root,
    h('h1', {}, `${book.id} ${book.title}`),
    h('dl', { class: 'facts' }, facts.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v)))),
    Object.entries(book.sections).map(([title, text]) =>
      h('section', {}, h('h2', {}, title), markdown(text))),
  );
}

/** The little Markdown runbooks use: paragraphs, lists (items may wrap onto indented
 * lines) and `code`. */
function markdown(text) {
  const item = /^(?:[-*]|\d+\.)\s+/;
  return text.split(/\n\s*\n/).map((block) => {
    const lines = block.split('\n').map((l) => l.trim());
    if (!item.test(lines[0])) return h('p', {}, inline(lines.join(' ')));
    const items = [];
    for (const line of lines) {
      if (item.test(line)) items.push(line.replace(item, ''));
      else items[items.length - 1] += ` ${line}`;
    }
    return h(/^\d/.test(lines[0]) ? 'ol' : 'ul', {}, items.map((t) => h('li', {}, inline(t))));
  });
}

function inline(text) {
  return text.split('`').map((part, i) => (i % 2 ? h('code', {}, part) : part));
}

// Building DOM from data without innerHTML (no markup ever comes from the API), and the
// few formats every page shares.

const SVG = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'text') el.textContent = value;
    else el.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** h('a', {href: '#/fleet', class: 'x', onclick: fn}, 'text', child, [more]) */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG, tag), attrs, children);
}

export function replace(root, ...children) {
  root.replaceChildren();
  return build(root, {}, children);
}

/** "2026-11-22 07:26Z": one clock (UTC) for a fleet that spans time zones. */
export function when(value) {
  if (value === null || value === undefined) return '—';
  const d = typeof value === 'number' ? new Date(value * 1000) : new Date(value);
  return `${d.toISOString().slice(0, 16).replace('T', ' ')}Z`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  const s = Math.max(0, Math.round(seconds));
  if (s < 90) return `${s} s`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min`;
  if (s < 36 * 3600) return `${(s / 3600).toFixed(1).replace(/\.0$/, '')} h`;
  return `${(s / 86400).toFixed(1).replace(/\.0$/, '')} d`;
}

export function since(iso) {
  return iso ? duration((Date.now() - new Date(iso).getTime()) / 1000) : '—';
}

export function words(term) {
  return String(term).replaceAll('_', ' ');
}

export function badge(kind, value) {
  return h('span', { class: `badge ${kind}-${value}` }, words(value));
}

/** A labelled control; the label names the control alone (not its options too). */
export function field(label, control) {
  if (!control.id) control.id = `field-${control.name}`;
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control);
}

export function select(name, options, value, onchange) {
  return h(
    'select',
    { name, onchange },
    options.map(([v, text]) => h('option', { value: v, selected: v === value }, text)),
  );
}

export function errorBox(err) {
  return h('p', { class: 'error', role: 'alert' }, err.message || String(err));
}

/** Text with its citations as links: `[E1]`, `[I2]`, `[RB-01]` (or `[E1, RB-01]`);
 * `link(ref)` returns an element for a label it knows, null to keep it as text. */
export function cited(text, link) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(/\[([^[\]]{1,60})\]/g)) {
    out.push(text.slice(last, m.index));
    const refs = m[1].split(',').map((r) => r.trim());
    const links = refs.map((r) => link(r));
    if (links.every((l) => l === null)) {
      out.push(m[0]);
    } else {
      out.push('[');
      refs.forEach((r, i) => out.push(i ? ', ' : '', links[i] || r));
      out.push(']');
    }
    last = m.index + m[0].length;
  }
  out.push(text.slice(last));
  return out;
}

export function runbookLink(ref) {
  return /^RB-\d{2,3}$/.test(ref) ? h('a', { class: 'cite', href: `#/runbooks/${ref}` }, ref) : null;
}

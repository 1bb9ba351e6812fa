// Inline SVG charts: a sparkline, stacked bars over time and horizontal bars. Each is an
// image with a text alternative; the numbers are also in <title>s for pointer users.

import { h, s, when, words } from './dom.js';

export const PALETTE = [
  '#1f6feb', '#d97706', '#7c3aed', '#059669', '#db2777',
  '#0891b2', '#65a30d', '#b45309', '#4b5563', '#9333ea',
];

/** points: [{t: epoch ms, y: 0..max, label}] drawn over [t0, t1]. */
export function sparkline(points, { t0, t1, max = 1, label }) {
  const width = 240;
  const height = 48;
  const pad = 4;
  const span = Math.max(t1 - t0, 1);
  const x = (t) => pad + ((t - t0) / span) * (width - 2 * pad);
  const y = (v) => height - pad - (Math.min(v, max) / max) * (height - 2 * pad);
  const sorted = [...points].sort((a, b) => a.t - b.t);
  const line = sorted.map((p) => `${x(p.t).toFixed(1)},${y(p.y).toFixed(1)}`).join(' ');
  return s(
    'svg',
    { class: 'spark', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label },
    s('line', { x1: pad, x2: width - pad, y1: height - pad, y2: height - pad, class: 'axis' }),
    sorted.length > 1 ? s('polyline', { points: line, class: 'trace' }) : null,
    sorted.map((p) =>
      s('circle', { cx: x(p.t), cy: y(p.y), r: 2.5, class: 'dot' }, s('title', {}, p.label)),
    ),
  );
}

/** A metric's recent values (oldest first, the last one the anomalous reading), scaled
 * between their own minimum and maximum, with both written beside the line. */
export function seriesLine(values, { label }) {
  const width = 240;
  const height = 48;
  const pad = 4;
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const span = hi - lo || 1;
  const left = 32; // room for the scale on the left
  const x = (i) => left + (i / Math.max(values.length - 1, 1)) * (width - left - pad);
  const y = (v) => height - pad - ((v - lo) / span) * (height - 2 * pad);
  const line = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
  return s(
    'svg',
    { class: 'spark series', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label },
    s('polyline', { points: line, class: 'trace' }),
    s('circle', { cx: x(values.length - 1), cy: y(values[values.length - 1]), r: 3, class: 'dot' }),
    s('text', { x: left - 4, y: 10, class: 'scale', 'text-anchor': 'end' }, String(hi)),
    s('text', { x: left - 4, y: height - 2, class: 'scale', 'text-anchor': 'end' }, String(lo)),
  );
}

/** buckets: ISO start times; series: {name: [count per bucket]}; colors: {name: css};
 * drawn `width` pixels wide (the space it has), so its text keeps its size. */
export function stackedBars(buckets, series, colors, { label, step, width }) {
  const height = 220;
  const left = 36;
  const bottom = 22;
  const names = Object.keys(series);
  const totals = buckets.map((_, i) => names.reduce((n, k) => n + series[k][i], 0));
  const max = Math.max(1, ...totals);
  const slot = (width - left) / Math.max(buckets.length, 1);
  const bar = Math.max(1, slot * 0.8);
  const scale = (height - bottom - 8) / max;
  const every = Math.ceil(buckets.length / Math.max(2, Math.floor(width / 90)));
  const fmt = step >= 86400 ? (b) => when(b).slice(5, 10) : (b) => when(b).slice(5, 16);
  return s(
    'svg',
    { class: 'chart', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': label },
    s('text', { x: left - 6, y: 12, class: 'tick', 'text-anchor': 'end' }, String(max)),
    s('text', { x: left - 6, y: height - bottom, class: 'tick', 'text-anchor': 'end' }, '0'),
    s('line', { x1: left, x2: width, y1: height - bottom, y2: height - bottom, class: 'axis' }),
    buckets.map((b, i) => {
      let top = height - bottom;
      const x = left + i * slot + (slot - bar) / 2;
      const rects = names
        .filter((k) => series[k][i])
        .map((k) => {
          const hgt = series[k][i] * scale;
          top -= hgt;
          return s(
            'rect',
            { x, y: top, width: bar, height: hgt, fill: colors[k] },
            s('title', {}, `${when(b)}: ${words(k)} ${series[k][i]}`),
          );
        });
      const tick =
        i % every === 0
          ? s('text', { x: x + bar / 2, y: height - 6, class: 'tick', 'text-anchor': 'middle' }, fmt(b))
          : null;
      return [rects, tick];
    }),
  );
}

export function legend(colors) {
  return h(
    'ul',
    { class: 'legend' },
    Object.entries(colors).map(([name, color]) =>
      h('li', {}, h('span', { class: 'swatch', style: `background:${color}` }), words(name)),
    ),
  );
}

/** entries: [[label, count]], largest first. */
export function hbars(entries, { label, colors = {} }) {
  const width = 480;
  const row = 24;
  const left = 170;
  const height = Math.max(row, entries.length * row);
  const max = Math.max(1, ...entries.map(([, n]) => n));
  return s(
    'svg',
    { class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label },
    entries.map(([name, n], i) => {
      const w = ((width - left - 40) * n) / max;
      const y = i * row;
      return [
        s('text', { x: left - 8, y: y + 16, class: 'tick', 'text-anchor': 'end' }, words(name)),
        s('rect', { x: left, y: y + 4, width: Math.max(w, 1), height: row - 8, fill: colors[name] || PALETTE[0] }),
        s('text', { x: left + w + 6, y: y + 16, class: 'tick' }, String(n)),
      ];
    }),
  );
}

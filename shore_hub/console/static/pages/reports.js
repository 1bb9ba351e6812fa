// The fleet report from GET /api/v3/reports/fleet: a day or a week ending on a date (UTC),
// shown as the hub renders it for print, printed from here, or downloaded as CSV. Both
// files are fetched with the session's token (a plain link could not carry it): the page
// goes into a sandboxed frame that runs no script, the CSV into a download of a Blob.

import { file } from '../api.js';
import { errorBox, field, h, replace, select } from '../dom.js';

const PERIODS = [
  ['day', 'Day'],
  ['week', 'Week ending'],
];
const PATH = '/api/v3/reports/fleet';

function today() {
  return new Date().toISOString().slice(0, 10);
}

export async function render(root, { signal, query, setQuery }) {
  const state = { period: query.get('period') || 'day', date: query.get('date') || today() };
  const frame = h('iframe', {
    class: 'report',
    title: 'Fleet report',
    // same origin so that this page can print it; no allow-scripts: nothing in it runs
    sandbox: 'allow-same-origin allow-modals',
  });
  const status = h('p', { class: 'muted', role: 'status' });
  const print = h('button', { type: 'button', class: 'quiet', disabled: true, onclick: () => frame.contentWindow.print() }, 'Print');
  let latest = 0; // only the last report asked for is shown

  async function view() {
    setQuery(state);
    const mine = ++latest;
    print.disabled = true;
    status.textContent = 'Loading…';
    const { blob } = await file(PATH, { signal, query: { ...state, format: 'html' } });
    if (mine !== latest) return;
    frame.srcdoc = await blob.text();
    status.textContent = '';
    print.disabled = false;
  }

  async function download() {
    const { blob, name } = await file(PATH, { signal, query: { ...state, format: 'csv' } });
    const link = h('a', { href: URL.createObjectURL(blob), download: name || 'seawatch-fleet.csv', hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 0);
  }

  const failed = (err) => {
    if (signal.aborted) return;
    status.textContent = '';
    replace(status, errorBox(err));
  };
  const show = () => view().catch(failed);
  const date = h('input', {
    type: 'date',
    name: 'date',
    value: state.date,
    required: true,
    onchange: (event) => {
      if (!event.target.value) return;
      state.date = event.target.value;
      show();
    },
  });
  replace(
    root,
    h('h1', {}, 'Fleet report'),
    h('div', { class: 'filters' },
      field('Period', select('period', PERIODS, state.period, (event) => {
        state.period = event.target.value;
        show();
      })),
      field('Date (UTC)', date),
      h('div', { class: 'row' },
        print,
        h('button', { type: 'button', onclick: () => download().catch(failed) }, 'Download CSV'))),
    status,
    frame,
  );
  await view();
}

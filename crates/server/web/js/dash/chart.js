// Draws one SQL answer (`{columns, rows}`) as a panel: lines or bars with uPlot (loaded as the
// page's classic script, `window.uPlot`), a number, or a table. The first column is the x axis
// (a time or a category); with a second text column, that column names the series; every other
// column is a series. Each chart has its rows beside it as a table for screen readers (and
// tests), and says so when the range holds none.

import { el, formatBytes } from '../api.js';

const TIME = /^TIMESTAMP|^DATE/;
const TEXT = /CHAR|TEXT|UTF8|STRING/;
const CHARTS = ['line', 'bars', 'stat', 'table'];
const COLORS = ['#1d4ed8', '#dc2626', '#059669', '#d97706', '#7c3aed', '#0891b2', '#be185d', '#4b5563'];

/** A value in the panel's unit. */
export function format(value, unit) {
  if (value === null || value === undefined) return '—';
  if (typeof value !== 'number') return cell(value);
  if (unit === 'bytes') return formatBytes(value);
  const number = Math.abs(value) >= 1e15 ? value.toExponential(3)
    : Number.isInteger(value) ? value.toLocaleString('en') : value.toLocaleString('en', { maximumFractionDigits: 2 });
  return unit && unit !== 'bytes' ? `${number} ${unit}` : number;
}

/** Renders `answer` into `box` as `chart`, a time axis spanning `bounds` (the range's start and
 * end); returns what it drew (`empty`, `ok`). */
export function render(box, chart, answer, unit, bounds) {
  if (answer.rows.length === 0) {
    box.replaceChildren(el('p', { class: 'hint empty', text: 'No rows in this range.' }));
    return 'empty';
  }
  if (chart === 'stat') {
    box.replaceChildren(el('div', { class: 'stats' }, ...answer.columns.map((c, i) => el('div', { class: 'stat' },
      el('span', { class: 'stat-value', 'data-column': c.name, text: format(answer.rows[0][i], i === 0 ? unit : '') }),
      el('span', { class: 'stat-label', text: c.name.replaceAll('_', ' ') })))));
    return 'ok';
  }
  const rows = table(answer, unit);
  if (chart === 'table' || !CHARTS.includes(chart)) {
    box.replaceChildren(rows);
    return 'ok';
  }
  const plot = el('div', { class: 'plot' });
  rows.classList.add('visually-hidden');
  box.replaceChildren(plot, rows);
  draw(plot, chart, series(answer), unit, bounds.map((t) => new Date(t).getTime() / 1000));
  return 'ok';
}

/** Rows a table shows; the rest are counted. */
const TABLE_ROWS = 5000;

/** The answer as a table (its first rows). */
export function table(answer, unit) {
  const body = document.createElement('tbody');
  for (const row of answer.rows.slice(0, TABLE_ROWS)) {
    const tr = document.createElement('tr');
    row.forEach((v, i) => tr.append(el('td', {
      class: typeof v === 'number' ? 'num' : '',
      'data-value': v === null ? '' : cell(v),
      text: typeof v === 'number' && i > 0 ? format(v, unit === '%' || unit === 'ms' ? unit : '') : cell(v),
    })));
    body.append(tr);
  }
  const shown = el('table', { class: 'grid-table result-table' },
    el('thead', {}, el('tr', {}, ...answer.columns.map((c) => el('th', { scope: 'col', text: c.name })))),
    body);
  if (answer.rows.length <= TABLE_ROWS) return shown;
  return el('div', {}, shown,
    el('p', { class: 'hint', text: `The first ${TABLE_ROWS.toLocaleString('en')} of ${answer.rows.length.toLocaleString('en')} rows are shown.` }));
}

/** A value as text: lists and structs as JSON, nothing for null. */
function cell(v) {
  if (v === null || v === undefined) return '';
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

/** x values, their labels (categories) and the named series, from the rows. */
export function series(answer) {
  const [first, second] = answer.columns;
  const time = TIME.test(first.type);
  const pivot = answer.columns.length >= 3 && second && TEXT.test(second.type);
  const keys = [...new Set(answer.rows.map((r) => String(r[0])))];
  if (time) keys.sort();
  const index = new Map(keys.map((k, i) => [k, i]));
  const x = keys.map((k, i) => (time ? new Date(k).getTime() / 1000 : i));
  const named = new Map();
  const add = (name, at, value) => {
    if (!named.has(name)) named.set(name, new Array(keys.length).fill(null));
    named.get(name)[at] = typeof value === 'number' ? value : Number(value);
  };
  for (const row of answer.rows) {
    const at = index.get(String(row[0]));
    if (pivot) {
      answer.columns.slice(2).forEach((c, i) => {
        add(answer.columns.length > 3 ? `${row[1]} ${c.name}` : String(row[1]), at, row[i + 2]);
      });
    } else {
      answer.columns.slice(1).forEach((c, i) => add(c.name, at, row[i + 1]));
    }
  }
  return { time, labels: keys, x, named };
}

function draw(box, chart, data, unit, [from, to]) {
  const { uPlot } = window;
  const width = Math.max(280, box.parentElement.clientWidth - 8);
  const bars = chart === 'bars' ? uPlot.paths.bars({ size: [0.6, 64] }) : undefined;
  const names = [...data.named.keys()];
  const opts = {
    width,
    height: 220,
    scales: {
      x: { time: data.time, range: data.time ? [from, to] : [-0.5, data.x.length - 0.5] },
      // Counts start at zero, so bars and lines compare by height.
      y: { range: (_, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] },
    },
    axes: [
      data.time ? {} : { values: (_, ticks) => ticks.map((t) => data.labels[t] ?? ''), splits: () => data.x },
      { values: (_, ticks) => ticks.map((t) => format(t, unit === 'bytes' ? 'bytes' : '')), size: 60 },
    ],
    series: [
      {},
      ...names.map((name, i) => ({
        label: name,
        stroke: COLORS[i % COLORS.length],
        fill: bars ? `${COLORS[i % COLORS.length]}cc` : undefined,
        width: bars ? 0 : 2,
        paths: bars,
        points: { show: data.x.length < 3 },
        value: (_, v) => format(v, unit),
      })),
    ],
    legend: { show: true },
  };
  box.replaceChildren();
  new uPlot(opts, [data.x, ...names.map((n) => data.named.get(n))], box);
}

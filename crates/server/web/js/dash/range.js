// The time range and auto-refresh of a dashboard or query, kept in the URL (Grafana's `from`,
// `to` and `refresh`) so a view can be shared: relative ranges (`now-6h`, `now-24h`, `now-7d`)
// or absolute ones (RFC 3339, UTC).

import { el } from '../api.js';

export const PRESETS = [
  ['now-1h', 'Last hour'],
  ['now-6h', 'Last 6 hours'],
  ['now-24h', 'Last 24 hours'],
  ['now-7d', 'Last 7 days'],
];
export const REFRESH = [['', 'Off'], ['30s', '30 s'], ['1m', '1 min'], ['5m', '5 min']];
const UNIT_MS = { m: 60_000, h: 3_600_000, d: 86_400_000, s: 1000 };

/** The range and refresh the URL names, with the defaults filled in; `problem` says what
 * in the URL could not be used (a bound that is no time, a start after the end). */
export function fromUrl() {
  const params = new URLSearchParams(location.search);
  const range = {
    from: params.get('from') || 'now-24h',
    to: params.get('to') || 'now',
    refresh: REFRESH.some(([v]) => v === params.get('refresh')) ? params.get('refresh') : '',
  };
  let problem = null;
  try {
    if (resolve(range.from) >= resolve(range.to)) problem = `the range starts (${range.from}) after it ends (${range.to})`;
  } catch (e) {
    problem = e.message;
  }
  if (problem) Object.assign(range, { from: 'now-24h', to: 'now' });
  return { range, problem };
}

/** A range bound as a time: `now`, `now-<n><s|m|h|d>` or an RFC 3339 text. */
export function resolve(text, now = new Date()) {
  if (text === 'now') return now;
  const relative = /^now-(\d{1,6})([smhd])$/.exec(text);
  const time = relative ? new Date(now - Number(relative[1]) * UNIT_MS[relative[2]]) : new Date(text);
  if (Number.isNaN(time.getTime()) || time.getUTCFullYear() < 1970 || time.getUTCFullYear() > 9999) {
    throw new Error(`${JSON.stringify(text)} is not a time (now, now-6h, now-7d or 2026-11-30T10:00:00Z)`);
  }
  return time;
}

/** The range as the queries' `$1` and `$2`. */
export function params(range, now = new Date()) {
  return [resolve(range.from, now).toISOString(), resolve(range.to, now).toISOString()];
}

/** Milliseconds between refreshes, or 0. */
export function refreshMs(range) {
  const m = /^(\d+)([smhd])$/.exec(range.refresh || '');
  return m ? Number(m[1]) * UNIT_MS[m[2]] : 0;
}

/** Writes the range into the URL (a new history entry), keeping the other parameters. */
export function toUrl(range, extra = {}) {
  const url = new URL(location.href);
  for (const [key, value] of Object.entries({ ...range, ...extra })) {
    if (value) url.searchParams.set(key, value); else url.searchParams.delete(key);
  }
  history.pushState(null, '', url);
}

/** The picker in `form`: a preset or an absolute range, and the refresh; `onChange(range)`. */
export function picker(form, range, onChange) {
  const preset = el('select', { id: 'range-preset', 'aria-label': 'Time range' },
    ...PRESETS.map(([value, label]) => el('option', { value, text: label, selected: range.from === value && range.to === 'now' })),
    el('option', { value: 'absolute', text: 'Absolute range', selected: !PRESETS.some(([v]) => v === range.from && range.to === 'now') }));
  const absolute = PRESETS.some(([v]) => v === range.from && range.to === 'now');
  const from = el('input', { id: 'range-from', type: 'datetime-local', 'aria-label': 'From (UTC)', value: local(range.from) });
  const to = el('input', { id: 'range-to', type: 'datetime-local', 'aria-label': 'To (UTC)', value: local(range.to) });
  const custom = el('span', { class: 'range-absolute', hidden: absolute }, from, ' to ', to,
    el('button', { type: 'submit', class: 'quiet', text: 'Apply' }));
  const refresh = el('select', { id: 'range-refresh', 'aria-label': 'Auto-refresh' },
    ...REFRESH.map(([value, label]) => el('option', { value, text: `Refresh: ${label}`, selected: range.refresh === value })));
  form.replaceChildren(preset, custom, refresh);
  const change = (next) => { Object.assign(range, next); toUrl(range); onChange(range); };
  preset.addEventListener('change', () => {
    custom.hidden = preset.value !== 'absolute';
    if (preset.value !== 'absolute') change({ from: preset.value, to: 'now' });
  });
  // Set, not added: the picker is drawn again on every history step.
  form.onsubmit = (event) => {
    event.preventDefault();
    const utc = (value) => new Date(`${value}Z`).toISOString().replace('.000Z', 'Z');
    if (from.value && to.value) change({ from: utc(from.value), to: utc(to.value) });
  };
  refresh.addEventListener('change', () => change({ refresh: refresh.value }));
}

/** A bound as the `datetime-local` input shows it (UTC, to the minute). */
function local(text) {
  try {
    return resolve(text).toISOString().slice(0, 16);
  } catch (_) {
    return '';
  }
}

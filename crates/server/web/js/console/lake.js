// Lake: every table with its hours of the chosen window, whether each is complete (its
// _SUCCESS marker), its rows, files and bytes, and the records its quarantine holds, opened
// with their reasons.

import { call, el, formatBytes, formatTime } from '../api.js';
import { showError } from './errors.js';

export class Lake {
  // Listing the bucket is not free: the lake is read when shown and when the window changes.
  refreshes = false;

  constructor() {
    this.window = document.getElementById('lake-hours');
    this.window.addEventListener('change', () => this.load().catch((e) => showError(e.message)));
  }

  async load() {
    const overview = await call('GET', `/v1/admin/lake/tables?hours=${this.window.value}`);
    const tables = overview.tables.map((table) => this.tableCard(table));
    document.getElementById('lake-tables').replaceChildren(
      ...(tables.length ? tables : [el('p', { class: 'hint', text: 'No table has files yet: hours are written once they close.' })]));
  }

  tableCard(table) {
    const rows = table.hours.map((h) => {
      const hour = h.hour.slice(0, 13);
      let refused = el('td', { text: String(h.quarantined) });
      if (h.quarantined > 0) {
        const open = el('button', { type: 'button', class: 'quiet', text: `${h.quarantined} quarantined` });
        open.addEventListener('click', () => showQuarantine(table.name, hour).catch((e) => showError(e.message)));
        refused = el('td', {}, open);
      }
      return el('tr', { 'data-hour': hour, 'data-complete': String(h.complete) },
        el('td', { text: hour }),
        el('td', { 'data-state': h.complete ? 'ok' : 'open', text: h.complete ? 'complete' : 'open' }),
        el('td', { class: 'num', text: h.rows === null ? '—' : String(h.rows) }),
        el('td', { class: 'num', text: String(h.files) }),
        el('td', { class: 'num', text: formatBytes(h.bytes) }),
        refused,
        el('td', { text: h.closed_at ? formatTime(h.closed_at) : '' }));
    });
    return el('article', { class: 'topic', 'data-table': table.name },
      el('h2', { text: table.name }),
      el('p', { class: 'hint', text: table.hours.length === 0 && table.files > 0
        ? `kept whole, without hours: ${table.files} file${table.files === 1 ? '' : 's'}, ${formatBytes(table.bytes)}`
        : `${table.rows} rows in complete hours · ${table.files} files, ${formatBytes(table.bytes)} · ${table.quarantined} quarantined` }),
      el('table', { class: 'grid-table' },
        el('thead', {}, el('tr', {}, ...['Hour (UTC)', 'State', 'Rows', 'Files', 'Bytes', 'Quarantined', 'Closed at'].map((t) => el('th', { text: t })))),
        el('tbody', {}, ...rows)));
  }
}

async function showQuarantine(table, hour) {
  const panel = document.getElementById('quarantine');
  const found = await call('GET', `/v1/admin/lake/quarantine/${encodeURIComponent(table)}?hour=${encodeURIComponent(hour)}`);
  const parts = [
    el('h2', { text: `Quarantined records of ${table}, ${hour}` }),
    found.truncated ? el('p', { class: 'hint', text: 'More were refused than one answer holds; the first are shown.' }) : null,
    el('table', { class: 'grid-table' },
      el('thead', {}, el('tr', {}, ...['Received', 'Line', 'Reason', 'Record as sent'].map((t) => el('th', { text: t })))),
      el('tbody', {}, ...found.records.map((r) => el('tr', {},
        el('td', { text: r.received_at }),
        el('td', { text: String(r.line) }),
        el('td', { class: 'error', text: r.reason }),
        el('td', {}, el('code', { class: 'wrap', text: r.raw }))))))];
  panel.replaceChildren(...parts.filter(Boolean));
  panel.hidden = false;
  panel.scrollIntoView({ block: 'nearest' });
}

// A dashboard: its panels' queries run through POST /v1/sql as the signed-in key (a customer's
// key sees its own rows), drawn with uPlot, over the time range in the URL, refreshed as the
// URL says; each panel opens its query (Edit) or the rows behind it (Rows) on the query page.

import { call, currentSession, el, wireSignOut } from '../api.js';
import { render } from './chart.js';
import { fromUrl, params, picker, refreshMs } from './range.js';
import { queryLink, runQuery } from './sql.js';

let timer = null;
let generation = 0;

async function main() {
  const session = await currentSession();
  if (!session) return;
  wireSignOut(document.getElementById('sign-out'));
  const { dashboards } = await call('GET', '/v1/dashboards');
  const name = decodeURIComponent(location.pathname.split('/')[2] || '') || 'overview';
  document.getElementById('dashboard-list').replaceChildren(...dashboards.map((d) => el('a', {
    href: `/dashboards/${d.name}${location.search}`,
    'aria-current': d.name === name ? 'page' : false,
    title: d.error || d.description,
    text: d.title || d.name,
  })));
  const dashboard = await call('GET', `/v1/dashboards/${encodeURIComponent(name)}`);
  document.title = `${dashboard.title} · imagelake`;
  document.getElementById('dashboard-title').textContent = dashboard.title;
  document.getElementById('dashboard-description').textContent = dashboard.description;
  const cards = dashboard.panels.map(panelCard);
  document.getElementById('panels').replaceChildren(...cards.map((c) => c.card));
  const range = readRange();
  const load = () => loadAll(dashboard, cards, range);
  picker(document.getElementById('range'), range, load);
  window.addEventListener('popstate', () => {
    Object.assign(range, readRange());
    picker(document.getElementById('range'), range, load);
    load();
  });
  await load();
}

/** The URL's range, or the default with a word on what in the URL could not be used. */
function readRange() {
  const { range, problem } = fromUrl();
  const box = document.getElementById('dashboard-error');
  box.textContent = problem ? `The address's time range could not be used (${problem}); showing the last 24 hours.` : '';
  box.hidden = !problem;
  return range;
}

function panelCard(panel) {
  const box = el('div', { class: 'panel-body' });
  const edit = el('a', { class: 'panel-link', text: 'Edit' });
  const rows = el('a', { class: 'panel-link', text: 'Rows' });
  const card = el('section', { class: `panel ${panel.chart === 'stat' ? '' : 'wide'}`, 'data-title': panel.title, 'data-panel': 'loading', 'aria-busy': 'true' },
    el('header', { class: 'panel-head' },
      el('h2', { text: panel.title }),
      el('span', {}, edit, ' ', rows)),
    box);
  return { panel, card, box, edit, rows };
}

/** Panels run this many at a time (and a stale load may still finish its own): the query layer
 * takes four per key at once (`sql.max_concurrent_per_key`); a refusal for that is tried again
 * after its wait. */
const AT_ONCE = 2;

async function loadAll(dashboard, cards, range) {
  clearTimeout(timer);
  const mine = ++generation;
  const bounds = params(range);
  const queue = [...cards];
  const worker = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      if (mine !== generation) return;
      await loadPanel(next, bounds, mine);
    }
  };
  await Promise.all(Array.from({ length: AT_ONCE }, worker));
  if (mine !== generation) return;
  const [from, to] = bounds;
  document.getElementById('freshness').textContent =
    `${from.slice(0, 16).replace('T', ' ')} to ${to.slice(0, 16).replace('T', ' ')} UTC · queried at ${new Date().toLocaleTimeString()}`
    + ' · live.images is read live; the other tables end at the lake\'s last closed hour.';
  const every = refreshMs(range);
  if (every) timer = setTimeout(() => refreshWhenSeen(dashboard, cards, range), every);
}

/** A refresh when the tab is seen: now, or once it is shown again. */
function refreshWhenSeen(dashboard, cards, range) {
  if (!document.hidden) {
    loadAll(dashboard, cards, range);
    return;
  }
  document.addEventListener('visibilitychange', () => refreshWhenSeen(dashboard, cards, range), { once: true });
}

async function loadPanel({ panel, card, box, edit, rows }, bounds, mine) {
  edit.href = queryLink(panel.sql, panel.chart);
  rows.href = queryLink(panel.drill || panel.sql, 'table');
  card.setAttribute('aria-busy', 'true');
  try {
    const answer = await withRetries(() => runQuery(panel.sql, bounds));
    if (mine !== generation) return;
    card.dataset.panel = render(box, panel.chart, answer, panel.unit, bounds);
  } catch (e) {
    if (mine !== generation) return;
    // A table with no closed hour yet and a table this key may not see look alike: missing.
    const missing = e.status === 400 && /not found|does not exist/i.test(e.message);
    card.dataset.panel = missing ? 'unavailable' : 'error';
    box.replaceChildren(el('p', {
      class: missing ? 'hint' : 'error',
      text: missing ? `No data for this key: ${e.message}` : `The query failed: ${e.message}`,
    }));
  } finally {
    card.setAttribute('aria-busy', 'false');
  }
}

/** `send()`, sent again after the wait a rate-limit refusal asks for (five tries). */
async function withRetries(send) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await send();
    } catch (e) {
      if (e.status !== 429 || attempt >= 5) throw e;
      await new Promise((resolve) => { setTimeout(resolve, (e.retryAfter || 1) * 1000); });
    }
  }
}

main().catch((error) => {
  const box = document.getElementById('dashboard-error');
  box.textContent = `The dashboard could not load: ${error.message}`;
  box.hidden = false;
});

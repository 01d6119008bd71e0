// The query page: one SQL statement over the time range in the URL, run as the signed-in key,
// its rows as a table and, if asked, a chart; the SQL and chart are kept in the URL, so a
// dashboard panel opens here to be edited or drilled into.

import { currentSession, wireSignOut } from '../api.js';
import { render, table } from './chart.js';
import { fromUrl, params, picker, toUrl } from './range.js';
import { runQuery } from './sql.js';

async function main() {
  const session = await currentSession();
  if (!session) return;
  wireSignOut(document.getElementById('sign-out'));
  const form = document.getElementById('query-form');
  const search = new URLSearchParams(location.search);
  form.elements.sql.value = search.get('sql') || 'SELECT type, count(*) AS events\nFROM events\nWHERE occurred_at >= CAST($1 AS TIMESTAMP) AND occurred_at < CAST($2 AS TIMESTAMP)\nGROUP BY 1 ORDER BY 2 DESC';
  const chart = search.get('chart');
  form.elements.chart.value = [...form.elements.chart.options].some((o) => o.value === chart) ? chart : 'table';
  const { range, problem } = fromUrl();
  if (problem) showProblem(`The address's time range could not be used (${problem}); the last 24 hours are used.`);
  // What runs is what the form holds, and the address says so.
  const run = () => {
    const url = new URL(location.href);
    url.searchParams.set('sql', form.elements.sql.value.trim());
    url.searchParams.set('chart', form.elements.chart.value);
    history.replaceState(null, '', url);
    return execute(form, range);
  };
  picker(document.getElementById('range'), range, run);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    toUrl(range, { sql: form.elements.sql.value.trim(), chart: form.elements.chart.value });
    execute(form, range);
  });
  // Back and forward bring the SQL, chart and range of that step back.
  window.addEventListener('popstate', () => {
    const now = new URLSearchParams(location.search);
    form.elements.sql.value = now.get('sql') || form.elements.sql.value;
    form.elements.chart.value = now.get('chart') || 'table';
    Object.assign(range, fromUrl().range);
    picker(document.getElementById('range'), range, run);
    execute(form, range);
  });
  if (search.get('sql')) await run();
}

function showProblem(text) {
  const error = document.getElementById('query-error');
  error.textContent = text;
  error.hidden = false;
}

async function execute(form, range) {
  const status = document.getElementById('query-status');
  const error = document.getElementById('query-error');
  const chartBox = document.getElementById('query-chart');
  const result = document.getElementById('query-result');
  error.hidden = true;
  status.textContent = 'Running…';
  const started = performance.now();
  try {
    const bounds = params(range);
    const answer = await runQuery(form.elements.sql.value, bounds);
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    status.textContent = `${answer.row_count} rows in ${seconds} s${answer.truncated ? ', cut at the row limit' : ''}.`;
    const chart = form.elements.chart.value;
    chartBox.hidden = chart === 'table' || answer.rows.length === 0;
    if (!chartBox.hidden) render(chartBox, chart, answer, '', bounds);
    result.replaceChildren(table(answer, ''));
  } catch (e) {
    status.textContent = '';
    error.textContent = e.message;
    error.hidden = false;
    result.replaceChildren();
    chartBox.hidden = true;
  }
}

main().catch((e) => {
  const error = document.getElementById('query-error');
  error.textContent = `The page could not start: ${e.message}`;
  error.hidden = false;
});

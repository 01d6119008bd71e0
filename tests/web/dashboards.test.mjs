// The dashboards in Chromium against a running `serve` (harness.mjs) that holds two customers'
// real photos (A's three, B's two; crates/cli/tests/web.rs uploads them) and a dashboards
// folder with a team's file. IMAGELAKE_WEB_KEYS: an analyst key, customer A's key. Every panel
// of the default dashboard renders; a panel's numbers equal its SQL through /v1/sql; the time
// range and refresh live in the URL and change the numbers; a panel drills down to its rows
// on the query page; a customer's key sees its own rows only.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { keys, launch, openContext, clean, screenshot, signIn } from './harness.mjs';

const [analyst, customerA] = keys;
assert.ok(customerA, 'an analyst key and a customer key');
const WAIT = 60_000;
const UPLOADS = 'Uploads per hour, by source';

let browser;

before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** Every panel settled (drawn, empty or refused). */
async function settled(page) {
  await page.waitForFunction(() => {
    const panels = [...document.querySelectorAll('.panel')];
    return panels.length > 0 && panels.every((p) => p.dataset.panel !== 'loading' && p.getAttribute('aria-busy') === 'false');
  }, null, { timeout: WAIT });
}

/** The sum of a panel's column, from the table of its rows. */
async function panelSum(page, title, column) {
  return page.locator(`.panel[data-title="${title}"] table.result-table`).evaluate((table, name) => {
    const at = [...table.querySelectorAll('thead th')].findIndex((th) => th.textContent === name);
    return [...table.querySelectorAll('tbody tr')].reduce((sum, tr) => sum + Number(tr.children[at].dataset.value || 0), 0);
  }, column);
}

async function sql(page, text, params) {
  const { csrf_token: csrf } = await (await page.request.get('/v1/session')).json();
  const answer = await page.request.post('/v1/sql', { data: { sql: text, params }, headers: { 'x-csrf-token': csrf } });
  assert.equal(answer.status(), 200, await answer.text());
  return answer.json();
}

test('an analyst sees every panel of the default dashboard, numbers equal to their SQL', async () => {
  const { page } = await openContext(browser, { width: 1400, height: 1000 });
  await signIn(page, analyst, 'Overview');
  assert.match(page.url(), /\/dashboards$/);
  const from = new Date(Date.now() - 6 * 3_600_000).toISOString().replace(/\.\d+Z$/, 'Z');
  const to = new Date(Date.now() + 3_600_000).toISOString().replace(/\.\d+Z$/, 'Z');
  await page.goto(`/dashboards/overview?from=${from}&to=${to}`);
  await settled(page);
  const states = await page.locator('.panel').evaluateAll((ps) => ps.map((p) => `${p.dataset.title}: ${p.dataset.panel}`));
  // A fresh system's lake has no closed hour yet: those panels say there is no data, none fails.
  assert.equal(states.filter((s) => s.endsWith('error') || s.endsWith('loading')).length, 0, states.join('\n'));
  assert.equal(states.length, 10, states.join('\n'));
  for (const title of [UPLOADS, 'Format mix', 'Upload to processed, p50 and p99']) {
    await page.locator(`.panel[data-title="${title}"][data-panel="ok"] .uplot canvas`).waitFor();
  }
  await page.locator('.panel[data-title="Bytes stored"] .stat-value').first().waitFor();
  await screenshot(page, 'dashboard-overview');

  const definition = await (await page.request.get('/v1/dashboards/overview')).json();
  const uploads = definition.panels.find((p) => p.title === UPLOADS);
  const answer = await sql(page, uploads.sql, [from, to]);
  const expected = answer.rows.reduce((sum, row) => sum + row[2], 0);
  assert.equal(expected, 5, 'both customers\' five photos');
  assert.equal(await panelSum(page, UPLOADS, 'uploads'), expected);
  const bytes = await sql(page, 'SELECT sum(bytes) FROM live.images WHERE uploaded_at >= CAST($1 AS TIMESTAMP) AND uploaded_at < CAST($2 AS TIMESTAMP)', [from, to]);
  const shown = await page.locator('.panel[data-title="Bytes stored"] .stat-value[data-column="bytes"]').textContent();
  assert.ok(shown.endsWith('MiB') || shown.endsWith('KiB'), shown);
  assert.ok(bytes.rows[0][0] > 0);
  await clean(page, 'overview', /status of 400/);
});

test('the time range and refresh live in the URL and change the numbers', async () => {
  const { page } = await openContext(browser);
  await signIn(page, analyst, 'Overview');
  await settled(page);
  await page.selectOption('#range-preset', 'now-7d');
  await page.waitForURL(/from=now-7d/);
  await settled(page);
  assert.equal(await panelSum(page, UPLOADS, 'uploads'), 5);
  await page.selectOption('#range-refresh', '30s');
  await page.waitForURL(/refresh=30s/);
  // A day in the past: no uploads then.
  await page.selectOption('#range-preset', 'absolute');
  await page.fill('#range-from', '2026-01-01T00:00');
  await page.fill('#range-to', '2026-01-02T00:00');
  await page.click('#range button[type="submit"]');
  await page.waitForURL(/from=2026-01-01T00%3A00%3A00Z&to=2026-01-02T00%3A00%3A00Z|from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z/);
  await page.locator(`.panel[data-title="${UPLOADS}"][data-panel="empty"]`).waitFor({ timeout: WAIT });
  // The URL alone brings the same view back, in a new page.
  const shared = page.url();
  const { page: other } = await openContext(browser);
  await signIn(other, analyst, 'Overview');
  await other.goto(shared);
  await other.locator(`.panel[data-title="${UPLOADS}"][data-panel="empty"]`).waitFor({ timeout: WAIT });
  assert.equal(await other.locator('#range-refresh').inputValue(), '30s');
  await screenshot(page, 'dashboard-past-range');
  await clean(page, 'range', /status of 400/);
  await clean(other, 'shared view', /status of 400/);
});

test('a panel drills down to its rows, and the query page edits and charts SQL', async () => {
  const { page } = await openContext(browser);
  await signIn(page, analyst, 'Overview');
  await settled(page);
  await page.locator(`.panel[data-title="${UPLOADS}"] a`, { hasText: 'Rows' }).click();
  await page.waitForURL(/\/query\?/);
  await page.locator('#query-result tbody tr').first().waitFor({ timeout: WAIT });
  assert.equal(await page.locator('#query-result tbody tr').count(), 5);
  assert.match(await page.locator('#query-status').textContent(), /^5 rows/);
  await page.fill('#sql', 'SELECT format, count(*) AS images FROM live.images WHERE uploaded_at >= CAST($1 AS TIMESTAMP) GROUP BY 1 ORDER BY 1');
  await page.selectOption('#chart', 'bars');
  await page.click('#query-form button[type="submit"]');
  await page.locator('#query-chart .uplot canvas').waitFor({ timeout: WAIT });
  assert.match(page.url(), /chart=bars/);
  assert.match(decodeURIComponent(page.url().replaceAll('+', ' ')), /GROUP BY 1 ORDER BY 1/);
  await screenshot(page, 'query-page');
  // A bad query says what is wrong.
  await page.fill('#sql', 'SELECT nope FROM live.images');
  await page.click('#query-form button[type="submit"]');
  await page.locator('#query-error').waitFor();
  assert.match(await page.locator('#query-error').textContent(), /nope/);
  await clean(page, 'query page', /status of 400/);
});

test('a dashboard file in the folder is listed and drawn', async () => {
  const { page } = await openContext(browser);
  await signIn(page, analyst, 'Overview');
  await page.locator('#dashboard-list a', { hasText: 'Formats by customer' }).click();
  await page.getByRole('heading', { name: 'Formats by customer' }).waitFor();
  await settled(page);
  assert.equal(await page.locator('.panel[data-panel="ok"]').count(), 1);
  await clean(page, 'folder dashboard', /status of 400/);
});

test('a customer\'s dashboards count its own rows only', async () => {
  const { page } = await openContext(browser);
  await signIn(page, customerA);
  await page.goto('/dashboards');
  await settled(page);
  assert.equal(await panelSum(page, UPLOADS, 'uploads'), 3, 'A\'s three photos, not B\'s');
  const jobs = page.locator('.panel[data-title^="Job runs"]');
  assert.equal(await jobs.getAttribute('data-panel'), 'unavailable');
  assert.match(await jobs.textContent(), /No data for this key/);
  await screenshot(page, 'dashboard-customer');
  await clean(page, 'customer dashboard', /status of 400/);
});


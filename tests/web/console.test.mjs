// The engineers' console in Chromium against a running `serve` (harness.mjs): the admin token
// and a customer's key. The admin signs in and lands on the console; every section is driven
// as an engineer would, checked against the API, and photographed. A customer's session gets
// 404 for /console. No console errors or CSP violations on any page.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { keys, launch, openContext, clean, screenshot, signIn } from './harness.mjs';

const [admin, customerKey] = keys;
assert.ok(customerKey, 'the admin token and a customer key');
const WAIT = 60_000;

let browser;
let page;

before(async () => {
  browser = await launch();
  ({ page } = await openContext(browser, { width: 1280, height: 1000 }));
  await signIn(page, admin, 'Processing');
});
after(async () => { await browser?.close(); });

test('the admin lands on the console; processing shows this process and its tasks', async () => {
  assert.match(page.url(), /\/console$/);
  // Two `serve` processes beat: this one, up, and the one stopped before it started, whose
  // last beat said so.
  const serve = page.locator('.process[data-role="serve"][data-status="up"]');
  await serve.waitFor({ timeout: WAIT });
  await page.locator('.process[data-role="serve"][data-status="stopped"]').waitFor();
  const { processes } = await (await page.request.get('/v1/admin/tasks')).json();
  assert.deepEqual(processes.map((p) => [p.role, p.status]).sort(), [['serve', 'stopped'], ['serve', 'up']]);
  for (const task of ['workers', 'scheduler', 'heartbeat', 'lake-writer']) {
    await serve.locator(`tr[data-task="${task}"]`).waitFor();
  }
  assert.match(await page.locator('#queue-depth').textContent(), /^\d+$/);
  assert.ok(await page.locator('#dead-jobs-empty').isVisible(), 'no dead letters in a new system');
  await screenshot(page, 'console-processing');
  await clean(page, 'processing');
});

test('customers are created with a key shown once, searched, edited, keyed and deleted', async () => {
  await page.click('a[href="#customers"]');
  await page.getByRole('heading', { name: 'Customers' }).waitFor();
  const email = `console-${Date.now()}@example.test`;
  await page.fill('#new-name', 'Console Customer');
  await page.fill('#new-email', email);
  await page.click('#new-customer button[type="submit"]');
  await page.locator('#secret[open]').waitFor();
  const apiKey = await page.locator('#secret-value').textContent();
  assert.match(apiKey, /^ilk_/);
  await screenshot(page, 'console-new-customer-key');
  await page.click('#secret button');
  // The dialog's `close` event, which empties it, is dispatched in a task after the click.
  await page.waitForFunction(() => !document.getElementById('secret').open
    && document.getElementById('secret-value').textContent === '', null, { timeout: WAIT });
  // The key works against the API.
  const images = await page.request.get('/v1/images', { headers: { authorization: `Bearer ${apiKey}` } });
  assert.equal(images.status(), 200);

  // Search by part of the email finds exactly this customer.
  await page.fill('#customer-q', email.slice(0, 20));
  await page.waitForFunction((e) => {
    const rows = [...document.querySelectorAll('#customer-rows tr')];
    return rows.length === 1 && rows[0].textContent.includes(e);
  }, email, { timeout: WAIT });

  // Edit the plan.
  await page.locator('#customer-detail h2', { hasText: 'Console Customer' }).waitFor();
  await page.fill('#edit-plan', 'gold');
  await page.click('#edit-customer button[type="submit"]');
  await page.getByText('Saved.').waitFor();
  await page.locator('#customer-rows tr', { hasText: 'gold' }).waitFor();

  // A second key, then the first revoked: refused by the API at once.
  await page.click('text=Issue a key');
  await page.locator('#secret[open]').waitFor();
  const second = await page.locator('#secret-value').textContent();
  await page.click('#secret button');
  await page.waitForFunction(() => document.querySelectorAll('#key-rows tr').length === 2);
  const firstRow = page.locator('#key-rows tr', { hasText: apiKey.slice(0, 12) });
  await firstRow.getByRole('button', { name: 'Revoke' }).click();
  await page.click('#confirm-ok');
  await page.locator('#key-rows tr', { hasText: 'revoked' }).waitFor();
  const revoked = await page.request.get('/v1/images', { headers: { authorization: `Bearer ${apiKey}` } });
  assert.equal(revoked.status(), 401);
  const live = await page.request.get('/v1/images', { headers: { authorization: `Bearer ${second}` } });
  assert.equal(live.status(), 200);
  await screenshot(page, 'console-customer');

  // Deleting needs the email typed.
  await page.click('text=Delete customer');
  await page.locator('#typed-confirm[open]').waitFor();
  assert.ok(await page.locator('#typed-confirm-ok').isDisabled());
  await page.fill('#typed-confirm-input', 'wrong@example.test');
  assert.ok(await page.locator('#typed-confirm-ok').isDisabled());
  await page.fill('#typed-confirm-input', email);
  await screenshot(page, 'console-delete-confirm');
  await page.click('#typed-confirm-ok');
  await page.getByText('Deleted.').waitFor({ state: 'attached' });
  await page.waitForFunction(() => document.querySelectorAll('#customer-rows tr').length === 0, null, { timeout: WAIT });
  const gone = await page.request.get('/v1/images', { headers: { authorization: `Bearer ${second}` } });
  assert.equal(gone.status(), 401, 'the deleted customer\'s keys are refused');
  await clean(page, 'customers', /status of 401/);
});

test('company keys are issued once and revoked at once', async () => {
  await page.click('a[href="#customers"]');
  await page.fill('#company-key-name', 'console-bi');
  await page.selectOption('#company-key-role', 'analyst');
  await page.click('#new-company-key button[type="submit"]');
  await page.locator('#secret[open]').waitFor();
  const key = await page.locator('#secret-value').textContent();
  await page.click('#secret button');
  const row = page.locator('#company-keys tr', { hasText: 'console-bi' });
  await row.waitFor();
  const query = () => page.request.post('/v1/sql', {
    data: { sql: 'SELECT 1 AS one' },
    headers: { authorization: `Bearer ${key}` },
  });
  assert.equal((await query()).status(), 200, 'the analyst key queries');
  await row.getByRole('button', { name: 'Revoke' }).click();
  await page.click('#confirm-ok');
  await row.locator('td[data-state="revoked"]').waitFor();
  assert.equal((await query()).status(), 401, 'refused once revoked');
  await clean(page, 'company keys', /status of 401/);
});

test('a job run from the console appears in its grid, and a backfill runs', async () => {
  await page.click('a[href="#jobs"]');
  // lake-retention: hourly; the scheduler only ever runs its newest interval, so hours further
  // back are the console's alone.
  const job = page.locator('[data-job="lake-retention"]');
  await job.waitFor({ timeout: WAIT });
  const now = Date.now();
  const hour = (back) => new Date(now - back * 3_600_000).toISOString().slice(0, 13);
  const interval = hour(5);
  await job.locator('input[name="interval"]').fill(interval);
  await job.getByRole('button', { name: 'Run now' }).click();
  await job.getByText(`Queued ${interval}, attempt 1.`).waitFor();
  await job.locator(`.grid-column[data-interval="${interval}"][data-state="success"]`).waitFor({ timeout: WAIT });

  // A backfill of three hours further back: each ends in the grid.
  await job.locator('input[name="from"]').fill(hour(8));
  await job.locator('input[name="to"]').fill(hour(6));
  await job.locator('select[name="reprocess"]').selectOption('missing');
  await job.getByRole('button', { name: 'Backfill' }).click();
  await job.getByText(`Backfill of ${hour(8)} to ${hour(6)} started.`).waitFor();
  for (const back of [8, 7, 6]) {
    await job.locator(`.grid-column[data-interval="${hour(back)}"][data-state="success"]`).waitFor({ timeout: WAIT });
  }
  await job.locator('.backfills li[data-state="done"]').waitFor({ timeout: WAIT });
  const { runs } = await (await page.request.get('/v1/admin/jobs/lake-retention/runs')).json();
  const backfilled = runs.filter((r) => r.backfill && r.state === 'success').map((r) => r.interval).sort();
  assert.deepEqual(backfilled, [hour(8), hour(7), hour(6)], 'the API has the backfill\'s runs');
  await screenshot(page, 'console-jobs');
  await clean(page, 'jobs');
});

test('the lake shows the closed hour of the records posted, with its rows', async () => {
  const hour = process.env.IMAGELAKE_WEB_LAKE_HOUR;
  assert.ok(hour, 'IMAGELAKE_WEB_LAKE_HOUR names the hour the records were posted for');
  await page.click('a[href="#lake"]');
  await page.selectOption('#lake-hours', '6');
  const row = page.locator(`[data-table="billing"] tr[data-hour="${hour}"]`);
  await row.waitFor({ timeout: WAIT });
  assert.equal(await row.getAttribute('data-complete'), 'true');
  assert.equal(await row.locator('td').nth(2).textContent(), '2', 'its two rows');
  const { tables } = await (await page.request.get('/v1/admin/lake/tables?hours=6')).json();
  const billing = tables.find((t) => t.name === 'billing');
  const api = billing.hours.find((h) => h.hour.startsWith(hour));
  assert.deepEqual([api.complete, api.rows, api.files], [true, 2, 1]);
  await screenshot(page, 'console-lake');
  await clean(page, 'lake');
});

test('health lists every dependency of this process', async () => {
  await page.click('a[href="#health"]');
  await page.locator('#health-rows th', { hasText: 'metadata' }).waitFor();
  assert.equal(await page.locator('#ready-status').textContent(), 'ready');
  await screenshot(page, 'console-health');
  await clean(page, 'health');
});

test('a customer cannot open the console', async () => {
  const { context, page: customer } = await openContext(browser);
  await signIn(customer, customerKey);
  const response = await customer.goto('/console');
  assert.equal(response.status(), 404);
  const api = await customer.request.get('/v1/admin/tasks');
  assert.equal(api.status(), 404);
  await context.close();
});

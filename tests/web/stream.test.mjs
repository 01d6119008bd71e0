// The console's stream section against `serve` on the real Kafka-protocol broker, started by
// crates/cli/tests/web.rs, which produced a real photo to the images topic for a customer that
// does not exist yet (its id is the second entry of IMAGELAKE_WEB_KEYS, after the admin token).
// The message shows in the dead letters with its code; once the customer is created from the
// console, a re-drive ends in a processed image.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { keys, launch, openContext, clean, screenshot, signIn } from './harness.mjs';

const [admin, missingCustomer] = keys;
assert.ok(missingCustomer, 'the admin token and the id of the customer the message names');
const WAIT = 90_000;

let browser;
let page;

before(async () => {
  browser = await launch();
  ({ page } = await openContext(browser, { width: 1280, height: 1000 }));
  await signIn(page, admin, 'Processing');
});
after(async () => { await browser?.close(); });

test('topics show their partitions, offsets and the groups\' lag', async () => {
  await page.click('a[href="#stream"]');
  const images = page.locator('.topic[data-purpose="images"]');
  await images.waitFor({ timeout: WAIT });
  const overview = await (await page.request.get('/v1/admin/stream')).json();
  assert.equal(overview.enabled, true);
  const topic = overview.topics.find((t) => t.purpose === 'images');
  assert.ok(topic.partitions.length >= 1 && topic.partitions.some((p) => p.end_offset >= 1), JSON.stringify(topic));
  assert.equal(topic.group.length > 0, true);
  assert.equal(await images.locator('tbody tr').count(), topic.partitions.length);
  await page.locator('.topic[data-purpose="dead-letters"]').waitFor();
  // The second look knows the rate.
  await page.waitForFunction(() => !document.querySelector('.topic[data-purpose="images"] .hint').textContent.includes('measuring'), null, { timeout: WAIT });
  await clean(page, 'stream');
});

test('a poison message shows with its code and, once its customer exists, is re-driven and processed', async () => {
  const row = page.locator('#stream-dead tr[data-code="not_found"]', { hasText: missingCustomer });
  await row.waitFor({ timeout: WAIT });
  assert.match(await row.textContent(), new RegExp(`no customer ${missingCustomer}`));
  await screenshot(page, 'stream-dead-letter');

  // The cause fixed: the customer the message names is created, under that id.
  await page.click('a[href="#customers"]');
  await page.fill('#new-name', 'Stream Customer');
  await page.fill('#new-email', `stream-${Date.now()}@example.test`);
  await page.fill('#new-id', missingCustomer);
  await page.click('#new-customer button[type="submit"]');
  await page.locator('#secret[open]').waitFor();
  const key = await page.locator('#secret-value').textContent();
  await page.click('#secret button');

  await page.click('a[href="#stream"]');
  await row.waitFor();
  await row.getByRole('button', { name: 'Re-drive' }).click();
  await page.click('#confirm-ok');
  await page.getByText('1 re-driven.').waitFor({ timeout: WAIT });

  // The stream consumer takes it again: this time the image is stored and processed.
  const deadline = Date.now() + WAIT;
  let images = [];
  while (Date.now() < deadline) {
    const answer = await page.request.get('/v1/images', { headers: { authorization: `Bearer ${key}` } });
    images = (await answer.json()).images;
    if (images.some((i) => i.status === 'processed')) break;
    await page.waitForTimeout(500);
  }
  assert.equal(images.length, 1, 'one image stored');
  assert.equal(images[0].status, 'processed');
  assert.equal(images[0].source, 'kafka');
  await screenshot(page, 'stream-redriven');
  await clean(page, 'stream re-drive');
});

test('re-drives name what they missed and refuse what is not an id', async () => {
  const { csrf_token: csrf } = await (await page.request.get('/v1/session')).json();
  const post = (data) => page.request.post('/v1/admin/stream/dead-letters/redrive', { data, headers: { 'x-csrf-token': csrf } });
  const missed = await post({ ids: ['0-999999'] });
  assert.equal(missed.status(), 200);
  assert.deepEqual(await missed.json(), { redriven: 0, missing: ['0-999999'] });
  for (const bad of [{ ids: ['x'] }, {}, { ids: [] }, { ids: ['0-1'], all: true }]) {
    assert.equal((await post(bad)).status(), 400, JSON.stringify(bad));
  }
  const page1 = await (await page.request.get('/v1/admin/stream/dead-letters?limit=1')).json();
  assert.equal(page1.messages.length, 1);
  assert.equal(page1.messages[0].bytes > 100_000, true, 'the photo\'s size, not its bytes');
  assert.equal('payload' in page1.messages[0], false);
});

// A folder of photos uploaded by a key with a low rate limit (the server runs with
// IMAGELAKE_RATE_LIMIT=2, IMAGELAKE_RATE_BURST=6): every file ends stored, those refused for
// the rate having been sent again after their Retry-After, and every thumbnail appears
// without a reload. Started by crates/cli/tests/web.rs with the environment app.test.mjs takes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { keys, corpus, launch, openContext, screenshot, signIn } from './harness.mjs';

const [key] = keys;
const COUNT = 12;

test('every file of a folder is stored and processed within the rate limit', async () => {
  const photos = readdirSync(corpus)
    .filter((name) => /\.(jpg|png)$/.test(name))
    .map((name) => join(corpus, name))
    .sort((a, b) => statSync(a).size - statSync(b).size)
    .slice(0, COUNT);
  const browser = await launch();
  try {
    const { page } = await openContext(browser);
    const refused = [];
    page.on('response', (r) => { if (r.status() === 429) refused.push(r.url()); });
    await signIn(page, key);
    await page.evaluate(() => {
      window.waited = 0;
      new MutationObserver((changes) => {
        if (changes.some((c) => c.target.textContent?.includes('rate limit'))) window.waited += 1;
      }).observe(document.getElementById('upload-list'), { subtree: true, childList: true, characterData: true });
    });
    await page.setInputFiles('#pick-files', photos);
    await page.waitForFunction((n) => {
      const rows = [...document.querySelectorAll('.upload')];
      return rows.length === n && rows.every((r) => !['waiting', 'sending'].includes(r.dataset.state));
    }, COUNT, { timeout: 120_000, polling: 250 });
    const states = await page.locator('.upload').evaluateAll((rows) => rows.map((r) => `${r.dataset.state}: ${r.querySelector('.outcome').textContent}`));
    assert.deepEqual(states.filter((s) => !s.startsWith('stored')), [], 'every file stored');
    assert.ok(refused.length > 0, 'the rate limit was reached, so the retry was exercised');
    assert.ok(await page.evaluate(() => window.waited) > 0, 'the page said it was waiting for the rate limit');
    await page.waitForFunction((n) => {
      const cards = [...document.querySelectorAll('.card')];
      return cards.length === n && cards.every((c) => c.dataset.status === 'processed'
        && c.querySelector('.thumb img')?.complete && c.querySelector('.thumb img').naturalWidth > 0);
    }, COUNT, { timeout: 120_000, polling: 250 });
    await screenshot(page, 'rate-limited-folder');
  } finally {
    await browser.close();
  }
});

// Large files straight to the bucket: against a server on the Google Cloud emulators with a
// signing key, a photo over the page's threshold is sent with a signed URL to the bucket, a
// small one through the API; both end processed, with no console error or CSP violation.
// Started by crates/cli/tests/web.rs with the environment app.test.mjs takes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { base, keys, corpus, launch, openContext, clean, screenshot, signIn } from './harness.mjs';

const [key] = keys;

test('a large photo goes straight to the bucket, a small one through the API', async () => {
  const browser = await launch();
  try {
    const { page } = await openContext(browser);
    const puts = [];
    const tickets = [];
    page.on('request', (r) => {
      if (r.method() === 'PUT') puts.push(r.url());
      if (r.method() === 'POST' && r.url().endsWith('/v1/uploads')) tickets.push(r.url());
    });
    // The first look at the stored record is refused for the rate limit: the page asks again,
    // and neither the ticket nor the bytes are sent twice.
    let refusedOnce = false;
    await page.route(/\/v1\/images\/[0-9a-f-]{36}$/, (route) => {
      if (refusedOnce || route.request().method() !== 'GET') return route.continue();
      refusedOnce = true;
      return route.fulfill({
        status: 429,
        headers: { 'retry-after': '1', 'content-type': 'application/json' },
        body: JSON.stringify({ error: { code: 'rate_limited', message: 'too many requests; retry in 1 s' } }),
      });
    });

    await signIn(page, key);
    const { limits } = await (await page.request.get('/v1/session')).json();
    assert.ok(limits.direct_from_bytes > 0, 'this deployment signs URLs');
    const large = join(corpus, 'Elephants_5640x3172.jpg');
    const small = join(corpus, 'Storm.jpg');
    assert.ok(statSync(large).size >= limits.direct_from_bytes && statSync(small).size < limits.direct_from_bytes);

    await page.setInputFiles('#pick-files', [large, small]);
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('.upload')];
      return rows.length === 2 && rows.every((r) => !['waiting', 'sending'].includes(r.dataset.state));
    }, null, { timeout: 120_000 });
    const outcomes = Object.fromEntries(await page.locator('.upload').evaluateAll((rows) => rows.map((r) => [r.querySelector('.name').textContent, r.querySelector('.outcome').textContent])));
    assert.match(outcomes['Elephants_5640x3172.jpg'], /^Stored, sent straight to the bucket/);
    assert.match(outcomes['Storm.jpg'], /^Stored open$/);
    assert.equal(puts.length, 1, `one PUT: ${puts}`);
    assert.equal(tickets.length, 1, 'one signed URL asked for');
    assert.ok(refusedOnce, 'the record was refused once');
    assert.ok(!puts[0].startsWith(base), `the PUT went to the bucket, not the API: ${puts[0]}`);
    const bucketPath = `${new URL(puts[0]).origin}/${new URL(puts[0]).pathname.split('/')[1]}/`;
    const csp = (await page.request.get('/')).headers()['content-security-policy'];
    assert.ok(csp.includes(`connect-src 'self' ${bucketPath};`), `the CSP allows the bucket's path: ${csp}`);

    await page.waitForFunction(() => {
      const cards = [...document.querySelectorAll('.card')];
      return cards.length === 2 && cards.every((c) => c.dataset.status === 'processed' && c.querySelector('.thumb img')?.complete);
    }, null, { timeout: 120_000, polling: 250 });
    await screenshot(page, 'direct-upload');
    await clean(page, 'direct upload', /status of 429/);
  } finally {
    await browser.close();
  }
});

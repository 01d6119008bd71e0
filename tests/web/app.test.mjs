// The customers' web app in Debian's Chromium, driven by playwright-core, against a running
// imagelake started by crates/cli/tests/web.rs with two customers' keys (harness.mjs).
// Every page is checked for console errors and Content-Security-Policy violations.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { base, keys, corpus, launch, openContext as open, clean, screenshot, signIn } from './harness.mjs';

const [keyA, keyB] = keys;
assert.ok(keyB, 'two customers\' keys');
const WAIT = 90_000;

let browser;

before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

function openContext(viewport) {
  return open(browser, viewport);
}

/** Files as the page can hold them: name, type and the bytes as base64. */
function photo(name, as = name) {
  const type = name.endsWith('.png') ? 'image/png' : 'image/jpeg';
  return { name: as, type, data: readFileSync(join(corpus, name)).toString('base64') };
}

/** Drops `files` (and a file of `hugeBytes` zeros named huge.jpg) on the drop zone. */
async function drop(page, files, hugeBytes) {
  const transfer = await page.evaluateHandle(({ files, hugeBytes }) => {
    const dt = new DataTransfer();
    for (const f of files) {
      const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
      dt.items.add(new File([bytes], f.name, { type: f.type }));
    }
    dt.items.add(new File([new Uint8Array(hugeBytes)], 'huge.jpg', { type: 'image/jpeg' }));
    return dt;
  }, { files, hugeBytes });
  await page.dispatchEvent('#drop', 'dragover', { dataTransfer: transfer });
  await page.dispatchEvent('#drop', 'drop', { dataTransfer: transfer });
}

const state = {};

test('a customer signs in, uploads by drop and by picker, and sees each outcome', async () => {
  const { context, page } = await openContext();
  state.contextA = context;
  state.pageA = page;
  await page.goto('/');
  await screenshot(page, 'sign-in');
  await page.getByLabel('API key').fill('il_not-a-key');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'invalid or revoked API key' }).waitFor();
  page.problems.length = 0; // the refused sign-in's 401 is logged by the browser itself

  await signIn(page, keyA);
  const session = await page.request.get('/v1/session');
  const limits = (await session.json()).limits;
  await screenshot(page, 'signed-in-empty');

  const real = [photo('Storm.jpg'), photo('FreshFlower.jpg'), photo('GreenMeadow.jpg'), photo('Spring.png')];
  const duplicate = photo('FreshFlower.jpg', 'FreshFlower-copy.jpg');
  const refused = { name: 'notes.txt', type: 'text/plain', data: Buffer.from('not an image').toString('base64') };
  await drop(page, [...real, duplicate, refused], limits.max_body_bytes + 1);
  // A large real photograph through the file picker.
  await page.setInputFiles('#pick-files', join(corpus, 'Elephants_3840x2160.jpg'));

  const rows = page.locator('.upload');
  await assert.doesNotReject(rows.nth(7).waitFor());
  await page.waitForFunction(() => [...document.querySelectorAll('.upload')]
    .every((r) => !['waiting', 'sending'].includes(r.dataset.state)), null, { timeout: WAIT });
  const outcomes = await rows.evaluateAll((all) => all.map((r) => [r.querySelector('.name').textContent, r.dataset.state, r.querySelector('.outcome').textContent]));
  const byName = Object.fromEntries(outcomes.map(([name, s, text]) => [name, [s, text]]));
  assert.equal(byName['notes.txt'][0], 'refused');
  assert.match(byName['notes.txt'][1], /not an accepted image type/);
  assert.equal(byName['huge.jpg'][0], 'refused');
  assert.match(byName['huge.jpg'][1], /over the 50 MiB limit for one image/);
  const flowers = [byName['FreshFlower.jpg'][0], byName['FreshFlower-copy.jpg'][0]].sort();
  assert.deepEqual(flowers, ['duplicate', 'stored'], 'one of the same bytes is stored, the other a duplicate');
  for (const name of ['Storm.jpg', 'GreenMeadow.jpg', 'Spring.png', 'Elephants_3840x2160.jpg']) {
    assert.equal(byName[name][0], 'stored', `${name}: ${byName[name][1]}`);
  }
  const duplicateRow = page.locator('.upload[data-state="duplicate"]');
  assert.match(await duplicateRow.locator('a').getAttribute('href'), /^\/images\/[0-9a-f-]{36}$/);
  const total = await page.locator('#total-progress').evaluate((p) => [p.value, p.max]);
  assert.equal(total[0], total[1], 'the total progress is full');
  assert.match(await page.locator('#total-text').textContent(), /^8 of 8 done/);
  await screenshot(page, 'uploads-done');
  await clean(page, 'uploading');
});

test('thumbnails turn processed without a reload', async () => {
  const page = state.pageA;
  let navigations = 0;
  page.on('framenavigated', () => { navigations += 1; });
  await page.waitForFunction(() => {
    const cards = [...document.querySelectorAll('.card')];
    return cards.length === 5 && cards.every((c) => c.dataset.status === 'processed'
      && c.querySelector('.thumb img')?.complete);
  }, null, { timeout: WAIT, polling: 250 });
  assert.equal(navigations, 0, 'the page was not reloaded');
  const sizes = await page.locator('.thumb').evaluateAll((all) => all.map((t) => t.getBoundingClientRect().height));
  assert.ok(sizes.every((h) => h > 100 && Math.abs(h - sizes[0]) < 1), `thumbnail boxes of one size: ${sizes}`);
  await screenshot(page, 'gallery-processed');
  await clean(page, 'gallery');
});

test('the gallery filters by name, status and date, and scrolls page by page', async () => {
  const page = state.pageA;
  await page.getByLabel('File name').fill('storm');
  await page.waitForFunction(() => document.querySelectorAll('.card').length === 1);
  assert.equal(await page.locator('.card .name').textContent(), 'Storm.jpg');
  await page.getByLabel('File name').fill('');
  await page.getByLabel('Status').selectOption('failed');
  await page.locator('#gallery-empty').waitFor();
  assert.equal(await page.locator('.card').count(), 0);
  await page.getByLabel('Status').selectOption('processed');
  await page.waitForFunction(() => document.querySelectorAll('.card').length === 5);
  const tomorrow = new Date(Date.now() + 86_400_000).toISOString().slice(0, 10);
  await page.getByLabel('From').fill(tomorrow);
  await page.waitForFunction(() => document.querySelectorAll('.card').length === 0);
  await page.getByLabel('From').fill('');
  await page.waitForFunction(() => document.querySelectorAll('.card').length === 5);
  await screenshot(page, 'gallery-filtered');

  // Two images a page: scrolling down fetches the rest.
  const pages = [];
  page.on('request', (r) => { if (r.url().includes('/v1/images?')) pages.push(r.url()); });
  await page.goto('/?per_page=2');
  await page.waitForFunction(() => document.querySelectorAll('.card').length >= 2);
  await page.waitForFunction(() => {
    window.scrollTo(0, document.body.scrollHeight);
    return document.querySelectorAll('.card').length === 5;
  }, null, { timeout: WAIT, polling: 200 });
  assert.equal(await page.locator('.card').count(), 5);
  assert.ok(pages.filter((u) => u.includes('cursor=')).length >= 2, `pages fetched with a cursor: ${pages}`);
  const names = await page.locator('.card .name').allTextContents();
  assert.equal(new Set(names).size, 5, 'no image twice');
  await clean(page, 'scrolling');
});

test("an image's page shows the API's facts, and deleting it asks first", async () => {
  const page = state.pageA;
  await page.goto('/');
  await page.locator('.card', { hasText: 'Storm.jpg' }).locator('a.open').click();
  await page.waitForURL(/\/images\//);
  await page.locator('#facts dt').first().waitFor();
  const id = page.url().split('/').pop();
  state.stormId = id;
  const api = await (await page.request.get(`/v1/images/${id}`)).json();
  const facts = Object.fromEntries(await page.locator('#facts dt').evaluateAll((dts) => dts.map((dt) => [dt.textContent, dt.nextElementSibling.textContent])));
  assert.equal(facts.Dimensions, `${api.width} × ${api.height}`);
  assert.equal(facts.Format, api.format);
  assert.equal(facts['Camera make'], api.exif.make);
  assert.equal(facts['Camera model'], api.exif.model);
  assert.equal(facts['Taken at'], api.exif.taken_at);
  assert.equal(facts['Perceptual hash'], api.phash);
  assert.equal(facts['Average colour'], api.average_color);
  const swatch = await page.locator('.swatch').evaluate((s) => getComputedStyle(s).backgroundColor);
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(api.average_color.slice(i, i + 2), 16));
  assert.equal(swatch, `rgb(${r}, ${g}, ${b})`);
  const links = await page.locator('#downloads a').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
  assert.deepEqual(links.sort(), [`/v1/images/${id}/original`, `/v1/images/${id}/renditions/preview`, `/v1/images/${id}/renditions/thumb`]);
  for (const link of links) assert.equal((await page.request.get(link)).status(), 200, link);
  await page.locator('#preview').evaluate((img) => img.decode());
  await screenshot(page, 'image-page');
  await page.setViewportSize({ width: 390, height: 844 });
  await screenshot(page, 'image-page-phone');
  await page.setViewportSize({ width: 1280, height: 900 });

  await page.getByRole('button', { name: 'Delete image' }).click();
  await page.locator('dialog[open]').waitFor();
  await screenshot(page, 'delete-confirm');
  await page.getByRole('button', { name: 'Cancel' }).click();
  assert.equal((await page.request.get(`/v1/images/${id}`)).status(), 200, 'cancel keeps it');
  await page.getByRole('button', { name: 'Delete image' }).click();
  await page.locator('dialog[open]').getByRole('button', { name: 'Delete' }).click();
  await page.waitForURL(`${base}/`);
  await page.waitForFunction(() => document.querySelectorAll('.card').length === 4);
  assert.equal((await page.request.get(`/v1/images/${id}`)).status(), 404);
  await clean(page, 'image page');
});

test("another customer sees none of it, and gets 404 on the first one's image page", async () => {
  const { context, page } = await openContext({ width: 390, height: 844 });
  // A `next` that the browser would resolve to another site is not followed.
  await page.goto('/?next=/%09/evil.example/');
  await page.getByLabel('API key').fill(keyB);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Your images' }).waitFor();
  assert.equal(page.url(), `${base}/`);
  await page.locator('#gallery-empty').waitFor();
  assert.equal(await page.locator('.card').count(), 0);
  await screenshot(page, 'second-customer-phone');
  await clean(page, 'second customer');
  const one = await state.pageA.locator('.card').first().getAttribute('data-id');
  const response = await page.goto(`/images/${one}`);
  assert.equal(response.status(), 404);
  await page.getByRole('heading', { name: 'Not found' }).waitFor();
  assert.equal((await page.request.get(`/v1/images/${one}`)).status(), 404);
  assert.equal((await page.request.get(`/v1/images/${one}/renditions/thumb`)).status(), 404);
  await screenshot(page, 'not-found');
  await context.close();
});

test('a forged cross-site post and a cookie call without the CSRF header are refused', async () => {
  const page = state.pageA;
  await page.goto('/');
  await page.waitForFunction(() => document.querySelectorAll('.card').length === 4);
  const victim = await page.locator('.card').first().getAttribute('data-id');
  const before = (await (await page.request.get('/v1/images?limit=100')).json()).images.length;

  // Same session, no header: refused, nothing deleted.
  const status = await page.evaluate((id) => fetch(`/v1/images/${id}`, { method: 'DELETE' }).then((r) => r.status), victim);
  assert.equal(status, 403);
  page.problems.length = 0; // the browser logs the refused call
  assert.equal((await page.request.get(`/v1/images/${victim}`)).status(), 200);

  // Another site's page posting a form to the API, in the signed-in browser.
  const evil = createServer((_, res) => {
    res.setHeader('content-type', 'text/html');
    res.end(`<form id="f" method="post" action="${base}/v1/images?filename=evil.jpg" enctype="text/plain">
      <input name="x" value="y"></form><script>document.getElementById('f').submit()</script>`);
  });
  await new Promise((ok) => evil.listen(0, 'localhost', ok));
  const evilPage = await state.contextA.newPage();
  const posted = evilPage.waitForResponse((r) => r.url().startsWith(`${base}/v1/images`));
  await evilPage.goto(`http://localhost:${evil.address().port}/`);
  const refused = await posted;
  assert.ok([401, 403].includes(refused.status()), `the forged post was answered ${refused.status()}`);
  evil.close();
  await evilPage.close();
  const afterCount = (await (await page.request.get('/v1/images?limit=100')).json()).images.length;
  assert.equal(afterCount, before, 'nothing was stored or deleted');
});

test('an image that fails processing says why, in words', async () => {
  const page = state.pageA;
  await page.goto('/');
  // The first 40 KB of a real photograph: a JPEG by its header, undecodable past it.
  const truncated = readFileSync(join(corpus, 'Dune.jpg')).subarray(0, 40_000).toString('base64');
  const answer = await page.evaluate(async (data) => {
    const { csrf_token: csrf } = await (await fetch('/v1/session')).json();
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    const r = await fetch('/v1/images?filename=cut-short.jpg', { method: 'POST', body: bytes, headers: { 'x-csrf-token': csrf } });
    return [r.status, await r.json()];
  }, truncated);
  assert.equal(answer[0], 201, JSON.stringify(answer[1]));
  await page.goto(`/images/${answer[1].id}`);
  await page.locator('#status[data-status="failed"]').waitFor({ timeout: WAIT });
  const error = await page.getByRole('alert').textContent();
  const api = await (await page.request.get(`/v1/images/${answer[1].id}`)).json();
  assert.equal(error, `Processing failed: ${api.error.message} (${api.error.code})`);
  await screenshot(page, 'image-failed');
  await page.goto('/');
  await page.getByLabel('Status').selectOption('failed');
  await page.waitForFunction(() => document.querySelectorAll('.card').length === 1);
  assert.match(await page.locator('.card .status').textContent(), /^Failed: /);
  await clean(page, 'failed image');
});

test('signing out ends the session at once', async () => {
  const page = state.pageA;
  await page.goto('/');
  const cookies = await state.contextA.cookies();
  const cookie = cookies.find((c) => c.name === 'imagelake_session');
  assert.ok(cookie && cookie.httpOnly && cookie.sameSite === 'Strict', 'an HttpOnly, SameSite=Strict cookie');
  assert.equal(await page.evaluate(() => document.cookie), '', 'the page cannot read it');
  assert.equal(await page.evaluate(() => localStorage.length + sessionStorage.length), 0, 'nothing in storage');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('button', { name: 'Sign in' }).waitFor();
  await screenshot(page, 'signed-out');
  const replay = await fetch(`${base}/v1/images`, { headers: { cookie: `imagelake_session=${cookie.value}` } });
  assert.equal(replay.status, 401, 'the old cookie no longer works');
  await clean(page, 'sign out');
  await state.contextA.close();
});

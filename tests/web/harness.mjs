// What every browser test shares: the environment crates/cli/tests/web.rs passes in, Chromium's
// launch, pages that collect console errors and Content-Security-Policy violations, sign-in and
// numbered screenshots.
//   IMAGELAKE_WEB_URL      the server's base URL (http://127.0.0.1:PORT)
//   IMAGELAKE_WEB_KEYS     API keys (or the admin token), comma-separated, as the script needs
//   IMAGELAKE_CORPUS       the folder of real photographs
//   IMAGELAKE_WEB_SHOTS    where each page state's screenshot is saved

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const base = process.env.IMAGELAKE_WEB_URL;
export const keys = (process.env.IMAGELAKE_WEB_KEYS || '').split(',');
export const corpus = process.env.IMAGELAKE_CORPUS;
const shots = process.env.IMAGELAKE_WEB_SHOTS;
assert.ok(base && keys[0] && corpus && shots, 'IMAGELAKE_WEB_URL, _KEYS, _SHOTS and IMAGELAKE_CORPUS must be set');
mkdirSync(shots, { recursive: true });

const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** Debian's Chromium, headless. */
export function launch() {
  return chromium.launch({ executablePath: '/usr/bin/chromium', args: FLAGS });
}

/** A page in a fresh context of `browser` whose console errors (`page.problems`) and CSP
 * violations are collected. */
export async function openContext(browser, viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport, baseURL: base });
  await context.addInitScript(() => {
    window.__violations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  const page = await context.newPage();
  page.problems = [];
  page.on('console', (m) => { if (m.type() === 'error') page.problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => page.problems.push(`page error: ${e.message}`));
  return { context, page };
}

/** No console error (but those `allowed` matches) and no CSP violation so far on this page. */
export async function clean(page, what, allowed = /$^/) {
  const violations = await page.evaluate(() => window.__violations);
  const problems = page.problems.filter((p) => !allowed.test(p));
  assert.deepEqual([...problems, ...violations], [], `${what}: console errors or CSP violations`);
}

let shot = 0;

/** A full-page screenshot, numbered in the order taken. */
export async function screenshot(page, name) {
  shot += 1;
  await page.screenshot({ path: join(shots, `${String(shot).padStart(2, '0')}-${name}.png`), fullPage: true });
}

/** Signs in with `key` on the sign-in page and waits for the page's `heading`. */
export async function signIn(page, key, heading = 'Your images') {
  await page.goto('/');
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: heading }).waitFor();
}

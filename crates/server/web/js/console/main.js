// The engineers' console, for the admin: one page whose sections (picked by the URL's #hash)
// read and change the system through the admin API with the session cookie. The section shown
// is refreshed every few seconds while the tab is visible.

import { currentSession, wireSignOut } from '../api.js';
import { Stream } from './stream.js';
import { Processing } from './processing.js';
import { Jobs } from './jobs.js';
import { Lake } from './lake.js';
import { Customers } from './customers.js';
import { Health } from './health.js';
import { clearError, showError } from './errors.js';

const REFRESH_MS = 5000;

async function main() {
  const session = await currentSession();
  if (!session) return;
  wireSignOut(document.getElementById('sign-out'));
  if (session.role !== 'admin') {
    showError('The console is for the admin token; sign in with it.');
    return;
  }
  const sections = {
    stream: new Stream(),
    processing: new Processing(),
    jobs: new Jobs(),
    lake: new Lake(),
    customers: new Customers(),
    health: new Health(),
  };
  let current = null;
  let timer = null;
  const show = async () => {
    const asked = location.hash.slice(1);
    const name = Object.hasOwn(sections, asked) ? asked : 'processing';
    for (const id of Object.keys(sections)) document.getElementById(id).hidden = id !== name;
    for (const link of document.querySelectorAll('.tabs a')) {
      if (link.getAttribute('href') === `#${name}`) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    current = sections[name];
    clearInterval(timer);
    await refresh(current);
    if (current.refreshes) timer = setInterval(() => { if (!document.hidden) refresh(current); }, REFRESH_MS);
  };
  window.addEventListener('hashchange', show);
  await show();
}

/** Loads a section, saying what went wrong instead of failing silently; a load still running
 * (a slow broker or bucket) is not started again. */
async function refresh(section) {
  if (section.loading) return;
  section.loading = true;
  try {
    await section.load();
    clearError();
  } catch (e) {
    showError(e.message);
  } finally {
    section.loading = false;
  }
}

main().catch((error) => showError(`The console could not start: ${error.message}`));

// The sign-in page: exchanges the key for a session cookie, then goes where the user was going.

import { signIn } from './api.js';

const form = document.getElementById('sign-in');
const error = document.getElementById('sign-in-error');
document.getElementById('key').focus();

/** Where to go after signing in: `next` when it stays on this site as the browser resolves it
 * (tabs, newlines, backslashes and dot segments included), as a whole URL of this origin, so
 * nothing in it can be read as another host; else the app. */
function sameSite(next) {
  if (!next) return '/';
  const url = new URL(next, window.location.origin);
  return url.origin === window.location.origin ? url.href : '/';
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  error.hidden = true;
  const button = form.querySelector('button');
  button.disabled = true;
  try {
    await signIn(form.elements.key.value);
    form.reset();
    window.location.assign(sameSite(new URLSearchParams(window.location.search).get('next')));
  } catch (e) {
    error.textContent = e.message;
    error.hidden = false;
    button.disabled = false;
  }
});

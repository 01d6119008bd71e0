// The sign-in page: exchanges the key for a session cookie, then goes where the user was going.

import { signIn } from './api.js';

const form = document.getElementById('sign-in');
const error = document.getElementById('sign-in-error');
document.getElementById('key').focus();

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  error.hidden = true;
  const button = form.querySelector('button');
  button.disabled = true;
  try {
    await signIn(form.elements.key.value);
    form.reset();
    const next = new URLSearchParams(window.location.search).get('next');
    window.location.assign(next && /^\/[^/\\]/.test(next) ? next : '/');
  } catch (e) {
    error.textContent = e.message;
    error.hidden = false;
    button.disabled = false;
  }
});

// The API as the pages use it: same-origin requests carrying the session cookie, and the
// session's CSRF token on every request that changes something. No secret is kept in the page's
// storage: the cookie is HttpOnly and the CSRF token lives in this module's memory.

let csrf = null;

/** The API's error message from an answer, or a plain description of the status. */
export async function problem(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (_) { /* not JSON */ }
  return `${response.status} ${response.statusText}`;
}

/** The signed-in session, or null when signed out. */
export async function currentSession() {
  const response = await fetch('/v1/session', { headers: { accept: 'application/json' } });
  if (response.status === 401) {
    signedOut();
    return null;
  }
  if (!response.ok) throw new Error(await problem(response));
  const session = await response.json();
  csrf = session.csrf_token;
  return session;
}

export async function signIn(key) {
  const response = await fetch('/v1/session', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ key }),
  });
  if (!response.ok) throw new Error(await problem(response));
  const session = await response.json();
  csrf = session.csrf_token;
  return session;
}

export async function signOut() {
  await call('DELETE', '/v1/session');
  csrf = null;
}

/** The headers a request that changes something sends. */
export function changeHeaders() {
  return csrf ? { 'x-csrf-token': csrf } : {};
}

/** A JSON request (with `body` as JSON when given); resolves to the answer's body (null for
 * 204), rejects with the API's words and the status. */
export async function call(method, path, body) {
  const headers = { accept: 'application/json' };
  if (method !== 'GET') Object.assign(headers, changeHeaders());
  const init = { method, headers };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) signedOut();
  if (!response.ok) {
    const error = new Error(await problem(response));
    error.status = response.status;
    error.retryAfter = Number(response.headers.get('retry-after')) || 0;
    throw error;
  }
  return response.status === 204 ? null : response.json();
}

/** The session ended elsewhere (signed out in another tab, key revoked): back to sign-in. */
export function signedOut() {
  window.location.assign(`/?next=${encodeURIComponent(window.location.pathname + window.location.search)}`);
}

/** Wires a page's sign-out button. */
export function wireSignOut(button) {
  button.addEventListener('click', async () => {
    button.disabled = true;
    try { await signOut(); } finally { window.location.assign('/'); }
  });
}

/** Asks before something that cannot be undone; resolves to whether the user agreed. */
export function confirmDialog(text, action = 'Delete') {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-ok').textContent = action;
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
  });
}

/** A size in binary units, as the limits are set: 52428800 is "50 MiB". */
export function formatBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i === 0 || Number.isInteger(n) ? n : n.toFixed(1)} ${units[i]}`;
}

export function formatTime(iso) {
  return new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

/** An element with attributes and children, text set safely. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === 'text') node.textContent = value;
    else node.setAttribute(name, value === true ? '' : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

/** The image types the API stores: their short name, the extension files of the type are
 * saved with, and the extensions a file of the type may have. */
const IMAGE_TYPES = {
  'image/jpeg': { name: 'JPEG', ext: 'jpg', exts: ['jpg', 'jpeg'] },
  'image/png': { name: 'PNG', ext: 'png', exts: ['png'] },
  'image/webp': { name: 'WebP', ext: 'webp', exts: ['webp'] },
  'image/gif': { name: 'GIF', ext: 'gif', exts: ['gif'] },
};

/** A content type's short name ("JPEG"), or the type itself. */
export function typeName(type) {
  return IMAGE_TYPES[type]?.name || type;
}

/** A content type's file extension, or "bin". */
export function typeExtension(type) {
  return IMAGE_TYPES[type]?.ext || 'bin';
}

/** The image type a file name says, or "" when it names none. */
export function typeOfName(name) {
  const ext = name.toLowerCase().split('.').pop();
  return Object.keys(IMAGE_TYPES).find((type) => IMAGE_TYPES[type].exts.includes(ext)) || '';
}

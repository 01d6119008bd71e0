// An image's page: its preview and facts from GET /v1/images/{id}, downloads, and delete. The
// server has already answered 404 if the image is not the signed-in customer's.

import { call, confirmDialog, currentSession, el, formatBytes, formatTime, typeExtension, wireSignOut } from './api.js';

const id = window.location.pathname.split('/').pop();

async function main() {
  await currentSession();
  wireSignOut(document.getElementById('sign-out'));
  const image = await call('GET', `/v1/images/${id}`);
  show(image);
  document.getElementById('delete').addEventListener('click', async () => {
    const agreed = await confirmDialog(`Delete ${image.filename || 'this image'}? This cannot be undone.`);
    if (!agreed) return;
    try {
      await call('DELETE', `/v1/images/${id}`);
    } catch (error) {
      // Already gone is as good as deleted.
      if (error.status !== 404) {
        showError(`Not deleted: ${error.message}`);
        return;
      }
    }
    window.location.assign('/');
  });
  if (image.status === 'received' || image.status === 'pending_upload') refresh(1000);
}

function refresh(wait) {
  setTimeout(async () => {
    const next = Math.min(wait * 2, 30000);
    try {
      const image = await call('GET', `/v1/images/${id}`);
      if (image.status === 'received' || image.status === 'pending_upload') refresh(next);
      else show(image);
    } catch (error) {
      if (error.status !== 401 && error.status !== 404) refresh(next);
    }
  }, wait);
}

function showError(text) {
  const error = document.getElementById('error');
  error.textContent = text;
  error.hidden = false;
}

/** The name a download is saved under: the upload's name, with the rendition's before the
 * extension. */
function downloadName(image, rendition, contentType) {
  const base = (image.filename || image.id).replace(/\.[^.]*$/, '');
  return `${base}-${rendition}.${typeExtension(contentType)}`;
}

function show(image) {
  document.title = `${image.filename || image.id} · imagelake`;
  document.getElementById('filename').textContent = image.filename || image.id;
  const status = document.getElementById('status');
  status.textContent = { received: 'Processing…', processed: 'Processed', failed: 'Failed', pending_upload: 'Waiting for the upload' }[image.status] || image.status;
  status.dataset.status = image.status;
  if (image.error) showError(`Processing failed: ${image.error.message} (${image.error.code})`);
  const facts = [
    ['Uploaded', formatTime(image.uploaded_at)],
    ['Expires', formatTime(image.expires_at)],
    ['Size', formatBytes(image.bytes)],
    ['Type', image.content_type],
  ];
  if (image.status === 'failed') {
    document.getElementById('frame').append(el('p', { class: 'hint', text: 'No preview: the image could not be processed.' }));
  }
  if (image.status === 'processed') {
    const preview = document.getElementById('preview');
    const rendition = image.renditions.preview;
    preview.width = rendition.width;
    preview.height = rendition.height;
    preview.src = `/v1/images/${image.id}/renditions/preview`;
    preview.alt = image.filename || 'the image';
    preview.hidden = false;
    facts.push(['Dimensions', `${image.width} × ${image.height}`], ['Format', image.format]);
    const exif = image.exif || {};
    facts.push(['Camera make', exif.make || '—'], ['Camera model', exif.model || '—'], ['Taken at', exif.taken_at || '—']);
    facts.push(['Perceptual hash', el('code', { text: image.phash })]);
    const swatch = el('span', { class: 'swatch', 'aria-hidden': 'true' });
    swatch.style.backgroundColor = image.average_color;
    facts.push(['Average colour', el('span', {}, swatch, el('code', { text: image.average_color }))]);
  }
  facts.push(['SHA-256', el('code', { class: 'wrap', text: image.sha256 })]);
  const list = document.getElementById('facts');
  list.replaceChildren(...facts.flatMap(([name, value]) => [
    el('dt', { text: name }),
    typeof value === 'string' ? el('dd', { text: value }) : el('dd', {}, value),
  ]));
  const downloads = [el('li', {}, el('a', { href: `/v1/images/${image.id}/original`, download: image.filename || '', text: `Original (${formatBytes(image.bytes)})` }))];
  for (const [name, r] of Object.entries(image.renditions || {})) {
    downloads.push(el('li', {}, el('a', { href: `/v1/images/${image.id}/renditions/${name}`, download: downloadName(image, name, r.content_type), text: `${name} ${r.width} × ${r.height} (${formatBytes(r.bytes)})` })));
  }
  document.getElementById('downloads').replaceChildren(...downloads);
}

main().catch((error) => showError(`This image could not be shown: ${error.message}`));

// The app's main page for a signed-in customer: upload, and the gallery.

import { currentSession, formatBytes, wireSignOut } from './api.js';
import { Gallery } from './gallery.js';
import { Uploader, droppedFiles } from './upload.js';

async function main() {
  const session = await currentSession();
  if (!session) {
    window.location.assign('/');
    return;
  }
  showApp(session);
}

function showApp(session) {
  wireSignOut(document.getElementById('sign-out'));
  if (session.role !== 'customer') {
    document.getElementById('signed-in').replaceChildren(
      Object.assign(document.createElement('p'), {
        textContent: `Signed in with ${session.role === 'admin' ? 'the admin token' : `an ${session.role} key`}: uploads and images belong to customers, so sign in with a customer key here.`,
      }),
    );
    return;
  }
  const limits = session.limits;
  document.getElementById('limits').textContent =
    `JPEG, PNG, WebP or GIF, up to ${formatBytes(limits.max_body_bytes)} each.`;
  const gallery = new Gallery();
  const uploader = new Uploader({ limits, onStored: (image) => gallery.prepend(image) });
  wireDrop(uploader);
  gallery.start();
}

function wireDrop(uploader) {
  const drop = document.getElementById('drop');
  for (const id of ['pick-files', 'pick-folder']) {
    const input = document.getElementById(id);
    input.addEventListener('change', () => {
      uploader.add([...input.files]);
      input.value = '';
    });
  }
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', async (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    uploader.add(await droppedFiles(e.dataTransfer));
  });
  drop.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      document.getElementById('pick-files').click();
    }
  });
  document.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData?.files ?? [])];
    if (files.length > 0) uploader.add(files);
  });
}

main().catch((error) => {
  document.body.append(Object.assign(document.createElement('p'), {
    className: 'error', textContent: `The app could not start: ${error.message}`,
  }));
});

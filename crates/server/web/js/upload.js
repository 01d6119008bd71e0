// Uploads: files from drops, pastes, pickers and folders, checked against the limits first, then
// sent a few at a time as the image's bytes (POST /v1/images?filename=), or, for large files
// where the deployment signs URLs, straight to the bucket (POST /v1/uploads, then a PUT to the
// signed URL); each with its progress and the API's answer in words.

import { call, changeHeaders, el, formatBytes, signedOut, typeName, typeOfName } from './api.js';

const AT_ONCE = 3;
// Sends of one file refused for the key's rate limit before its refusal is shown: the API
// says when to try again, and a large folder may need many turns.
const MAX_ATTEMPTS = 20;

export class Uploader {
  constructor({ limits, onStored }) {
    this.limits = limits;
    this.onStored = onStored;
    this.queue = [];
    this.running = 0;
    this.sent = new Map(); // row -> [loaded, total]
    this.list = document.getElementById('upload-list');
    this.total = document.getElementById('total-progress');
    this.totalText = document.getElementById('total-text');
    this.totalDone = document.getElementById('total-done');
  }

  /** Takes files (or a FileList); refuses what the API would refuse before sending it. */
  add(files) {
    const accepted = this.limits.content_types;
    for (const file of files) {
      const row = this.row(file);
      // The API judges by the bytes: a file whose type the browser cannot tell is sent.
      const type = file.type || typeOfName(file.name);
      if (type && !accepted.includes(type)) {
        this.settle(row, 'refused', `not an accepted image type (${accepted.map(typeName).join(', ')})`);
      } else if (file.size > this.limits.max_body_bytes) {
        this.settle(row, 'refused', `over the ${formatBytes(this.limits.max_body_bytes)} limit for one image`);
      } else if (file.size === 0) {
        this.settle(row, 'refused', 'the file is empty');
      } else {
        this.sent.set(row, [0, file.size]);
        this.queue.push([file, row]);
      }
    }
    document.getElementById('uploads').hidden = false;
    this.pump();
    this.showTotal();
  }

  row(file) {
    const progress = el('progress', { max: file.size || 1, value: 0, 'aria-label': `Upload of ${file.name}` });
    const row = el('li', { class: 'upload', 'data-state': 'waiting' },
      el('span', { class: 'name', text: file.webkitRelativePath || file.name }),
      el('span', { class: 'size', text: formatBytes(file.size) }),
      progress,
      el('span', { class: 'outcome', text: 'Waiting' }));
    row.progress = progress;
    this.list.prepend(row);
    return row;
  }

  pump() {
    while (this.running < AT_ONCE && this.queue.length > 0) {
      const [file, row] = this.queue.shift();
      this.running += 1;
      this.send(file, row).finally(() => {
        this.running -= 1;
        this.pump();
      });
    }
  }

  /** Sends one file: through the API, or straight to the bucket when it is large and the
   * deployment sends large files there. A refusal for the key's rate limit is tried again
   * after the wait the API gave. */
  async send(file, row) {
    const type = file.type || typeOfName(file.name);
    const direct = this.limits.direct_from_bytes !== null && file.size >= this.limits.direct_from_bytes
      && this.limits.content_types.includes(type);
    for (let attempt = 1; ; attempt += 1) {
      row.dataset.state = 'sending';
      row.querySelector('.outcome').textContent = 'Uploading';
      row.progress.value = 0;
      this.sent.set(row, [0, file.size]);
      const { status, body, retryAfter } = direct
        ? await this.sendDirect(file, row, type)
        : await this.put(row, 'POST', `/v1/images?filename=${encodeURIComponent(file.name)}`,
          { ...changeHeaders(), 'content-type': type || 'application/octet-stream' }, file);
      if (status === 429 && attempt < MAX_ATTEMPTS) {
        const wait = retryAfter || 1;
        row.querySelector('.outcome').textContent = `Waiting ${wait} s (rate limit)`;
        await new Promise((ok) => { setTimeout(ok, wait * 1000); });
        continue;
      }
      this.sent.set(row, [file.size, file.size]);
      if (status === 0) this.settle(row, 'refused', 'the connection failed; try again');
      else this.answer(row, status, body, direct);
      return;
    }
  }

  /** A signed URL from the API, then the bytes to the bucket with exactly the signed headers
   * (the browser sets the length itself). Answers as an API upload would: 201 and the record
   * once the bucket took the bytes; the API's own refusal (429 is tried again by `send`) before.
   * A failed send to the bucket is retried on the same URL, which is create-only: a `412`
   * there means an earlier try landed. */
  async sendDirect(file, row, type) {
    let ticket;
    try {
      ticket = await call('POST', '/v1/uploads', { filename: file.name, content_type: type, bytes: file.size });
    } catch (error) {
      return { status: error.status || 0, body: { error: { message: error.message } }, retryAfter: error.retryAfter };
    }
    const headers = Object.fromEntries(Object.entries(ticket.headers).filter(([name]) => name !== 'content-length'));
    let sent;
    for (let attempt = 1; attempt <= 3; attempt += 1) {
      sent = await this.put(row, ticket.method, ticket.upload_url, headers, file);
      if ((sent.status >= 200 && sent.status < 300) || sent.status === 412) break;
      if (sent.status !== 0 && sent.status !== 429 && sent.status < 500) break;
      await new Promise((ok) => { setTimeout(ok, 1000 * attempt); });
    }
    if (!(sent.status >= 200 && sent.status < 300) && sent.status !== 412) {
      const why = sent.status === 0
        ? 'the bucket could not be reached (is its CORS rule set for this site?)'
        : `the bucket answered ${sent.status}`;
      return { status: 502, body: { error: { message: why } } };
    }
    // Stored. The record is asked for to show it; a failure to read it changes nothing.
    const record = await this.record(ticket.id).catch(() => null);
    return {
      status: 201,
      body: record ?? {
        id: ticket.id, status: 'pending_upload', filename: file.name, bytes: file.size,
        uploaded_at: new Date().toISOString(),
      },
    };
  }

  /** An image's record, asked again while the key's rate limit says to wait. */
  async record(id) {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await call('GET', `/v1/images/${id}`);
      } catch (error) {
        if (error.status !== 429 || attempt >= MAX_ATTEMPTS) throw error;
        await new Promise((ok) => { setTimeout(ok, (error.retryAfter || 1) * 1000); });
      }
    }
  }

  /** Sends `file` as the body with progress; resolves to the status, the JSON answer and
   * `Retry-After`. */
  put(row, method, url, headers, file) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open(method, url);
      for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
      xhr.responseType = 'json';
      xhr.upload.addEventListener('progress', (e) => {
        row.progress.value = e.loaded;
        this.sent.set(row, [e.loaded, file.size]);
        this.showTotal();
      });
      xhr.addEventListener('loadend', () => resolve({
        status: xhr.status,
        body: xhr.response,
        // Another origin's headers (the bucket's) are not for this page to read.
        retryAfter: new URL(url, window.location.href).origin === window.location.origin
          ? Number(xhr.getResponseHeader('retry-after')) || 0 : 0,
      }));
      xhr.send(file);
    });
  }

  /** The API's answer to one upload, in its own words. */
  answer(row, status, body, direct) {
    if (status === 201) {
      this.settle(row, 'stored', direct ? 'Stored, sent straight to the bucket' : 'Stored', body.id);
      this.onStored(body);
    } else if (status === 200 && body && body.id) {
      this.settle(row, 'duplicate', 'Duplicate of an image you have', body.id);
    } else {
      if (status === 401) signedOut();
      const message = body && body.error ? body.error.message : `HTTP ${status}`;
      this.settle(row, 'refused', `Refused: ${message}`);
    }
  }

  settle(row, state, text, imageId) {
    row.dataset.state = state;
    row.progress.value = row.progress.max;
    const outcome = row.querySelector('.outcome');
    outcome.textContent = state === 'refused' && !text.startsWith('Refused') ? `Refused: ${text}` : text;
    if (imageId) {
      outcome.append(' ', el('a', { href: `/images/${imageId}`, text: state === 'duplicate' ? 'see it' : 'open' }));
    }
    this.showTotal();
  }

  showTotal() {
    let loaded = 0;
    let total = 0;
    for (const [l, t] of this.sent.values()) { loaded += l; total += t; }
    this.total.max = total || 1;
    this.total.value = loaded;
    const rows = [...this.list.children];
    const done = rows.filter((r) => !['waiting', 'sending'].includes(r.dataset.state)).length;
    this.totalText.textContent = `${done} of ${rows.length} done · ${formatBytes(loaded)} of ${formatBytes(total)}`;
    // Screen readers hear each file's end, not every progress step.
    const finished = `${done} of ${rows.length} uploads done`;
    if (this.totalDone.textContent !== finished) this.totalDone.textContent = finished;
  }
}

/** Every file under the dropped items, folders walked. */
export async function droppedFiles(dataTransfer) {
  const entries = [...dataTransfer.items]
    .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null))
    .filter(Boolean);
  if (entries.length === 0) return [...dataTransfer.files];
  const files = [];
  const walk = async (entry) => {
    if (entry.isFile) {
      files.push(await new Promise((ok, fail) => entry.file(ok, fail)));
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((ok, fail) => reader.readEntries(ok, fail));
        if (batch.length === 0) break;
        for (const child of batch) await walk(child);
      }
    }
  };
  for (const entry of entries) await walk(entry);
  return files;
}

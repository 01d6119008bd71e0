// The gallery: the customer's images newest first, a page at a time from the cursor API as the
// end of the list comes into view, filtered by name, status and dates. Images still being
// processed are asked about again, all in one listing request, with back-off (1 s, doubling to
// 30 s while nothing changes) until they settle, so thumbnails turn processed without a
// reload and a folder of uploads costs one request a step, not one per image.

import { call, confirmDialog, el, formatBytes, formatTime } from './api.js';

// Images per page: `?per_page=` (1-100) on the app's address, 30 by default.
const PAGE = Math.min(100, Math.max(1, Number.parseInt(new URLSearchParams(window.location.search).get('per_page'), 10) || 30));
const MAX_WAIT_MS = 30000;
// Images the poller reads in one request, and older ones it asks about alone, per step.
const POLL_PAGE = 100;
const POLL_ALONE = 5;

export class Gallery {
  constructor() {
    this.list = document.getElementById('gallery');
    this.empty = document.getElementById('gallery-empty');
    this.more = document.getElementById('more');
    this.bulk = document.getElementById('bulk');
    this.selectedCount = document.getElementById('selected-count');
    this.filters = document.getElementById('filters');
    this.cards = new Map();
    // Cards of images still in progress, asked about by one poller.
    this.pending = new Map();
    this.pollTimer = null;
    this.polling = false;
    this.pollSoon = false;
    this.pollWait = 1000;
    this.generation = 0;
    this.observer = new IntersectionObserver((seen) => {
      if (seen.some((e) => e.isIntersecting)) this.loadMore();
    }, { rootMargin: '400px' });
    // Typing waits for a pause before the listing is asked again.
    let typing;
    this.filters.addEventListener('input', () => {
      clearTimeout(typing);
      typing = setTimeout(() => this.reset(), 300);
    });
    this.filters.addEventListener('submit', (e) => { e.preventDefault(); this.reset(); });
    document.getElementById('delete-selected').addEventListener('click', () => this.deleteSelected());
  }

  start() {
    this.reset();
    this.observer.observe(this.more);
  }

  query() {
    const form = new FormData(this.filters);
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (form.get('q')) params.set('q', form.get('q'));
    if (form.get('status')) params.set('status', form.get('status'));
    if (form.get('since')) params.set('since', new Date(`${form.get('since')}T00:00:00`).toISOString());
    if (form.get('until')) {
      const end = new Date(`${form.get('until')}T00:00:00`);
      end.setDate(end.getDate() + 1);
      params.set('until', end.toISOString());
    }
    return params;
  }

  filtered() {
    return [...new FormData(this.filters).values()].some((v) => v !== '');
  }

  reset() {
    this.generation += 1;
    this.cursor = '';
    this.done = false;
    this.loading = false;
    this.list.replaceChildren();
    this.cards.clear();
    this.pending.clear();
    clearTimeout(this.pollTimer);
    this.pollTimer = null;
    this.updateSelection();
    this.loadMore();
  }

  async loadMore() {
    if (this.loading || this.done) return;
    this.loading = true;
    const generation = this.generation;
    const params = this.query();
    if (this.cursor) params.set('cursor', this.cursor);
    try {
      const page = await call('GET', `/v1/images?${params}`);
      if (generation !== this.generation) return;
      for (const image of page.images) this.append(image);
      this.cursor = page.next_cursor || '';
      this.done = !page.next_cursor;
      this.empty.hidden = this.cards.size > 0;
      this.empty.textContent = this.filtered() ? 'No images match these filters.' : 'No images yet.';
    } catch (error) {
      if (generation !== this.generation) return;
      this.empty.hidden = false;
      this.empty.textContent = `The images could not be listed: ${error.message}`;
      this.done = true;
    } finally {
      if (generation === this.generation) this.loading = false;
    }
    // A short first page leaves the sentinel in view: keep going until it is not.
    if (!this.done && generation === this.generation && inView(this.more)) this.loadMore();
  }

  /** Puts a just-uploaded image at the top, where the newest go, unless filters are on. */
  prepend(image) {
    if (this.cards.has(image.id) || this.filtered()) return;
    this.list.prepend(this.card(image));
    this.empty.hidden = true;
  }

  append(image) {
    if (this.cards.has(image.id)) return;
    this.list.append(this.card(image));
  }

  card(image) {
    const name = image.filename || image.id;
    const box = el('input', { type: 'checkbox', 'aria-label': `Select ${name}`, class: 'select' });
    box.addEventListener('change', () => this.updateSelection());
    const thumb = el('div', { class: 'thumb' });
    const status = el('span', { class: 'status' });
    const card = el('li', { class: 'card', 'data-id': image.id },
      box,
      el('a', { href: `/images/${image.id}`, class: 'open' }, thumb,
        el('span', { class: 'name', text: name })),
      el('span', { class: 'meta', text: `${formatBytes(image.bytes)} · ${formatTime(image.uploaded_at)}` }),
      status);
    card.thumb = thumb;
    card.statusLine = status;
    this.cards.set(image.id, card);
    this.show(card, image);
    return card;
  }

  /** Shows an image's state on its card; one still in progress is asked about again later. */
  show(card, image) {
    card.dataset.status = image.status;
    card.statusLine.textContent = {
      received: 'Processing…',
      pending_upload: 'Waiting for the upload',
      processed: 'Processed',
      failed: `Failed: ${image.error ? image.error.message : 'unknown error'}`,
    }[image.status] || image.status;
    if (image.status === 'processed' && !card.thumb.querySelector('img')) {
      const { width, height } = image.renditions?.thumb ?? { width: 1, height: 1 };
      const img = el('img', {
        src: `/v1/images/${image.id}/renditions/thumb`, alt: '', loading: 'lazy', width, height,
      });
      // A thumbnail refused for the key's rate limit is asked for again a little later.
      let tries = 0;
      img.addEventListener('error', () => {
        tries += 1;
        if (tries <= 5) setTimeout(() => { img.src = `/v1/images/${image.id}/renditions/thumb?try=${tries}`; }, 1000 * tries);
      });
      card.thumb.replaceChildren(img);
    }
    if (image.status === 'received' || image.status === 'pending_upload') {
      const fresh = !this.pending.has(image.id);
      this.pending.set(image.id, card);
      if (fresh) this.schedulePoll(true);
    } else {
      this.pending.delete(image.id);
    }
  }

  /** Asks about every card still in progress with one listing request, 1 s after the last
   * change and then twice as long each time nothing changed, up to 30 s. One poll at a time:
   * a poll in flight schedules the next itself. */
  schedulePoll(soon) {
    if (soon) this.pollWait = 1000;
    if (this.polling) {
      this.pollSoon ||= soon;
      return;
    }
    if (this.pollTimer && !soon) return;
    clearTimeout(this.pollTimer);
    this.pollTimer = setTimeout(() => this.poll(), this.pollWait);
  }

  async poll() {
    this.pollTimer = null;
    if (this.pending.size === 0) return;
    this.polling = true;
    this.pollSoon = false;
    const generation = this.generation;
    let changed = false;
    try {
      // The newest images: what was just uploaded is among them; a few older ones are asked
      // about alone.
      const page = await call('GET', `/v1/images?limit=${POLL_PAGE}`);
      const latest = new Map(page.images.map((image) => [image.id, image]));
      let alone = 0;
      for (const [id, card] of [...this.pending]) {
        if (generation !== this.generation) break;
        let image = latest.get(id);
        if (!image && page.next_cursor) {
          if (alone >= POLL_ALONE) continue;
          alone += 1;
          try {
            image = await this.lookUp(id);
          } catch {
            continue; // asked again next step
          }
        }
        if (generation !== this.generation || this.pending.get(id) !== card) continue;
        if (!image) {
          this.forget(id, card);
          changed = true;
        } else if (image.status !== card.dataset.status) {
          this.show(card, image);
          changed = true;
        }
      }
    } catch (error) {
      if (error.status === 401 || error.status === 403) return;
    } finally {
      this.polling = false;
    }
    const soon = changed || this.pollSoon || generation !== this.generation;
    this.pollWait = soon ? 1000 : Math.min(this.pollWait * 2, MAX_WAIT_MS);
    if (this.pending.size > 0 && !this.pollTimer) this.pollTimer = setTimeout(() => this.poll(), this.pollWait);
  }

  /** One image older than the newest page; null once it is gone. */
  async lookUp(id) {
    try {
      return await call('GET', `/v1/images/${id}`);
    } catch (error) {
      if (error.status === 404) return null;
      throw error;
    }
  }

  forget(id, card) {
    this.pending.delete(id);
    this.cards.delete(id);
    card.remove();
  }

  selected() {
    return [...this.list.querySelectorAll('.select:checked')].map((box) => box.closest('.card'));
  }

  updateSelection() {
    const count = this.selected().length;
    this.bulk.hidden = count === 0;
    this.selectedCount.textContent = `${count} selected`;
  }

  async deleteSelected() {
    const cards = this.selected();
    const agreed = await confirmDialog(`Delete ${cards.length} image${cards.length === 1 ? '' : 's'}? This cannot be undone.`);
    if (!agreed) return;
    for (const card of cards) {
      try {
        await call('DELETE', `/v1/images/${card.dataset.id}`);
      } catch (error) {
        if (error.status !== 404) {
          card.statusLine.textContent = `Not deleted: ${error.message}`;
          card.dataset.status = 'failed';
          continue;
        }
      }
      this.forget(card.dataset.id, card);
    }
    this.updateSelection();
    this.empty.hidden = this.cards.size > 0;
    document.getElementById('gallery-title').focus();
  }
}

function inView(node) {
  const box = node.getBoundingClientRect();
  return box.top < window.innerHeight + 400;
}

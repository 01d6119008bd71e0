// Customers: list and search, create (the key shown once), edit, delete with a typed
// confirmation, and issue and revoke keys.

import { call, confirmDialog, el, formatTime } from '../api.js';
import { showError } from './errors.js';

const PAGE = 50;

export class Customers {
  refreshes = false;

  constructor() {
    this.cursor = null;
    this.search = document.getElementById('customer-q');
    let debounce = null;
    this.search.addEventListener('input', () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => this.load().catch((e) => showError(e.message)), 250);
    });
    document.getElementById('customer-search').addEventListener('submit', (e) => {
      e.preventDefault();
      this.load().catch((error) => showError(error.message));
    });
    document.getElementById('customers-more').addEventListener('click', () => this.page(false).catch((e) => showError(e.message)));
    this.wireCreate();
    this.wireCompanyKeys();
  }

  /** The first page for the search as it stands, and the company's keys. */
  async load() {
    this.cursor = null;
    await Promise.all([this.page(true), this.companyKeys()]);
  }

  async companyKeys() {
    const { keys } = await call('GET', '/v1/admin/keys');
    const message = document.getElementById('company-key-message');
    document.getElementById('company-keys').replaceChildren(...keys.map((key) => {
      const id = key.key_id;
      const revoke = el('button', { type: 'button', class: 'quiet', text: 'Revoke', hidden: Boolean(key.revoked_at) });
      revoke.addEventListener('click', async () => {
        if (!await confirmDialog(`Revoke the ${key.role} key ${key.name}? Its clients are refused at once.`, 'Revoke')) return;
        act(message, async () => {
          await call('DELETE', `/v1/admin/keys/${id}`);
          await this.companyKeys();
          return `Key ${key.name} revoked.`;
        });
      });
      return el('tr', { 'data-key': id },
        el('td', { class: 'clip', title: key.name, text: key.name }),
        el('td', { text: key.role }),
        el('td', {}, el('code', { text: `${key.prefix}…` })),
        el('td', { text: formatTime(key.created_at) }),
        el('td', { 'data-state': key.revoked_at ? 'revoked' : 'live', text: key.revoked_at ? `revoked ${formatTime(key.revoked_at)}` : 'live' }),
        el('td', {}, revoke));
    }));
  }

  wireCompanyKeys() {
    const form = document.getElementById('new-company-key');
    const message = document.getElementById('company-key-message');
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      act(message, async () => {
        const key = await call('POST', '/v1/admin/keys', Object.fromEntries(new FormData(form)));
        form.reset();
        await showSecret(`The ${key.role} key ${key.name}. It is stored only as a hash: copy it now.`, key.api_key);
        await this.companyKeys();
        return `Key ${key.name} issued.`;
      });
    });
  }

  async page(first) {
    const q = this.search.value.trim();
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (q) params.set('q', q);
    if (this.cursor) params.set('cursor', this.cursor);
    const asked = q;
    const page = await call('GET', `/v1/customers?${params}`);
    if (asked !== this.search.value.trim()) return; // a newer search is on its way
    const rows = page.customers.map((c) => this.row(c));
    const body = document.getElementById('customer-rows');
    if (first) body.replaceChildren(...rows); else body.append(...rows);
    this.cursor = page.next_cursor;
    document.getElementById('customers-more').hidden = !this.cursor;
    document.getElementById('customers-empty').hidden = body.children.length > 0;
  }

  row(customer) {
    const open = el('button', { type: 'button', class: 'quiet', text: 'Open' });
    open.addEventListener('click', () => this.open(customer.id).catch((e) => showError(e.message)));
    return el('tr', { 'data-id': customer.id },
      el('td', { class: 'clip', title: customer.name, text: customer.name }),
      el('td', { class: 'clip', title: customer.email, text: customer.email }),
      el('td', { class: 'clip', title: customer.plan, text: customer.plan }),
      el('td', { text: formatTime(customer.created_at) }),
      el('td', {}, open));
  }

  wireCreate() {
    const form = document.getElementById('new-customer');
    const error = document.getElementById('new-customer-error');
    // An answer about what was sent before is no longer about what the form holds.
    form.addEventListener('input', () => { error.hidden = true; });
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      error.hidden = true;
      const data = Object.fromEntries(new FormData(form));
      for (const optional of ['plan', 'id']) if (!data[optional]) delete data[optional];
      try {
        const created = await call('POST', '/v1/customers', data);
        form.reset();
        await showSecret(`The API key of ${created.name}. It is stored only as a hash: copy it now.`, created.api_key);
        await this.load();
        await this.open(created.id);
      } catch (e) {
        error.textContent = e.message;
        error.hidden = false;
      }
    });
  }

  /** A customer's details: edit, keys, delete. */
  async open(id) {
    const [customer, { keys }] = await Promise.all([
      call('GET', `/v1/customers/${id}`),
      call('GET', `/v1/customers/${id}/keys`),
    ]);
    const detail = document.getElementById('customer-detail');
    const message = el('p', { role: 'status', class: 'hint' });
    const edit = el('form', { class: 'inline-form', id: 'edit-customer' },
      field('edit-name', 'Name', 'name', customer.name),
      field('edit-email', 'Email', 'email', customer.email, 'email'),
      field('edit-plan', 'Plan', 'plan', customer.plan),
      el('button', { type: 'submit', text: 'Save' }));
    edit.addEventListener('submit', (event) => {
      event.preventDefault();
      act(message, async () => {
        await call('PATCH', `/v1/customers/${id}`, Object.fromEntries(new FormData(edit)));
        await this.load();
        return 'Saved.';
      });
    });
    const issue = el('button', { type: 'button', text: 'Issue a key' });
    issue.addEventListener('click', () => act(message, async () => {
      const key = await call('POST', `/v1/customers/${id}/keys`);
      await showSecret(`A new API key of ${customer.name}. It is stored only as a hash: copy it now.`, key.api_key);
      await this.open(id);
      return `Key ${key.prefix}… issued.`;
    }));
    const remove = el('button', { type: 'button', class: 'danger', text: 'Delete customer' });
    remove.addEventListener('click', async () => {
      const sure = await typedConfirm(`Delete ${customer.name} with every image and key? This cannot be undone.`, customer.email);
      if (!sure) return;
      act(message, async () => {
        await call('DELETE', `/v1/customers/${id}`);
        detail.hidden = true;
        await this.load();
        return 'Deleted.';
      });
    });
    detail.replaceChildren(
      el('h2', { text: customer.name }),
      el('p', { class: 'hint' }, 'id ', el('code', { text: customer.id }), ` · created ${formatTime(customer.created_at)}`),
      edit,
      el('h3', { text: 'API keys' }),
      el('table', { class: 'grid-table' },
        el('thead', {}, el('tr', {}, el('th', { text: 'Prefix' }), el('th', { text: 'Created' }), el('th', { text: 'State' }), el('th'))),
        el('tbody', { id: 'key-rows' }, ...keys.map((key) => this.keyRow(id, key, message)))),
      el('p', {}, issue, ' ', remove),
      message);
    detail.hidden = false;
    detail.querySelector('h2').scrollIntoView({ block: 'nearest' });
  }

  keyRow(customerId, key, message) {
    const revoke = el('button', { type: 'button', class: 'quiet', text: 'Revoke' });
    revoke.hidden = Boolean(key.revoked_at);
    revoke.addEventListener('click', async () => {
      if (!await confirmDialog(`Revoke the key ${key.prefix}…? Clients using it are refused at once.`, 'Revoke')) return;
      act(message, async () => {
        await call('DELETE', `/v1/customers/${customerId}/keys/${key.id}`);
        await this.open(customerId);
        return `Key ${key.prefix}… revoked.`;
      });
    });
    return el('tr', { 'data-key': key.id },
      el('td', {}, el('code', { text: `${key.prefix}…` })),
      el('td', { text: formatTime(key.created_at) }),
      el('td', { text: key.revoked_at ? `revoked ${formatTime(key.revoked_at)}` : 'live' }),
      el('td', {}, revoke));
  }
}

function field(id, label, name, value, type = 'text') {
  return el('div', {}, el('label', { for: id, text: label }), el('input', { id, name, type, value, required: true }));
}

/** Runs `action`, saying its outcome (or its error) in `message`. */
async function act(message, action) {
  try {
    message.textContent = await action();
    message.className = 'hint';
  } catch (e) {
    message.textContent = e.message;
    message.className = 'error';
  }
}

/** Shows a secret once, in a dialog; resolves when it is closed. */
function showSecret(text, secret) {
  const dialog = document.getElementById('secret');
  document.getElementById('secret-text').textContent = text;
  document.getElementById('secret-value').textContent = secret;
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener('close', () => {
    document.getElementById('secret-value').textContent = '';
    resolve();
  }, { once: true }));
}

/** Asks for `word` to be typed before something that cannot be undone. */
function typedConfirm(text, word) {
  const dialog = document.getElementById('typed-confirm');
  const input = document.getElementById('typed-confirm-input');
  const ok = document.getElementById('typed-confirm-ok');
  document.getElementById('typed-confirm-text').textContent = text;
  document.getElementById('typed-confirm-word').textContent = word;
  input.value = '';
  ok.disabled = true;
  const check = () => { ok.disabled = input.value !== word; };
  input.addEventListener('input', check);
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener('close', () => {
    input.removeEventListener('input', check);
    resolve(dialog.returnValue === 'ok' && input.value === word);
  }, { once: true }));
}

// Stream: the deployment's Kafka topics with each partition's offsets and the reading group's
// lag (as bars), messages per second, and the dead letters of the image stream with their error
// code and message, re-driven one, some or all after a confirmation.

import { call, confirmDialog, el, formatTime } from '../api.js';
import { showError } from './errors.js';

export class Stream {
  refreshes = true;

  constructor() {
    this.selected = new Set();
    this.shown = 100;
    document.getElementById('redrive-selected').addEventListener('click', () => this.redrive(false));
    document.getElementById('redrive-all').addEventListener('click', () => this.redrive(true));
    document.getElementById('stream-dead-more').addEventListener('click', () => {
      this.shown += 100;
      this.load().catch((e) => showError(e.message));
    });
  }

  async load() {
    const overview = await call('GET', '/v1/admin/stream');
    document.getElementById('stream-off').hidden = overview.enabled;
    document.getElementById('stream-on').hidden = !overview.enabled;
    if (!overview.enabled) return;
    document.getElementById('topics').replaceChildren(...overview.topics.map(topicCard));
    document.getElementById('dead-letter-count').textContent = String(overview.dead_letters);
    // Newest first, page by page, as far as the user asked to see.
    const messages = [];
    let cursor = '';
    while (messages.length < this.shown) {
      const page = await call('GET', `/v1/admin/stream/dead-letters?limit=${Math.min(500, this.shown - messages.length)}&cursor=${encodeURIComponent(cursor)}`);
      messages.push(...page.messages);
      cursor = page.next_cursor;
      if (!cursor) break;
    }
    document.getElementById('stream-dead-more').hidden = !cursor;
    this.showDeadLetters(messages);
  }

  showDeadLetters(messages) {
    const ids = new Set(messages.map((m) => m.id));
    for (const id of [...this.selected]) if (!ids.has(id)) this.selected.delete(id);
    const rows = messages.map((m) => {
      const box = el('input', { type: 'checkbox', 'aria-label': `Select dead letter ${m.id}`, checked: this.selected.has(m.id) });
      box.addEventListener('change', () => {
        if (box.checked) this.selected.add(m.id); else this.selected.delete(m.id);
        this.updateButtons();
      });
      const one = el('button', { type: 'button', class: 'quiet', text: 'Re-drive' });
      one.addEventListener('click', () => this.send([m.id], `Re-drive dead letter ${m.id} to the images topic?`));
      return el('tr', { 'data-id': m.id, 'data-code': m.error_code || '' },
        el('td', {}, box),
        el('td', {}, el('code', { text: m.id })),
        el('td', { text: m.timestamp ? formatTime(m.timestamp) : '' }),
        el('td', {}, el('code', { text: m.error_code || '' })),
        el('td', { class: 'error', text: m.error_message || '' }),
        el('td', { text: m.source_topic ? `${m.source_topic} ${m.source_partition}/${m.source_offset}` : '' }),
        el('td', {}, el('code', { text: m.customer_id || '' })),
        el('td', { text: String(m.redrives) }),
        el('td', {}, one));
    });
    document.getElementById('stream-dead').replaceChildren(...rows);
    document.getElementById('stream-dead-empty').hidden = rows.length > 0;
    this.updateButtons();
  }

  updateButtons() {
    const button = document.getElementById('redrive-selected');
    button.disabled = this.selected.size === 0;
    button.textContent = `Re-drive selected (${this.selected.size})`;
  }

  redrive(all) {
    if (all) return this.send(null, 'Re-drive every dead letter on the topic to the images topic?');
    const ids = [...this.selected];
    return this.send(ids, `Re-drive ${ids.length} dead letters to the images topic?`);
  }

  async send(ids, question) {
    if (!await confirmDialog(question, 'Re-drive')) return;
    const status = document.getElementById('redrive-status');
    try {
      const done = await call('POST', '/v1/admin/stream/dead-letters/redrive', ids ? { ids } : { all: true });
      status.className = 'hint';
      status.textContent = `${done.redriven} re-driven${done.missing.length ? `; not found: ${done.missing.join(', ')}` : ''}.`;
      this.selected.clear();
      await this.load();
    } catch (e) {
      status.className = 'error';
      status.textContent = e.message;
    }
  }
}

function topicCard(topic) {
  const worst = Math.max(1, ...topic.partitions.map((p) => p.lag || 0));
  const rate = topic.messages_per_second === null ? 'measuring…' : `${topic.messages_per_second.toFixed(1)} msg/s`;
  return el('article', { class: 'topic', 'data-topic': topic.name, 'data-purpose': topic.purpose },
    el('h3', {}, topic.name, ' ', el('span', { class: 'pill', text: topic.purpose })),
    el('p', { class: 'hint', text: [
      topic.group ? `group ${topic.group}` : 'no consumer group',
      topic.lag === null ? null : `lag ${topic.lag}`,
      rate,
    ].filter(Boolean).join(' · ') }),
    topic.error ? el('p', { class: 'error', text: topic.error }) : null,
    el('table', { class: 'grid-table' },
      el('thead', {}, el('tr', {}, ...['Partition', 'Start', 'End', 'Committed', 'Lag'].map((h) => el('th', { text: h })))),
      el('tbody', {}, ...topic.partitions.map((p) => el('tr', { 'data-partition': String(p.partition) },
        el('td', { text: String(p.partition) }),
        el('td', { text: String(p.start_offset) }),
        el('td', { text: String(p.end_offset) }),
        el('td', { text: p.committed === null ? '—' : String(p.committed) }),
        el('td', { class: 'lag' },
          el('meter', { min: '0', max: String(worst), value: String(p.lag || 0), 'aria-label': `lag of partition ${p.partition}` }),
          ` ${p.lag === null ? '—' : p.lag}`))))));
}

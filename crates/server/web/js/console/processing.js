// Processing: the queue's depth, the jobs that died (with retry), and the tasks of every
// process of every role, from their heartbeats.

import { call, el, formatTime } from '../api.js';
import { showError } from './errors.js';

export class Processing {
  refreshes = true;

  async load() {
    const [dead, tasks] = await Promise.all([
      call('GET', '/v1/admin/dead-letters'),
      call('GET', '/v1/admin/tasks'),
    ]);
    document.getElementById('queue-depth').textContent =
      dead.queue_depth === null || dead.queue_depth === undefined ? 'not available' : String(dead.queue_depth);
    this.showDead(dead.dead_letters);
    showProcesses(tasks.processes);
  }

  showDead(letters) {
    const rows = letters.map((letter) => {
      const retry = el('button', { type: 'button', class: 'quiet', text: 'Retry' });
      retry.addEventListener('click', async () => {
        retry.disabled = true;
        try {
          await call('POST', `/v1/admin/dead-letters/${letter.id}/retry`);
          await this.load();
        } catch (e) {
          retry.disabled = false;
          showError(e.message);
        }
      });
      return el('tr', { 'data-id': letter.id },
        el('td', {}, el('code', { text: letter.image_id })),
        el('td', {}, el('code', { text: letter.customer_id })),
        el('td', { text: String(letter.attempts) }),
        el('td', { class: 'error', text: letter.last_error }),
        el('td', { text: formatTime(letter.failed_at) }),
        el('td', {}, retry));
    });
    document.getElementById('dead-jobs').replaceChildren(...rows);
    document.getElementById('dead-jobs-empty').hidden = rows.length > 0;
  }
}

function showProcesses(processes) {
  const cards = processes.map((p) => el('article', { class: 'process', 'data-status': p.status, 'data-role': p.role },
    el('h3', {}, `${p.role} `, el('span', { class: 'pill', text: p.status })),
    el('p', { class: 'hint', text: `${p.host} · version ${p.version} · started ${formatTime(p.started_at)} · last beat ${formatTime(p.beat_at)}` }),
    el('table', { class: 'grid-table' },
      el('thead', {}, el('tr', {}, el('th', { text: 'Task' }), el('th', { text: 'State' }), el('th', { text: 'Restarts' }), el('th', { text: 'Last error' }))),
      el('tbody', {}, ...p.tasks.map((t) => el('tr', { 'data-task': t.name },
        el('td', { text: t.name }),
        el('td', { 'data-state': t.state, text: t.state }),
        el('td', { text: String(t.restarts) }),
        el('td', { class: t.last_error ? 'error' : '', text: t.last_error || '' })))))));
  document.getElementById('processes').replaceChildren(
    ...(cards.length ? cards : [el('p', { class: 'hint', text: 'No process has written a heartbeat yet.' })]));
}

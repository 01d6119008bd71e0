// Health: every dependency this process checks for /readyz, and the process's verdict.

import { el } from '../api.js';

export class Health {
  refreshes = true;

  async load() {
    const response = await fetch('/readyz', { headers: { accept: 'application/json' } });
    const body = await response.json();
    const status = document.getElementById('ready-status');
    status.textContent = body.status;
    status.dataset.state = body.status;
    const rows = [];
    for (const [name, state] of Object.entries(body.checks)) {
      if (name === 'tasks') {
        for (const [task, s] of Object.entries(state)) rows.push(row(`task ${task}`, s.state, s.last_error));
      } else {
        rows.push(row(name, typeof state === 'string' ? state : JSON.stringify(state)));
      }
    }
    document.getElementById('health-rows').replaceChildren(...rows);
  }
}

function row(name, state, detail) {
  return el('tr', {},
    el('th', { scope: 'row', text: name }),
    el('td', { 'data-state': state, text: detail ? `${state}: ${detail}` : state }));
}

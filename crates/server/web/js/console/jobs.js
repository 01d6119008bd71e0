// Jobs: each scheduled job's schedule, last and next run, the grid of its recent intervals
// (Airflow's grid view: one column per interval, one square per attempt, newest on the right),
// run one interval now, and backfill a range with a reprocess policy.

import { call, el, formatTime } from '../api.js';

const GRID_INTERVALS = 24;

export class Jobs {
  refreshes = true;

  async load() {
    const { jobs } = await call('GET', '/v1/admin/jobs');
    const list = document.getElementById('job-list');
    for (const job of jobs) {
      let card = list.querySelector(`[data-job="${job.name}"]`);
      if (!card) {
        card = jobCard(job, () => this.load());
        list.append(card);
      }
      const [{ runs }, { backfills }] = await Promise.all([
        call('GET', `/v1/admin/jobs/${job.name}/runs?limit=200`),
        call('GET', `/v1/admin/jobs/${job.name}/backfills`),
      ]);
      fillCard(card, job, runs, backfills);
    }
  }
}

/** A job's card, with its forms wired; filled by `fillCard`. */
function jobCard(job, reload) {
  const runForm = el('form', { class: 'inline-form run-now' },
    el('div', {}, el('label', { for: `run-${job.name}`, text: 'Interval' }),
      el('input', { id: `run-${job.name}`, name: 'interval', required: true, value: lastClosed(job.interval) })),
    el('button', { type: 'submit', text: 'Run now' }));
  const backfillForm = el('form', { class: 'inline-form backfill' },
    el('div', {}, el('label', { for: `from-${job.name}`, text: 'From' }),
      el('input', { id: `from-${job.name}`, name: 'from', required: true, value: lastClosed(job.interval, 3) })),
    el('div', {}, el('label', { for: `to-${job.name}`, text: 'To' }),
      el('input', { id: `to-${job.name}`, name: 'to', required: true, value: lastClosed(job.interval) })),
    el('div', {}, el('label', { for: `reprocess-${job.name}`, text: 'Reprocess' }),
      el('select', { id: `reprocess-${job.name}`, name: 'reprocess' },
        el('option', { value: 'missing', text: 'intervals never run' }),
        el('option', { value: 'failed', text: 'never run or failed' }),
        el('option', { value: 'all', text: 'every interval' }))),
    el('button', { type: 'submit', text: 'Backfill' }));
  const message = el('p', { class: 'hint', role: 'status' });
  submit(runForm, message, async (data) => {
    const run = await call('POST', `/v1/admin/jobs/${job.name}/runs`, { interval: data.interval });
    return `Queued ${run.interval}, attempt ${run.attempt}.`;
  }, reload);
  submit(backfillForm, message, async (data) => {
    const backfill = await call('POST', `/v1/admin/jobs/${job.name}/backfills`, data);
    return `Backfill of ${backfill.from} to ${backfill.to} started.`;
  }, reload);
  return el('article', { class: 'job', 'data-job': job.name },
    el('h2', { text: job.name }),
    el('p', { class: 'hint facts-line' }),
    el('div', { class: 'run-grid', role: 'list', 'aria-label': `Recent intervals of ${job.name}` }),
    el('p', { class: 'hint grid-span' }),
    runForm, backfillForm, message,
    el('ul', { class: 'backfills' }));
}

function submit(form, message, send, reload) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = form.querySelector('button');
    button.disabled = true;
    try {
      message.textContent = await send(Object.fromEntries(new FormData(form)));
      message.className = 'hint';
      await reload();
    } catch (e) {
      message.textContent = e.message;
      message.className = 'error';
    } finally {
      button.disabled = false;
    }
  });
}

function fillCard(card, job, runs, backfills) {
  const last = job.last_run;
  card.querySelector('.facts-line').textContent = [
    `${job.schedule} (UTC), interval: ${job.interval}`,
    job.enabled ? (job.scheduled ? 'scheduled here' : 'scheduled by no process') : 'disabled',
    last ? `last run ${last.interval}: ${last.state}` : 'never run',
    job.next_run ? `next ${formatTime(job.next_run)}` : null,
  ].filter(Boolean).join(' · ');
  const columns = grid(runs);
  card.querySelector('.run-grid').replaceChildren(...columns);
  card.querySelector('.grid-span').textContent = columns.length
    ? `${columns.length} newest intervals run: ${columns[0].dataset.interval} to ${columns[columns.length - 1].dataset.interval}`
    : 'No run yet.';
  card.querySelector('.backfills').replaceChildren(...backfills.slice(0, 5).map((b) => el('li', { 'data-state': b.state },
    `Backfill ${b.from} → ${b.to} (reprocess ${b.reprocess}): ${b.state}; ${b.queued} runs queued, ${b.succeeded} succeeded, ${b.failed} failed`)));
}

/** The newest intervals' columns, oldest on the left; each attempt a square in its state. */
function grid(runs) {
  const byInterval = new Map();
  for (const run of runs) {
    if (!byInterval.has(run.interval)) byInterval.set(run.interval, []);
    byInterval.get(run.interval).push(run);
  }
  const intervals = [...byInterval.keys()].sort().slice(-GRID_INTERVALS);
  return intervals.map((interval) => {
    const attempts = byInterval.get(interval).sort((a, b) => a.attempt - b.attempt);
    const newest = attempts[attempts.length - 1];
    return el('div', { class: 'grid-column', role: 'listitem', 'data-interval': interval, 'data-state': newest.state },
      ...attempts.map((run) => el('span', {
        class: 'cell',
        'data-state': run.state,
        title: `${interval} attempt ${run.attempt}: ${run.state}${run.rows !== null && run.rows !== undefined ? `, ${run.rows} rows` : ''}${run.error ? ` (${run.error})` : ''}`,
      })),
      el('span', { class: 'visually-hidden', text: `${interval}: ${newest.state}` }));
  });
}

/** The key of the interval `back` intervals before the current one (`2026-11-30T10` for an
 * hour, `2026-11-30` for a day, an RFC 3339 time otherwise). */
function lastClosed(length, back = 1) {
  const now = new Date();
  if (length === 'day') return new Date(now - back * 86_400_000).toISOString().slice(0, 10);
  if (length === 'hour') return new Date(now - back * 3_600_000).toISOString().slice(0, 13);
  const minutes = Number.parseInt(length, 10) || 5;
  return new Date(now - back * minutes * 60_000).toISOString().replace(/\.\d+Z$/, 'Z');
}

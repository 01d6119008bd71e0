//! The scheduler: a task of the runtime, in `serve` and in each replica of the `scheduler` role.
//!
//! Every step, for each job it can take the lease of (`job:<name>` in the metadata store, so
//! any number of replicas run each job once), it
//! 1. queues the interval its schedule has made due, and after downtime the ones missed since
//!    the last run, oldest first, within the catch-up window (`catchup`); a job never run
//!    begins with the interval the deployment began in, never with hours before it;
//! 2. queues the next intervals of each running backfill, at most `max_active` of it open at
//!    once, each as soon as a slot frees (never in whole batches);
//! 3. starts what is ready, in two lanes: the schedule's own runs (scheduled, catch-up and
//!    manual), one at a time in interval order, and the backfills' beside them, so a week's
//!    backfill never delays the hour that just ended;
//! 4. records how each run ended: success, waiting for its input (the run is queued again,
//!    not failed), or failed, then a new attempt after a backoff until `retries` are spent.
//!
//! Everything is in the run history (the metadata store), so a restart, or another replica
//! taking the lease over, carries on where the last holder stopped: an attempt left `running`
//! by a holder that is gone is recorded as interrupted and tried again. A run unfinished
//! `deadline` after its interval ended counts in `imagelake_job_late{job}` and is logged once.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, OnceLock},
    time::Duration,
};

use imagelake_core::{
    Timestamp,
    jobs::{Backfill, BackfillState, Interval, JobRun, RunState, Trigger},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Job, JobError, JobInfo};
use crate::{
    AppState,
    tasks::{Step, Task},
};

/// How long a job's lease lasts; renewed every step.
const LEASE: Duration = Duration::from_secs(60);
/// The longest wait between two steps.
const POLL: Duration = Duration::from_secs(5);
/// How long a run whose input is not complete waits before it looks again.
const RECHECK: Duration = Duration::from_secs(30);
/// How often the history is trimmed to the lake retention.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// One job as the scheduler holds it.
struct Scheduled {
    info: JobInfo,
    job: Arc<dyn Job>,
    /// The newest interval the schedule has queued (read from the history on taking the lease).
    planned: Option<Interval>,
    held: bool,
    /// Runs started by this process and not yet ended, by (interval, attempt).
    running: BTreeSet<(String, u32)>,
    /// Their tasks, aborted when the scheduler stops, before it gives the lease up.
    tasks: Vec<tokio::task::AbortHandle>,
    /// Intervals already reported late.
    late: BTreeSet<String>,
}

/// How a run ended, as the history records it.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Rows written or things removed.
    Done(u64),
    /// Its input is not complete yet.
    Waiting(String),
    Failed(String),
    /// Its holder stopped before it ended: the next attempt comes at once.
    Interrupted,
}

impl From<Result<u64, JobError>> for Outcome {
    fn from(result: Result<u64, JobError>) -> Self {
        match result {
            Ok(rows) => Self::Done(rows),
            Err(JobError::NotReady(why)) => Self::Waiting(why),
            Err(JobError::Failed(error)) => Self::Failed(format!("{error:#}")),
        }
    }
}

/// A run that ended, sent back by its task.
#[derive(Clone)]
struct Ended {
    job: usize,
    run: JobRun,
    outcome: Outcome,
}

/// Runs the catalog's jobs on their schedules.
pub struct Scheduler {
    state: AppState,
    jobs: Vec<Scheduled>,
    holder: String,
    ended_tx: mpsc::UnboundedSender<Ended>,
    ended_rx: mpsc::UnboundedReceiver<Ended>,
    ended: Vec<Ended>,
    last_purge: Option<Timestamp>,
    /// When this deployment began, once read (see [`Scheduler::began`]).
    began: OnceLock<Timestamp>,
}

impl Scheduler {
    /// The scheduler of `jobs` (their names are the catalog's; jobs switched off are left out).
    pub fn new(state: AppState, jobs: Vec<Arc<dyn Job>>) -> anyhow::Result<Self> {
        let catalog = super::catalog(&state.settings).map_err(anyhow::Error::msg)?;
        let jobs = jobs
            .into_iter()
            .filter_map(|job| {
                let info = catalog.iter().find(|i| i.name == job.name())?.clone();
                info.enabled.then_some(Scheduled {
                    info,
                    job,
                    planned: None,
                    held: false,
                    running: BTreeSet::new(),
                    tasks: Vec::new(),
                    late: BTreeSet::new(),
                })
            })
            .collect();
        let (ended_tx, ended_rx) = mpsc::unbounded_channel();
        Ok(Self {
            holder: format!("{}-{}", std::process::id(), Uuid::now_v7()),
            state,
            jobs,
            ended_tx,
            ended_rx,
            ended: Vec::new(),
            last_purge: None,
            began: OnceLock::new(),
        })
    }

    /// One round: what ended is recorded, then each job whose lease this holder has is planned
    /// and started.
    pub async fn round(&mut self) -> anyhow::Result<()> {
        while let Ok(ended) = self.ended_rx.try_recv() {
            self.ended.push(ended);
        }
        while let Some(ended) = self.ended.pop() {
            if let Err(e) = self.record_end(ended.clone()).await {
                // Kept, to be recorded at the next round: the run stays this holder's until then.
                self.ended.push(ended);
                return Err(e);
            }
        }
        for index in 0..self.jobs.len() {
            if self.take_lease(index).await? {
                self.plan(index).await?;
                self.backfill(index).await?;
                self.start_ready(index).await?;
                self.flag_late(index).await?;
            }
        }
        self.purge().await
    }

    /// Whether any run started here is still going.
    pub fn is_running(&self) -> bool {
        self.jobs.iter().any(|j| !j.running.is_empty())
    }

    async fn take_lease(&mut self, index: usize) -> anyhow::Result<bool> {
        let now = self.state.clock.now();
        let until = now + chrono::Duration::from_std(LEASE).unwrap_or_default();
        let job = &mut self.jobs[index];
        let name = format!("job:{}", job.info.name);
        let held = self
            .state
            .store
            .acquire_lease(&name, &self.holder, now, until)
            .await?;
        if held && !job.held {
            tracing::info!(job = job.info.name, "scheduler: this replica runs the job");
            job.planned = None;
        }
        job.held = held;
        Ok(held)
    }

    /// Queues the intervals the schedule has made due since the newest one queued.
    async fn plan(&mut self, index: usize) -> anyhow::Result<()> {
        let now = self.state.clock.now();
        let job = &self.jobs[index];
        let info = &job.info;
        let Some(fired) = info.schedule.last_fire(now) else {
            return Ok(());
        };
        let due = info.period.last_ended(fired);
        let planned = match job.planned {
            Some(planned) => Some(planned),
            None => self.newest_run(info).await?,
        };
        if planned.is_some_and(|p| p >= due) {
            self.jobs[index].planned = planned;
            return Ok(());
        }
        let window = chrono::Duration::from_std(info.catchup_window).unwrap_or_default();
        // The oldest interval within the window, not the one the lake retention is deleting.
        let earliest = info.period.interval_at(now - window).next();
        let first = match planned {
            Some(planned) if info.catchup => planned.next().max(earliest),
            Some(_) => due,
            // Never run: the newest interval due, unless it ended before this deployment began
            // (Airflow's start_date); then the first one that ends after.
            None => info.period.interval_at(self.began().await?).max(due),
        };
        if first > due {
            // Nothing due yet: the schedule goes on from `first`.
            self.jobs[index].planned = Some(first.previous());
            return Ok(());
        }
        let known = self.latest_attempts(info.name, first, due).await?;
        for interval in first.through(due) {
            if known.contains_key(&interval.key()) {
                continue;
            }
            let trigger = if interval == due {
                Trigger::Scheduled
            } else {
                Trigger::Catchup
            };
            let run = JobRun::queued(info.name, interval, trigger, now);
            self.state.store.put_run(&run).await?;
        }
        self.jobs[index].planned = Some(due);
        Ok(())
    }

    /// When this deployment began: the start of the oldest process whose heartbeat the store
    /// keeps (a day after it stops), or now. Hours before it have no input to wait for.
    async fn began(&self) -> anyhow::Result<Timestamp> {
        if let Some(began) = self.began.get() {
            return Ok(*began);
        }
        let now = self.state.clock.now();
        let beats = self.state.store.heartbeats().await?;
        let oldest = beats.iter().map(|b| b.started_at).min();
        Ok(*self
            .began
            .get_or_init(|| oldest.map_or(now, |o| o.min(now))))
    }

    /// The interval of the job's newest run, if it has run.
    async fn newest_run(&self, info: &JobInfo) -> anyhow::Result<Option<Interval>> {
        let newest = self.state.store.recent_runs(info.name, None, 1).await?;
        Ok(newest
            .first()
            .and_then(|run| info.period.parse(&run.interval).ok()))
    }

    /// The newest attempt of each interval from `from` to `to`.
    async fn latest_attempts(
        &self,
        job: &str,
        from: Interval,
        to: Interval,
    ) -> anyhow::Result<BTreeMap<String, JobRun>> {
        let runs = self
            .state
            .store
            .runs_between(job, &from.key(), &to.key())
            .await?;
        Ok(runs.into_iter().map(|r| (r.interval.clone(), r)).collect())
    }

    /// Queues the next intervals of the job's running backfills, up to each one's
    /// `max_active` open runs.
    async fn backfill(&mut self, index: usize) -> anyhow::Result<()> {
        let info = self.jobs[index].info.clone();
        let backfills = self.state.store.backfills(info.name).await?;
        let open = self.state.store.open_runs(info.name).await?;
        for mut backfill in backfills {
            if backfill.state != BackfillState::Running {
                continue;
            }
            let mut active = open
                .iter()
                .filter(|r| r.backfill == Some(backfill.id))
                .count();
            let last = info
                .period
                .parse(&backfill.to)
                .map_err(anyhow::Error::msg)?;
            let before = backfill.clone();
            while active < backfill.max_active as usize {
                let Some(next) = backfill.next.as_deref() else {
                    break;
                };
                let Ok(interval) = info.period.parse(next) else {
                    backfill.next = None;
                    break;
                };
                if interval > last {
                    backfill.next = None;
                    break;
                }
                backfill.next = Some(interval.next().key()).filter(|_| interval < last);
                let key = interval.key();
                if open.iter().any(|r| r.interval == key) {
                    continue;
                }
                let latest = self.latest_attempts(info.name, interval, interval).await?;
                let latest = latest.get(&key);
                if !backfill.reprocess.includes(latest) {
                    continue;
                }
                let now = self.state.clock.now();
                let mut run = JobRun::queued(info.name, interval, Trigger::Backfill, now);
                run.attempt = latest.map_or(1, |r| r.attempt + 1);
                run.backfill = Some(backfill.id);
                self.state.store.put_run(&run).await?;
                backfill.queued += 1;
                active += 1;
            }
            if backfill.next.is_none() && active == 0 {
                backfill.state = BackfillState::Done;
                backfill.finished_at = Some(self.state.clock.now());
                tracing::info!(job = info.name, backfill = %backfill.id, succeeded = backfill.succeeded, failed = backfill.failed, "backfill done");
            }
            if backfill != before {
                self.state.store.put_backfill(&backfill).await?;
            }
        }
        Ok(())
    }

    /// Starts the oldest ready run of the schedule's lane if none of it runs, and the oldest
    /// ready runs of each backfill up to its `max_active`. An attempt left `running` by another
    /// holder is recorded as interrupted and tried again.
    async fn start_ready(&mut self, index: usize) -> anyhow::Result<()> {
        let now = self.state.clock.now();
        let open = self
            .state
            .store
            .open_runs(self.jobs[index].info.name)
            .await?;
        let mut lanes: BTreeMap<Option<Uuid>, usize> = BTreeMap::new();
        for run in &open {
            if self.jobs[index]
                .running
                .contains(&(run.interval.clone(), run.attempt))
            {
                *lanes.entry(run.backfill).or_default() += 1;
            }
        }
        let mut limits: BTreeMap<Option<Uuid>, usize> = BTreeMap::new();
        for run in open {
            let key = (run.interval.clone(), run.attempt);
            if self.jobs[index].running.contains(&key) {
                continue;
            }
            if run.state == RunState::Running {
                let outcome = Outcome::Interrupted;
                self.record_end(Ended {
                    job: index,
                    run,
                    outcome,
                })
                .await?;
                continue;
            }
            if self.jobs[index].info.period.parse(&run.interval).is_err() {
                let why = "its interval no longer fits the job's period".to_owned();
                let outcome = Outcome::Failed(why);
                self.record_end(Ended {
                    job: index,
                    run,
                    outcome,
                })
                .await?;
                continue;
            }
            if run.not_before > now {
                continue;
            }
            let limit = match run.backfill {
                None => 1,
                Some(id) => match limits.get(&Some(id)) {
                    Some(limit) => *limit,
                    None => {
                        let backfill = self.state.store.get_backfill(id).await?;
                        let limit = backfill.map_or(1, |b| b.max_active as usize);
                        limits.insert(Some(id), limit);
                        limit
                    }
                },
            };
            let busy = lanes.entry(run.backfill).or_default();
            if *busy >= limit {
                continue;
            }
            *busy += 1;
            self.start(index, run).await?;
        }
        Ok(())
    }

    /// Records the run as running and runs it on a task of its own.
    async fn start(&mut self, index: usize, mut run: JobRun) -> anyhow::Result<()> {
        let job = &mut self.jobs[index];
        let interval = job
            .info
            .period
            .parse(&run.interval)
            .map_err(anyhow::Error::msg)?;
        run.state = RunState::Running;
        run.started_at = Some(self.state.clock.now());
        self.state.store.put_run(&run).await?;
        job.running.insert((run.interval.clone(), run.attempt));
        tracing::info!(job = job.info.name, interval = %run.interval, attempt = run.attempt, trigger = run.trigger.as_str(), "job run started");
        let (work, sender) = (job.job.clone(), self.ended_tx.clone());
        let task = tokio::spawn(async move {
            let outcome = std::panic::AssertUnwindSafe(work.run(interval));
            let outcome = futures::FutureExt::catch_unwind(outcome).await.map_or_else(
                |_| Outcome::Failed("the run panicked".to_owned()),
                Outcome::from,
            );
            let _ = sender.send(Ended {
                job: index,
                run,
                outcome,
            });
        });
        job.tasks.retain(|t| !t.is_finished());
        job.tasks.push(task.abort_handle());
        Ok(())
    }

    /// Writes how a run ended, queues its retry, and counts it.
    async fn record_end(&mut self, ended: Ended) -> anyhow::Result<()> {
        let now = self.state.clock.now();
        let info = self.jobs[ended.job].info.clone();
        let key = (ended.run.interval.clone(), ended.run.attempt);
        let outcome = match ended.outcome {
            // Input that has not come within the catch-up window never will: the lake
            // retention is deleting that hour.
            Outcome::Waiting(why) if waited_too_long(&info, &ended.run, now) => {
                Outcome::Failed(format!("its input never came: {why}"))
            }
            outcome => outcome,
        };
        let (run, retry) = settle(&info, ended.run, outcome, now);
        self.state.store.put_run(&run).await?;
        if let Some(retry) = &retry {
            self.state.store.put_run(retry).await?;
        }
        self.jobs[ended.job].running.remove(&key);
        let metrics = &self.state.metrics.jobs;
        let labels = vec![("job", info.name.to_owned())];
        match run.state {
            RunState::Success => {
                metrics
                    .last_success
                    .get_or_create(&labels)
                    .set(now.timestamp() as f64);
                let seconds = run.duration().map_or(0.0, |d| d.as_seconds_f64());
                metrics.duration.get_or_create(&labels).set(seconds);
                tracing::info!(job = info.name, interval = %run.interval, rows = run.rows, seconds, "job run succeeded");
            }
            RunState::Failed => {
                metrics.failures.get_or_create(&labels).inc();
                tracing::warn!(job = info.name, interval = %run.interval, attempt = run.attempt, error = run.error.as_deref(), retry = retry.is_some(), "job run failed");
            }
            RunState::Queued | RunState::Running => {}
        }
        if let (Some(id), None) = (run.backfill, &retry) {
            self.count_in_backfill(id, run.state).await?;
        }
        Ok(())
    }

    async fn count_in_backfill(&self, id: Uuid, state: RunState) -> anyhow::Result<()> {
        let Some(mut backfill) = self.state.store.get_backfill(id).await? else {
            return Ok(());
        };
        match state {
            RunState::Success => backfill.succeeded += 1,
            RunState::Failed => backfill.failed += 1,
            RunState::Queued | RunState::Running => return Ok(()),
        }
        self.state.store.put_backfill(&backfill).await?;
        Ok(())
    }

    /// Counts the schedule's runs still open past their deadline; logs each once.
    async fn flag_late(&mut self, index: usize) -> anyhow::Result<()> {
        let now = self.state.clock.now();
        let job = &mut self.jobs[index];
        let deadline = chrono::Duration::from_std(job.info.deadline).unwrap_or_default();
        let open = self.state.store.open_runs(job.info.name).await?;
        let mut late = 0;
        job.late
            .retain(|interval| open.iter().any(|r| &r.interval == interval));
        let scheduled = |r: &&JobRun| matches!(r.trigger, Trigger::Scheduled | Trigger::Catchup);
        for run in open.iter().filter(scheduled) {
            let Ok(interval) = job.info.period.parse(&run.interval) else {
                continue;
            };
            if interval.end() + deadline < now {
                late += 1;
                if job.late.insert(run.interval.clone()) {
                    tracing::warn!(job = job.info.name, interval = %run.interval, state = run.state.as_str(), waiting_for = run.error.as_deref(), "job run late: not finished by its deadline");
                }
            }
        }
        let labels = vec![("job", job.info.name.to_owned())];
        self.state
            .metrics
            .jobs
            .late
            .get_or_create(&labels)
            .set(late);
        Ok(())
    }

    /// Trims the history to the lake retention, once an hour.
    async fn purge(&mut self) -> anyhow::Result<()> {
        let now = self.state.clock.now();
        let every = chrono::Duration::from_std(PURGE_EVERY).unwrap_or_default();
        if self.last_purge.is_some_and(|t| now - t < every) || !self.jobs.iter().any(|j| j.held) {
            return Ok(());
        }
        let kept =
            chrono::Duration::from_std(self.state.settings.lake_retention().0).unwrap_or_default();
        self.state.store.purge_runs(now - kept).await?;
        self.last_purge = Some(now);
        Ok(())
    }

    /// How long until something is due: the next firing of a job held, or a queued run's time.
    fn pause(&self) -> Duration {
        let now = self.state.clock.now();
        self.jobs
            .iter()
            .filter(|j| j.held)
            .filter_map(|j| j.info.schedule.next_fire(now))
            .filter_map(|t| (t - now).to_std().ok())
            .min()
            .unwrap_or(POLL)
            .min(POLL)
    }

    /// Gives the leases up, so another replica takes over at once.
    async fn release(&mut self) {
        let now = self.state.clock.now();
        for job in self.jobs.iter_mut().filter(|j| j.held) {
            let name = format!("job:{}", job.info.name);
            if let Err(e) = self
                .state
                .store
                .acquire_lease(&name, &self.holder, now, now)
                .await
            {
                tracing::warn!(job = job.info.name, error = %e, "scheduler: could not give up a lease");
            }
            job.held = false;
        }
    }
}

/// The attempt as it ended, and the next attempt when it failed with retries left. A run whose
/// input is not complete goes back to the queue, the same attempt, to look again later.
pub fn settle(
    info: &JobInfo,
    mut run: JobRun,
    outcome: Outcome,
    now: Timestamp,
) -> (JobRun, Option<JobRun>) {
    let (error, at_once) = match outcome {
        Outcome::Done(rows) => {
            run.state = RunState::Success;
            run.rows = Some(rows);
            run.error = None;
            run.ended_at = Some(now);
            return (run, None);
        }
        Outcome::Waiting(why) => {
            run.state = RunState::Queued;
            run.started_at = None;
            run.not_before = now + chrono::Duration::from_std(RECHECK).unwrap_or_default();
            run.error = Some(format!("waiting: {why}"));
            return (run, None);
        }
        Outcome::Failed(error) => (error, false),
        Outcome::Interrupted => (
            "interrupted: the scheduler running it stopped".to_owned(),
            true,
        ),
    };
    run.state = RunState::Failed;
    run.error = Some(error);
    run.ended_at = Some(now);
    let retry = (run.retry < info.retries).then(|| {
        let backoff = 30 * 2i64.pow(run.retry.min(5));
        let wait = if at_once { 0 } else { backoff.min(600) };
        JobRun {
            attempt: run.attempt + 1,
            state: RunState::Queued,
            queued_at: now,
            not_before: now + chrono::Duration::seconds(wait),
            started_at: None,
            ended_at: None,
            rows: None,
            error: None,
            retry: run.retry + 1,
            ..run.clone()
        }
    });
    (run, retry)
}

/// Whether a run waiting for its input has waited past the catch-up window since its
/// interval ended.
fn waited_too_long(info: &JobInfo, run: &JobRun, now: Timestamp) -> bool {
    let window = chrono::Duration::from_std(info.catchup_window).unwrap_or_default();
    info.period
        .parse(&run.interval)
        .is_ok_and(|interval| interval.end() + window < now)
}

/// Queues a backfill of `job` from `from` to `to` (interval keys or times), checked against the
/// catalog; the scheduler holding the job's lease runs it.
pub async fn start_backfill(
    state: &AppState,
    job: &str,
    from: &str,
    to: &str,
    reprocess: imagelake_core::jobs::Reprocess,
    max_active: u32,
) -> Result<Backfill, String> {
    let catalog = super::catalog(&state.settings)?;
    let info = catalog
        .iter()
        .find(|i| i.name == job)
        .ok_or_else(|| format!("no job named {job:?}"))?;
    let (first, last) = (info.period.parse(from)?, info.period.parse(to)?);
    if first > last {
        return Err(format!("from {first} is after to {last}"));
    }
    let now = state.clock.now();
    if last.end() > now {
        return Err(format!("to {last} has not ended yet"));
    }
    let window = chrono::Duration::from_std(info.catchup_window).unwrap_or_default();
    let oldest = info.period.interval_at(now - window).next();
    if first < oldest {
        return Err(format!(
            "from {first} is older than the lake keeps (the oldest interval is {oldest})"
        ));
    }
    if max_active == 0 {
        return Err("max_active must be at least 1".to_owned());
    }
    let backfill = Backfill {
        id: Uuid::now_v7(),
        job: info.name.to_owned(),
        from: first.key(),
        to: last.key(),
        reprocess,
        max_active,
        state: BackfillState::Running,
        created_at: state.clock.now(),
        next: Some(first.key()),
        queued: 0,
        succeeded: 0,
        failed: 0,
        finished_at: None,
    };
    state
        .store
        .put_backfill(&backfill)
        .await
        .map_err(|e| e.to_string())?;
    Ok(backfill)
}

#[async_trait::async_trait]
impl Task for Scheduler {
    async fn step(&mut self, _: &CancellationToken) -> anyhow::Result<Step> {
        self.round().await?;
        Ok(Step::Idle)
    }

    async fn wait(&mut self, stop: &CancellationToken) {
        let pause = self.pause();
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(pause) => {}
            Some(ended) = self.ended_rx.recv() => self.ended.push(ended),
        }
    }

    async fn finish(&mut self) {
        // Runs in flight stop here, before the leases go: the next holder finds them
        // `running`, records them interrupted and runs them again, never beside this one.
        for job in &mut self.jobs {
            for task in job.tasks.drain(..) {
                task.abort();
            }
        }
        self.release().await;
    }
}

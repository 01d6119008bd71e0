//! What operators do with the jobs, the same from the CLI (`imagelake jobs ...`, on the
//! metadata store directly) and from HTTP (`/v1/admin/jobs`): list them, queue a run of an
//! interval, run one here and now (Airflow's and CronJobs' way), start a backfill.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use imagelake_core::{
    duration::HumanDuration,
    jobs::{Interval, JobRun, RunState, Trigger},
};
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    Job, JobInfo,
    scheduler::{Outcome, settle},
};
use crate::{AppState, Error};

/// One job as `imagelake jobs list` and `GET /v1/admin/jobs` show it.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobOverview {
    pub name: String,
    /// The cron expression (UTC), or `every 5m`.
    pub schedule: String,
    /// The length of its data intervals (`hour`, `day`, `5 min`).
    pub interval: String,
    pub enabled: bool,
    /// Whether a scheduler runs it on its schedule (`[jobs] scheduler`).
    pub scheduled: bool,
    /// A run unfinished this long after its interval ends is late.
    pub deadline: String,
    pub retries: u32,
    /// When the schedule next fires, where a scheduler runs it.
    pub next_run: Option<DateTime<Utc>>,
    /// Its newest run (the newest interval's newest attempt).
    pub last_run: Option<JobRun>,
    /// The state of that run.
    pub state: Option<RunState>,
}

/// The catalog's job named `name`.
pub fn find(state: &AppState, name: &str) -> Result<JobInfo, Error> {
    let catalog = super::catalog(&state.settings).map_err(Error::invalid)?;
    catalog.into_iter().find(|j| j.name == name).ok_or_else(|| {
        Error::not_found(format!(
            "no job named {name:?} (the jobs are lake-transform, lake-retention, image-retention)"
        ))
    })
}

/// Every job with its newest run and next firing.
pub async fn overview(state: &AppState) -> Result<Vec<JobOverview>, Error> {
    let catalog = super::catalog(&state.settings).map_err(Error::invalid)?;
    let now = state.clock.now();
    let mut jobs = Vec::new();
    for info in catalog {
        let last_run = state.store.recent_runs(info.name, None, 1).await?.pop();
        let scheduled = state.settings.jobs.scheduler && info.enabled;
        jobs.push(JobOverview {
            name: info.name.to_owned(),
            schedule: info.schedule.to_string(),
            interval: info.period.describe(),
            enabled: info.enabled,
            scheduled,
            deadline: HumanDuration(info.deadline).to_string(),
            retries: info.retries,
            next_run: scheduled.then(|| info.schedule.next_fire(now)).flatten(),
            state: last_run.as_ref().map(|r| r.state),
            last_run,
        });
    }
    Ok(jobs)
}

/// The next attempt of `job` for `interval` (`2026-11-30T10`, or a time inside it), queued for
/// the scheduler; refused while one is queued or running.
pub async fn queue_run(state: &AppState, job: &str, interval: &str) -> Result<JobRun, Error> {
    let info = find(state, job)?;
    let run = next_attempt(state, &info, interval).await?;
    state.store.put_run(&run).await?;
    tracing::info!(job, interval = %run.interval, attempt = run.attempt, "job run queued");
    Ok(run)
}

/// Ends the attempts of the interval still open: with the job's lease held here no scheduler
/// runs them (one left `running` was killed with its process, one `queued` waits for a
/// scheduler that is off).
async fn close_open_attempts(
    state: &AppState,
    info: &JobInfo,
    interval: &str,
) -> Result<(), Error> {
    let key = info.period.parse(interval).map_err(Error::invalid)?.key();
    for mut open in state.store.runs_between(info.name, &key, &key).await? {
        if open.state.is_final() {
            continue;
        }
        open.state = RunState::Failed;
        open.error = Some("superseded: run by `imagelake jobs run`".to_owned());
        open.ended_at = Some(state.clock.now());
        state.store.put_run(&open).await?;
    }
    Ok(())
}

/// A new manual attempt of the interval, numbered after the ones before it.
async fn next_attempt(state: &AppState, info: &JobInfo, interval: &str) -> Result<JobRun, Error> {
    let interval = runnable(state, info, interval)?;
    let key = interval.key();
    let before = state.store.runs_between(info.name, &key, &key).await?;
    if let Some(open) = before.iter().find(|r| !r.state.is_final()) {
        return Err(Error::conflict(format!(
            "{} {key} already has attempt {} {}",
            info.name,
            open.attempt,
            open.state.as_str()
        )));
    }
    let mut run = JobRun::queued(info.name, interval, Trigger::Manual, state.clock.now());
    run.attempt = before.last().map_or(1, |r| r.attempt + 1);
    Ok(run)
}

/// The interval `text` names, if a run may be asked for it: it has ended, and the lake still
/// keeps it.
fn runnable(state: &AppState, info: &JobInfo, text: &str) -> Result<Interval, Error> {
    let interval = info.period.parse(text).map_err(Error::invalid)?;
    let now = state.clock.now();
    if interval.end() > now {
        return Err(Error::invalid(format!(
            "interval {interval} has not ended yet (a run is for an interval that has)"
        )));
    }
    // As a backfill: an interval the lake no longer keeps could only wait and fail.
    let window = chrono::Duration::from_std(info.catchup_window).unwrap_or_default();
    let oldest = info.period.interval_at(now - window).next();
    if interval < oldest {
        return Err(Error::invalid(format!(
            "interval {interval} is older than the lake keeps (the oldest interval is {oldest})"
        )));
    }
    Ok(interval)
}

/// Why a run here did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum RunHereError {
    /// A scheduler holds the job's lease: run it there, or switch it off.
    #[error(
        "{0} is being run by a scheduler (it holds the job's lease); switch the scheduler off ([jobs] scheduler = false) where jobs are run this way, or queue the run: POST /v1/admin/jobs/{0}/runs"
    )]
    Busy(String),
    #[error(transparent)]
    Refused(#[from] Error),
    /// The run ended: failed, or waiting for its input (its record says which).
    #[error("{}", .0.error.as_deref().unwrap_or("the run failed"))]
    Ended(Box<JobRun>),
}

/// Runs `job` for `interval` in this process, as Airflow's tasks and Kubernetes CronJobs do:
/// under the job's lease, recorded in the history as a manual attempt. A run whose input is not
/// complete ends here rather than waiting (the caller's retries wait).
pub async fn run_here(
    state: &AppState,
    job: Arc<dyn Job>,
    interval: &str,
) -> Result<JobRun, RunHereError> {
    let info = find(state, job.name())?;
    // A mistyped interval is refused as such, not as a job another process holds.
    runnable(state, &info, interval)?;
    let holder = format!("cli-{}-{}", std::process::id(), uuid::Uuid::now_v7());
    let lease = format!("job:{}", info.name);
    if !take_lease(state, &lease, &holder).await? {
        return Err(RunHereError::Busy(info.name.to_owned()));
    }
    // The lease is renewed while the run goes on, so a killed run frees the job a minute later.
    let run = run_leased(state, &info, job, interval);
    tokio::pin!(run);
    let outcome = loop {
        tokio::select! {
            outcome = &mut run => break outcome,
            () = tokio::time::sleep(LEASE_RENEWAL) => {
                if !take_lease(state, &lease, &holder).await.unwrap_or(false) {
                    tracing::warn!(job = info.name, "the job's lease could not be renewed");
                }
            }
        }
    };
    let now = state.clock.now();
    if let Err(e) = state.store.acquire_lease(&lease, &holder, now, now).await {
        tracing::warn!(error = %e, "could not give the job's lease up");
    }
    outcome
}

/// How long `run_here` holds the job's lease without renewing it, and how often it renews.
const LEASE: chrono::Duration = chrono::Duration::seconds(60);
const LEASE_RENEWAL: std::time::Duration = std::time::Duration::from_secs(20);

async fn take_lease(state: &AppState, lease: &str, holder: &str) -> Result<bool, Error> {
    let now = state.clock.now();
    Ok(state
        .store
        .acquire_lease(lease, holder, now, now + LEASE)
        .await?)
}

async fn run_leased(
    state: &AppState,
    info: &JobInfo,
    job: Arc<dyn Job>,
    interval: &str,
) -> Result<JobRun, RunHereError> {
    close_open_attempts(state, info, interval).await?;
    let mut run = next_attempt(state, info, interval).await?;
    let interval = info.period.parse(&run.interval).map_err(Error::invalid)?;
    run.state = RunState::Running;
    run.started_at = Some(state.clock.now());
    state.store.put_run(&run).await.map_err(Error::from)?;
    let outcome = Outcome::from(job.run(interval).await);
    let waiting = matches!(outcome, Outcome::Waiting(_));
    let no_retries = JobInfo {
        retries: 0,
        ..info.clone()
    };
    let (mut run, _) = settle(&no_retries, run, outcome, state.clock.now());
    if waiting {
        // Nobody here looks again: the attempt ends, saying what it waited for.
        run.state = RunState::Failed;
        run.ended_at = Some(state.clock.now());
    }
    state.store.put_run(&run).await.map_err(Error::from)?;
    match run.state {
        RunState::Success => Ok(run),
        _ => Err(RunHereError::Ended(Box::new(run))),
    }
}

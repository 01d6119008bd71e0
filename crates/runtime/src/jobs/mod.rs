//! The scheduled jobs (the Airflow role): what each one is, when it runs, and the scheduler
//! that runs them.
//!
//! The jobs are a fixed catalog, named by the contract: `lake-transform` and `lake-retention`
//! every hour, and `image-retention` (the retention sweep) every `sweep_interval`. Settings
//! change when they run (`[jobs.<name>] schedule`, a cron expression in UTC), or switch one off
//! (`enabled = false`), or switch the in-process scheduler off (`[jobs] scheduler = false`) where
//! Airflow or Kubernetes CronJobs call `imagelake jobs run` instead.
//!
//! What a job does lives with what it works on: [`Job`] is implemented by the sweeper here, by
//! the lake's retention in `imagelake-lake` and by the transforms in `imagelake-sql`. The
//! [`catalog`] is known to every role, so the `api` role lists and queues runs that a
//! `scheduler` replica elsewhere executes.

pub mod control;
mod schedule;
pub mod scheduler;

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use imagelake_core::{
    duration::HumanDuration,
    jobs::{Interval, Period},
};
use serde::Deserialize;

pub use schedule::Schedule;
pub use scheduler::Scheduler;

use crate::Settings;

/// Turns the lake's raw hours into the analysts' tables.
pub const LAKE_TRANSFORM: &str = "lake-transform";
/// Deletes lake hours past the lake retention.
pub const LAKE_RETENTION: &str = "lake-retention";
/// Deletes images past the retention (the sweep).
pub const IMAGE_RETENTION: &str = "image-retention";

/// `[jobs]`: the scheduler, and `[jobs.<name>]` for each job.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct JobsSettings {
    /// Whether `serve` and the `scheduler` role run the jobs on their schedules. Off where
    /// Airflow or Kubernetes CronJobs call `imagelake jobs run` instead.
    pub scheduler: bool,
    /// How far back intervals missed while no scheduler ran are run; the lake retention when
    /// unset.
    pub catchup_window: Option<HumanDuration>,
    /// A run not finished this long after its interval ends is late (`imagelake_job_late`).
    pub deadline: HumanDuration,
    /// Attempts after a failed one, with a backoff from 30 s doubling to 10 min.
    pub retries: u32,
    /// One job's settings, by its name.
    #[serde(flatten)]
    pub each: BTreeMap<String, JobSettings>,
}

impl Default for JobsSettings {
    fn default() -> Self {
        Self {
            scheduler: true,
            catchup_window: None,
            deadline: HumanDuration(Duration::from_secs(30 * 60)),
            retries: 3,
            each: BTreeMap::new(),
        }
    }
}

/// `[jobs.<name>]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct JobSettings {
    /// A cron expression in UTC (`minute hour day month weekday`, or with seconds first).
    pub schedule: Option<String>,
    pub enabled: bool,
    pub deadline: Option<HumanDuration>,
    pub retries: Option<u32>,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            schedule: None,
            enabled: true,
            deadline: None,
            retries: None,
        }
    }
}

/// One job of the catalog, as the settings make it.
#[derive(Debug, Clone)]
pub struct JobInfo {
    pub name: &'static str,
    /// How long its data intervals are.
    pub period: Period,
    pub schedule: Schedule,
    pub enabled: bool,
    /// Whether intervals missed while no scheduler ran are run later (the transforms), or only
    /// the newest (the retention jobs, whose newest run covers the missed ones).
    pub catchup: bool,
    pub deadline: Duration,
    pub retries: u32,
    /// How far back missed intervals are run.
    pub catchup_window: Duration,
}

/// The jobs, with their settings applied; refuses unknown names and bad schedules.
pub fn catalog(settings: &Settings) -> Result<Vec<JobInfo>, String> {
    let jobs = &settings.jobs;
    let known = [LAKE_TRANSFORM, LAKE_RETENTION, IMAGE_RETENTION];
    if let Some(unknown) = jobs.each.keys().find(|n| !known.contains(&n.as_str())) {
        return Err(format!(
            "[jobs.{unknown}]: no such job (the jobs are {})",
            known.join(", ")
        ));
    }
    let sweep = settings.sweep_interval.0;
    let defaults = [
        (LAKE_TRANSFORM, Schedule::cron("10 * * * *")?, true),
        (LAKE_RETENTION, Schedule::cron("20 * * * *")?, false),
        (IMAGE_RETENTION, Schedule::Every(sweep), false),
    ];
    defaults
        .into_iter()
        .map(|(name, default, catchup)| {
            let own = jobs.each.get(name).cloned().unwrap_or_default();
            let schedule = match &own.schedule {
                Some(text) => Schedule::cron(text).map_err(|e| format!("[jobs.{name}] {e}"))?,
                None => default,
            };
            let period = match name {
                IMAGE_RETENTION => schedule.period(),
                _ => Period::HOUR,
            };
            Ok(JobInfo {
                name,
                period,
                schedule,
                enabled: own.enabled,
                catchup,
                deadline: own.deadline.unwrap_or(jobs.deadline).0,
                retries: own.retries.unwrap_or(jobs.retries),
                catchup_window: jobs.catchup_window.unwrap_or(settings.lake_retention()).0,
            })
        })
        .collect()
}

/// Why a run did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Its input is not complete yet (a transform's hour has no `_SUCCESS`): the run waits and
    /// is tried again, without counting as a failure.
    #[error("waiting: {0}")]
    NotReady(String),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// What a job does for one interval. Running an interval again replaces what it made.
#[async_trait]
pub trait Job: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// Does the work of `interval`; returns the rows written or things removed.
    async fn run(&self, interval: Interval) -> Result<u64, JobError>;
}

/// The scheduler as a task of the runtime, running the image retention and `more` (the lake's
/// jobs); none when `[jobs] scheduler = false`.
pub fn scheduler_task(
    state: &crate::AppState,
    more: Vec<std::sync::Arc<dyn Job>>,
) -> anyhow::Result<Option<(crate::tasks::TaskSpec, Box<dyn crate::tasks::Task>)>> {
    use crate::tasks::{OnFailure, Stage, TaskSpec};
    if !state.settings.jobs.scheduler {
        tracing::info!("scheduler off ([jobs] scheduler = false): jobs run only when asked");
        return Ok(None);
    }
    let mut jobs: Vec<std::sync::Arc<dyn Job>> = vec![std::sync::Arc::new(
        crate::sweeper::ImageRetention::new(state.clone()),
    )];
    jobs.extend(more);
    let spec = TaskSpec {
        name: "scheduler",
        required: false,
        on_failure: OnFailure::Retry,
        stage: Stage::Work,
    };
    let scheduler = Scheduler::new(state.clone(), jobs)?;
    Ok(Some((spec, Box::new(scheduler))))
}

//! The scheduled jobs' run history and backfills ([`RunStore`]), kept by every metadata backend
//! as long as the lake retention, so any scheduler replica (or the `api` role showing them)
//! reads the same history, and a backfill outlives the process that started it.

use async_trait::async_trait;
use imagelake_core::{
    Timestamp,
    jobs::{Backfill, JobRun},
};
use uuid::Uuid;

use crate::Result;

/// Where one page of a job's history continues: after this (interval, attempt), going back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCursor {
    pub interval: String,
    pub attempt: u32,
}

/// Run history and backfills.
#[async_trait]
pub trait RunStore: Send + Sync + 'static {
    /// Writes one attempt, replacing what was kept for the same job, interval and attempt.
    async fn put_run(&self, run: &JobRun) -> Result<()>;
    /// Every attempt of `job` whose interval key is in `from..=to`, by interval then attempt.
    async fn runs_between(&self, job: &str, from: &str, to: &str) -> Result<Vec<JobRun>>;
    /// The newest attempts of `job` (by interval, then attempt, both descending), after
    /// `after` when given.
    async fn recent_runs(
        &self,
        job: &str,
        after: Option<&RunCursor>,
        limit: usize,
    ) -> Result<Vec<JobRun>>;
    /// Attempts of `job` that are not over (queued or running), by interval then attempt.
    async fn open_runs(&self, job: &str) -> Result<Vec<JobRun>>;
    /// Every attempt of every job queued at or after `since`, by job, interval and attempt.
    async fn runs_since(&self, since: Timestamp) -> Result<Vec<JobRun>>;
    /// Writes a backfill, replacing the one with its id.
    async fn put_backfill(&self, backfill: &Backfill) -> Result<()>;
    async fn get_backfill(&self, id: Uuid) -> Result<Option<Backfill>>;
    /// The backfills of `job`, newest first.
    async fn backfills(&self, job: &str) -> Result<Vec<Backfill>>;
    /// Forgets attempts queued, and backfills created, before `before`; returns how many.
    async fn purge_runs(&self, before: Timestamp) -> Result<u64>;
}

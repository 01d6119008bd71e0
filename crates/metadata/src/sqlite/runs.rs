//! [`RunStore`] on SQLite: each attempt and backfill a row holding its JSON, with the columns
//! the scheduler looks them up by.

use async_trait::async_trait;
use imagelake_core::{
    Timestamp,
    clock::to_micros,
    jobs::{Backfill, JobRun},
};
use rusqlite::{OptionalExtension, params};
use uuid::Uuid;

use crate::{Result, RunCursor, RunStore};

use super::{SqliteStore, backend, decode};

fn text(s: &str) -> rusqlite::types::Value {
    rusqlite::types::Value::Text(s.to_owned())
}

fn int(n: i64) -> rusqlite::types::Value {
    rusqlite::types::Value::Integer(n)
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn put_run(&self, run: &JobRun) -> Result<()> {
        let body = serde_json::to_string(run).map_err(backend)?;
        let run = run.clone();
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO job_runs (job, interval, attempt, state, queued_at, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(job, interval, attempt) DO UPDATE
                 SET state = excluded.state, queued_at = excluded.queued_at, body = excluded.body",
                params![
                    run.job,
                    run.interval,
                    run.attempt,
                    run.state.as_str(),
                    to_micros(run.queued_at),
                    body
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn runs_between(&self, job: &str, from: &str, to: &str) -> Result<Vec<JobRun>> {
        self.bodies(
            "SELECT body FROM job_runs WHERE job = ?1 AND interval >= ?2 AND interval <= ?3
             ORDER BY interval, attempt",
            vec![text(job), text(from), text(to)],
        )
        .await
    }

    async fn recent_runs(
        &self,
        job: &str,
        after: Option<&RunCursor>,
        limit: usize,
    ) -> Result<Vec<JobRun>> {
        let limit = int(i64::try_from(limit).unwrap_or(i64::MAX));
        match after {
            None => {
                self.bodies(
                    "SELECT body FROM job_runs WHERE job = ?1
                     ORDER BY interval DESC, attempt DESC LIMIT ?2",
                    vec![text(job), limit],
                )
                .await
            }
            Some(cursor) => {
                self.bodies(
                    "SELECT body FROM job_runs WHERE job = ?1
                     AND (interval < ?2 OR (interval = ?2 AND attempt < ?3))
                     ORDER BY interval DESC, attempt DESC LIMIT ?4",
                    vec![
                        text(job),
                        text(&cursor.interval),
                        int(i64::from(cursor.attempt)),
                        limit,
                    ],
                )
                .await
            }
        }
    }

    async fn open_runs(&self, job: &str) -> Result<Vec<JobRun>> {
        self.bodies(
            "SELECT body FROM job_runs WHERE job = ?1 AND state IN ('queued', 'running')
             ORDER BY interval, attempt",
            vec![text(job)],
        )
        .await
    }

    async fn runs_since(&self, since: Timestamp) -> Result<Vec<JobRun>> {
        self.bodies(
            "SELECT body FROM job_runs WHERE queued_at >= ?1 ORDER BY job, interval, attempt",
            vec![int(to_micros(since))],
        )
        .await
    }

    async fn put_backfill(&self, backfill: &Backfill) -> Result<()> {
        let body = serde_json::to_string(backfill).map_err(backend)?;
        let (id, job, created) = (
            backfill.id.to_string(),
            backfill.job.clone(),
            to_micros(backfill.created_at),
        );
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO backfills (id, job, created_at, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET body = excluded.body",
                params![id, job, created, body],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_backfill(&self, id: Uuid) -> Result<Option<Backfill>> {
        let body: Option<String> = self
            .call(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT body FROM backfills WHERE id = ?1",
                        [id.to_string()],
                        |r| r.get(0),
                    )
                    .optional()?)
            })
            .await?;
        Ok(decode(body.into_iter().collect())?.pop())
    }

    async fn backfills(&self, job: &str) -> Result<Vec<Backfill>> {
        self.bodies(
            "SELECT body FROM backfills WHERE job = ?1 ORDER BY created_at DESC, id DESC",
            vec![text(job)],
        )
        .await
    }

    async fn purge_runs(&self, before: Timestamp) -> Result<u64> {
        let before = to_micros(before);
        self.call(move |conn| {
            let runs = conn.execute("DELETE FROM job_runs WHERE queued_at < ?1", [before])?;
            let backfills =
                conn.execute("DELETE FROM backfills WHERE created_at < ?1", [before])?;
            Ok((runs + backfills) as u64)
        })
        .await
    }
}

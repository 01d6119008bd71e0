//! [`WorkQueue`] on SQLite: jobs are rows leased until a time, so a crashed worker's jobs come
//! back when the lease runs out.

use std::time::Duration;

use async_trait::async_trait;
use imagelake_core::{
    CustomerId, ImageId, JobId, Timestamp,
    clock::{from_micros, to_micros},
    records::{DeadLetter, Job},
};
use rusqlite::{Connection, params};

use crate::{Result, WorkQueue};

use super::{SqliteStore, rows::parse_id};

pub(super) fn enqueue_row(
    conn: &Connection,
    image: ImageId,
    customer: CustomerId,
    now: Timestamp,
) -> rusqlite::Result<JobId> {
    let id = JobId::new();
    conn.execute(
        "INSERT INTO jobs (id, image_id, customer_id, available_at) VALUES (?1, ?2, ?3, ?4)",
        params![
            id.to_string(),
            image.to_string(),
            customer.to_string(),
            to_micros(now)
        ],
    )?;
    Ok(id)
}

#[async_trait]
impl WorkQueue for SqliteStore {
    async fn enqueue(&self, image: ImageId, customer: CustomerId, now: Timestamp) -> Result<JobId> {
        self.call(move |conn| Ok(enqueue_row(conn, image, customer, now)?))
            .await
    }

    async fn lease(&self, now: Timestamp, lease_for: Duration, max: usize) -> Result<Vec<Job>> {
        let until = to_micros(now) + i64::try_from(lease_for.as_micros()).unwrap_or(i64::MAX / 2);
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "UPDATE jobs SET attempts = attempts + 1, leased_until = ?2
                 WHERE id IN (
                     SELECT id FROM jobs
                     WHERE dead_at IS NULL AND available_at <= ?1 AND (leased_until IS NULL OR leased_until <= ?1)
                     ORDER BY available_at LIMIT ?3)
                 RETURNING id, image_id, customer_id, attempts",
            )?;
            let jobs = stmt
                .query_map(params![to_micros(now), until, max as i64], |r| {
                    Ok(Job {
                        id: parse_id(r.get(0)?)?,
                        image_id: parse_id(r.get(1)?)?,
                        customer_id: parse_id(r.get(2)?)?,
                        attempts: r.get(3)?,
                        generation: None,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(jobs)
        })
        .await
    }

    async fn complete(&self, job: JobId) -> Result<()> {
        self.call(move |conn| {
            conn.execute("DELETE FROM jobs WHERE id = ?1", [job.to_string()])?;
            Ok(())
        })
        .await
    }

    async fn retry_at(&self, job: JobId, error: &str, at: Timestamp) -> Result<()> {
        let error = error.to_owned();
        self.call(move |conn| {
            conn.execute(
                "UPDATE jobs SET leased_until = NULL, available_at = ?2, last_error = ?3 WHERE id = ?1",
                params![job.to_string(), to_micros(at), error],
            )?;
            Ok(())
        })
        .await
    }

    async fn dead_letter(&self, job: JobId, error: &str, now: Timestamp) -> Result<()> {
        let error = error.to_owned();
        self.call(move |conn| {
            conn.execute(
                "UPDATE jobs SET leased_until = NULL, dead_at = ?2, last_error = ?3 WHERE id = ?1",
                params![job.to_string(), to_micros(now), error],
            )?;
            Ok(())
        })
        .await
    }

    async fn depth(&self) -> Result<Option<u64>> {
        self.call(|conn| {
            Ok(Some(
                conn.query_row("SELECT COUNT(*) FROM jobs WHERE dead_at IS NULL", [], |r| {
                    r.get::<_, i64>(0)
                })? as u64,
            ))
        })
        .await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT id, image_id, customer_id, attempts, COALESCE(last_error, ''), dead_at FROM jobs
                 WHERE dead_at IS NOT NULL ORDER BY dead_at DESC LIMIT ?1",
            )?;
            let rows = stmt
                .query_map([limit as i64], |r| {
                    Ok(DeadLetter {
                        id: parse_id(r.get(0)?)?,
                        image_id: parse_id(r.get(1)?)?,
                        customer_id: parse_id(r.get(2)?)?,
                        attempts: r.get(3)?,
                        last_error: r.get(4)?,
                        failed_at: from_micros(r.get(5)?),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    async fn redrive(&self, job: JobId, now: Timestamp) -> Result<bool> {
        self.call(move |conn| {
            let n = conn.execute(
                "UPDATE jobs SET dead_at = NULL, attempts = 0, leased_until = NULL, available_at = ?2
                 WHERE id = ?1 AND dead_at IS NOT NULL",
                params![job.to_string(), to_micros(now)],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn release_leases(&self) -> Result<u64> {
        self.call(|conn| {
            Ok(conn.execute(
                "UPDATE jobs SET leased_until = NULL WHERE leased_until IS NOT NULL",
                [],
            )? as u64)
        })
        .await
    }
}

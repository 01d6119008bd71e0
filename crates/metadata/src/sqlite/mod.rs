//! The embedded default: one SQLite file in WAL mode holding records and the work queue.
//!
//! One connection behind a mutex, used from `spawn_blocking`: SQLite serialises writers anyway,
//! each statement takes microseconds, and a single connection makes every "check, then write"
//! (duplicates, idempotency keys) a plain `BEGIN IMMEDIATE` transaction with no race.
//! `synchronous=FULL` makes every commit durable before the API answers 201.
//!
//! The `events` table is the outbox and, in the embedded deployment, the event log itself: rows
//! are numbered in commit order (`seq`), an `event_id` is written once (`INSERT OR IGNORE`), and
//! `published_at` records delivery to Kafka when a publisher runs.

mod heartbeats;
mod queue;
mod rows;
mod runs;
mod schema;
mod sessions;
mod store;

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use imagelake_core::{Timestamp, clock::from_micros, events::Event};
use rusqlite::{Connection, params};
use serde::de::DeserializeOwned;

use crate::{Result, StoreError};

use self::schema::{SCHEMA, add_missing_columns};

/// One row of the local event log.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    /// Position in commit order; read on after the last one seen.
    pub seq: u64,
    pub published_at: Option<Timestamp>,
    pub event: Event,
}

/// Records and work queue in one SQLite database.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        backend(e)
    }
}

/// Each stored JSON `body` as a `T`.
fn decode<T: DeserializeOwned>(bodies: Vec<String>) -> Result<Vec<T>> {
    bodies
        .iter()
        .map(|body| serde_json::from_str(body).map_err(backend))
        .collect()
}

impl SqliteStore {
    /// The `body` column of the rows `sql` selects with `values`.
    pub(super) async fn bodies<T: DeserializeOwned + Send + 'static>(
        &self,
        sql: &'static str,
        values: Vec<rusqlite::types::Value>,
    ) -> Result<Vec<T>> {
        let bodies: Vec<String> = self
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(sql)?;
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(values), |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                Ok(rows)
            })
            .await?;
        decode(bodies)
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        Self::init(Connection::open(path)?)
    }

    /// A private in-memory database, for tests.
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self> {
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        add_missing_columns(&conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Up to `limit` events of the log after position `after`, oldest first, published or not.
    pub async fn event_log(&self, after: u64, limit: usize) -> Result<Vec<LoggedEvent>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, published_at, payload FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows: Vec<(i64, Option<i64>, String)> = stmt
                .query_map(params![after as i64, limit as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            rows.into_iter()
                .map(|(seq, published_at, payload)| {
                    Ok(LoggedEvent {
                        seq: seq as u64,
                        published_at: published_at.map(from_micros),
                        event: serde_json::from_str(&payload).map_err(backend)?,
                    })
                })
                .collect()
        })
        .await
    }

    /// The event log after `after` as stored (`seq`, JSON payload), for readers that check
    /// each payload themselves (the lake keeps one it cannot read in its quarantine).
    pub async fn event_payloads(&self, after: u64, limit: usize) -> Result<Vec<(u64, String)>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, payload FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![after as i64, limit as i64], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    /// Runs `f` on the connection off the async runtime.
    async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(backend)?
    }
}

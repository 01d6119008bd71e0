//! The local record log (`<data-dir>/lake.sqlite`): where records wait, durable, for their hour
//! to be written, and where the writer keeps what it has written.
//!
//! Records are numbered in commit order (`seq`, the log's positions). Writing an hour is three
//! steps, each durable before the next: the range of positions to write is recorded first
//! (`pending`), the files are written, then one transaction marks the range written, advances
//! the hour's `through` and deletes the records. A writer that dies between the first and the
//! last step finds the range at its next start and writes the same records again under the same
//! file names, so the files it may have left are replaced, never doubled. A record with an id
//! (an event's `event_id`, a declared table's `id_field`) is kept once: `ids` remembers every id
//! for as long as its hour is kept.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use imagelake_core::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset TEXT NOT NULL,
    hour INTEGER NOT NULL,
    at INTEGER NOT NULL,
    row TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_hour ON records(dataset, hour, at, seq);
CREATE TABLE IF NOT EXISTS ids (
    dataset TEXT NOT NULL,
    id TEXT NOT NULL,
    hour INTEGER NOT NULL,
    PRIMARY KEY (dataset, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ids_by_hour ON ids(hour);
CREATE TABLE IF NOT EXISTS hours (
    dataset TEXT NOT NULL,
    hour INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    files INTEGER NOT NULL,
    first_seq INTEGER,
    through INTEGER NOT NULL,
    closed_at INTEGER NOT NULL,
    marked INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (dataset, hour)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (
    dataset TEXT NOT NULL,
    hour INTEGER NOT NULL,
    after INTEGER NOT NULL,
    through INTEGER NOT NULL,
    PRIMARY KEY (dataset, hour)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cursors (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
) WITHOUT ROWID;
"#;

/// An hour, as hours since the Unix epoch (UTC).
pub type Hour = i64;

pub fn hour_of(t: Timestamp) -> Hour {
    t.timestamp().div_euclid(3600)
}

pub fn hour_start(hour: Hour) -> Timestamp {
    chrono::DateTime::from_timestamp(hour * 3600, 0).unwrap_or_default()
}

/// A record on its way in.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The table (`billing_events`) or its quarantine (`quarantine/billing_events`).
    pub dataset: String,
    pub at: Timestamp,
    pub id: Option<String>,
    /// The normalised row, as JSON.
    pub row: String,
}

/// A range of positions of one hour being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub hour: Hour,
    /// Positions after this one...
    pub after: i64,
    /// ...up to and including this one.
    pub through: i64,
}

/// What is written of an hour (what its `_SUCCESS` says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourState {
    pub rows: u64,
    pub files: u64,
    pub first_seq: Option<i64>,
    pub through: i64,
    pub closed_at: Timestamp,
}

/// What an append did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    pub new: u64,
    /// Records whose id was kept before.
    pub duplicates: u64,
}

/// The log: one SQLite connection used from blocking threads (like the metadata store).
#[derive(Clone)]
pub struct RecordLog {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl RecordLog {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // Rows are large (an event is about a kilobyte) and an hour is read in one pass: large
        // pages hold more of them per read. Takes effect when the file is created.
        conn.pragma_update(None, "page_size", 65536)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Every commit is durable before a door answers.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A connection of its own for reading a range while the doors append.
    pub fn reader(path: &Path) -> anyhow::Result<Connection> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        Ok(conn)
    }

    /// Runs `f` on the connection on a blocking thread.
    pub async fn call<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> anyhow::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        })
        .await?
    }

    /// Appends `entries` in one transaction, and moves the cursor `cursor` to `position` in
    /// the same one when given (what the events pump has copied).
    pub async fn append(
        &self,
        entries: Vec<Entry>,
        cursor: Option<(String, i64)>,
    ) -> anyhow::Result<Stored> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let mut stored = Stored::default();
            {
                let mut id_insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO ids (dataset, id, hour) VALUES (?1, ?2, ?3)",
                )?;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO records (dataset, hour, at, row) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for e in &entries {
                    let hour = hour_of(e.at);
                    if let Some(id) = &e.id
                        && id_insert.execute(params![e.dataset, id, hour])? == 0
                    {
                        stored.duplicates += 1;
                        continue;
                    }
                    let at = imagelake_core::clock::to_micros(e.at);
                    insert.execute(params![e.dataset, hour, at, e.row])?;
                    stored.new += 1;
                }
                if let Some((name, position)) = &cursor {
                    set_cursor(&tx, name, *position)?;
                }
            }
            tx.commit()?;
            Ok(stored)
        })
        .await
    }

    pub async fn cursor(&self, name: &str) -> anyhow::Result<Option<i64>> {
        let name = name.to_owned();
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT position FROM cursors WHERE name = ?1",
                    [name],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }

    pub async fn set_cursor(&self, name: &str, position: i64) -> anyhow::Result<()> {
        let name = name.to_owned();
        self.call(move |conn| set_cursor(conn, &name, position))
            .await
    }

    /// The hours up to `last` that hold records waiting to be written, per dataset.
    pub async fn hours_with_records(&self, last: Hour) -> anyhow::Result<Vec<(String, Hour)>> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT DISTINCT r.dataset, r.hour FROM records r LEFT JOIN hours h
                   ON r.dataset = h.dataset AND r.hour = h.hour
                 WHERE r.hour <= ?1 AND r.seq > coalesce(h.through, 0)
                 ORDER BY r.hour, r.dataset",
            )?;
            let rows = stmt
                .query_map([last], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    /// Ranges recorded as being written by a writer that stopped before it finished.
    pub async fn unfinished(&self) -> anyhow::Result<Vec<(String, Pending)>> {
        self.call(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT dataset, hour, after, through FROM pending")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        Pending {
                            hour: r.get(1)?,
                            after: r.get(2)?,
                            through: r.get(3)?,
                        },
                    ))
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    /// Records the range of `dataset`'s `hour` to write now: the records after what was
    /// written of it, through the newest. `None` when there is nothing to write.
    pub async fn begin(&self, dataset: &str, hour: Hour) -> anyhow::Result<Option<Pending>> {
        let dataset = dataset.to_owned();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let after: i64 = tx
                .query_row(
                    "SELECT through FROM hours WHERE dataset = ?1 AND hour = ?2",
                    params![dataset, hour],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(0);
            let through: Option<i64> = tx.query_row(
                "SELECT max(seq) FROM records WHERE dataset = ?1 AND hour = ?2 AND seq > ?3",
                params![dataset, hour, after],
                |r| r.get(0),
            )?;
            let Some(through) = through else {
                return Ok(None);
            };
            tx.execute(
                "INSERT OR REPLACE INTO pending (dataset, hour, after, through) VALUES (?1, ?2, ?3, ?4)",
                params![dataset, hour, after, through],
            )?;
            tx.commit()?;
            Ok(Some(Pending {
                hour,
                after,
                through,
            }))
        })
        .await
    }

    /// Calls `each` with the rows of `range`, by time then position: what one write covers.
    pub fn rows(
        conn: &Connection,
        dataset: &str,
        range: Pending,
        mut each: impl FnMut(&str) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut stmt = conn.prepare_cached(
            "SELECT row FROM records WHERE dataset = ?1 AND hour = ?2 AND seq > ?3 AND seq <= ?4 ORDER BY at, seq",
        )?;
        let mut rows = stmt.query(params![dataset, range.hour, range.after, range.through])?;
        while let Some(row) = rows.next()? {
            let text = row.get_ref(0)?.as_str()?;
            each(text)?;
        }
        Ok(())
    }

    /// Marks `range` written (its files durable) and adds them to the hour; its records are no
    /// longer read (they are at or below the hour's `through`) and [`purge`](Self::purge)
    /// deletes them later. Returns the hour as it now stands.
    pub async fn finish(
        &self,
        dataset: &str,
        range: Pending,
        rows: u64,
        files: u64,
        now: Timestamp,
    ) -> anyhow::Result<HourState> {
        let dataset = dataset.to_owned();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let first: Option<i64> = tx.query_row(
                "SELECT min(seq) FROM records WHERE dataset = ?1 AND hour = ?2 AND seq > ?3 AND seq <= ?4",
                params![dataset, range.hour, range.after, range.through],
                |r| r.get(0),
            )?;
            // `marked` is cleared: the hour's `_SUCCESS` is (re)written next, and set again
            // once it is (see `marked`).
            tx.execute(
                "INSERT INTO hours (dataset, hour, rows, files, first_seq, through, closed_at, marked)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)
                 ON CONFLICT (dataset, hour) DO UPDATE SET
                   rows = rows + excluded.rows, files = files + excluded.files,
                   first_seq = coalesce(first_seq, excluded.first_seq),
                   through = max(through, excluded.through),
                   closed_at = excluded.closed_at, marked = 0",
                params![
                    dataset,
                    range.hour,
                    rows as i64,
                    files as i64,
                    first,
                    range.through,
                    imagelake_core::clock::to_micros(now)
                ],
            )?;
            tx.execute(
                "DELETE FROM pending WHERE dataset = ?1 AND hour = ?2",
                params![dataset, range.hour],
            )?;
            let state = hour_state(&tx, &dataset, range.hour)?
                .context("the hour just written is missing")?;
            tx.commit()?;
            Ok(state)
        })
        .await
    }

    /// Records that the hour's `_SUCCESS` says what `hours` holds.
    pub async fn marked(&self, dataset: &str, hour: Hour) -> anyhow::Result<()> {
        let dataset = dataset.to_owned();
        self.call(move |conn| {
            conn.execute(
                "UPDATE hours SET marked = 1 WHERE dataset = ?1 AND hour = ?2",
                params![dataset, hour],
            )?;
            Ok(())
        })
        .await
    }

    /// Hours whose `_SUCCESS` is not written yet (a put failed, or the process died first).
    pub async fn unmarked(&self) -> anyhow::Result<Vec<(String, Hour, HourState)>> {
        self.call(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT dataset, hour FROM hours WHERE marked = 0 ORDER BY hour, dataset",
            )?;
            let keys: Vec<(String, Hour)> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let mut out = Vec::new();
            for (dataset, hour) in keys {
                if let Some(state) = hour_state(conn, &dataset, hour)? {
                    out.push((dataset, hour, state));
                }
            }
            Ok(out)
        })
        .await
    }

    /// The id of this log, named in its files so two logs never write the same name.
    pub async fn writer_id(&self) -> anyhow::Result<String> {
        self.call(|conn| {
            let tx = conn.transaction()?;
            let found: Option<String> = tx
                .query_row("SELECT value FROM meta WHERE name = 'writer_id'", [], |r| {
                    r.get(0)
                })
                .optional()?;
            let id = match found {
                Some(id) => id,
                None => {
                    let id = format!("{:08x}", rand::random::<u32>());
                    tx.execute(
                        "INSERT INTO meta (name, value) VALUES ('writer_id', ?1)",
                        [&id],
                    )?;
                    id
                }
            };
            tx.commit()?;
            Ok(id)
        })
        .await
    }

    pub async fn hour(&self, dataset: &str, hour: Hour) -> anyhow::Result<Option<HourState>> {
        let dataset = dataset.to_owned();
        self.call(move |conn| hour_state(conn, &dataset, hour))
            .await
    }

    /// Forgets every hour before `before`: records, ids, what was written, ranges.
    pub async fn expire(&self, before: Hour) -> anyhow::Result<()> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            for table in ["records", "ids", "hours", "pending"] {
                tx.execute(&format!("DELETE FROM {table} WHERE hour < ?1"), [before])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Deletes up to `limit` records already written; returns how many. Deleting rewrites
    /// every page the records sat on, so it is done in bounded steps off the write's path.
    pub async fn purge(&self, limit: usize) -> anyhow::Result<u64> {
        self.call(move |conn| {
            let n = conn.execute(
                "DELETE FROM records WHERE seq IN (
                   SELECT r.seq FROM hours h JOIN records r
                     ON r.dataset = h.dataset AND r.hour = h.hour AND r.seq <= h.through
                   LIMIT ?1)",
                [limit as i64],
            )?;
            Ok(n as u64)
        })
        .await
    }

    /// Records waiting to be written, for `/metrics` and tests.
    pub async fn waiting(&self) -> anyhow::Result<u64> {
        self.call(|conn| {
            let n: i64 = conn.query_row(
                "SELECT count(*) FROM records r LEFT JOIN hours h
                   ON r.dataset = h.dataset AND r.hour = h.hour
                 WHERE r.seq > coalesce(h.through, 0)",
                [],
                |r| r.get(0),
            )?;
            Ok(n as u64)
        })
        .await
    }
}

fn set_cursor(conn: &Connection, name: &str, position: i64) -> anyhow::Result<()> {
    conn.execute(
        "INSERT INTO cursors (name, position) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET position = excluded.position",
        params![name, position],
    )?;
    Ok(())
}

fn hour_state(conn: &Connection, dataset: &str, hour: Hour) -> anyhow::Result<Option<HourState>> {
    Ok(conn
        .query_row(
            "SELECT rows, files, first_seq, through, closed_at FROM hours WHERE dataset = ?1 AND hour = ?2",
            params![dataset, hour],
            |r| {
                Ok(HourState {
                    rows: r.get::<_, i64>(0)? as u64,
                    files: r.get::<_, i64>(1)? as u64,
                    first_seq: r.get(2)?,
                    through: r.get(3)?,
                    closed_at: imagelake_core::clock::from_micros(r.get(4)?),
                })
            },
        )
        .optional()?)
}

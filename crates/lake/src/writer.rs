//! The hourly writer, a task of the runtime: it copies new lifecycle events and API requests
//! into the log, and on its own clock closes each hour `grace` after its end: every table's
//! records of the hour are written as Parquet, sorted by time, then `_SUCCESS` marks the hour
//! complete, whether records came or not. Records that arrive after their hour closed are
//! written at the next close, in a file of their own, and the marker is rewritten.
//!
//! Writing a range of the log is the step that must happen once: [`RecordLog::begin`] records
//! the range, the files are put under names made from it, and [`RecordLog::finish`] commits
//! it. A range left unfinished by a crash is written again first at the next start, to the same
//! names, with the same rows.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use async_trait::async_trait;
use imagelake_core::{Timestamp, lake as tables};
use imagelake_metadata::SqliteStore;
use imagelake_runtime::{
    lake::ApiRequest,
    tasks::{Step, Task},
};
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    Dataset, Lake,
    log::{Entry, Hour, HourState, Pending, RecordLog, hour_of, hour_start},
};

/// Events copied from the event log per step.
const EVENT_BATCH: usize = 5_000;
/// API requests taken from the buffer per step.
const REQUEST_BATCH: usize = 5_000;
/// Written records deleted from the log per step.
const PURGE_BATCH: usize = 20_000;
/// How often the writer looks at the clock and the event log when idle.
const POLL: Duration = Duration::from_secs(1);
/// The log cursor of the events copied from the metadata store's event log.
const EVENTS_CURSOR: &str = "source/events";

/// The writer task.
pub struct Writer {
    lake: Arc<Lake>,
    /// The metadata store's event log, where events come from without brokers.
    events: Option<SqliteStore>,
    requests: Option<mpsc::Receiver<ApiRequest>>,
    /// The newest hour closed by this writer so far.
    closed: Option<Hour>,
    /// When the writer last closed an hour, for `lake_seconds_since_close`.
    last_close: Option<Timestamp>,
    /// This log's id, in its file names.
    id: String,
}

impl Writer {
    /// The writer of `lake`, copying events from `events` (the embedded event log) when given.
    pub async fn new(lake: Arc<Lake>, events: Option<SqliteStore>) -> anyhow::Result<Self> {
        let requests = lake.requests_in.lock().await.take();
        let id = lake.log.writer_id().await?;
        Ok(Self {
            lake,
            events,
            requests,
            closed: None,
            last_close: None,
            id,
        })
    }

    /// Whether records of `dataset` can reach this writer: the events only from an event log.
    fn has_source(&self, dataset: &Dataset) -> bool {
        dataset.key != tables::EVENTS || self.events.is_some()
    }

    /// The newest hour whose grace has passed at `now`.
    fn last_due(&self, now: Timestamp) -> Hour {
        let grace = chrono::Duration::from_std(self.lake.limits.grace).unwrap_or_default();
        hour_of(now - grace) - 1
    }

    /// Copies what the event log has after the cursor; true when there may be more.
    async fn copy_events(&self) -> anyhow::Result<bool> {
        let Some(events) = &self.events else {
            return Ok(false);
        };
        let log = &self.lake.log;
        let after = log.cursor(EVENTS_CURSOR).await?.unwrap_or(0);
        let batch = events.event_payloads(after as u64, EVENT_BATCH).await?;
        let Some(last) = batch.last().map(|(seq, _)| *seq as i64) else {
            return Ok(false);
        };
        let dataset = self.lake.dataset(tables::EVENTS)?;
        let now = self.lake.clock.now();
        // A payload that does not fit the table goes to its quarantine; the copy goes on.
        let entries: Vec<Entry> = batch
            .iter()
            .map(
                |(seq, payload)| match self.lake.entry(dataset, payload.as_bytes(), *seq, now) {
                    Ok(entry) | Err((entry, _)) => entry,
                },
            )
            .collect();
        self.lake
            .store(entries, Some((EVENTS_CURSOR.to_owned(), last)))
            .await?;
        Ok(batch.len() == EVENT_BATCH)
    }

    /// Moves buffered API requests into the log; true when there may be more.
    async fn copy_requests(&mut self) -> anyhow::Result<bool> {
        let Some(requests) = &mut self.requests else {
            return Ok(false);
        };
        let mut batch = Vec::new();
        while batch.len() < REQUEST_BATCH {
            match requests.try_recv() {
                Ok(r) => batch.extend(self.lake.request_entry(&r)),
                Err(_) => break,
            }
        }
        let full = batch.len() == REQUEST_BATCH;
        if !batch.is_empty() {
            self.lake.store(batch, None).await?;
        }
        Ok(full)
    }

    /// Closes every hour that is due: writes what waits for it, marks it, and closes the hours
    /// no record came for.
    async fn close_due(&mut self, now: Timestamp) -> anyhow::Result<()> {
        let last_due = self.last_due(now);
        let log = &self.lake.log;
        for (key, hour, state) in log.unmarked().await? {
            self.mark(&key, hour, &state).await?;
        }
        for (key, range) in log.unfinished().await? {
            self.write_range(&key, range).await?;
        }
        for (key, hour) in log.hours_with_records(last_due).await? {
            if !self.lake.datasets.contains_key(&key) {
                // Its table left the settings: its records wait in the log for its return.
                tracing::warn!(table = %key, "lake: records of a table no longer declared wait in the log");
                continue;
            }
            if let Some(range) = log.begin(&key, hour).await? {
                self.write_range(&key, range).await?;
            }
        }
        let earliest = hour_of(now - self.retention()) + 1;
        let keys: Vec<String> = self
            .lake
            .datasets()
            .filter(|d| !d.quarantine && self.has_source(d))
            .map(|d| d.key.clone())
            .collect();
        for key in keys {
            let cursor = format!("closed/{key}");
            let from = log.cursor(&cursor).await?.map_or(last_due, |h| h + 1);
            for hour in from.max(earliest)..=last_due {
                if log.hour(&key, hour).await?.is_none() {
                    let empty = Pending {
                        hour,
                        after: 0,
                        through: 0,
                    };
                    let state = log.finish(&key, empty, 0, 0, now).await?;
                    self.mark(&key, hour, &state).await?;
                }
            }
            log.set_cursor(&cursor, last_due).await?;
        }
        self.closed = Some(last_due);
        self.last_close = Some(now);
        Ok(())
    }

    fn retention(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.lake.limits.retention).unwrap_or_default()
    }

    /// Writes one range of a dataset's hour as files, commits it, and marks the hour.
    async fn write_range(&self, key: &str, range: Pending) -> anyhow::Result<()> {
        let dataset = self.lake.dataset(key)?;
        let partition = dataset.partition(hour_start(range.hour));
        let stem = format!(
            "log-{}-{:012}-{:012}-",
            self.id,
            range.after + 1,
            range.through
        );
        // Read from a connection of its own (the log is WAL: reading does not hold up the
        // doors' appends).
        let path = self.lake.log.path().to_owned();
        let key_owned = key.to_owned();
        let feed: crate::files::Feed = Box::new(move |each| {
            let conn = RecordLog::reader(&path)?;
            RecordLog::rows(&conn, &key_owned, range, each)
        });
        let written = self.lake.write_files(key, &partition, &stem, feed).await?;
        let now = self.lake.clock.now();
        let state = self
            .lake
            .log
            .finish(key, range, written.rows, written.files, now)
            .await?;
        tracing::info!(table = key, hour = %hour_start(range.hour), rows = written.rows, files = written.files, "lake hour written");
        self.mark(key, range.hour, &state).await
    }

    /// Writes (or rewrites) the hour's `_SUCCESS`, then records it as written.
    async fn mark(&self, key: &str, hour: Hour, state: &HourState) -> anyhow::Result<()> {
        let Ok(dataset) = self.lake.dataset(key) else {
            return Ok(());
        };
        let marker = success(state);
        let location = imagelake_core::paths::lake_success(&dataset.partition(hour_start(hour)));
        self.lake
            .objects
            .put(&location, PutPayload::from(marker.to_string().into_bytes()))
            .await
            .with_context(|| format!("writing {location}"))?;
        self.lake.log.marked(key, hour).await?;
        crate::metrics_table(&self.lake.metrics.lake.hours_closed, key).inc();
        Ok(())
    }

    /// Forgets the log's bookkeeping of hours past the retention (the `lake-retention` job
    /// deletes their files).
    async fn expire(&self, now: Timestamp) -> anyhow::Result<()> {
        self.lake.log.expire(hour_of(now - self.retention())).await
    }
}

/// The marker of a closed hour.
fn success(state: &HourState) -> Value {
    json!({
        "rows": state.rows,
        "files": state.files,
        "sources": [{
            "source": "log",
            "from": state.first_seq,
            "through": state.through,
        }],
        "closed_at": state.closed_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    })
}

#[async_trait]
impl Task for Writer {
    async fn step(&mut self, _stop: &CancellationToken) -> anyhow::Result<Step> {
        let more_events = self.copy_events().await?;
        let more_requests = self.copy_requests().await?;
        let now = self.lake.clock.now();
        if self.closed != Some(self.last_due(now)) {
            self.close_due(now).await?;
            self.expire(now).await?;
        }
        // Written records leave the log in bounded steps, a step a second.
        let purged = self.lake.log.purge(PURGE_BATCH).await?;
        let waiting = self.lake.log.waiting().await?;
        self.lake.metrics.lake.waiting.set(waiting as i64);
        let metrics = &self.lake.metrics.lake;
        if let Some(at) = self.last_close {
            metrics
                .since_close
                .set((now - at).num_milliseconds() as f64 / 1000.0);
        }
        Ok(
            if more_events || more_requests || purged == PURGE_BATCH as u64 {
                Step::Busy
            } else {
                Step::Idle
            },
        )
    }

    async fn wait(&mut self, stop: &CancellationToken) {
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }

    async fn finish(&mut self) {
        // What is buffered in memory (API requests) goes to the log; the log itself is durable.
        if let Err(e) = self.copy_requests().await {
            tracing::warn!(
                error = format!("{e:#}"),
                "lake: buffered API requests not logged"
            );
        }
    }
}

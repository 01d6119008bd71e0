//! Records coming in: lines of NDJSON posted to a declared table, lifecycle events from the
//! event log, and the API's requests. Each becomes a log [`Entry`] of its table, or of the
//! table's quarantine with the reason it did not fit.

use async_trait::async_trait;
use bytes::Bytes;
use imagelake_core::{
    Timestamp,
    clock::to_micros,
    lake::{self as tables, Refusal},
};
use imagelake_runtime::{
    Error,
    lake::{ApiRequest, Appended, LakeDoor},
};
use serde_json::{Map, Value, json};

use crate::{Dataset, Lake, log::Entry};

/// Raw bytes kept of a quarantined line at most; the reason says how large it was.
const RAW_KEPT: usize = 64 * 1024;

/// How far ahead of the clock a record's time may be: a producer's clock may run fast, but a
/// record stamped for next week would hold its hour open.
const MAX_AHEAD: chrono::Duration = chrono::Duration::hours(1);

impl Lake {
    /// The entry for `raw`'s record of `dataset`, or its quarantine entry.
    pub(crate) fn entry(
        &self,
        dataset: &Dataset,
        raw: &[u8],
        line: u64,
        received_at: Timestamp,
    ) -> Result<Entry, (Entry, Refusal)> {
        let checked = dataset
            .decl
            .record(raw, self.limits.max_record_bytes)
            .and_then(|record| self.in_window(record, received_at));
        match checked {
            Ok(record) => Ok(Entry {
                dataset: dataset.key.clone(),
                at: record.at,
                id: record.id,
                row: Value::Object(record.row).to_string(),
            }),
            Err(reason) => Err(self.quarantined(dataset, raw, line, reason, received_at)),
        }
    }

    /// A record whose time the lake can still hold and will not wait long for.
    fn in_window(
        &self,
        record: tables::Record,
        received_at: Timestamp,
    ) -> Result<tables::Record, String> {
        let retention = chrono::Duration::from_std(self.limits.retention).unwrap_or_default();
        if record.at < received_at - retention {
            return Err(format!(
                "time {} is older than the lake retention",
                record.at.to_rfc3339()
            ));
        }
        if record.at > received_at + MAX_AHEAD {
            return Err(format!(
                "time {} is more than an hour ahead of the clock",
                record.at.to_rfc3339()
            ));
        }
        Ok(record)
    }

    fn quarantined(
        &self,
        dataset: &Dataset,
        raw: &[u8],
        line: u64,
        reason: String,
        received_at: Timestamp,
    ) -> (Entry, Refusal) {
        let kept = String::from_utf8_lossy(&raw[..raw.len().min(RAW_KEPT)]).into_owned();
        let row = json!({
            "received_at": to_micros(received_at),
            "line": line,
            "reason": reason,
            "raw": kept,
        });
        let entry = Entry {
            dataset: format!("{}/{}", tables::QUARANTINE, dataset.table),
            at: received_at,
            id: None,
            row: row.to_string(),
        };
        (entry, Refusal { line, reason })
    }

    /// Appends `entries` and counts what went to a quarantine.
    pub(crate) async fn store(
        &self,
        entries: Vec<Entry>,
        cursor: Option<(String, i64)>,
    ) -> anyhow::Result<crate::log::Stored> {
        let quarantined = entries
            .iter()
            .filter(|e| e.dataset.starts_with(tables::QUARANTINE))
            .count();
        let table = entries.first().map(|e| e.dataset.clone());
        let stored = self.log.append(entries, cursor).await?;
        if let Some(table) = table
            && quarantined > 0
        {
            let table = table.rsplit('/').next().unwrap_or_default().to_owned();
            self.metrics
                .lake
                .quarantined
                .get_or_create(&vec![("table", table)])
                .inc_by(quarantined as u64);
        }
        Ok(stored)
    }

    /// The row of one API request.
    pub(crate) fn request_entry(&self, r: &ApiRequest) -> Option<Entry> {
        let mut row = Map::new();
        row.insert("at".into(), json!(r.at.to_rfc3339()));
        row.insert("route".into(), json!(r.route));
        row.insert("method".into(), json!(r.method));
        row.insert("status".into(), json!(r.status));
        row.insert("error_code".into(), json!(r.error_code));
        row.insert(
            "customer_id".into(),
            json!(r.customer_id.map(|c| c.to_string())),
        );
        row.insert("key_role".into(), json!(r.key_role));
        row.insert("request_bytes".into(), json!(r.request_bytes));
        row.insert("response_bytes".into(), json!(r.response_bytes));
        row.insert("duration_ms".into(), json!(r.duration_ms));
        let dataset = self.datasets.get(tables::API_REQUESTS)?;
        let record = match dataset.decl.record_from(row) {
            Ok(record) => record,
            Err(reason) => {
                tracing::warn!(%reason, "an API request record does not fit its table");
                crate::metrics_table(&self.metrics.lake.dropped, tables::API_REQUESTS).inc();
                return None;
            }
        };
        Some(Entry {
            dataset: dataset.key.clone(),
            at: record.at,
            id: None,
            row: Value::Object(record.row).to_string(),
        })
    }
}

#[async_trait]
impl LakeDoor for Lake {
    fn has_table(&self, table: &str) -> bool {
        !tables::TableDecl::is_builtin_name(table)
            && self.datasets.get(table).is_some_and(|d| !d.quarantine)
    }

    async fn append(
        &self,
        table: &str,
        body: Bytes,
        received_at: Timestamp,
    ) -> Result<Appended, Error> {
        let dataset = match self.datasets.get(table) {
            Some(d) if self.has_table(table) => d,
            _ => return Err(Error::not_found(format!("no lake table {table:?}"))),
        };
        let mut entries = Vec::new();
        let mut quarantined = Vec::new();
        for (index, raw) in body.split(|b| *b == b'\n').enumerate() {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match self.entry(dataset, raw, index as u64 + 1, received_at) {
                Ok(entry) => entries.push(entry),
                Err((entry, refusal)) => {
                    entries.push(entry);
                    quarantined.push(refusal);
                }
            }
        }
        let accepted = (entries.len() - quarantined.len()) as u64;
        let stored = self
            .store(entries, None)
            .await
            .map_err(|e| Error::internal(&format!("{e:#}")))?;
        Ok(Appended {
            accepted,
            duplicates: stored.duplicates,
            quarantined,
        })
    }

    fn record_request(&self, request: ApiRequest) {
        if self.requests.try_send(request).is_err() {
            self.metrics
                .lake
                .dropped
                .get_or_create(&vec![("table", tables::API_REQUESTS.to_owned())])
                .inc();
        }
    }
}

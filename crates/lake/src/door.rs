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

use crate::{Dataset, Lake, Tables, log::Entry};

/// Raw bytes kept of a quarantined line at most; the reason says how large it was.
const RAW_KEPT: usize = 64 * 1024;

/// How far ahead of the clock a record's time may be: a producer's clock may run fast, but a
/// record stamped for next week would hold its hour open.
const MAX_AHEAD: chrono::Duration = chrono::Duration::hours(1);

impl Tables {
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

    /// The row of one API request, as a producer sends it (times as RFC 3339).
    pub(crate) fn request_row(r: &ApiRequest) -> Map<String, Value> {
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
        row
    }

    /// The log entry of one API request.
    pub(crate) fn request_entry(&self, r: &ApiRequest) -> Option<Entry> {
        let dataset = self.datasets.get(tables::API_REQUESTS)?;
        let record = match dataset.decl.record_from(Self::request_row(r)) {
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

    /// Whether records may be posted to `table`: a declared table's, not a quarantine.
    pub(crate) fn postable(&self, table: &str) -> Option<&Dataset> {
        self.datasets
            .get(table)
            .filter(|d| !d.quarantine && !tables::TableDecl::is_builtin_name(table))
    }

    /// Checks each line of an NDJSON body: the entries to keep, with the refusals among them.
    pub(crate) fn check_lines(
        &self,
        dataset: &Dataset,
        body: &[u8],
        received_at: Timestamp,
    ) -> (Vec<Entry>, Vec<Refusal>) {
        let mut entries = Vec::new();
        let mut quarantined = Vec::new();
        for (line, raw) in lines(body) {
            match self.entry(dataset, raw, line, received_at) {
                Ok(entry) => entries.push(entry),
                Err((entry, refusal)) => {
                    entries.push(entry);
                    quarantined.push(refusal);
                }
            }
        }
        (entries, quarantined)
    }
}

/// The records of an NDJSON body with their line numbers: blank lines skipped, a `\r` before
/// the newline dropped.
pub(crate) fn lines(body: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    // A byte-order mark some editors and Windows tools put first is not part of line 1.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    body.split(|b| *b == b'\n')
        .enumerate()
        .map(|(index, raw)| (index as u64 + 1, raw.strip_suffix(b"\r").unwrap_or(raw)))
        .filter(|(_, raw)| !raw.iter().all(u8::is_ascii_whitespace))
}

impl Lake {
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
}

#[async_trait]
impl LakeDoor for Lake {
    fn has_table(&self, table: &str) -> bool {
        self.postable(table).is_some()
    }

    async fn append(
        &self,
        table: &str,
        body: Bytes,
        received_at: Timestamp,
    ) -> Result<Appended, Error> {
        let dataset = self
            .postable(table)
            .ok_or_else(|| Error::not_found(format!("no lake table {table:?}")))?;
        let (entries, quarantined) = self.check_lines(dataset, &body, received_at);
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
            crate::metrics_table(&self.metrics.lake.dropped, tables::API_REQUESTS).inc();
        }
    }
}

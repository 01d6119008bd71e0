//! The lake's tables: what each one holds, column by column, and how one record (a JSON object,
//! a line of NDJSON) becomes a row of it or is refused with a reason.
//!
//! Every table, built-in or declared in settings, is a [`TableDecl`]: the writer and the doors
//! know nothing else about a table, so the lifecycle events, the API requests and other company
//! data are validated, partitioned and written by one path. A record is checked once, where it
//! comes in (the HTTP door answers with the lines it quarantined), and kept normalised
//! ([`Record::row`]), so writing it out later cannot fail on its content.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Timestamp;

/// The lifecycle events (`core::events`).
pub const EVENTS: &str = "events";
/// One record per HTTP request the API answered.
pub const API_REQUESTS: &str = "api_requests";
/// Where records that do not fit a table go, per table (`quarantine/<table>`).
pub const QUARANTINE: &str = "quarantine";
/// The tables the `lake-transform` job writes; no declared table may take their names.
pub const TRANSFORMED: [&str; 5] = [
    "images",
    "customers",
    "uploads_hourly",
    "api_requests_hourly",
    "job_runs",
];
/// The column naming whose row it is, in every table (null where it is nobody's).
pub const CUSTOMER_ID: &str = "customer_id";

/// A column's type, as declared and as written (Parquet logical types in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// A JSON string (UTF8).
    String,
    /// A JSON integer (INT64).
    Int64,
    /// Any JSON number (DOUBLE).
    Float64,
    /// `true` or `false` (BOOLEAN).
    Bool,
    /// An RFC 3339 string, kept in microseconds, UTC (TIMESTAMP(MICROS, UTC)).
    Timestamp,
    /// Any JSON value, written as its compact text (UTF8).
    Json,
}

impl ColumnType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Int64 => "int64",
            Self::Float64 => "float64",
            Self::Bool => "bool",
            Self::Timestamp => "timestamp",
            Self::Json => "json",
        }
    }
}

/// A table of the lake: a `[[lake.tables]]` entry of the settings, or a built-in one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TableDecl {
    /// `[a-z][a-z0-9_]*`, at most 63 characters, not a built-in name.
    pub name: String,
    /// The Kafka topic its records come from when brokers are set.
    #[serde(default)]
    pub topic: Option<String>,
    /// The RFC 3339 timestamp each record must carry; rows are partitioned by it (UTC).
    pub time_field: String,
    /// Records with an id seen before are dropped as duplicates.
    #[serde(default)]
    pub id_field: Option<String>,
    /// The string field naming the customer a row belongs to; copied to `customer_id`.
    #[serde(default)]
    pub customer_field: Option<String>,
    pub columns: BTreeMap<String, ColumnType>,
}

/// A record that fits its table.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The record's own time: where it is partitioned.
    pub at: Timestamp,
    /// Its id, when the table deduplicates.
    pub id: Option<String>,
    /// The row: every column the record has, normalised (timestamps as microseconds), plus
    /// `customer_id`.
    pub row: Map<String, Value>,
}

/// A line that does not fit, and why; kept in the quarantine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Refusal {
    /// 1-based line of the request body, or the position in the source.
    pub line: u64,
    pub reason: String,
}

fn is_column_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 128
}

impl TableDecl {
    /// The lifecycle events (schema version 1) as published.
    pub fn events() -> Self {
        use ColumnType::*;
        Self::builtin(
            EVENTS,
            "occurred_at",
            Some("event_id"),
            &[
                ("schema_version", Int64),
                ("event_id", String),
                ("type", String),
                ("occurred_at", Timestamp),
                ("customer_id", String),
                ("image_id", String),
                ("source", String),
                ("data", Json),
            ],
        )
    }

    /// One row per request the API answered.
    pub fn api_requests() -> Self {
        use ColumnType::*;
        Self::builtin(
            API_REQUESTS,
            "at",
            None,
            &[
                ("at", Timestamp),
                ("route", String),
                ("method", String),
                ("status", Int64),
                ("error_code", String),
                ("customer_id", String),
                ("key_role", String),
                ("request_bytes", Int64),
                ("response_bytes", Int64),
                ("duration_ms", Float64),
            ],
        )
    }

    /// What did not fit `table`: the raw record and the reason, by the time it arrived.
    pub fn quarantine(table: &str) -> Self {
        use ColumnType::*;
        Self::builtin(
            table,
            "received_at",
            None,
            &[
                ("received_at", Timestamp),
                ("line", Int64),
                ("reason", String),
                ("raw", String),
                ("customer_id", String),
            ],
        )
    }

    fn builtin(name: &str, time: &str, id: Option<&str>, columns: &[(&str, ColumnType)]) -> Self {
        Self {
            name: name.to_owned(),
            topic: None,
            time_field: time.to_owned(),
            id_field: id.map(str::to_owned),
            customer_field: Some(CUSTOMER_ID.to_owned()),
            columns: columns.iter().map(|(n, t)| ((*n).to_owned(), *t)).collect(),
        }
    }

    /// Whether the name is one the system writes itself.
    /// The topic its records come from with brokers: the declared one, or
    /// `imagelake.lake.<name>`.
    pub fn source_topic(&self) -> String {
        self.topic
            .clone()
            .unwrap_or_else(|| format!("imagelake.lake.{}", self.name))
    }

    pub fn is_builtin_name(name: &str) -> bool {
        [EVENTS, API_REQUESTS, QUARANTINE].contains(&name) || TRANSFORMED.contains(&name)
    }

    /// Refuses a declaration the writer could not honour, with the reason.
    pub fn check(&self) -> Result<(), String> {
        let name = &self.name;
        if crate::paths::LakeTable::parse(name).is_err() || Self::is_builtin_name(name) {
            return Err(format!(
                "lake table name {name:?} must match [a-z][a-z0-9_]* (at most 63 characters) and not be events, api_requests or quarantine"
            ));
        }
        for column in self.columns.keys() {
            if !is_column_name(column) || column == "dt" || column == "hour" {
                return Err(format!(
                    "lake table {name}: column {column:?} must match [A-Za-z_][A-Za-z0-9_]* and not be dt or hour (the partitions)"
                ));
            }
        }
        let typed = |field: &str, what: &str, allowed: &[ColumnType]| match self.columns.get(field)
        {
            Some(t) if allowed.contains(t) => Ok(()),
            Some(t) => Err(format!(
                "lake table {name}: {what} {field:?} is {} but must be {}",
                t.as_str(),
                allowed
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )),
            None => Err(format!(
                "lake table {name}: {what} {field:?} is not among its columns"
            )),
        };
        typed(&self.time_field, "time_field", &[ColumnType::Timestamp])?;
        if let Some(id) = &self.id_field {
            typed(id, "id_field", &[ColumnType::String, ColumnType::Int64])?;
        }
        match &self.customer_field {
            Some(field) => typed(field, "customer_field", &[ColumnType::String])?,
            None if self.columns.contains_key(CUSTOMER_ID) => {
                return Err(format!(
                    "lake table {name}: a column named customer_id is the row's customer: set customer_field = \"customer_id\""
                ));
            }
            None => {}
        }
        Ok(())
    }

    /// The columns as written: the declared ones by name, and `customer_id` (a string, null
    /// where the row is nobody's) when not declared.
    pub fn written_columns(&self) -> Vec<(String, ColumnType)> {
        let mut columns: Vec<(String, ColumnType)> =
            self.columns.iter().map(|(n, t)| (n.clone(), *t)).collect();
        if !self.columns.contains_key(CUSTOMER_ID) {
            columns.push((CUSTOMER_ID.to_owned(), ColumnType::String));
        }
        columns
    }

    /// Checks one record (a line of NDJSON) and normalises it; fields that are not columns are
    /// left out.
    pub fn record(&self, line: &[u8], max_bytes: usize) -> Result<Record, String> {
        if line.len() > max_bytes {
            return Err(format!(
                "record of {} bytes is over the limit of {max_bytes} bytes",
                line.len()
            ));
        }
        let value: Value =
            serde_json::from_slice(line).map_err(|e| format!("not valid JSON: {e}"))?;
        let Value::Object(fields) = value else {
            return Err("not a JSON object".to_owned());
        };
        self.record_from(fields)
    }

    /// Checks and normalises a record already parsed.
    pub fn record_from(&self, mut fields: Map<String, Value>) -> Result<Record, String> {
        let mut row = Map::new();
        for (column, kind) in &self.columns {
            let value = match fields.remove(column) {
                None | Some(Value::Null) => continue,
                Some(v) => normalise(column, *kind, v)?,
            };
            row.insert(column.clone(), value);
        }
        let at = match row.get(&self.time_field) {
            Some(Value::Number(n)) => n.as_i64().map(crate::clock::from_micros),
            _ => None,
        }
        .ok_or_else(|| format!("missing time field {:?}", self.time_field))?;
        // A record without its id is kept, without deduplication.
        let id = self
            .id_field
            .as_ref()
            .and_then(|field| match row.get(field) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => Some(other.to_string()),
                None => None,
            });
        if let Some(field) = &self.customer_field
            && field != CUSTOMER_ID
            && let Some(customer) = row.get(field).cloned()
        {
            row.insert(CUSTOMER_ID.to_owned(), customer);
        }
        Ok(Record { at, id, row })
    }
}

/// One value in its column's normal form, or why it does not fit.
fn normalise(column: &str, kind: ColumnType, value: Value) -> Result<Value, String> {
    let wrong = |value: &Value| {
        let found = match value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        };
        format!(
            "field {column:?}: expected {}, found {found}",
            kind.as_str()
        )
    };
    match (kind, &value) {
        (ColumnType::String, Value::String(_)) | (ColumnType::Bool, Value::Bool(_)) => Ok(value),
        (ColumnType::Int64, Value::Number(n)) if n.is_i64() => Ok(value),
        (ColumnType::Float64, Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Value::from)
            .ok_or_else(|| wrong(&value)),
        (ColumnType::Timestamp, Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| Value::from(crate::clock::to_micros(t.with_timezone(&Utc))))
            .map_err(|e| format!("field {column:?}: not an RFC 3339 timestamp ({e})")),
        // Kept as the value itself: written out as its compact text (see the lake's Parquet).
        (ColumnType::Json, _) => Ok(value),
        _ => Err(wrong(&value)),
    }
}

/// How a table's declared columns may change between starts: a new column is fine (older files
/// simply lack it), a changed type is refused. Returns the columns to keep on record: the union,
/// so a column left out of the settings stays known and its type can never be reused.
pub fn evolve(
    table: &str,
    known: &BTreeMap<String, ColumnType>,
    declared: &BTreeMap<String, ColumnType>,
) -> Result<BTreeMap<String, ColumnType>, String> {
    let mut merged = known.clone();
    for (column, kind) in declared {
        match known.get(column) {
            Some(was) if was != kind => {
                return Err(format!(
                    "lake table {table}: column {column:?} was {} and is now declared {}: a column's type cannot change (add a new column instead)",
                    was.as_str(),
                    kind.as_str()
                ));
            }
            _ => {
                merged.insert(column.clone(), *kind);
            }
        }
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn billing() -> TableDecl {
        toml_like(
            r#"{"name": "billing_events", "topic": "billing.events", "time_field": "ts",
                "id_field": "event_id", "customer_field": "customer_id",
                "columns": {"event_id": "string", "ts": "timestamp", "customer_id": "string",
                            "amount": "float64", "plan": "string", "meta": "json", "seats": "int64", "paid": "bool"}}"#,
        )
    }

    fn toml_like(json: &str) -> TableDecl {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_good_record_is_normalised() {
        let t = billing();
        t.check().unwrap();
        let r = t
            .record(
                br#"{"event_id":"e1","ts":"2026-11-30T10:15:00+01:00","customer_id":"c","amount":3,"meta":{"a":[1]},"seats":2,"paid":true,"extra":1}"#,
                1024,
            )
            .unwrap();
        assert_eq!(r.at.to_rfc3339(), "2026-11-30T09:15:00+00:00");
        assert_eq!(r.id.as_deref(), Some("e1"));
        assert_eq!(r.row["amount"], 3.0);
        assert_eq!(r.row["meta"].to_string(), r#"{"a":[1]}"#);
        assert!(
            !r.row.contains_key("extra"),
            "undeclared fields are left out"
        );
        assert!(!r.row.contains_key("plan"), "absent is null");
    }

    #[test]
    fn records_that_do_not_fit_say_why() {
        let t = billing();
        let why = |line: &str| t.record(line.as_bytes(), 200).unwrap_err();
        assert!(why("{nope").starts_with("not valid JSON"));
        assert_eq!(why("[1]"), "not a JSON object");
        assert_eq!(why(r#"{"event_id":"e"}"#), r#"missing time field "ts""#);
        assert_eq!(
            why(r#"{"event_id":"e","ts":"2026-11-30T10:00:00Z","seats":1.5}"#),
            r#"field "seats": expected int64, found a number"#
        );
        let no_id = t.record(br#"{"ts":"2026-11-30T10:00:00Z"}"#, 200).unwrap();
        assert_eq!(no_id.id, None, "kept, without deduplication");
        assert!(why(r#"{"event_id":"e","ts":"yesterday"}"#).contains("RFC 3339"));
        assert!(why(&format!(r#"{{"x":"{}"}}"#, "a".repeat(300))).contains("over the limit"));
    }

    #[test]
    fn declarations_the_writer_cannot_honour_are_refused() {
        let mut t = billing();
        t.name = "events".into();
        assert!(t.check().unwrap_err().contains("must match"));
        let mut t = billing();
        t.time_field = "plan".into();
        assert!(t.check().unwrap_err().contains("must be timestamp"));
        let mut t = billing();
        t.customer_field = None;
        assert!(t.check().unwrap_err().contains("customer_field"));
        let mut t = billing();
        t.columns.insert("hour".into(), ColumnType::Int64);
        assert!(t.check().unwrap_err().contains("partitions"));
        for builtin in [TableDecl::events(), TableDecl::api_requests()] {
            let mut b = builtin.clone();
            b.name = "x".into();
            b.check().unwrap();
        }
    }

    #[test]
    fn a_new_column_evolves_and_a_changed_type_is_refused() {
        let known = billing().columns;
        let mut declared = known.clone();
        declared.remove("plan");
        declared.insert("region".into(), ColumnType::String);
        let merged = evolve("b", &known, &declared).unwrap();
        assert!(merged.contains_key("plan") && merged.contains_key("region"));
        declared.insert("amount".into(), ColumnType::Int64);
        let err = evolve("b", &known, &declared).unwrap_err();
        assert!(
            err.contains("was float64 and is now declared int64"),
            "{err}"
        );
    }
}

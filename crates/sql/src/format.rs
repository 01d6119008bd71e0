//! An [`Answer`] in the formats the doors offer, produced piece by piece (a head, one piece per
//! batch, a tail), so a door streams the encoded text out as it is made rather than holding it
//! whole:
//! - `json`: `{"columns": [{"name", "type"}], "rows": [[...]], "truncated"}`, the HTTP default;
//! - `csv` with a header line; `ndjson` (JSON lines, one object per row);
//! - `arrow`: the Arrow IPC stream (its schema's metadata `imagelake.truncated` says whether the
//!   rows were cut);
//! - `table` (aligned, for people) and `parquet`, made whole (the CLI's).
//!
//! Timestamps are RFC 3339 in UTC in the text formats.

use std::sync::Arc;

use datafusion::arrow::{
    array::RecordBatch,
    csv,
    datatypes::{DataType, Schema, SchemaRef, TimeUnit},
    error::ArrowError,
    ipc::writer::StreamWriter,
    json::{self, writer::EncoderOptions},
    util::pretty::pretty_format_batches,
};

use crate::Answer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Ndjson,
    Arrow,
    Table,
    Parquet,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Csv => "text/csv; charset=utf-8",
            Self::Ndjson => "application/x-ndjson",
            Self::Arrow => "application/vnd.apache.arrow.stream",
            Self::Table => "text/plain; charset=utf-8",
            Self::Parquet => "application/vnd.apache.parquet",
        }
    }

    /// The format an `Accept` header asks for: the first of its types offered, `json` for
    /// `*/*` or none.
    pub fn from_accept(accept: Option<&str>) -> Option<Self> {
        let Some(accept) = accept else {
            return Some(Self::Json);
        };
        for item in accept.split(',') {
            let media = item
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            let format = match media.as_str() {
                "application/json" | "*/*" | "application/*" => Self::Json,
                "text/csv" | "text/*" => Self::Csv,
                "application/x-ndjson" | "application/jsonl" => Self::Ndjson,
                "application/vnd.apache.arrow.stream" => Self::Arrow,
                _ => continue,
            };
            return Some(format);
        }
        None
    }

    /// The pieces of `answer` in this format.
    pub fn encode(self, answer: Answer) -> Result<Pieces, ArrowError> {
        let Answer {
            schema,
            batches,
            rows,
            truncated,
            held,
        } = answer;
        let mut head = Vec::new();
        let kind = match self {
            Self::Json => {
                head.extend_from_slice(b"{\"columns\":[");
                for (i, field) in schema.fields().iter().enumerate() {
                    if i > 0 {
                        head.push(b',');
                    }
                    let column = serde_json::json!({"name": field.name(), "type": sql_type(field.data_type())});
                    head.extend_from_slice(column.to_string().as_bytes());
                }
                head.extend_from_slice(b"],\"rows\":[");
                Kind::Json { first: true }
            }
            Self::Csv => {
                if let Some(nested) = schema.fields().iter().find(|f| f.data_type().is_nested()) {
                    return Err(ArrowError::CsvError(format!(
                        "CSV cannot hold column {:?} of type {}: cast it to VARCHAR, or ask for JSON",
                        nested.name(),
                        sql_type(nested.data_type())
                    )));
                }
                let names: Vec<String> = schema
                    .fields()
                    .iter()
                    .map(|f| csv_field(f.name()))
                    .collect();
                head.extend_from_slice(names.join(",").as_bytes());
                head.push(b'\n');
                Kind::Csv
            }
            Self::Ndjson => Kind::Ndjson,
            Self::Arrow => {
                // The batches' own schema (the plan's may differ in what it knows of nulls).
                let schema = batches
                    .first()
                    .map_or_else(|| schema.clone(), RecordBatch::schema);
                let mut metadata = schema.metadata().clone();
                metadata.insert("imagelake.truncated".into(), truncated.to_string());
                let schema = Arc::new(Schema::new_with_metadata(schema.fields().clone(), metadata));
                let mut writer = StreamWriter::try_new(Vec::new(), &schema)?;
                head = std::mem::take(writer.get_mut());
                Kind::Arrow {
                    writer: Box::new(writer),
                    schema,
                }
            }
            Self::Table => {
                // No rows still shows the columns.
                let empty = [RecordBatch::new_empty(schema.clone())];
                let shown = if batches.is_empty() {
                    &empty[..]
                } else {
                    &batches[..]
                };
                head = format!("{}\n", pretty_format_batches(shown)?).into_bytes();
                Kind::Whole
            }
            Self::Parquet => {
                head = parquet_bytes(&schema, &batches)?;
                Kind::Whole
            }
        };
        let batches = if matches!(kind, Kind::Whole) {
            Vec::new()
        } else {
            batches
        };
        Ok(Pieces {
            kind,
            head: Some(head),
            batches: batches.into_iter(),
            rows,
            truncated,
            done: false,
            held,
        })
    }
}

enum Kind {
    Json {
        first: bool,
    },
    Csv,
    Ndjson,
    Arrow {
        writer: Box<StreamWriter<Vec<u8>>>,
        schema: SchemaRef,
    },
    /// Made whole in the head.
    Whole,
}

/// The encoded answer, piece by piece.
pub struct Pieces {
    kind: Kind,
    head: Option<Vec<u8>>,
    batches: std::vec::IntoIter<RecordBatch>,
    rows: u64,
    truncated: bool,
    done: bool,
    /// Given back once the last rows are encoded, before they are sent.
    held: crate::query::Held,
}

impl Iterator for Pieces {
    type Item = Result<Vec<u8>, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(head) = self.head.take() {
            return Some(Ok(head));
        }
        if let Some(batch) = self.batches.next() {
            return Some(self.batch(&batch));
        }
        if self.done {
            return None;
        }
        self.done = true;
        self.held = crate::query::Held::default();
        let tail = match &mut self.kind {
            Kind::Json { .. } => Ok(format!(
                "],\"row_count\":{},\"truncated\":{}}}",
                self.rows, self.truncated
            )
            .into_bytes()),
            Kind::Arrow { writer, .. } => {
                writer.finish().map(|()| std::mem::take(writer.get_mut()))
            }
            Kind::Csv | Kind::Ndjson | Kind::Whole => return None,
        };
        Some(tail)
    }
}

impl Pieces {
    fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
        let mut out = Vec::new();
        match &mut self.kind {
            Kind::Json { first } => json_rows(batch, first, &mut out)?,
            Kind::Csv => {
                let mut writer = csv::WriterBuilder::new()
                    .with_header(false)
                    .with_timestamp_tz_format("%Y-%m-%dT%H:%M:%S%.fZ".into())
                    .build(&mut out);
                writer.write(batch)?;
            }
            Kind::Ndjson => {
                let mut writer = json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, json::writer::LineDelimited>(&mut out);
                writer.write(batch)?;
                writer.finish()?;
            }
            Kind::Arrow { writer, schema } => {
                let batch = batch.clone().with_schema(schema.clone())?;
                writer.write(&batch)?;
                out = std::mem::take(writer.get_mut());
            }
            Kind::Whole => {}
        }
        Ok(out)
    }
}

/// The rows of `batch` as JSON arrays, after a comma unless they are the first.
fn json_rows(batch: &RecordBatch, first: &mut bool, out: &mut Vec<u8>) -> Result<(), ArrowError> {
    let options = EncoderOptions::default();
    let schema = batch.schema();
    let mut encoders = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| json::writer::make_encoder(field, column.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()?;
    for row in 0..batch.num_rows() {
        if !std::mem::take(first) {
            out.push(b',');
        }
        out.push(b'[');
        for (i, encoder) in encoders.iter_mut().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if encoder.is_null(row) {
                out.extend_from_slice(b"null");
            } else {
                encoder.encode(row, out);
            }
        }
        out.push(b']');
    }
    Ok(())
}

fn csv_field(name: &str) -> String {
    if name.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", name.replace('"', "\"\""))
    } else {
        name.to_owned()
    }
}

fn parquet_bytes(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, ArrowError> {
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut writer = parquet::arrow::ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))
        .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
    for batch in batches {
        writer
            .write(batch)
            .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
    }
    writer
        .into_inner()
        .map_err(|e| ArrowError::ExternalError(Box::new(e)))
}

/// A column's type in SQL words, as `DESCRIBE` and the Postgres door name them.
pub fn sql_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Null => "NULL".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "SMALLINT".into(),
        DataType::Int32 | DataType::UInt16 => "INTEGER".into(),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "BIGINT".into(),
        DataType::Float16 | DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("DECIMAL({p},{s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BYTEA".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMPTZ".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Time32(_) | DataType::Time64(_) => "TIME".into(),
        DataType::Interval(_) => "INTERVAL".into(),
        DataType::Duration(TimeUnit::Second) => "INTERVAL".into(),
        DataType::List(f) | DataType::LargeList(f) | DataType::ListView(f) => {
            format!("{}[]", sql_type(f.data_type()))
        }
        DataType::Dictionary(_, value) => sql_type(value),
        other => other.to_string(),
    }
}

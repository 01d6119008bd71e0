//! Rows of a table (normalised JSON, see `core::lake`) into Parquet, in two stages a write runs
//! on two threads: [`Batches`] parses rows straight into Arrow columns of the table's types
//! (no JSON values are built), and [`Encoder`] encodes the batches (zstd) into files.
//!
//! A file is built in memory and handed over when it reaches the size it rolls at, so what one
//! write holds is the file being put, the one being built and its row group, and the batches
//! between the stages: the writer's `max_buffer_bytes` bounds them all (see [`Budget`]).

use std::{collections::HashMap, fmt, sync::Arc};

use anyhow::Context;
use arrow_array::{
    ArrayRef, RecordBatch,
    builder::{
        ArrayBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
        TimestampMicrosecondBuilder,
    },
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use imagelake_core::lake::ColumnType;
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, ZstdLevel},
    file::properties::{EnabledStatistics, WriterProperties},
    schema::types::ColumnPath,
};
use serde::{
    Deserialize,
    de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor},
};

/// How much one write may hold.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// A file is handed over once it is this large.
    pub file_bytes: u64,
    /// A row group is written out once its rows hold this much.
    pub row_group_bytes: u64,
}

impl Budget {
    /// A quarter of the buffer for the file being built and a quarter for the one being put,
    /// an eighth for the row group being filled, the rest for the batch being read.
    pub fn within(max_buffer_bytes: u64, max_file_bytes: u64) -> Self {
        Self {
            file_bytes: max_file_bytes.min(max_buffer_bytes / 4),
            row_group_bytes: max_buffer_bytes / 8,
        }
    }
}

/// The Arrow schema of a table's written columns; every column may be null (a column added
/// later is null in the rows before it).
pub fn schema(columns: &[(String, ColumnType)]) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, kind)| Field::new(name, data_type(*kind), true))
        .collect();
    Arc::new(Schema::new(fields))
}

fn data_type(kind: ColumnType) -> DataType {
    match kind {
        ColumnType::String | ColumnType::Json => DataType::Utf8,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

/// One column being filled.
enum Column {
    Text(StringBuilder),
    /// JSON values, taken as their text from the row without parsing them.
    Json(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Time(TimestampMicrosecondBuilder),
}

impl Column {
    fn new(kind: ColumnType) -> Self {
        match kind {
            ColumnType::String => Self::Text(StringBuilder::new()),
            ColumnType::Json => Self::Json(StringBuilder::new()),
            ColumnType::Int64 => Self::Int(Int64Builder::new()),
            ColumnType::Float64 => Self::Float(Float64Builder::new()),
            ColumnType::Bool => Self::Bool(BooleanBuilder::new()),
            ColumnType::Timestamp => {
                Self::Time(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
        }
    }

    fn push_null(&mut self) {
        match self {
            Self::Text(b) | Self::Json(b) => b.append_null(),
            Self::Int(b) => b.append_null(),
            Self::Float(b) => b.append_null(),
            Self::Bool(b) => b.append_null(),
            Self::Time(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Text(b) | Self::Json(b) => Arc::new(b.finish()),
            Self::Int(b) => Arc::new(b.finish()),
            Self::Float(b) => Arc::new(b.finish()),
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Time(b) => Arc::new(b.finish()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Text(b) | Self::Json(b) => b.len(),
            Self::Int(b) => b.len(),
            Self::Float(b) => b.len(),
            Self::Bool(b) => b.len(),
            Self::Time(b) => b.len(),
        }
    }
}

/// Deserialises one value straight into its column: null, or a value of the column's type (a
/// logged row is normalised, so no other can come).
struct Cell<'a>(&'a mut Column);

impl<'de> DeserializeSeed<'de> for Cell<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if let Column::Json(b) = self.0 {
            let raw = <&serde_json::value::RawValue>::deserialize(d)?;
            match raw.get() {
                "null" => b.append_null(),
                text => b.append_value(text),
            }
            return Ok(());
        }
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Cell<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value of the column's type, or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.0.push_null();
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.visit_none()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.0 {
            Column::Text(_) | Column::Json(_) => d.deserialize_str(self),
            Column::Bool(_) => d.deserialize_bool(self),
            Column::Float(_) => d.deserialize_f64(self),
            Column::Int(_) | Column::Time(_) => d.deserialize_i64(self),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        match self.0 {
            Column::Text(b) => b.append_value(v),
            other => other.push_null(),
        }
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        match self.0 {
            Column::Bool(b) => b.append_value(v),
            other => other.push_null(),
        }
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        match self.0 {
            Column::Int(b) => b.append_value(v),
            Column::Time(b) => b.append_value(v),
            Column::Float(b) => b.append_value(v as f64),
            other => other.push_null(),
        }
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        match (self.0, i64::try_from(v)) {
            (Column::Float(b), _) => b.append_value(v as f64),
            (column, Ok(v)) => return Cell(column).visit_i64(v),
            (column, Err(_)) => column.push_null(),
        }
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        match self.0 {
            Column::Float(b) => b.append_value(v),
            other => other.push_null(),
        }
        Ok(())
    }
}

/// The column a key names, if any.
struct Key<'a>(&'a HashMap<String, usize>);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a column name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.get(v).copied())
    }
}

/// Rows in, Arrow batches out: each row is parsed into the columns as it comes.
pub struct Batches {
    schema: SchemaRef,
    index: HashMap<String, usize>,
    columns: Vec<Column>,
    /// Which columns the row being parsed has set.
    seen: Vec<bool>,
    /// Text bytes of the rows in `columns`, the measure of a batch.
    bytes: u64,
    /// A batch is handed over at this many text bytes.
    limit: u64,
}

/// Rows per Arrow batch at most, whatever their size.
const BATCH_ROWS: usize = 64 * 1024;

impl<'de> Visitor<'de> for &mut Batches {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a row (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(found) = map.next_key_seed(Key(&self.index))? {
            match found {
                Some(i) if !self.seen[i] => {
                    self.seen[i] = true;
                    map.next_value_seed(Cell(&mut self.columns[i]))?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

impl Batches {
    pub fn new(columns: &[(String, ColumnType)], budget: Budget) -> Self {
        Self {
            schema: schema(columns),
            index: (columns.iter().enumerate())
                .map(|(i, (n, _))| (n.clone(), i))
                .collect(),
            columns: columns.iter().map(|(_, k)| Column::new(*k)).collect(),
            seen: vec![false; columns.len()],
            bytes: 0,
            limit: budget.row_group_bytes / 4,
        }
    }

    /// Adds one row (a normalised JSON object); returns a batch when one is full.
    pub fn push(&mut self, row: &str) -> anyhow::Result<Option<RecordBatch>> {
        self.seen.fill(false);
        let mut de = serde_json::Deserializer::from_str(row);
        de.deserialize_map(&mut *self).context("a logged row")?;
        de.end().context("a logged row")?;
        for (column, seen) in self.columns.iter_mut().zip(&self.seen) {
            if !seen {
                column.push_null();
            }
        }
        self.bytes += row.len() as u64;
        let rows = self.columns.first().map_or(0, Column::len);
        if rows >= BATCH_ROWS || self.bytes >= self.limit {
            return self.take().map(Some);
        }
        Ok(None)
    }

    /// The last batch, if any row is left.
    pub fn finish(mut self) -> anyhow::Result<Option<RecordBatch>> {
        if self.columns.first().is_none_or(|c| c.len() == 0) {
            return Ok(None);
        }
        self.take().map(Some)
    }

    fn take(&mut self) -> anyhow::Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(Column::finish).collect();
        self.bytes = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}

/// Arrow batches in, Parquet files out.
pub struct Encoder {
    schema: SchemaRef,
    properties: WriterProperties,
    writer: Option<ArrowWriter<Vec<u8>>>,
    budget: Budget,
    /// Rows in the file being built.
    rows: u64,
}

/// A finished file and the rows in it.
pub struct File {
    pub bytes: Bytes,
    pub rows: u64,
}

impl Encoder {
    /// zstd (level 1, as pyarrow and DuckDB write it); JSON columns, long and unlike each
    /// other, without dictionary or statistics, which would cost time and buy no pruning.
    pub fn new(columns: &[(String, ColumnType)], budget: Budget) -> anyhow::Result<Self> {
        let mut properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
            .set_max_row_group_row_count(Some(1 << 20));
        for (name, kind) in columns {
            if *kind == ColumnType::Json {
                let path = ColumnPath::from(name.as_str());
                properties = properties
                    .set_column_dictionary_enabled(path.clone(), false)
                    .set_column_statistics_enabled(path, EnabledStatistics::None);
            }
        }
        Ok(Self {
            schema: schema(columns),
            properties: properties.build(),
            writer: None,
            budget,
            rows: 0,
        })
    }

    /// Encodes a batch; returns a file when it reached its size.
    pub fn write(&mut self, batch: &RecordBatch) -> anyhow::Result<Option<File>> {
        if self.writer.is_none() {
            self.writer = Some(ArrowWriter::try_new(
                Vec::new(),
                self.schema.clone(),
                Some(self.properties.clone()),
            )?);
        }
        let writer = self.writer.as_mut().context("writer")?;
        writer.write(batch)?;
        self.rows += batch.num_rows() as u64;
        if writer.in_progress_size() as u64 >= self.budget.row_group_bytes {
            writer.flush()?;
        }
        let written = (writer.bytes_written() + writer.in_progress_size()) as u64;
        if written >= self.budget.file_bytes {
            return self.take_file().map(Some);
        }
        Ok(None)
    }

    /// The last file, if any row is left.
    pub fn finish(mut self) -> anyhow::Result<Option<File>> {
        if self.writer.is_none() {
            return Ok(None);
        }
        self.take_file().map(Some)
    }

    fn take_file(&mut self) -> anyhow::Result<File> {
        let writer = self.writer.take().context("no file is being built")?;
        let bytes = writer.into_inner()?;
        Ok(File {
            bytes: Bytes::from(bytes),
            rows: std::mem::take(&mut self.rows),
        })
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::{Array, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};

    use super::*;

    #[test]
    fn rows_are_parsed_into_their_columns() {
        let columns: Vec<(String, ColumnType)> = [
            ("id", ColumnType::String),
            ("n", ColumnType::Int64),
            ("x", ColumnType::Float64),
            ("at", ColumnType::Timestamp),
            ("meta", ColumnType::Json),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_owned(), t))
        .collect();
        let budget = Budget::within(16 << 20, 16 << 20);
        let mut batches = Batches::new(&columns, budget);
        for row in [
            r#"{"id":"a\"b","n":1,"x":2,"at":5,"meta":{"k":[1,"é"]},"extra":{"y":1}}"#,
            r#"{"n":null,"meta":null}"#,
            r#"{"id":"c","id":"twice","x":1.5,"meta":"text"}"#,
        ] {
            assert!(batches.push(row).unwrap().is_none());
        }
        let batch = batches.finish().unwrap().unwrap();
        let text = |i: usize| {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone()
        };
        let ids = text(0);
        assert_eq!(
            (ids.value(0), ids.is_null(1), ids.value(2)),
            ("a\"b", true, "c")
        );
        let n = batch
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!((n.value(0), n.is_null(1), n.is_null(2)), (1, true, true));
        let x = batch
            .column(2)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!((x.value(0), x.value(2)), (2.0, 1.5));
        let at = batch
            .column(3)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!((at.value(0), at.is_null(1)), (5, true));
        let meta = text(4);
        assert_eq!(meta.value(0), r#"{"k":[1,"é"]}"#, "JSON kept as its text");
        assert!(meta.is_null(1));
        assert_eq!(meta.value(2), r#""text""#);
        assert!(Batches::new(&columns, budget).push("[1]").is_err());
    }
}

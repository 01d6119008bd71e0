//! Rows of a table (normalised JSON, see `core::lake`) into Parquet: Arrow columns of the
//! table's types, zstd, one row group per batch of rows that fits the writer's memory.
//!
//! The file is built in memory and handed over when it reaches the size it rolls at, so what
//! one write holds is the file being put, the one being built and its row group: the writer's
//! `max_buffer_bytes` bounds them all (see [`Budget`]).

use std::sync::Arc;

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
    file::properties::WriterProperties,
};
use serde_json::Value;

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
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Time(TimestampMicrosecondBuilder),
}

impl Column {
    fn new(kind: ColumnType) -> Self {
        match kind {
            ColumnType::String | ColumnType::Json => Self::Text(StringBuilder::new()),
            ColumnType::Int64 => Self::Int(Int64Builder::new()),
            ColumnType::Float64 => Self::Float(Float64Builder::new()),
            ColumnType::Bool => Self::Bool(BooleanBuilder::new()),
            ColumnType::Timestamp => {
                Self::Time(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
        }
    }

    /// Appends a normalised value; one of another type (which normalisation rules out) is
    /// written as null rather than failing the hour.
    fn push(&mut self, value: Option<&Value>) {
        match self {
            Self::Text(b) => b.append_option(value.and_then(Value::as_str)),
            Self::Int(b) => b.append_option(value.and_then(Value::as_i64)),
            Self::Float(b) => b.append_option(value.and_then(Value::as_f64)),
            Self::Bool(b) => b.append_option(value.and_then(Value::as_bool)),
            Self::Time(b) => b.append_option(value.and_then(Value::as_i64)),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Text(b) => Arc::new(b.finish()),
            Self::Int(b) => Arc::new(b.finish()),
            Self::Float(b) => Arc::new(b.finish()),
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Time(b) => Arc::new(b.finish()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Text(b) => b.len(),
            Self::Int(b) => b.len(),
            Self::Float(b) => b.len(),
            Self::Bool(b) => b.len(),
            Self::Time(b) => b.len(),
        }
    }
}

/// Rows in, Parquet files out: call [`push`](Self::push) for each row, and take each file
/// that [`push`] or [`finish`](Self::finish) hands back.
pub struct FileBuilder {
    names: Vec<String>,
    schema: SchemaRef,
    columns: Vec<Column>,
    /// Text bytes of the rows in `columns`, the measure of a batch.
    batch_bytes: u64,
    writer: Option<ArrowWriter<Vec<u8>>>,
    budget: Budget,
    /// Rows in the file being built.
    file_rows: u64,
}

/// A finished file and the rows in it.
pub struct File {
    pub bytes: Bytes,
    pub rows: u64,
}

/// Rows per Arrow batch at most, whatever their size.
const BATCH_ROWS: usize = 64 * 1024;

impl FileBuilder {
    pub fn new(columns: &[(String, ColumnType)], budget: Budget) -> Self {
        Self {
            names: columns.iter().map(|(n, _)| n.clone()).collect(),
            schema: schema(columns),
            columns: columns.iter().map(|(_, k)| Column::new(*k)).collect(),
            batch_bytes: 0,
            writer: None,
            budget,
            file_rows: 0,
        }
    }

    /// Adds one row (a normalised JSON object); returns a file when it reached its size.
    pub fn push(&mut self, row: &str) -> anyhow::Result<Option<File>> {
        let Value::Object(fields) = serde_json::from_str(row).context("a logged row")? else {
            anyhow::bail!("a logged row is not an object");
        };
        for (name, column) in self.names.iter().zip(&mut self.columns) {
            column.push(fields.get(name));
        }
        self.batch_bytes += row.len() as u64;
        self.file_rows += 1;
        let rows = self.columns.first().map_or(0, Column::len);
        if rows >= BATCH_ROWS || self.batch_bytes >= self.budget.row_group_bytes / 4 {
            self.flush_batch()?;
            if self.written_bytes() >= self.budget.file_bytes {
                return self.take_file().map(Some);
            }
        }
        Ok(None)
    }

    /// The last file, if any row is left.
    pub fn finish(mut self) -> anyhow::Result<Option<File>> {
        self.flush_batch()?;
        if self.writer.is_none() {
            return Ok(None);
        }
        self.take_file().map(Some)
    }

    fn written_bytes(&self) -> u64 {
        self.writer
            .as_ref()
            .map_or(0, |w| (w.bytes_written() + w.in_progress_size()) as u64)
    }

    fn flush_batch(&mut self) -> anyhow::Result<()> {
        if self.columns.first().is_none_or(|c| c.len() == 0) {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(Column::finish).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)?;
        self.batch_bytes = 0;
        if self.writer.is_none() {
            let properties = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
                .set_max_row_group_row_count(Some(1 << 20))
                .build();
            self.writer = Some(ArrowWriter::try_new(
                Vec::new(),
                self.schema.clone(),
                Some(properties),
            )?);
        }
        let writer = self.writer.as_mut().context("writer")?;
        writer.write(&batch)?;
        if writer.in_progress_size() as u64 >= self.budget.row_group_bytes {
            writer.flush()?;
        }
        Ok(())
    }

    fn take_file(&mut self) -> anyhow::Result<File> {
        let writer = self.writer.take().context("no file is being built")?;
        let bytes = writer.into_inner()?;
        let rows = std::mem::take(&mut self.file_rows);
        Ok(File {
            bytes: Bytes::from(bytes),
            rows,
        })
    }
}

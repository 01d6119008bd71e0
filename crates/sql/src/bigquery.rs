//! BigQuery over the same files: `CREATE EXTERNAL TABLE` statements for every table of the
//! lake, with Hive partitioning on `dt` (DATE) and `hour` (INT64) and a partition filter
//! required, and the columns given explicitly (the lake's own types, not BigQuery's guess from
//! one file). A table that lives in one file (`customers`, `job_runs`) is a plain external
//! table. Quarantine tables are named `quarantine_<table>`.

use std::fmt::Write;

use datafusion::arrow::datatypes::{DataType, TimeUnit};

use crate::query::Catalog;

/// The statements for `dataset` over `gs://bucket/lake/`.
pub fn ddl(catalog: &Catalog, dataset: &str, bucket: &str) -> String {
    let mut out = String::new();
    for table in catalog.tables() {
        let name = match table.schema_name {
            Some(schema) => format!("{schema}_{}", table.name),
            None => table.name.clone(),
        };
        let _ = writeln!(
            out,
            "CREATE OR REPLACE EXTERNAL TABLE `{dataset}.{name}`\n("
        );
        let columns: Vec<String> = table
            .columns
            .fields()
            .iter()
            .map(|f| format!("  `{}` {}", f.name(), bigquery_type(f.data_type())))
            .collect();
        let _ = writeln!(out, "{}\n)", columns.join(",\n"));
        let location = table.location();
        if table.is_hourly() {
            let prefix = location.trim_end_matches('/');
            let _ = writeln!(
                out,
                "WITH PARTITION COLUMNS (\n  dt DATE,\n  hour INT64\n)\nOPTIONS (\n  format = 'PARQUET',\n  uris = ['gs://{bucket}/{prefix}/*.parquet'],\n  hive_partition_uri_prefix = 'gs://{bucket}/{prefix}',\n  require_hive_partition_filter = true\n);\n"
            );
        } else {
            let _ = writeln!(
                out,
                "OPTIONS (\n  format = 'PARQUET',\n  uris = ['gs://{bucket}/{location}']\n);\n"
            );
        }
    }
    out
}

fn bigquery_type(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Boolean => "BOOL",
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => "INT64",
        DataType::Float16 | DataType::Float32 | DataType::Float64 => "FLOAT64",
        DataType::Date32 | DataType::Date64 => "DATE",
        DataType::Timestamp(TimeUnit::Microsecond | TimeUnit::Millisecond, _) => "TIMESTAMP",
        DataType::Timestamp(_, _) => "TIMESTAMP",
        DataType::Decimal128(_, _) => "NUMERIC",
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BYTES",
        _ => "STRING",
    }
}

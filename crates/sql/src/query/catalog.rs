//! The tables SQL sees, over the lake's files as they are at query time:
//! - the raw tables (`events`, `api_requests`, each `[[lake.tables]]`), one Hive-style folder per
//!   hour (`dt=YYYY-MM-DD/hour=HH`), and their quarantines as `quarantine.<table>`;
//! - the tables of the transforms: `images`, `uploads_hourly`, `api_requests_hourly` by hour,
//!   `customers` and `job_runs` as one file each.
//!
//! Hourly tables have `dt` (DATE) and `hour` (INT) as columns. A filter on them prunes folders
//! before any file is opened, and so does a range on the table's own time column
//! (`occurred_at >= now() - INTERVAL '1 day'`): [`Hourly`] adds the matching `dt`/`hour` bounds.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::{
    arrow::datatypes::{DataType, Field, Schema, SchemaRef},
    catalog::{Session, TableProvider},
    common::{Result, ScalarValue, TableReference},
    datasource::{
        TableType,
        file_format::parquet::ParquetFormat,
        listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl},
    },
    execution::cache::cache_manager::FileStatisticsCache,
    logical_expr::{Expr, Operator, TableProviderFilterPushDown, col, lit},
    physical_plan::ExecutionPlan,
};
use imagelake_core::lake::{QUARANTINE, TableDecl};
use imagelake_runtime::Settings;

use super::time_filter::time_comparisons;

use super::own_rows::OwnRows;
use crate::{
    engine::STORE_URL,
    transform::{self, CUSTOMERS, JOB_RUNS},
};

/// The statistics of files read before, kept across queries (each entry checked against the
/// file's size and time when used, so a rewritten file is read again).
pub type FileStatistics = Option<Arc<FileStatisticsCache>>;

/// How a table's files lie.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    /// Under `<root>/dt=.../hour=.../*.parquet`, with the time column that names the hour.
    Hourly { time: Option<String> },
    /// One Parquet object.
    File,
}

/// One table of the catalog.
#[derive(Debug, Clone)]
pub struct TableDef {
    /// `None`: the default schema; `Some("quarantine")`.
    pub schema_name: Option<&'static str>,
    pub name: String,
    /// The columns in the files (without `dt` and `hour`).
    pub columns: SchemaRef,
    /// The object path of the folder or file, below the store's root.
    location: String,
    layout: Layout,
}

impl TableDef {
    fn hourly(decl: &TableDecl, quarantine: bool) -> Self {
        let columns = imagelake_lake::parquet::schema(&decl.written_columns());
        let (schema_name, location) = if quarantine {
            (
                Some(QUARANTINE),
                format!("lake/{QUARANTINE}/{}/", decl.name),
            )
        } else {
            (None, format!("lake/{}/", decl.name))
        };
        let time = if quarantine {
            "received_at".to_owned()
        } else {
            decl.time_field.clone()
        };
        Self {
            schema_name,
            name: decl.name.clone(),
            columns,
            location,
            layout: Layout::Hourly { time: Some(time) },
        }
    }

    /// Whether it lies in hour folders (`dt`, `hour`).
    pub fn is_hourly(&self) -> bool {
        matches!(self.layout, Layout::Hourly { .. })
    }

    /// The column whose time names the hour, for an hourly table that has one.
    pub fn time_column(&self) -> Option<&str> {
        match &self.layout {
            Layout::Hourly { time } => time.as_deref(),
            Layout::File => None,
        }
    }

    /// Its folder (ending `/`) or file below the store's root.
    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn reference(&self) -> TableReference {
        match self.schema_name {
            Some(schema) => TableReference::partial(schema, self.name.as_str()),
            None => TableReference::bare(self.name.as_str()),
        }
    }

    /// The table as the engine reads it; `statistics` keeps what its files' footers say.
    fn provider(&self, statistics: &FileStatistics) -> Result<Arc<dyn TableProvider>> {
        let url = ListingTableUrl::parse(format!("{STORE_URL}/{}", self.location))?;
        let mut options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        if let Layout::Hourly { .. } = self.layout {
            options = options.with_table_partition_cols(vec![
                ("dt".to_owned(), DataType::Date32),
                ("hour".to_owned(), DataType::Int32),
            ]);
        }
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(view_types(&self.columns));
        let table = Arc::new(ListingTable::try_new(config)?.with_cache(statistics.clone()));
        Ok(match &self.layout {
            Layout::Hourly { time } => Arc::new(Hourly {
                inner: table,
                time: time.clone(),
            }),
            Layout::File => table,
        })
    }
}

/// Every table of the lake.
#[derive(Debug, Clone)]
pub struct Catalog {
    tables: Vec<TableDef>,
}

impl Catalog {
    pub async fn new(settings: &Settings) -> anyhow::Result<Self> {
        let mut raw = vec![TableDecl::events(), TableDecl::api_requests()];
        raw.extend(settings.lake.tables.iter().cloned());
        let mut tables: Vec<TableDef> = raw.iter().map(|d| TableDef::hourly(d, false)).collect();
        for decl in &raw {
            let mut quarantine = TableDecl::quarantine(&decl.name);
            quarantine.name.clone_from(&decl.name);
            tables.push(TableDef::hourly(&quarantine, true));
        }
        for (name, columns, time) in transform::output_schemas().await? {
            tables.push(TableDef {
                schema_name: None,
                location: format!("lake/{name}/"),
                name: name.to_owned(),
                columns: nullable(&columns),
                layout: Layout::Hourly {
                    time: time.map(str::to_owned),
                },
            });
        }
        for (name, columns) in [
            (CUSTOMERS, transform::customers_schema()),
            (JOB_RUNS, transform::job_runs_schema()),
        ] {
            tables.push(TableDef {
                schema_name: None,
                location: format!("lake/{name}/{name}.parquet"),
                name: name.to_owned(),
                columns: nullable(&columns),
                layout: Layout::File,
            });
        }
        Ok(Self { tables })
    }

    pub fn tables(&self) -> &[TableDef] {
        &self.tables
    }

    /// The tables as `customer` sees them (only its rows; none without `customer_id`), or all
    /// of every table.
    pub fn providers(
        &self,
        customer: Option<&str>,
        statistics: &FileStatistics,
    ) -> Result<Vec<(TableReference, Arc<dyn TableProvider>)>> {
        let mut out = Vec::new();
        for def in &self.tables {
            let provider = def.provider(statistics)?;
            let provider = match customer {
                Some(customer) => {
                    match OwnRows::wrap(provider, customer, def.time_column(), def.is_hourly()) {
                        Some(own) => own,
                        None => continue,
                    }
                }
                None => provider,
            };
            out.push((def.reference(), provider));
        }
        Ok(out)
    }
}

/// The columns as the engine reads them: text as Arrow's string views, which the Parquet
/// reader produces without copying and which group and compare faster.
fn view_types(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => f.as_ref().clone().with_data_type(DataType::Utf8View),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Files written by different runs may differ in what they know to be non-null.
fn nullable(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    Arc::new(Schema::new(fields))
}

/// An hourly table whose time column's ranges prune hours.
#[derive(Debug)]
struct Hourly {
    inner: Arc<ListingTable>,
    time: Option<String>,
}

#[async_trait]
impl TableProvider for Hourly {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut filters = filters.to_vec();
        if let Some(time) = &self.time {
            let bounds = hour_bounds(time, &filters);
            filters.extend(bounds);
        }
        self.inner.scan(state, projection, &filters, limit).await
    }
}

/// `dt`/`hour` filters implied by ranges on the `time` column among `filters`.
pub fn hour_bounds(time: &str, filters: &[Expr]) -> Vec<Expr> {
    let mut bounds = Vec::new();
    for (op, micros) in time_comparisons(time, filters) {
        if matches!(op, Operator::Gt | Operator::GtEq | Operator::Eq) {
            bounds.push(at_or_after(micros));
        }
        if matches!(op, Operator::Lt | Operator::LtEq | Operator::Eq) {
            bounds.push(at_or_before(micros));
        }
    }
    bounds
}

const MICROS_PER_DAY: i64 = 86_400_000_000;
const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// The day (days since the epoch) and hour of a time.
fn day_hour(micros: i64) -> (i32, i32) {
    let day = micros.div_euclid(MICROS_PER_DAY);
    let hour = micros.rem_euclid(MICROS_PER_DAY) / MICROS_PER_HOUR;
    (
        i32::try_from(day).unwrap_or(i32::MAX),
        i32::try_from(hour).unwrap_or(0),
    )
}

/// Hours that end after `micros`.
fn at_or_after(micros: i64) -> Expr {
    let (day, hour) = day_hour(micros);
    let day = lit(ScalarValue::Date32(Some(day)));
    col("dt")
        .gt(day.clone())
        .or(col("dt").eq(day).and(col("hour").gt_eq(lit(hour))))
}

/// Hours that start at or before `micros`.
fn at_or_before(micros: i64) -> Expr {
    let (day, hour) = day_hour(micros);
    let day = lit(ScalarValue::Date32(Some(day)));
    col("dt")
        .lt(day.clone())
        .or(col("dt").eq(day).and(col("hour").lt_eq(lit(hour))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Expr {
        let t = chrono::DateTime::parse_from_rfc3339(text).unwrap();
        lit(ScalarValue::TimestampMicrosecond(
            Some(t.timestamp_micros()),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn ranges_on_the_time_column_bound_the_hours() {
        let filter = col("occurred_at")
            .gt_eq(ts("2026-11-30T10:15:00Z"))
            .and(ts("2026-12-01T02:00:00Z").gt(col("occurred_at")));
        let bounds = hour_bounds("occurred_at", &[filter]);
        assert_eq!(bounds.len(), 2);
        let text: Vec<String> = bounds.iter().map(ToString::to_string).collect();
        assert!(text[0].contains("hour >= Int32(10)"), "{}", text[0]);
        assert!(text[0].contains("2026-11-30"), "{}", text[0]);
        assert!(text[1].contains("hour <= Int32(2)"), "{}", text[1]);
        assert!(text[1].contains("2026-12-01"), "{}", text[1]);
    }

    #[test]
    fn other_columns_and_operators_bound_nothing() {
        let day = || lit(ScalarValue::Date32(Some(20_422)));
        let filters = [
            Expr::Cast(datafusion::logical_expr::Cast::new(
                Box::new(col("occurred_at")),
                DataType::Date32,
            ))
            .eq(day()),
            Expr::Cast(datafusion::logical_expr::Cast::new(
                Box::new(col("occurred_at")),
                DataType::Utf8,
            ))
            .gt_eq(lit("2026-11-30 10:30")),
            col("received_at").gt(ts("2026-11-30T10:00:00Z")),
            col("occurred_at").not_eq(ts("2026-11-30T10:00:00Z")),
            col("occurred_at")
                .gt(ts("2026-11-30T10:00:00Z"))
                .or(col("type").eq(lit("x"))),
        ];
        assert!(hour_bounds("occurred_at", &filters).is_empty());
    }
}

//! The `lake-transform` job: for one hour, the SQL files of `transforms/` run by DataFusion
//! over the raw tables, written into the lake as the analysts' tables.
//!
//! A run for hour H waits for H's `_SUCCESS` in `events` and in `api_requests` (it never
//! transforms a half-written hour), then writes
//! - `uploads_hourly` and `api_requests_hourly` for H, from H's rows;
//! - `images` for each upload hour with an image the hour's events changed, from every event
//!   of those images up to H's end;
//! - `customers` (one file), the newest of what it held and H's customer events;
//! - `job_runs` (one file), the run history from the metadata store.
//!
//! Each output partition is one Parquet object put whole, then its `_SUCCESS`: a reader sees an
//! hour's old output or its new one, never a mix, and a run of the same hour again replaces it.

use std::{collections::BTreeSet, sync::Arc};

use datafusion::arrow::{
    array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray},
    datatypes::{DataType, Field, Schema, SchemaRef},
};
use imagelake_core::{
    Clock,
    jobs::{Interval, JobRun, Period},
    lake::{API_REQUESTS, EVENTS, TableDecl},
    paths::{self, LakeTable},
};
use imagelake_metadata::MetadataStore;
use imagelake_runtime::{
    AppState,
    jobs::{Job, JobError, LAKE_TRANSFORM},
};
use object_store::{ObjectStore, path::Path};
use serde_json::json;

use crate::engine::{Engine, utc_micros};

/// The SQL files, as an analyst reads them in `transforms/`.
pub const UPLOADS_HOURLY_SQL: &str = include_str!("../../../transforms/uploads_hourly.sql");
pub const API_REQUESTS_HOURLY_SQL: &str =
    include_str!("../../../transforms/api_requests_hourly.sql");
pub const IMAGES_SQL: &str = include_str!("../../../transforms/images.sql");
pub const CUSTOMERS_SQL: &str = include_str!("../../../transforms/customers.sql");

/// The tables the transforms write.
pub const IMAGES: &str = "images";
pub const CUSTOMERS: &str = "customers";
pub const UPLOADS_HOURLY: &str = "uploads_hourly";
pub const API_REQUESTS_HOURLY: &str = "api_requests_hourly";
pub const JOB_RUNS: &str = "job_runs";

/// The name of each output partition's one file.
const PART: &str = "part-0";

pub struct Transforms {
    /// Runs go one at a time in a process (the scheduler's lanes, a backfill's `max_active`):
    /// `customers` and `images` partitions are read and rewritten whole, and two runs at once
    /// would lose one's changes.
    serial: tokio::sync::Mutex<()>,
    objects: Arc<dyn ObjectStore>,
    store: Arc<dyn MetadataStore>,
    clock: Arc<dyn Clock>,
    retention: chrono::Duration,
}

impl Transforms {
    pub fn new(state: &AppState) -> Self {
        Self {
            serial: tokio::sync::Mutex::new(()),
            objects: state.objects.clone(),
            store: state.store.clone(),
            clock: state.clock.clone(),
            retention: chrono::Duration::from_std(state.settings.lake_retention().0)
                .unwrap_or(chrono::Duration::days(7)),
        }
    }

    /// Transforms one hour; returns the rows written.
    pub async fn transform(&self, hour: Interval) -> Result<u64, JobError> {
        let _serial = self.serial.lock().await;
        let engine = Engine::new(self.objects.clone())?;
        for table in [EVENTS, API_REQUESTS] {
            let marker = paths::lake_success(&partition(table, hour));
            if !engine.exists(&marker).await? {
                return Err(JobError::NotReady(format!("{marker} is not written yet")));
            }
        }
        let started = std::time::Instant::now();
        let hourly = self.hourly(&engine, hour).await?;
        let after_hourly = started.elapsed();
        let images = self.images(&engine, hour).await?;
        let after_images = started.elapsed();
        let customers = self.customers(&engine, hour).await?;
        let runs = self.job_runs(&engine).await?;
        tracing::info!(
            interval = %hour,
            hourly_rows = hourly,
            image_rows = images,
            customers,
            runs,
            hourly_seconds = after_hourly.as_secs_f64(),
            images_seconds = (after_images - after_hourly).as_secs_f64(),
            seconds = started.elapsed().as_secs_f64(),
            "lake hour transformed"
        );
        Ok(hourly + images + customers + runs)
    }

    /// `uploads_hourly` and `api_requests_hourly` of the hour.
    async fn hourly(&self, engine: &Engine, hour: Interval) -> anyhow::Result<u64> {
        engine
            .register_hours(EVENTS, &TableDecl::events(), &[partition(EVENTS, hour)])
            .await?;
        engine
            .register_hours(
                API_REQUESTS,
                &TableDecl::api_requests(),
                &[partition(API_REQUESTS, hour)],
            )
            .await?;
        let mut rows = 0;
        for (table, sql) in [
            (UPLOADS_HOURLY, UPLOADS_HOURLY_SQL),
            (API_REQUESTS_HOURLY, API_REQUESTS_HOURLY_SQL),
        ] {
            let (schema, batches) = engine.query(sql).await?;
            rows += write_partition(engine, table, hour, &schema, &batches).await?;
        }
        Ok(rows)
    }

    /// Rewrites the `images` partitions of the upload hours whose images the hour changed.
    async fn images(&self, engine: &Engine, hour: Interval) -> anyhow::Result<u64> {
        let changed = self.changed_upload_hours(engine, hour).await?;
        let Some(oldest) = changed.first().copied() else {
            return Ok(0);
        };
        let folders: Vec<Path> = oldest.through(hour).map(|h| partition(EVENTS, h)).collect();
        engine
            .register_hours(EVENTS, &TableDecl::events(), &folders)
            .await?;
        let keys: Vec<String> = changed.iter().map(|h| h.key()).collect();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "upload_hour",
            DataType::Utf8,
            false,
        )]));
        let column: ArrayRef = Arc::new(StringArray::from(keys.clone()));
        let rewrite = RecordBatch::try_new(schema.clone(), vec![column])?;
        engine.register_batches("rewrite", schema, vec![rewrite])?;
        let (schema, batches) = engine.query(IMAGES_SQL).await?;
        engine.register_batches("images_rewritten", schema.clone(), batches)?;
        let columns: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| n != "upload_hour")
            .map(|n| format!("\"{n}\""))
            .collect();
        let mut rows = 0;
        for (upload_hour, key) in changed.iter().zip(&keys) {
            let select = format!(
                "SELECT {} FROM images_rewritten WHERE upload_hour = '{key}' ORDER BY image_id",
                columns.join(", ")
            );
            let (schema, batches) = engine.query(&select).await?;
            rows += write_partition(engine, IMAGES, *upload_hour, &schema, &batches).await?;
        }
        Ok(rows)
    }

    /// The upload hours of the images the hour's events are about, within the lake retention,
    /// oldest first.
    async fn changed_upload_hours(
        &self,
        engine: &Engine,
        hour: Interval,
    ) -> anyhow::Result<Vec<Interval>> {
        engine
            .register_hours(EVENTS, &TableDecl::events(), &[partition(EVENTS, hour)])
            .await?;
        let (_, batches) = engine
            .query(
                "SELECT DISTINCT substr(data->>'uploaded_at', 1, 13) AS upload_hour FROM events
                 WHERE image_id IS NOT NULL AND type LIKE 'image.%'",
            )
            .await?;
        let earliest = Period::HOUR.interval_at(self.clock.now() - self.retention);
        let mut hours = BTreeSet::new();
        for batch in &batches {
            let column = batch.column(0);
            let Some(keys) = column.as_any().downcast_ref::<StringArray>() else {
                anyhow::bail!("upload hours came as {}", column.data_type());
            };
            for key in keys.iter().flatten() {
                if let Ok(upload) = Period::HOUR.parse(key)
                    && upload >= earliest
                    && upload <= hour
                {
                    hours.insert(upload);
                }
            }
        }
        Ok(hours.into_iter().collect())
    }

    /// `customers`: the table as it stands, updated with the hour's customer events.
    async fn customers(&self, engine: &Engine, hour: Interval) -> anyhow::Result<u64> {
        engine
            .register_hours(EVENTS, &TableDecl::events(), &[partition(EVENTS, hour)])
            .await?;
        let location = single_file(CUSTOMERS);
        engine
            .register_file("previous", &location, customers_schema())
            .await?;
        let (schema, batches) = engine.query(CUSTOMERS_SQL).await?;
        engine.write_parquet(&location, &schema, &batches).await
    }

    /// `job_runs`: every run the history keeps.
    async fn job_runs(&self, engine: &Engine) -> anyhow::Result<u64> {
        let since = self.clock.now() - self.retention;
        let runs = self.store.runs_since(since).await?;
        let schema = job_runs_schema();
        let batch = job_runs_batch(&schema, &runs)?;
        engine
            .write_parquet(&single_file(JOB_RUNS), &schema, &[batch])
            .await
    }
}

/// One hour's folder of a table.
fn partition(table: &str, hour: Interval) -> Path {
    let table = LakeTable::parse(table).unwrap_or_else(|_| unreachable!("a built-in name"));
    paths::lake_partition(&table, hour.start)
}

/// The one file of a table that is not partitioned.
fn single_file(table: &str) -> Path {
    let table = LakeTable::parse(table).unwrap_or_else(|_| unreachable!("a built-in name"));
    paths::lake_file(&paths::lake_table(&table), table.as_str())
}

/// Writes one hour's output of `table` and its marker; returns the rows.
async fn write_partition(
    engine: &Engine,
    table: &str,
    hour: Interval,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> anyhow::Result<u64> {
    let folder = partition(table, hour);
    let rows = engine
        .write_parquet(&paths::lake_file(&folder, PART), schema, batches)
        .await?;
    engine
        .mark(&folder, json!({"rows": rows, "interval": hour.key()}))
        .await?;
    Ok(rows)
}

/// The hourly tables the transforms write, with their columns as written (planned from the SQL
/// over empty inputs) and the column that names the hour, if any.
pub async fn output_schemas() -> anyhow::Result<Vec<(&'static str, SchemaRef, Option<&'static str>)>>
{
    let engine = Engine::new(Arc::new(object_store::memory::InMemory::new()))?;
    let raw = |decl: &TableDecl| imagelake_lake::parquet::schema(&decl.written_columns());
    engine.register_batches(EVENTS, raw(&TableDecl::events()), Vec::new())?;
    engine.register_batches(API_REQUESTS, raw(&TableDecl::api_requests()), Vec::new())?;
    let rewrite = Arc::new(Schema::new(vec![Field::new(
        "upload_hour",
        DataType::Utf8,
        false,
    )]));
    engine.register_batches("rewrite", rewrite, Vec::new())?;
    let mut out = Vec::new();
    for (table, sql, time) in [
        (IMAGES, IMAGES_SQL, Some("uploaded_at")),
        (UPLOADS_HOURLY, UPLOADS_HOURLY_SQL, None),
        (API_REQUESTS_HOURLY, API_REQUESTS_HOURLY_SQL, None),
    ] {
        let planned = engine.context().sql(sql).await?;
        let fields: Vec<Field> = planned
            .schema()
            .as_arrow()
            .fields()
            .iter()
            .filter(|f| f.name() != "upload_hour")
            .map(|f| f.as_ref().clone())
            .collect();
        out.push((
            table,
            crate::engine::utc_schema(&Arc::new(Schema::new(fields))),
            time,
        ));
    }
    Ok(out)
}

/// The columns of `customers` as written.
pub fn customers_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("email", DataType::Utf8, true),
        Field::new("plan", DataType::Utf8, true),
        Field::new("created_at", utc_micros(), true),
        Field::new("updated_at", utc_micros(), true),
        Field::new("deleted_at", utc_micros(), true),
    ]))
}

/// The columns of `job_runs`.
pub fn job_runs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("job", DataType::Utf8, false),
        Field::new("data_interval", DataType::Utf8, false),
        Field::new("attempt", DataType::Int64, false),
        Field::new("trigger", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("queued_at", utc_micros(), false),
        Field::new("started_at", utc_micros(), true),
        Field::new("ended_at", utc_micros(), true),
        Field::new("rows", DataType::Int64, true),
        Field::new("error", DataType::Utf8, true),
        Field::new("backfill_id", DataType::Utf8, true),
    ]))
}

fn job_runs_batch(schema: &SchemaRef, runs: &[JobRun]) -> anyhow::Result<RecordBatch> {
    let text = |f: fn(&JobRun) -> Option<String>| -> ArrayRef {
        Arc::new(runs.iter().map(f).collect::<StringArray>())
    };
    let time = |f: fn(&JobRun) -> Option<chrono::DateTime<chrono::Utc>>| -> ArrayRef {
        let micros: TimestampMicrosecondArray = runs
            .iter()
            .map(|r| f(r).map(|t| t.timestamp_micros()))
            .collect();
        Arc::new(micros.with_timezone("UTC"))
    };
    let columns = vec![
        text(|r| Some(r.job.clone())),
        text(|r| Some(r.interval.clone())),
        Arc::new(
            runs.iter()
                .map(|r| i64::from(r.attempt))
                .collect::<Int64Array>(),
        ) as ArrayRef,
        text(|r| Some(r.trigger.as_str().to_owned())),
        text(|r| Some(r.state.as_str().to_owned())),
        time(|r| Some(r.queued_at)),
        time(|r| r.started_at),
        time(|r| r.ended_at),
        Arc::new(
            runs.iter()
                .map(|r| r.rows.and_then(|n| i64::try_from(n).ok()))
                .collect::<Int64Array>(),
        ) as ArrayRef,
        text(|r| r.error.clone()),
        text(|r| r.backfill.map(|b| b.to_string())),
    ];
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[async_trait::async_trait]
impl Job for Transforms {
    fn name(&self) -> &'static str {
        LAKE_TRANSFORM
    }

    async fn run(&self, interval: Interval) -> Result<u64, JobError> {
        self.transform(interval).await
    }
}

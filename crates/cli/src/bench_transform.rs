//! `imagelake bench lake day` and `bench lake transform`: the transforms of one day of lifecycle
//! events, beside DuckDB running the same SQL files on the same Parquet
//! (`scripts/bench-transforms`).
//!
//! `day` writes a day of raw lake as the writer leaves it: N events over 24 hours (each image
//! received, then processed or failed seconds later; some uploads duplicates, some refused, some
//! images deleted later that day), one API request per upload, each hour one Parquet file and
//! its `_SUCCESS`. `transform` runs `lake-transform` for the 24 hours in order, as the scheduler
//! would, and reports the seconds.

use std::{path::PathBuf, time::Instant};

use clap::Args;
use imagelake_core::{
    Timestamp,
    jobs::Period,
    lake::TableDecl,
    paths::{self, LakeTable},
};
use imagelake_lake::parquet::{Batches, Budget, Encoder};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::{Value, json};

#[derive(Args)]
pub struct DayArgs {
    dir: PathBuf,
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Each hour's events sorted by type, then time (the order a writer that sorted its
    /// files would leave), instead of the order they happened in.
    #[arg(long)]
    sorted: bool,
}

#[derive(Args)]
pub struct TransformArgs {
    dir: PathBuf,
}

/// The day the events are in.
const DAY: &str = "2026-11-30T00:00:00Z";
const CUSTOMERS: usize = 500;
/// `[lake] max_buffer_bytes` as `serve` has it.
const DEFAULT_BUFFER: u64 = 256 << 20;

fn at(s: &str) -> Timestamp {
    s.parse().expect("a fixed time")
}

/// The events and requests of one uploaded image (or refused upload), number `i`.
fn upload(i: usize, at: Timestamp) -> (Vec<Value>, Vec<Value>) {
    let customer = format!("01a30000-0000-7000-8000-{:012x}", i % CUSTOMERS);
    let image = format!("01a31000-0000-7000-8000-{i:012x}");
    let micros = |t: Timestamp| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let request = |status: i64, error: Option<&str>, bytes: u64| {
        json!({"at": micros(at), "route": "/v1/images", "method": "POST", "status": status,
               "error_code": error, "customer_id": customer, "key_role": "customer",
               "request_bytes": bytes, "response_bytes": 620, "duration_ms": 40.0 + (i % 97) as f64})
    };
    let event = |kind: &str, when: Timestamp, data: Value| {
        json!({"schema_version": 1, "event_id": format!("{kind}-{i}"), "type": kind,
               "occurred_at": micros(when), "customer_id": customer, "image_id": image,
               "source": "api", "data": data})
    };
    let bytes = 180_000 + (i % 90_000) as u64;
    if i % 50 == 7 {
        let refused = json!({"code": "unsupported_media_type", "bytes": bytes, "source": "api", "customer_id": customer});
        let mut e = event("upload.refused", at, refused);
        e["image_id"] = Value::Null;
        return (
            vec![e],
            vec![request(415, Some("unsupported_media_type"), bytes)],
        );
    }
    let processed_at = at + chrono::Duration::milliseconds(1500 + (i % 3500) as i64);
    let mut record = json!({
        "id": image, "customer_id": customer, "status": "received", "bytes": bytes,
        "sha256": format!("{:064x}", i * 104_729), "content_type": "image/jpeg",
        "uploaded_at": micros(at), "expires_at": micros(at + chrono::Duration::days(7)),
        "source": "api",
    });
    let mut events = vec![event("image.received", at, record.clone())];
    if i % 33 == 5 {
        record["status"] = json!("failed");
        record["error"] = json!({"code": "invalid_image", "message": "not a JPEG"});
        record["processed_at"] = json!(micros(processed_at));
        events.push(event("image.failed", processed_at, record.clone()));
    } else {
        record["status"] = json!("processed");
        for (k, v) in [
            ("width", json!(1920)),
            ("height", json!(1280)),
            ("format", json!("jpeg")),
            (
                "exif",
                json!({"make": "Canon", "model": "Canon EOS 350D DIGITAL", "orientation": 1}),
            ),
            ("phash", json!(format!("{:016x}", i * 31))),
            ("average_color", json!("#5fb10f")),
            ("processed_at", json!(micros(processed_at))),
        ] {
            record[k] = v;
        }
        events.push(event("image.processed", processed_at, record.clone()));
    }
    let mut requests = vec![request(201, None, bytes)];
    if i % 20 == 3 {
        let again = processed_at + chrono::Duration::seconds(30);
        events.push(event("image.duplicate", again, record.clone()));
        requests.push(request(200, None, bytes));
    }
    if i % 30 == 11 {
        let deleted = processed_at + chrono::Duration::minutes(90);
        events.push(event("image.deleted", deleted, record));
    }
    (events, requests)
}

/// Writes the rows of one hour of `table` as one file and its marker.
async fn write_hour(
    objects: &dyn ObjectStore,
    decl: &TableDecl,
    hour: Timestamp,
    rows: &[Value],
) -> anyhow::Result<usize> {
    let columns = decl.written_columns();
    let budget = Budget::within(1 << 30, 1 << 30);
    let mut batches = Batches::new(&columns, budget);
    let mut encoder = Encoder::new(&columns, budget)?;
    let mut kept = 0;
    for row in rows {
        let record = decl
            .record(row.to_string().as_bytes(), usize::MAX)
            .map_err(anyhow::Error::msg)?;
        if let Some(batch) = batches.push(&Value::Object(record.row).to_string())? {
            anyhow::ensure!(encoder.write(&batch)?.is_none(), "one file per hour");
        }
        kept += 1;
    }
    if let Some(batch) = batches.finish()? {
        encoder.write(&batch)?;
    }
    let table = LakeTable::parse(&decl.name).map_err(anyhow::Error::msg)?;
    let partition = paths::lake_partition(&table, hour);
    if let Some(file) = encoder.finish()? {
        let location = paths::lake_file(&partition, "bench-0");
        objects.put(&location, PutPayload::from(file.bytes)).await?;
    }
    let marker = json!({"rows": kept}).to_string();
    objects
        .put(
            &paths::lake_success(&partition),
            PutPayload::from(marker.into_bytes()),
        )
        .await?;
    Ok(kept)
}

/// The rows of one table not yet written, by hour, and the hours of the day still to write.
struct Pending {
    decl: TableDecl,
    /// The field whose time names the hour.
    field: &'static str,
    by_hour: std::collections::BTreeMap<Timestamp, Vec<Value>>,
    next: Timestamp,
    end: Timestamp,
    written: usize,
    /// The fields to sort each hour's rows by, if any.
    sort_by: &'static [&'static str],
}

impl Pending {
    fn new(decl: TableDecl, field: &'static str, start: Timestamp) -> Self {
        Self {
            decl,
            field,
            by_hour: Default::default(),
            next: Period::HOUR.interval_at(start).start,
            end: Period::HOUR.interval_at(start).start + chrono::Duration::days(1),
            written: 0,
            sort_by: &[],
        }
    }

    /// Keeps a row for its hour; rows past the day are not written.
    fn push(&mut self, row: Value) -> anyhow::Result<()> {
        let t: Timestamp = row[self.field].as_str().unwrap_or_default().parse()?;
        let hour = Period::HOUR.interval_at(t).start;
        anyhow::ensure!(hour >= self.next, "a row for {hour}, already written");
        if hour < self.end {
            self.by_hour.entry(hour).or_default().push(row);
        }
        Ok(())
    }

    /// Writes every hour of the day that ends by `until`, empty ones as a marker alone.
    async fn write_until(
        &mut self,
        objects: &dyn ObjectStore,
        until: Timestamp,
    ) -> anyhow::Result<()> {
        while self.next < self.end && self.next + chrono::Duration::hours(1) <= until {
            let mut rows = self.by_hour.remove(&self.next).unwrap_or_default();
            if !self.sort_by.is_empty() {
                let sort_by = self.sort_by;
                rows.sort_by_cached_key(|row| {
                    sort_by
                        .iter()
                        .map(|f| row[*f].as_str().map(str::to_owned))
                        .collect::<Vec<_>>()
                });
            }
            self.written += write_hour(objects, &self.decl, self.next, &rows).await?;
            self.next += chrono::Duration::hours(1);
        }
        Ok(())
    }
}

pub async fn day(args: DayArgs) -> anyhow::Result<()> {
    let start = at(DAY);
    let state = crate::bench_lake::state(&args.dir, start, DEFAULT_BUFFER)?;
    let objects = state.objects.as_ref();
    let mut events = Pending::new(TableDecl::events(), "occurred_at", start);
    if args.sorted {
        events.sort_by = &["type", "occurred_at"];
    }
    let mut requests = Pending::new(TableDecl::api_requests(), "at", start);
    for c in 0..CUSTOMERS {
        let id = format!("01a30000-0000-7000-8000-{c:012x}");
        let created = start + chrono::Duration::seconds(c as i64);
        let micros = created.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        events.push(json!({"schema_version": 1, "event_id": format!("customer-{c}"),
            "type": "customer.created", "occurred_at": micros, "customer_id": id,
            "data": {"id": id, "name": format!("customer {c}"), "email": format!("c{c}@example.com"),
                     "plan": "pro", "created_at": micros, "updated_at": micros}}))?;
    }
    // 2.061 events per upload on average (2% refused: one; the rest two, and some a duplicate
    // or a deletion): spread the uploads over the day so the events come to N.
    let uploads = args.events * 1000 / 2061;
    for i in 0..uploads {
        let offset = (i as i128 * 86_000_000_000 / uploads.max(1) as i128) as i64;
        let at = start + chrono::Duration::microseconds(offset);
        let (e, r) = upload(i, at);
        for row in e {
            events.push(row)?;
        }
        for row in r {
            requests.push(row)?;
        }
        // An upload's events end within 92 minutes (its deletion), so hours ended two hours
        // before it are whole: written as they complete, the day never waits in memory.
        let whole = at - chrono::Duration::hours(2);
        events.write_until(objects, whole).await?;
        requests.write_until(objects, whole).await?;
    }
    for pending in [&mut events, &mut requests] {
        pending.write_until(objects, pending.end).await?;
    }
    println!(
        "wrote {} events and {} API requests of {DAY} in {}",
        events.written,
        requests.written,
        args.dir.display()
    );
    Ok(())
}

pub async fn transform(args: TransformArgs) -> anyhow::Result<()> {
    // Each hour's seconds by table, on stderr.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("imagelake_sql=info"))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let start = at(DAY);
    let state = crate::bench_lake::state(
        &args.dir,
        start + chrono::Duration::hours(25),
        DEFAULT_BUFFER,
    )?;
    let transforms = imagelake_sql::Transforms::new(&state);
    let first = Period::HOUR.interval_at(start);
    let started = Instant::now();
    let mut rows = 0;
    for hour in first.through(Period::HOUR.interval_at(start + chrono::Duration::hours(23))) {
        rows += transforms
            .transform(hour)
            .await
            .map_err(|e| anyhow::anyhow!("{hour}: {e}"))?;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("{seconds:.2} s: transformed 24 hours, {rows} rows written");
    Ok(())
}

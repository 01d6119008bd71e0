//! `imagelake bench lake`: the hourly writer's flush of one hour, beside pyarrow on the same rows.
//!
//! `prepare` fills a data dir's lake log with N lifecycle events of one hour, as the event log's
//! copy leaves them (normalised rows), and writes the same rows as NDJSON for the anchor;
//! `flush` then writes that hour to Parquet through the writer task, on a clock just past the
//! hour's grace, and reports rows per second. Run each phase as its own process (scripts/bench-lake)
//! so the peak RSS measured is the flush's alone.

use std::{io::Write, path::PathBuf, sync::Arc, time::Instant};

use clap::{Args, Subcommand};
use imagelake_core::{ManualClock, Timestamp, lake::TableDecl};
use imagelake_lake::{
    Lake, Writer,
    log::{Entry, RecordLog},
};
use imagelake_metadata::SqliteStore;
use imagelake_runtime::{AppState, Settings, keys::AdminToken, tasks::Task};
use serde_json::{Value, json};

#[derive(Subcommand)]
pub enum LakeBench {
    /// Fill DIR's lake log with N events of one hour, and DIR/rows.ndjson with the same rows.
    Prepare(PrepareArgs),
    /// Write the prepared hour to Parquet under DIR/objects/lake/events.
    Flush(FlushArgs),
    /// Write one day of N lifecycle events (and the API requests of its uploads) into DIR's
    /// lake, an hour a file, marked.
    Day(crate::bench_transform::DayArgs),
    /// Run `lake-transform` for the 24 hours of the day in DIR, in order.
    Transform(crate::bench_transform::TransformArgs),
    /// Run the dashboard queries of a file over DIR's lake, cold and warm (see scripts/bench-sql).
    Query(crate::bench_sql::QueryArgs),
    /// Send N events of one hour to a new topic on the brokers (the backlog to catch up).
    #[cfg(feature = "kafka")]
    Produce(ProduceArgs),
    /// Write a topic's backlog of one hour to DIR/objects/lake/events as a lake writer of a
    /// new consumer group, until the hour's `_SUCCESS` counts every event.
    #[cfg(feature = "kafka")]
    CatchUp(CatchUpArgs),
}

#[cfg(feature = "kafka")]
#[derive(Args)]
pub struct ProduceArgs {
    #[arg(long)]
    brokers: String,
    #[arg(long)]
    topic: String,
    #[arg(long, default_value_t = 2_000_000)]
    events: usize,
    #[arg(long, default_value_t = 4)]
    partitions: i32,
}

#[cfg(feature = "kafka")]
#[derive(Args)]
pub struct CatchUpArgs {
    dir: PathBuf,
    #[arg(long)]
    brokers: String,
    #[arg(long)]
    topic: String,
    /// The events in the topic: the writer stops once the hour's marker counts them.
    #[arg(long, default_value_t = 2_000_000)]
    events: u64,
    /// The writer's memory cap (`[lake] max_buffer_bytes`).
    #[arg(long, default_value_t = 256 << 20)]
    max_buffer_bytes: u64,
}

#[derive(Args)]
pub struct PrepareArgs {
    dir: PathBuf,
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
}

#[derive(Args)]
pub struct FlushArgs {
    dir: PathBuf,
    /// The writer's memory cap (`[lake] max_buffer_bytes`).
    #[arg(long, default_value_t = 256 << 20)]
    max_buffer_bytes: u64,
}

/// The hour the events are in.
const HOUR: &str = "2026-11-30T10:00:00Z";

pub async fn run(cmd: LakeBench) -> anyhow::Result<()> {
    match cmd {
        LakeBench::Prepare(args) => prepare(args).await,
        LakeBench::Flush(args) => flush(args).await,
        LakeBench::Day(args) => crate::bench_transform::day(args).await,
        LakeBench::Transform(args) => crate::bench_transform::transform(args).await,
        LakeBench::Query(args) => crate::bench_sql::run(args).await,
        #[cfg(feature = "kafka")]
        LakeBench::Produce(args) => produce(args).await,
        #[cfg(feature = "kafka")]
        LakeBench::CatchUp(args) => catch_up(args).await,
    }
}

fn at(s: &str) -> Timestamp {
    s.parse().expect("a fixed time")
}

/// One event as published (image records of realistic size); the log keeps it normalised.
fn event(i: usize, n: usize, start: Timestamp) -> anyhow::Result<(Timestamp, String)> {
    // Spread over the hour, in order.
    let offset = (i as i128 * 3_599_999_999 / n.max(1) as i128) as i64;
    let occurred = start + chrono::Duration::microseconds(offset);
    let image = format!("01a2{:028x}", i * 7919);
    let customer = format!("01a3{:028x}", i % 500);
    let data = json!({
        "id": image, "customer_id": customer, "status": "processed", "bytes": 180_000 + i % 90_000,
        "sha256": format!("{:064x}", i * 104_729), "content_type": "image/jpeg",
        "filename": format!("IMG_{:05}.jpg", i % 100_000),
        "uploaded_at": occurred.to_rfc3339(), "expires_at": (occurred + chrono::Duration::days(7)).to_rfc3339(),
        "width": 1920, "height": 1280, "format": "jpeg",
        "exif": {"make": "Canon", "model": "Canon EOS 350D DIGITAL", "orientation": 1},
        "phash": format!("{:016x}", i * 31), "average_color": "#5fb10f",
        "renditions": {"thumb": {"width": 256, "height": 171, "content_type": "image/jpeg", "bytes": 7760},
                       "preview": {"width": 1024, "height": 683, "content_type": "image/jpeg", "bytes": 60635}},
        "processed_at": occurred.to_rfc3339(), "source": "api",
    });
    let kinds = [
        "image.received",
        "image.processed",
        "image.deleted",
        "image.expired",
    ];
    let row = json!({
        "schema_version": 1,
        "event_id": format!("{:032x}", i * 2_654_435_761usize),
        "type": kinds[i % kinds.len()],
        "occurred_at": occurred.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "customer_id": customer,
        "image_id": image,
        "source": "api",
        "data": data,
    });
    Ok((occurred, row.to_string()))
}

pub(crate) fn state(
    dir: &std::path::Path,
    now: Timestamp,
    max_buffer_bytes: u64,
) -> anyhow::Result<AppState> {
    let mut settings = Settings {
        data_dir: dir.to_path_buf(),
        ..Settings::default()
    };
    settings.lake.max_buffer_bytes = max_buffer_bytes;
    settings.lake.max_file_bytes = max_buffer_bytes / 4;
    let objects = imagelake_runtime::state::object_store(&settings)?;
    let sqlite = SqliteStore::open(&dir.join("metadata.sqlite"))?;
    Ok(AppState::assemble(
        settings,
        objects,
        Arc::new(sqlite.clone()),
        Arc::new(sqlite),
        Arc::new(ManualClock::new(now)),
        AdminToken::from_secret("bench"),
    ))
}

async fn prepare(args: PrepareArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)?;
    let start = at(HOUR);
    let log = RecordLog::open(&args.dir.join("lake.sqlite"))?;
    let mut ndjson = std::io::BufWriter::new(std::fs::File::create(args.dir.join("rows.ndjson"))?);
    let decl = TableDecl::events();
    let mut batch = Vec::new();
    for i in 0..args.events {
        let (occurred, raw) = event(i, args.events, start)?;
        let checked = decl
            .record(raw.as_bytes(), usize::MAX)
            .map_err(anyhow::Error::msg)?;
        debug_assert_eq!(checked.at, occurred);
        // The rows as they sit in the log, for the anchor too.
        let row = Value::Object(checked.row).to_string();
        writeln!(ndjson, "{row}")?;
        batch.push(Entry {
            dataset: decl.name.clone(),
            at: checked.at,
            id: checked.id,
            row,
        });
        if batch.len() == 50_000 {
            log.append(std::mem::take(&mut batch), None).await?;
        }
    }
    log.append(batch, None).await?;
    ndjson.flush()?;
    println!(
        "prepared {} events of {HOUR} in {}",
        args.events,
        args.dir.display()
    );
    Ok(())
}

async fn flush(args: FlushArgs) -> anyhow::Result<()> {
    let now = at(HOUR) + chrono::Duration::minutes(66);
    let state = state(&args.dir, now, args.max_buffer_bytes)?;
    let lake = Lake::open(&state).await?;
    let waiting = lake.log().waiting().await?;
    let mut writer = Writer::new(lake, None).await?;
    let started = Instant::now();
    let stop = tokio_util::sync::CancellationToken::new();
    // The first step closes the hour: the Parquet files are put and `_SUCCESS` written.
    let mut busy = writer.step(&stop).await? == imagelake_runtime::tasks::Step::Busy;
    let seconds = started.elapsed().as_secs_f64();
    // Then the written records leave the log, in the steps that follow.
    let purging = Instant::now();
    while busy {
        busy = writer.step(&stop).await? == imagelake_runtime::tasks::Step::Busy;
    }
    println!(
        "flushed {waiting} rows in {seconds:.2} s: {:.0} rows/s; the log purged them in {:.2} s more",
        waiting as f64 / seconds,
        purging.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(feature = "kafka")]
async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    use rdkafka::{
        ClientConfig,
        admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
        client::DefaultClientContext,
        producer::{FutureProducer, FutureRecord},
    };
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .create()?;
    // The writer reads the requests topic too.
    let requests = format!("{}.requests", args.topic);
    let topics = [
        NewTopic::new(&args.topic, args.partitions, TopicReplication::Fixed(1)),
        NewTopic::new(&requests, 1, TopicReplication::Fixed(1)),
    ];
    for result in admin.create_topics(&topics, &AdminOptions::new()).await? {
        result.map_err(|(name, code)| anyhow::anyhow!("creating {name}: {code}"))?;
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "200000")
        .create()?;
    let start = at(HOUR);
    let started = Instant::now();
    let mut sends = std::collections::VecDeque::new();
    for i in 0..args.events {
        let (occurred, row) = event(i, args.events, start)?;
        let key = format!("{:08}", i % 500);
        let mut record = FutureRecord::to(&args.topic)
            .key(&key)
            .payload(&row)
            .timestamp(occurred.timestamp_millis());
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    sends.push_back(delivery);
                    break;
                }
                // The producer's queue is full: wait for the oldest delivery.
                Err((_, back)) => {
                    record = back;
                    let oldest = sends.pop_front().context("the producer refuses records")?;
                    oldest.await?.map_err(|(e, _)| e)?;
                }
            }
        }
    }
    for delivery in sends {
        delivery.await?.map_err(|(e, _)| e)?;
    }
    println!(
        "produced {} events of {HOUR} to {} in {:.1} s",
        args.events,
        args.topic,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(feature = "kafka")]
async fn catch_up(args: CatchUpArgs) -> anyhow::Result<()> {
    let now = at(HOUR) + chrono::Duration::minutes(66);
    let mut state = state(&args.dir, now, args.max_buffer_bytes)?;
    let mut settings = (*state.settings).clone();
    settings.kafka.brokers = Some(args.brokers.clone());
    settings.kafka.events_topic = args.topic.clone();
    settings.kafka.requests_topic = format!("{}.requests", args.topic);
    settings.lake.group_id = format!("{}-bench-{}", args.topic, std::process::id());

    state.settings = Arc::new(settings);
    let mut writer = imagelake_lake::StreamWriter::connect(&state, true).await?;
    let marker = args
        .dir
        .join("objects/lake/events/dt=2026-11-30/hour=10/_SUCCESS");
    let stop = tokio_util::sync::CancellationToken::new();
    let joining = Instant::now();
    // Timed from the first record read: joining a new group is the broker's affair.
    let mut started = None;
    loop {
        writer.step(&stop).await?;
        if started.is_none() && state.metrics.lake.waiting.get() + rows_written(&state) as i64 > 0 {
            started = Some(Instant::now());
        }
        if let Ok(bytes) = std::fs::read(&marker) {
            let value: Value = serde_json::from_slice(&bytes)?;
            if value["rows"].as_u64() >= Some(args.events) {
                break;
            }
        }
    }
    let started = started.unwrap_or(joining);
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "caught up {} events in {seconds:.2} s: {:.0} rows/s (joining the group took {:.1} s more)",
        args.events,
        args.events as f64 / seconds,
        (started - joining).as_secs_f64()
    );
    Ok(())
}

/// Rows of `events` the writer has put in files.
#[cfg(feature = "kafka")]
fn rows_written(state: &AppState) -> u64 {
    state
        .metrics
        .lake
        .rows
        .get_or_create(&vec![("table", "events".to_owned())])
        .get()
}

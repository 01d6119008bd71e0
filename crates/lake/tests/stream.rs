//! The lake writer of a deployment with brokers, in process on an injected clock against the
//! real Kafka-protocol broker `scripts/test` starts: records sent through the Kafka door, API
//! requests and lifecycle events reach the lake when their hour closes on the clock, idle
//! tables' hours close too, late records are written into their own hour, and a write cut
//! short is done again by the next holder of the partitions under the same names.

mod common;

use std::{collections::BTreeSet, path::Path, sync::Arc, time::Duration};

use bytes::Bytes;
use common::{Fixture, Flaky, at};
use imagelake_core::{Clock, Timestamp, lake::TableDecl};
use imagelake_lake::{KafkaDoor, StreamWriter};
use imagelake_runtime::{
    AppState, Settings,
    lake::{ApiRequest, LakeDoor},
    tasks::Task,
};
use parquet::file::reader::{FileReader, SerializedFileReader};
use rdkafka::{
    ClientConfig,
    producer::{FutureProducer, FutureRecord},
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").expect(
        "KAFKA_BROKERS is not set: run the tests through scripts/test, which starts the broker",
    )
}

/// Settings naming this test's own topics and group, and its topics made on the broker.
async fn fixture(tag: &str, start: &str, max_file_bytes: u64) -> Fixture {
    let tag = format!("{tag}-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let objects = Arc::new(Flaky::new(&dir.path().join("objects")));
    let mut settings = Settings {
        data_dir: dir.path().to_path_buf(),
        ..Settings::default()
    };
    settings.kafka.brokers = Some(brokers());
    settings.kafka.images_topic = format!("{tag}-images");
    settings.kafka.dead_letter_topic = format!("{tag}-dead");
    settings.kafka.events_topic = format!("{tag}-events");
    settings.kafka.requests_topic = format!("{tag}-requests");
    settings
        .kafka
        .config
        .insert("session.timeout.ms".into(), "6000".into());
    settings.lake.group_id = format!("{tag}-lake");
    settings.lake.max_buffer_bytes = 16 << 20;
    settings.lake.max_file_bytes = max_file_bytes;
    settings.lake.tables = vec![
        serde_json::from_value::<TableDecl>(json!({
            "name": "clicks", "topic": format!("{tag}-clicks"), "time_field": "ts",
            "id_field": "id",
            "columns": {"id": "string", "ts": "timestamp", "page": "string", "n": "int64"}
        }))
        .unwrap(),
        serde_json::from_value::<TableDecl>(json!({
            "name": "idle", "topic": format!("{tag}-idle"), "time_field": "ts",
            "columns": {"ts": "timestamp"}
        }))
        .unwrap(),
    ];
    let layout = imagelake_kafka::Layout {
        partitions: 2,
        replication: 1,
    };
    imagelake_kafka::create_topics(&settings, &brokers(), &layout)
        .await
        .unwrap();
    Fixture::assemble(dir, objects, settings, start)
}

/// `n` records of hour 10, NDJSON, ids from `first`.
fn clicks(first: usize, n: usize, minute: u32) -> Bytes {
    let mut body = String::new();
    for i in first..first + n {
        let line = json!({
            "id": format!("c{i}"),
            "ts": format!("2026-11-30T10:{minute:02}:{:02}.{:06}Z", i % 60, i),
            "page": format!("/page/{}/{}", i % 97, "x".repeat(40)),
            "n": i,
        });
        body.push_str(&line.to_string());
        body.push('\n');
    }
    Bytes::from(body)
}

/// Steps the writer until `done` holds, for at most a minute of real time.
async fn step_until(writer: &mut StreamWriter, what: &str, mut done: impl FnMut() -> bool) {
    let stop = CancellationToken::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        if let Err(e) = writer.step(&stop).await {
            panic!("{what}: {e:#}");
        }
    }
}

fn waiting(state: &AppState) -> i64 {
    state.metrics.lake.waiting.get()
}

fn marker(f: &Fixture, table: &str, hour: &str) -> Option<Value> {
    let path = f
        .dir
        .path()
        .join("objects/lake")
        .join(table)
        .join(hour)
        .join("_SUCCESS");
    Some(serde_json::from_slice(&std::fs::read(path).ok()?).unwrap())
}

/// The Parquet files of a folder and the rows in them.
fn files(folder: &Path) -> (BTreeSet<String>, i64) {
    let mut names = BTreeSet::new();
    let mut rows = 0;
    for entry in std::fs::read_dir(folder).into_iter().flatten() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".parquet") {
            let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
            rows += reader.metadata().file_metadata().num_rows();
            names.insert(name);
        }
    }
    (names, rows)
}

const HOUR_10: &str = "dt=2026-11-30/hour=10";

fn request(at: Timestamp) -> ApiRequest {
    ApiRequest {
        at,
        route: "/v1/images/{id}".into(),
        method: "GET".into(),
        status: 200,
        error_code: None,
        customer_id: None,
        key_role: Some("admin".into()),
        request_bytes: 0,
        response_bytes: 10,
        duration_ms: 1.5,
    }
}

/// Lifecycle events as the event publisher sends them: JSON, keyed by customer.
async fn send_events(f: &Fixture, n: usize, occurred_at: &str) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    for i in 0..n {
        let event = json!({
            "schema_version": 1, "event_id": format!("00000000-0000-7000-8000-{i:012}"),
            "type": "image.received", "occurred_at": occurred_at,
            "customer_id": "cust-1", "image_id": format!("img-{i}"), "source": "api",
            "data": {"n": i},
        })
        .to_string();
        producer
            .send(
                FutureRecord::to(&f.state.settings.kafka.events_topic)
                    .key("cust-1")
                    .payload(&event),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hours_close_on_the_clock_from_the_stream() {
    let f = fixture("lake-clock", "2026-11-30T10:30:00Z", 64 << 20).await;
    let door = KafkaDoor::connect(&f.state).await.unwrap();
    let mut body = clicks(0, 100, 20).to_vec();
    body.extend_from_slice(
        b"{not json\n{\"id\": \"x\", \"ts\": \"2026-11-30T10:00:00Z\", \"n\": \"many\"}\n",
    );
    let appended = door
        .append("clicks", Bytes::from(body), f.clock.now())
        .await
        .unwrap();
    assert_eq!((appended.accepted, appended.quarantined.len()), (100, 2));
    for _ in 0..3 {
        door.record_request(request(f.clock.now()));
    }
    send_events(&f, 5, "2026-11-30T10:29:00Z").await;

    let mut writer = StreamWriter::connect(&f.state, true).await.unwrap();
    step_until(&mut writer, "every record read", || {
        waiting(&f.state) == 110
    })
    .await;
    assert!(
        marker(&f, "clicks", HOUR_10).is_none(),
        "hour 10 is not due"
    );

    // 11:05 and a second: the grace has passed.
    f.clock.set(at("2026-11-30T11:05:01Z"));
    step_until(&mut writer, "hour 10 closed", || {
        ["clicks", "idle", "events", "api_requests"]
            .iter()
            .all(|t| marker(&f, t, HOUR_10).is_some())
    })
    .await;
    let lake = f.dir.path().join("objects/lake");
    assert_eq!(marker(&f, "clicks", HOUR_10).unwrap()["rows"], 100);
    assert_eq!(files(&lake.join("clicks").join(HOUR_10)).1, 100);
    assert_eq!(marker(&f, "idle", HOUR_10).unwrap()["rows"], 0);
    assert_eq!(marker(&f, "events", HOUR_10).unwrap()["rows"], 5);
    assert_eq!(files(&lake.join("events").join(HOUR_10)).1, 5);
    assert_eq!(marker(&f, "api_requests", HOUR_10).unwrap()["rows"], 3);
    let quarantine = lake.join("quarantine/clicks").join(HOUR_10);
    assert_eq!(files(&quarantine).1, 2, "the two bad lines are kept");
    let (before, _) = files(&lake.join("clicks").join(HOUR_10));

    // A record of hour 10 after it closed, and one sent again, wait for the next close and
    // land in a file of their own; the marker is written again.
    f.clock.set(at("2026-11-30T11:10:00Z"));
    let late = clicks(100, 1, 50);
    door.append("clicks", late, f.clock.now()).await.unwrap();
    door.append("clicks", clicks(5, 1, 20), f.clock.now())
        .await
        .unwrap();
    step_until(&mut writer, "the late record read", || {
        waiting(&f.state) == 2
    })
    .await;
    assert_eq!(marker(&f, "clicks", HOUR_10).unwrap()["rows"], 100);
    f.clock.set(at("2026-11-30T12:05:01Z"));
    step_until(&mut writer, "the late record written", || {
        marker(&f, "clicks", HOUR_10).unwrap()["rows"] == 101
    })
    .await;
    let (after, rows) = files(&lake.join("clicks").join(HOUR_10));
    assert_eq!(rows, 101, "the record sent again is not written twice");
    assert!(after.is_superset(&before) && after.len() > before.len());
    assert!(marker(&f, "idle", "dt=2026-11-30/hour=11").is_some());

    // A restarted writer reads the partitions again and writes nothing new.
    drop(writer);
    let mut writer = StreamWriter::connect(&f.state, true).await.unwrap();
    let stop = CancellationToken::new();
    for _ in 0..20 {
        writer.step(&stop).await.unwrap();
    }
    assert_eq!(files(&lake.join("clicks").join(HOUR_10)).0, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_cut_short_is_done_again_by_the_next_holder() {
    // Small files, so one write is many puts.
    let f = fixture("lake-cut", "2026-11-30T11:10:00Z", 1).await;
    let door = KafkaDoor::connect(&f.state).await.unwrap();
    door.append("clicks", clicks(0, 20_000, 30), f.clock.now())
        .await
        .unwrap();
    // The first file of the write goes through, then the store fails.
    *f.objects.only.lock().unwrap() = Some("lake/clicks/".into());
    f.objects.allow(1);
    let mut first = StreamWriter::connect(&f.state, true).await.unwrap();
    let stop = CancellationToken::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while first.step(&stop).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the store never failed"
        );
    }
    drop(first);
    let folder = f.dir.path().join("objects/lake/clicks").join(HOUR_10);
    let (cut, _) = files(&folder);
    assert!(!cut.is_empty(), "the first writer put files before it died");

    f.objects.allow(-1);
    let mut next = StreamWriter::connect(&f.state, true).await.unwrap();
    step_until(&mut next, "the hour written", || {
        marker(&f, "clicks", HOUR_10).is_some_and(|m| m["rows"] == 20_000)
    })
    .await;
    let (names, rows) = files(&folder);
    assert_eq!(rows, 20_000, "no record twice, none lost");
    assert!(names.is_superset(&cut), "the same names were written again");
}

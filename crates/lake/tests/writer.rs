//! The writer's promises under failure, step by step on an injected clock: a write cut short
//! anywhere is done again under the same names (no row twice, none lost), a restart rewrites
//! no closed hour, and the files are what the log held.

mod common;

use std::{
    collections::BTreeSet,
    sync::{Arc, atomic::Ordering},
};

use bytes::Bytes;
use common::{Fixture, Flaky, at};
use imagelake_core::{Clock, jobs::Period, lake::TableDecl};
use imagelake_lake::{Lake, Writer};
use imagelake_metadata::SqliteStore;
use imagelake_runtime::{
    AppState, Settings,
    jobs::Job,
    keys::AdminToken,
    lake::LakeDoor,
    tasks::{Step, Task},
};
use parquet::file::reader::{FileReader, SerializedFileReader};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn fixture(start: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let objects = Arc::new(Flaky::new(&dir.path().join("objects")));
    let mut settings = Settings {
        data_dir: dir.path().to_path_buf(),
        ..Settings::default()
    };
    // Small files, so one hour is many of them.
    settings.lake.max_buffer_bytes = 16 << 20;
    settings.lake.max_file_bytes = 1;
    settings.lake.tables = vec![
        serde_json::from_value::<TableDecl>(json!({
            "name": "clicks", "time_field": "ts", "id_field": "id",
            "columns": {"id": "string", "ts": "timestamp", "page": "string", "n": "int64"}
        }))
        .unwrap(),
    ];
    Fixture::assemble(dir, objects, settings, start)
}

/// `n` records of hour 10, NDJSON, ids `c0`..
fn clicks(n: usize) -> Bytes {
    let mut body = String::new();
    for i in 0..n {
        let line = json!({
            "id": format!("c{i}"),
            "ts": format!("2026-11-30T10:{:02}:{:02}.{:06}Z", (i / 60) % 60, i % 60, i),
            "page": format!("/page/{}/{}", i % 97, "x".repeat(40)),
            "n": i,
        });
        body.push_str(&line.to_string());
        body.push('\n');
    }
    Bytes::from(body)
}

async fn step_until_idle(writer: &mut Writer) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    while writer.step(&stop).await? == Step::Busy {}
    Ok(())
}

/// The Parquet files of hour 10 of `clicks`, and the rows in all of them.
fn hour_files(dir: &std::path::Path) -> (BTreeSet<String>, i64) {
    let folder = dir.join("objects/lake/clicks/dt=2026-11-30/hour=10");
    let mut names = BTreeSet::new();
    let mut rows = 0;
    for entry in std::fs::read_dir(folder).unwrap() {
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

#[tokio::test]
async fn a_write_cut_short_is_written_again_under_the_same_names() {
    let f = fixture("2026-11-30T10:30:00Z");
    let lake = Lake::open(&f.state).await.unwrap();
    let appended = lake
        .append("clicks", clicks(30_000), f.clock.now())
        .await
        .unwrap();
    assert_eq!(appended.accepted, 30_000);
    let mut writer = Writer::new(lake.clone(), None).await.unwrap();
    step_until_idle(&mut writer).await.unwrap();

    // The hour closes at 11:05; the third file's put dies.
    f.clock.set(at("2026-11-30T11:06:00Z"));
    f.objects.allowed.store(2, Ordering::SeqCst);
    assert!(
        step_until_idle(&mut writer).await.is_err(),
        "the write was cut short"
    );
    let (cut, _) = hour_files(f.dir.path());
    assert_eq!(cut.len(), 2, "two files were put before the cut: {cut:?}");
    assert!(
        !f.dir
            .path()
            .join("objects/lake/clicks/dt=2026-11-30/hour=10/_SUCCESS")
            .exists(),
        "no marker for a cut hour"
    );

    // A fresh writer (the process restarted) finishes the same range under the same names.
    f.objects.allowed.store(-1, Ordering::SeqCst);
    let mut restarted = Writer::new(lake.clone(), None).await.unwrap();
    step_until_idle(&mut restarted).await.unwrap();
    let (names, rows) = hour_files(f.dir.path());
    assert!(names.len() > 2, "{names:?}");
    assert!(
        cut.is_subset(&names),
        "the files put before the cut were put again, not beside"
    );
    assert_eq!(rows, 30_000, "every record once");
    let marker: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            f.dir
                .path()
                .join("objects/lake/clicks/dt=2026-11-30/hour=10/_SUCCESS"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(marker["rows"], 30_000);
    assert_eq!(marker["files"].as_u64(), Some(names.len() as u64));

    // Sent again (a retried delivery): the ids were seen; nothing is written twice.
    let again = lake
        .append("clicks", clicks(30_000), f.clock.now())
        .await
        .unwrap();
    assert_eq!(again.accepted, 30_000, "a duplicate is accepted, once");
    f.clock.set(at("2026-11-30T12:06:00Z"));
    step_until_idle(&mut restarted).await.unwrap();
    assert_eq!(hour_files(f.dir.path()).1, 30_000);
}

#[tokio::test]
async fn a_restart_rewrites_no_closed_hour() {
    let f = fixture("2026-11-30T10:30:00Z");
    let lake = Lake::open(&f.state).await.unwrap();
    lake.append("clicks", clicks(100), f.clock.now())
        .await
        .unwrap();
    let mut writer = Writer::new(lake.clone(), None).await.unwrap();
    f.clock.set(at("2026-11-30T11:06:00Z"));
    step_until_idle(&mut writer).await.unwrap();
    let puts = f.objects.puts.load(Ordering::SeqCst);
    assert!(puts > 0);

    let mut restarted = Writer::new(Lake::open(&f.state).await.unwrap(), None)
        .await
        .unwrap();
    step_until_idle(&mut restarted).await.unwrap();
    assert_eq!(
        f.objects.puts.load(Ordering::SeqCst),
        puts,
        "nothing was written again"
    );
    assert_eq!(hour_files(f.dir.path()).1, 100);
}

#[tokio::test]
async fn a_changed_type_refuses_to_start_and_a_new_column_is_taken() {
    let f = fixture("2026-11-30T10:30:00Z");
    Lake::open(&f.state).await.unwrap();
    let mut settings = (*f.state.settings).clone();
    let table = &mut settings.lake.tables[0];
    table
        .columns
        .insert("referrer".into(), imagelake_core::lake::ColumnType::String);
    let grown = AppState::assemble(
        settings.clone(),
        f.objects.clone(),
        f.state.store.clone(),
        f.state.queue.clone(),
        f.clock.clone(),
        AdminToken::from_secret("admin"),
    );
    Lake::open(&grown).await.expect("a new column is taken");
    settings.lake.tables[0]
        .columns
        .insert("n".into(), imagelake_core::lake::ColumnType::Float64);
    let changed = AppState::assemble(
        settings,
        f.objects.clone(),
        f.state.store.clone(),
        f.state.queue.clone(),
        f.clock.clone(),
        AdminToken::from_secret("admin"),
    );
    let refused = Lake::open(&changed)
        .await
        .err()
        .expect("a changed type is refused");
    let message = format!("{refused:#}");
    assert!(
        message.contains("\"n\" was int64 and is now declared float64"),
        "{message}"
    );
}

#[tokio::test]
async fn a_range_written_again_with_other_settings_leaves_no_extra_file() {
    let f = fixture("2026-11-30T10:30:00Z");
    let lake = Lake::open(&f.state).await.unwrap();
    lake.append("clicks", clicks(30_000), f.clock.now())
        .await
        .unwrap();
    let mut writer = Writer::new(lake.clone(), None).await.unwrap();
    step_until_idle(&mut writer).await.unwrap();
    f.clock.set(at("2026-11-30T11:06:00Z"));
    f.objects.allowed.store(4, Ordering::SeqCst);
    assert!(step_until_idle(&mut writer).await.is_err());
    assert_eq!(hour_files(f.dir.path()).0.len(), 4);

    // Restarted with larger files: the range is one file now, and the four are not left beside it.
    f.objects.allowed.store(-1, Ordering::SeqCst);
    let mut settings = (*f.state.settings).clone();
    settings.lake.max_file_bytes = 64 << 20;
    settings.lake.max_buffer_bytes = 256 << 20;
    let state = AppState::assemble(
        settings,
        f.objects.clone(),
        f.state.store.clone(),
        f.state.queue.clone(),
        f.clock.clone(),
        AdminToken::from_secret("admin"),
    );
    let mut restarted = Writer::new(Lake::open(&state).await.unwrap(), None)
        .await
        .unwrap();
    step_until_idle(&mut restarted).await.unwrap();
    let (names, rows) = hour_files(f.dir.path());
    assert_eq!(rows, 30_000, "every record once: {names:?}");
    assert!(names.len() < 4, "{names:?}");
}

#[tokio::test]
async fn a_lost_marker_is_written_again_and_old_hours_expire_whole() {
    let f = fixture("2026-11-30T10:30:00Z");
    let lake = Lake::open(&f.state).await.unwrap();
    lake.append("clicks", clicks(100), f.clock.now())
        .await
        .unwrap();
    let mut writer = Writer::new(lake.clone(), None).await.unwrap();
    step_until_idle(&mut writer).await.unwrap();
    let hour_10 = f
        .dir
        .path()
        .join("objects/lake/clicks/dt=2026-11-30/hour=10");
    let hour_9 = f
        .dir
        .path()
        .join("objects/lake/clicks/dt=2026-11-30/hour=09");
    assert!(hour_9.join("_SUCCESS").exists(), "an idle hour is closed");
    assert!(
        !f.dir.path().join("objects/lake/events").exists(),
        "no hour of events is closed where no event log feeds the writer"
    );

    // The file is put, the marker's put dies.
    f.clock.set(at("2026-11-30T11:06:00Z"));
    f.objects.allowed.store(1, Ordering::SeqCst);
    assert!(step_until_idle(&mut writer).await.is_err());
    assert!(!hour_10.join("_SUCCESS").exists());
    f.objects.allowed.store(-1, Ordering::SeqCst);
    let mut restarted = Writer::new(lake.clone(), None).await.unwrap();
    step_until_idle(&mut restarted).await.unwrap();
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(hour_10.join("_SUCCESS")).unwrap()).unwrap();
    assert_eq!(marker["rows"], 100, "{marker}");
    assert_eq!(marker["sources"][0]["from"], 1, "{marker}");

    // Eight days on, the lake retention (7 days) has passed hours 9 and 10: the
    // `lake-retention` job deletes them whole.
    f.clock.set(at("2026-12-08T11:06:00Z"));
    step_until_idle(&mut restarted).await.unwrap();
    assert!(
        hour_10.join("_SUCCESS").exists(),
        "the writer deletes nothing"
    );
    let retention = imagelake_lake::LakeRetention::new(&f.state);
    let interval = Period::HOUR.last_ended(f.clock.now());
    let deleted = retention.run(interval).await.unwrap();
    assert!(deleted >= 2, "hours 9 and 10 of every table: {deleted}");
    // (Local files leave the emptied folders; an object store has no folders.)
    let files = |dir: &std::path::Path| std::fs::read_dir(dir).map_or(0, |d| d.count());
    assert_eq!(files(&hour_10), 0, "hour 10 expired");
    assert_eq!(files(&hour_9), 0, "hour 9 expired");
    let day = f.dir.path().join("objects/lake/clicks/dt=2026-12-01");
    assert!(day.exists(), "hours within the retention stay");
}

/// The rows of the Parquet files in one folder under the objects.
fn rows_in(dir: &std::path::Path, folder: &str) -> i64 {
    let mut rows = 0;
    for entry in std::fs::read_dir(dir.join("objects").join(folder)).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "parquet") {
            let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
            rows += reader.metadata().file_metadata().num_rows();
        }
    }
    rows
}

#[tokio::test]
async fn an_event_the_table_cannot_read_is_quarantined_and_the_copy_goes_on() {
    let f = fixture("2026-11-30T10:30:00Z");
    let db = rusqlite::Connection::open(f.dir.path().join("metadata.sqlite")).unwrap();
    let good = json!({
        "schema_version": 1, "event_id": "00000000-0000-7000-8000-000000000001",
        "type": "image.received", "occurred_at": "2026-11-30T10:10:00Z", "customer_id": "c",
        "image_id": "i", "source": "api", "data": {}
    });
    for (id, payload) in [("bad", "{not json".to_owned()), ("good", good.to_string())] {
        db.execute(
            "INSERT INTO events (event_id, customer_id, occurred_at, payload) VALUES (?1, 'c', 0, ?2)",
            (id, payload),
        )
        .unwrap();
    }
    let lake = Lake::open(&f.state).await.unwrap();
    let events = SqliteStore::open(&f.dir.path().join("metadata.sqlite")).unwrap();
    let mut writer = Writer::new(lake, Some(events)).await.unwrap();
    step_until_idle(&mut writer).await.unwrap();
    f.clock.set(at("2026-11-30T11:05:01Z"));
    step_until_idle(&mut writer).await.unwrap();
    let hour = "dt=2026-11-30/hour=10";
    assert_eq!(rows_in(f.dir.path(), &format!("lake/events/{hour}")), 1);
    assert_eq!(
        rows_in(f.dir.path(), &format!("lake/quarantine/events/{hour}")),
        1,
        "the payload that is not JSON is kept with its reason"
    );
}

//! The transforms on a lake the writer made from real uploads: real photos uploaded, one a
//! duplicate, one refused, one deleted, two expired in the next hour; `lake-transform` run for
//! each hour as `imagelake jobs run` runs it. Its tables agree with what the API answered, and
//! DuckDB, running the same SQL files on the same raw files, finds the same rows.

mod common;

use std::{path::Path, sync::Arc, time::Duration};

use common::{TestServer, corpus, wait_for};
use imagelake_core::{ManualClock, duration::HumanDuration, jobs::RunState};
use imagelake_runtime::jobs::{Job, control};
use imagelake_sql::{
    Transforms,
    datafusion::{arrow::json::ArrayWriter, prelude::ParquetReadOptions},
    engine::Engine,
};
use object_store::local::LocalFileSystem;
use reqwest::StatusCode;
use serde_json::{Value, json};

const HOUR_10: &str = "dt=2026-11-30/hour=10";
const HOUR_11: &str = "dt=2026-11-30/hour=11";

/// Every row of one output of the lake (a table folder, or one file), with DataFusion.
async fn rows(objects: &Path, path: &str, sql: &str) -> Vec<Value> {
    let store = Arc::new(LocalFileSystem::new_with_prefix(objects).unwrap());
    let engine = Engine::new(store).unwrap();
    let mut options = ParquetReadOptions::default();
    let partitioned = [
        (
            "dt".to_owned(),
            imagelake_sql::datafusion::arrow::datatypes::DataType::Utf8,
        ),
        (
            "hour".to_owned(),
            imagelake_sql::datafusion::arrow::datatypes::DataType::Utf8,
        ),
    ];
    if !path.ends_with(".parquet") {
        options = options.table_partition_cols(partitioned.to_vec());
    }
    engine
        .context()
        .register_parquet("t", format!("imagelake://lake/{path}"), options)
        .await
        .unwrap();
    let (_, batches) = engine.query(sql).await.unwrap();
    let mut writer = ArrayWriter::new(Vec::new());
    for batch in &batches {
        writer.write(batch).unwrap();
    }
    writer.finish().unwrap();
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Vec::new();
    }
    serde_json::from_slice(&bytes).unwrap()
}

/// DuckDB runs `sql_file` on the given raw folders and compares with `output`.
fn duckdb_agrees(spec: Value) {
    let python = std::env::var("IMAGELAKE_LAKE_PYTHON").expect(
        "IMAGELAKE_LAKE_PYTHON is not set: run the tests through scripts/test, which installs DuckDB",
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/transform-check.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(spec.to_string())
        .output()
        .expect("the DuckDB check runs");
    assert!(
        out.status.success(),
        "DuckDB disagrees on {}:\n{}\n{}",
        spec["sql"],
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sql_file(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../transforms")
        .join(name)
        .display()
        .to_string()
}

fn millis_between(from: &Value, to: &Value) -> f64 {
    let parse = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
            .unwrap()
            .timestamp_micros()
    };
    (parse(to) - parse(from)) as f64 / 1000.0
}

async fn transform(server: &TestServer, hour: &str) {
    let job: Arc<dyn Job> = Arc::new(Transforms::new(&server.state));
    let run = control::run_here(&server.state, job, hour)
        .await
        .unwrap_or_else(|e| panic!("lake-transform {hour}: {e}"));
    assert_eq!(run.state, RunState::Success);
}

#[tokio::test]
async fn the_transforms_agree_with_the_api_and_with_duckdb() {
    let clock = Arc::new(ManualClock::new("2026-11-30T10:05:00Z".parse().unwrap()));
    let server = TestServer::with_lake(clock.clone(), |s| {
        s.retention = HumanDuration(Duration::from_secs(3600));
        s.sweep_interval = HumanDuration(Duration::from_secs(60));
        s.lake.retention = Some(HumanDuration(Duration::from_secs(7 * 86_400)));
    })
    .await;
    let objects = server.objects_dir();
    let (customer, key) = server.customer("transforms").await;

    // An hour still going cannot be run.
    let job: Arc<dyn Job> = Arc::new(Transforms::new(&server.state));
    let early = control::run_here(&server.state, job, "2026-11-30T10").await;
    let Err(control::RunHereError::Refused(refused)) = early else {
        panic!("hour 10 has not ended: {early:?}");
    };
    assert!(refused.message.contains("has not ended yet"), "{refused:?}");

    // The clock runs ten times faster than real time while the photos are processed, so each
    // has a latency of its own.
    let ticking = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let ticker = tokio::spawn({
        let (clock, ticking) = (clock.clone(), ticking.clone());
        async move {
            while ticking.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(1)).await;
                clock.advance(Duration::from_millis(10));
            }
        }
    });
    let photos: Vec<_> = corpus().into_iter().take(4).collect();
    let mut answers = Vec::new();
    for photo in &photos {
        let (status, body) = server
            .upload(&key, std::fs::read(photo).unwrap(), None)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["id"].as_str().unwrap().to_owned();
        answers.push(server.wait_settled(&key, &id).await);
    }
    let ids: Vec<String> = answers
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    let (status, _) = server
        .upload(&key, std::fs::read(&photos[0]).unwrap(), None)
        .await;
    assert_eq!(status, StatusCode::OK, "a duplicate");
    let (status, _) = server.upload(&key, b"no image".to_vec(), None).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let deleted = server
        .client
        .delete(server.url(&format!("/v1/images/{}", ids[1])))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    ticking.store(false, std::sync::atomic::Ordering::SeqCst);
    ticker.await.unwrap();

    // Hour 10 has ended but is not written (its grace runs to 11:05): a run waits for it.
    clock.set("2026-11-30T11:01:00Z".parse().unwrap());
    let job: Arc<dyn Job> = Arc::new(Transforms::new(&server.state));
    let early = control::run_here(&server.state, job, "2026-11-30T10").await;
    let Err(control::RunHereError::Ended(early)) = early else {
        panic!("hour 10 is not written yet: {early:?}");
    };
    assert!(
        early
            .error
            .as_deref()
            .unwrap()
            .contains("events/dt=2026-11-30/hour=10/_SUCCESS"),
        "{early:?}"
    );

    // Hour 10 closes at 11:05; the three images left expire (their hour of retention is over).
    clock.set("2026-11-30T11:06:00Z".parse().unwrap());
    for table in ["events", "api_requests"] {
        let marker = objects
            .join("lake")
            .join(table)
            .join(HOUR_10)
            .join("_SUCCESS");
        wait_for(Duration::from_secs(30), || async {
            marker.exists().then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("{table} hour 10 closed"));
    }
    transform(&server, "2026-11-30T10").await;

    // images: the four photos as the API described them; the deleted one says when.
    let images = rows(
        &objects,
        "lake/images/",
        "SELECT * FROM t ORDER BY image_id",
    )
    .await;
    assert_eq!(images.len(), 4, "{images:#?}");
    for answer in &answers {
        let row = images
            .iter()
            .find(|r| r["image_id"] == answer["id"])
            .unwrap();
        assert_eq!(row["customer_id"], customer.as_str());
        assert_eq!(row["source"], "api");
        assert_eq!(row["status"], "processed");
        assert_eq!(row["format"], answer["format"]);
        assert_eq!(row["bytes"], answer["bytes"]);
        assert_eq!(row["width"], answer["width"]);
        assert_eq!(row["height"], answer["height"]);
        assert_eq!(row["phash"], answer["phash"]);
        assert_eq!(row["exif_make"], answer["exif"]["make"]);
        let latency = millis_between(&answer["uploaded_at"], &answer["processed_at"]);
        assert!(
            (row["latency_ms"].as_f64().unwrap() - latency).abs() < 0.01,
            "{row} vs {answer}"
        );
        assert_eq!(
            (row["dt"].as_str(), row["hour"].as_str()),
            (Some("2026-11-30"), Some("10"))
        );
        assert_eq!(row["expired_at"], Value::Null, "expiry is in hour 11");
    }
    let gone = images
        .iter()
        .find(|r| r["image_id"] == ids[1].as_str())
        .unwrap();
    assert!(gone["deleted_at"].is_string(), "{gone}");

    // uploads_hourly: what the API answered in hour 10.
    let uploads = rows(&objects, "lake/uploads_hourly/", "SELECT * FROM t").await;
    assert_eq!(uploads.len(), 1, "{uploads:#?}");
    let u = &uploads[0];
    assert_eq!(
        (
            &u["uploads"],
            &u["duplicates"],
            &u["refused"],
            &u["processed"],
            &u["failed"]
        ),
        (&json!(4), &json!(1), &json!(1), &json!(4), &json!(0))
    );
    let total: u64 = photos
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(u["bytes"], total);
    assert_eq!(u["refusals_by_code"], r#"{"unsupported_media_type":1}"#);
    assert_eq!(u["failures_by_code"], "{}");
    let mut latencies: Vec<f64> = answers
        .iter()
        .map(|a| millis_between(&a["uploaded_at"], &a["processed_at"]))
        .collect();
    latencies.sort_by(f64::total_cmp);
    assert!(latencies[0] > 0.0, "{latencies:?}");
    let median = (latencies[1] + latencies[2]) / 2.0;
    assert!(
        (u["latency_ms_p50"].as_f64().unwrap() - median).abs() < 0.01,
        "{u}"
    );

    // api_requests_hourly: the uploads by their answers.
    let requests = rows(
        &objects,
        "lake/api_requests_hourly/",
        "SELECT status, requests FROM t WHERE route = '/v1/images' AND method = 'POST' ORDER BY status",
    )
    .await;
    assert_eq!(
        requests,
        [
            json!({"status": 200, "requests": 1}),
            json!({"status": 201, "requests": 4}),
            json!({"status": 415, "requests": 1})
        ]
    );

    // customers: the one customer, no key material.
    let customers = rows(
        &objects,
        "lake/customers/customers.parquet",
        "SELECT * FROM t",
    )
    .await;
    assert_eq!(customers.len(), 1);
    let mut columns: Vec<&String> = customers[0].as_object().unwrap().keys().collect();
    columns.sort();
    assert_eq!(
        columns,
        [
            "created_at",
            "customer_id",
            "email",
            "name",
            "plan",
            "updated_at"
        ]
    );
    assert_eq!(customers[0]["name"], "transforms");

    // DuckDB, on the same raw files, runs the same SQL to the same rows.
    let lake = objects.join("lake");
    let folder = |table: &str, hour: &str| lake.join(table).join(hour).display().to_string();
    let part = |table: &str, hour: &str| lake.join(table).join(hour).join("part-0.parquet");
    duckdb_agrees(json!({
        "sql": sql_file("uploads_hourly.sql"),
        "tables": {"events": [folder("events", HOUR_10)]},
        "output": [part("uploads_hourly", HOUR_10)],
    }));
    duckdb_agrees(json!({
        "sql": sql_file("api_requests_hourly.sql"),
        "tables": {"api_requests": [folder("api_requests", HOUR_10)]},
        "output": [part("api_requests_hourly", HOUR_10)],
    }));
    duckdb_agrees(json!({
        "sql": sql_file("images.sql"),
        "tables": {"events": [folder("events", HOUR_10)]},
        "values": {"rewrite": {"upload_hour": ["2026-11-30T10"]}},
        "output": [part("images", HOUR_10)],
        "drop": ["upload_hour"],
    }));
    duckdb_agrees(json!({
        "sql": sql_file("customers.sql"),
        "tables": {"events": [folder("events", HOUR_10)]},
        "empty": {"previous": "customer_id VARCHAR, name VARCHAR, email VARCHAR, plan VARCHAR, created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ, deleted_at TIMESTAMPTZ"},
        "output": [lake.join("customers/customers.parquet")],
    }));

    // Hour 11 holds the expiries: the sweep (image-retention) of 11:05-11:06 deleted them. Its
    // run is then in the history and its events in hour 11; the hour's run rewrites hour 10's
    // partition of images.
    wait_for(Duration::from_secs(30), || async {
        let runs = server
            .state
            .store
            .runs_between("image-retention", "2026-11-30T11:05", "2026-11-30T11:05")
            .await
            .unwrap();
        runs.iter()
            .any(|r| r.state == RunState::Success && r.rows == Some(3))
            .then_some(())
    })
    .await
    .expect("the sweep of 11:05 removed the three images left");
    clock.set("2026-11-30T12:06:00Z".parse().unwrap());
    for table in ["events", "api_requests"] {
        let marker = objects
            .join("lake")
            .join(table)
            .join(HOUR_11)
            .join("_SUCCESS");
        wait_for(Duration::from_secs(30), || async {
            marker.exists().then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("{table} hour 11 closed"));
    }
    transform(&server, "2026-11-30T11").await;
    let before = std::fs::read(part("images", HOUR_10)).unwrap();
    let expired = rows(
        &objects,
        "lake/images/",
        "SELECT image_id FROM t WHERE expired_at IS NOT NULL ORDER BY image_id",
    )
    .await;
    let mut expected: Vec<Value> = [&ids[0], &ids[2], &ids[3]]
        .iter()
        .map(|id| json!({"image_id": id}))
        .collect();
    expected.sort_by_key(|v| v["image_id"].as_str().unwrap().to_owned());
    assert_eq!(expired, expected);
    assert!(
        !lake.join("images").join(HOUR_11).exists(),
        "nothing was uploaded in hour 11"
    );
    duckdb_agrees(json!({
        "sql": sql_file("images.sql"),
        "tables": {"events": [folder("events", HOUR_10), folder("events", HOUR_11)]},
        "values": {"rewrite": {"upload_hour": ["2026-11-30T10"]}},
        "output": [part("images", HOUR_10)],
        "drop": ["upload_hour"],
    }));

    // Running hour 11 again gives the same rows; the history holds every attempt.
    transform(&server, "2026-11-30T11").await;
    let again = rows(
        &objects,
        "lake/images/",
        "SELECT * FROM t ORDER BY image_id",
    )
    .await;
    assert_eq!(again.len(), 4);
    assert_eq!(
        before.len(),
        std::fs::read(part("images", HOUR_10)).unwrap().len(),
        "the same partition again"
    );
    let history = server
        .state
        .store
        .recent_runs("lake-transform", None, 10)
        .await
        .unwrap();
    let attempts: Vec<(String, u32, RunState)> = history
        .iter()
        .map(|r| (r.interval.clone(), r.attempt, r.state))
        .collect();
    assert_eq!(
        attempts,
        [
            ("2026-11-30T11".to_owned(), 2, RunState::Success),
            ("2026-11-30T11".to_owned(), 1, RunState::Success),
            ("2026-11-30T10".to_owned(), 2, RunState::Success),
            ("2026-11-30T10".to_owned(), 1, RunState::Failed),
        ]
    );
    let runs = rows(
        &objects,
        "lake/job_runs/job_runs.parquet",
        "SELECT job, data_interval, attempt, state FROM t WHERE job = 'lake-transform' ORDER BY data_interval, attempt",
    )
    .await;
    assert_eq!(runs.len(), 4, "{runs:#?}");
    assert_eq!(
        runs[3]["state"], "running",
        "a run exports the history as it stands while it runs"
    );
}

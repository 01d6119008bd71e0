//! The lake end to end on the embedded default: real photos uploaded, one deleted, others
//! expired, records posted to a declared table with some bad lines; the hours close on an
//! injected clock, and DuckDB and pyarrow, reading the files on their own, find exactly the
//! rows the API's answers imply.

mod common;

use std::{collections::BTreeMap, path::Path, sync::Arc, time::Duration};

use common::{ADMIN, TestServer, corpus, wait_for};
use imagelake_core::{ManualClock, duration::HumanDuration, lake::TableDecl};
use reqwest::StatusCode;
use serde_json::{Value, json};

const HOUR_10: &str = "dt=2026-11-30/hour=10";
const HOUR_11: &str = "dt=2026-11-30/hour=11";

fn billing() -> TableDecl {
    serde_json::from_value(json!({
        "name": "billing_events", "topic": "billing.events", "time_field": "ts",
        "id_field": "event_id", "customer_field": "customer_id",
        "columns": {"event_id": "string", "ts": "timestamp", "customer_id": "string",
                    "amount": "float64", "plan": "string", "meta": "json"}
    }))
    .unwrap()
}

/// Both readers' rows of `table`, checked to agree.
fn read(objects: &Path, table: &str) -> Vec<Value> {
    let python = std::env::var("IMAGELAKE_LAKE_PYTHON").expect(
        "IMAGELAKE_LAKE_PYTHON is not set: run the tests through scripts/test, which installs DuckDB and pyarrow",
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/lake-read.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(objects)
        .arg(table)
        .output()
        .expect("the lake reader runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let both: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        both["duckdb"], both["pyarrow"],
        "DuckDB and pyarrow read {table} alike"
    );
    both["duckdb"].as_array().unwrap().clone()
}

fn marker(objects: &Path, table: &str, hour: &str) -> Option<Value> {
    let path = objects.join("lake").join(table).join(hour).join("_SUCCESS");
    let text = std::fs::read(path).ok()?;
    Some(serde_json::from_slice(&text).unwrap())
}

async fn wait_marker(objects: &Path, table: &str, hour: &str) -> Value {
    wait_for(Duration::from_secs(30), || async {
        marker(objects, table, hour)
    })
    .await
    .unwrap_or_else(|| panic!("{table} {hour} was not closed in time"))
}

fn count_by<'a>(rows: &'a [Value], column: &str) -> BTreeMap<(&'a str, i64), usize> {
    let mut counts = BTreeMap::new();
    for row in rows {
        let key = (row[column].as_str().unwrap(), row["hour"].as_i64().unwrap());
        *counts.entry(key).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn the_lake_holds_what_happened_once() {
    let start = "2026-11-30T10:05:00Z".parse().unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let server = TestServer::with_lake(clock.clone(), |s| {
        s.retention = HumanDuration(Duration::from_secs(3600));
        s.sweep_interval = HumanDuration(Duration::from_secs(1));
        s.lake.retention = Some(HumanDuration(Duration::from_secs(7 * 86_400)));
        s.lake.tables = vec![billing()];
    })
    .await;
    let objects = server.objects_dir();
    let (customer, key) = server.customer("lake").await;

    // Three real photos, one of them deleted; the other two expire an hour later.
    let photos: Vec<_> = corpus().into_iter().take(3).collect();
    let mut ids = Vec::new();
    for photo in &photos {
        let (status, body) = server
            .upload(&key, std::fs::read(photo).unwrap(), None)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["id"].as_str().unwrap().to_owned();
        server.wait_settled(&key, &id).await;
        ids.push(id);
    }
    // The first photo again (a duplicate), and bytes that are no image (refused).
    let (status, body) = server
        .upload(&key, std::fs::read(&photos[0]).unwrap(), None)
        .await;
    assert_eq!(
        (status, body["id"].as_str()),
        (StatusCode::OK, Some(ids[0].as_str()))
    );
    let (status, body) = server
        .upload(&key, b"not an image at all".to_vec(), None)
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let deleted = server
        .client
        .delete(server.url(&format!("/v1/images/{}", ids[1])))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);

    // Records of a declared table: three good ones (one sent twice), three that do not fit.
    let lines = [
        json!({"event_id": "b1", "ts": "2026-11-30T10:01:00Z", "customer_id": customer, "amount": 9.5, "plan": "pro", "meta": {"seats": 3}}).to_string(),
        json!({"event_id": "b2", "ts": "2026-11-30T10:02:00+01:00", "amount": 1}).to_string(),
        "{not json".to_owned(),
        json!({"event_id": "b3", "ts": "2026-11-30T10:03:00Z", "amount": "ten"}).to_string(),
        json!({"event_id": "b4", "amount": 2.0}).to_string(),
        json!({"event_id": "b1", "ts": "2026-11-30T10:01:00Z", "amount": 9.5}).to_string(),
        json!({"event_id": "b5", "ts": "2026-11-30T10:04:59.999999Z", "plan": "free"}).to_string(),
    ];
    let (status, body) = server
        .send(
            server
                .client
                .post(server.url("/v1/lake/billing_events/records"))
                .bearer_auth(ADMIN)
                .body(lines.join("\n")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 4, "{body}");
    assert_eq!(body["duplicates"], 1, "b1 again is kept once: {body}");
    let quarantined: Vec<u64> = body["quarantined"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["line"].as_u64().unwrap())
        .collect();
    assert_eq!(quarantined, [3, 4, 5], "{body}");

    // Hour 10 closes at 11:05; the sweeper then expires the two photos left (hour 11).
    clock.set("2026-11-30T11:06:00Z".parse().unwrap());
    let closed = wait_marker(&objects, "events", HOUR_10).await;
    for id in [&ids[0], &ids[2]] {
        let gone = wait_for(Duration::from_secs(30), || async {
            let (status, _) = server.get(&key, &format!("/v1/images/{id}")).await;
            (status == StatusCode::NOT_FOUND).then_some(())
        })
        .await;
        assert!(gone.is_some(), "image {id} expired");
    }
    clock.set("2026-11-30T12:06:00Z".parse().unwrap());
    wait_marker(&objects, "events", HOUR_11).await;

    let events = read(&objects, "events");
    let by_type = count_by(&events, "type");
    let expected: BTreeMap<(&str, i64), usize> = [
        (("customer.created", 10), 1),
        (("image.received", 10), 3),
        (("image.processed", 10), 3),
        (("image.deleted", 10), 1),
        (("image.duplicate", 10), 1),
        (("upload.refused", 10), 1),
        (("image.expired", 11), 2),
    ]
    .into();
    assert_eq!(by_type, expected, "{events:#?}");
    assert_eq!(closed["rows"], 10, "{closed}");
    let of_type = |t: &str| events.iter().find(|e| e["type"] == t).unwrap();
    assert_eq!(of_type("image.duplicate")["image_id"], ids[0].as_str());
    let refused: Value =
        serde_json::from_str(of_type("upload.refused")["data"].as_str().unwrap()).unwrap();
    assert_eq!(refused["code"], "unsupported_media_type");
    assert_eq!(refused["bytes"], 19);
    assert!(
        events
            .iter()
            .filter(|e| e["type"] != "customer.created")
            .all(|e| e["source"] == "api"),
        "every image event names its door"
    );
    assert!(
        events.iter().all(|e| e["customer_id"] == customer.as_str()),
        "every event names its customer"
    );
    let mut event_ids: Vec<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    event_ids.dedup();
    assert_eq!(event_ids.len(), events.len(), "no event twice");

    let billing = read(&objects, "billing_events");
    let mut kept: Vec<(&str, &str)> = billing
        .iter()
        .map(|r| (r["event_id"].as_str().unwrap(), r["ts"].as_str().unwrap()))
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        [
            ("b1", "2026-11-30T10:01:00Z"),
            ("b2", "2026-11-30T09:02:00Z"),
            ("b5", "2026-11-30T10:04:59.999999Z"),
        ]
    );
    let b1 = billing.iter().find(|r| r["event_id"] == "b1").unwrap();
    assert_eq!(b1["customer_id"], customer.as_str());
    assert_eq!(b1["amount"], 9.5);
    assert_eq!(b1["meta"], r#"{"seats":3}"#);

    let refused = read(&objects, "quarantine/billing_events");
    let reasons: Vec<(i64, &str)> = refused
        .iter()
        .map(|r| (r["line"].as_i64().unwrap(), r["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons.len(), 3, "{refused:#?}");
    assert!(
        reasons
            .iter()
            .any(|(l, r)| *l == 3 && r.starts_with("not valid JSON"))
    );
    assert!(
        reasons
            .iter()
            .any(|(l, r)| *l == 4 && r.contains("expected float64"))
    );
    assert!(
        reasons
            .iter()
            .any(|(l, r)| *l == 5 && r.contains("missing time field"))
    );

    // Every request the API answered, by its route's template, with who called.
    let requests = read(&objects, "api_requests");
    let hour_10: Vec<&Value> = requests.iter().filter(|r| r["hour"] == 10).collect();
    let mut uploads: Vec<(i64, Option<&str>)> = hour_10
        .iter()
        .filter(|r| r["route"] == "/v1/images" && r["method"] == "POST")
        .map(|r| (r["status"].as_i64().unwrap(), r["error_code"].as_str()))
        .collect();
    uploads.sort();
    assert_eq!(
        uploads,
        [
            (200, None),
            (201, None),
            (201, None),
            (201, None),
            (415, Some("unsupported_media_type"))
        ],
        "{hour_10:#?}"
    );
    let first = hour_10
        .iter()
        .find(|r| r["route"] == "/v1/images" && r["status"] == 201)
        .unwrap();
    assert_eq!(first["customer_id"], customer.as_str());
    assert_eq!(first["key_role"], "customer");
    let sizes: Vec<u64> = photos
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .collect();
    assert!(
        sizes.contains(&first["request_bytes"].as_u64().unwrap()),
        "the bytes of one of the photos: {first}"
    );
    assert!(first["response_bytes"].as_u64().unwrap() > 0);
    let posted = hour_10
        .iter()
        .find(|r| r["route"] == "/v1/lake/{table}/records")
        .unwrap();
    assert_eq!(
        (posted["key_role"].as_str(), posted["status"].as_i64()),
        (Some("admin"), Some(200))
    );
    assert!(
        requests
            .iter()
            .all(|r| !r["route"].as_str().unwrap().contains(&ids[0])),
        "routes are templates, never raw paths"
    );
    assert!(requests.iter().any(|r| r["route"] == "/v1/images/{id}"));

    // A record of an hour already closed went to a later file of its hour; the marker says so.
    let late = marker(&objects, "billing_events", "dt=2026-11-30/hour=09").unwrap();
    assert_eq!(
        (late["rows"].as_u64(), late["files"].as_u64()),
        (Some(1), Some(1))
    );

    // An hour no record came for is closed all the same.
    let idle = marker(&objects, "billing_events", HOUR_11).expect("an idle hour is closed");
    assert_eq!(
        (idle["rows"].as_u64(), idle["files"].as_u64()),
        (Some(0), Some(0))
    );

    // The console's view of the same: hours present and complete, rows, bytes, quarantine.
    let (status, lake) = server.get(ADMIN, "/v1/admin/lake/tables?hours=48").await;
    assert_eq!(status, StatusCode::OK, "{lake}");
    let table = |name: &str| {
        lake["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} listed: {lake}"))
            .clone()
    };
    let hour = |table: &Value, at: &str| {
        table["hours"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["hour"] == at)
            .unwrap_or_else(|| panic!("{at} listed: {table}"))
            .clone()
    };
    let events_10 = hour(&table("events"), "2026-11-30T10:00:00Z");
    assert_eq!(events_10["complete"], true);
    assert_eq!(events_10["rows"], closed["rows"]);
    assert_eq!(events_10["files"], 1);
    let on_disk = std::fs::read_dir(objects.join("lake/events").join(HOUR_10))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
        .map(|e| e.metadata().unwrap().len())
        .sum::<u64>();
    assert_eq!(events_10["bytes"], on_disk);
    let billing = table("billing_events");
    let billing_10 = hour(&billing, "2026-11-30T10:00:00Z");
    assert_eq!(
        (&billing_10["rows"], &billing_10["quarantined"]),
        (&json!(2), &json!(3))
    );
    assert_eq!(billing["quarantined"], 3);
    assert_eq!(hour(&billing, "2026-11-30T11:00:00Z")["rows"], 0);
    let (status, refused) = server
        .get(
            ADMIN,
            "/v1/admin/lake/quarantine/billing_events?hour=2026-11-30T10",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{refused}");
    let lines: Vec<i64> = refused["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, [3, 4, 5], "{refused}");
    assert!(
        refused["records"][0]["raw"]
            .as_str()
            .unwrap()
            .contains("{not json")
    );
    let (_, none) = server
        .get(
            ADMIN,
            "/v1/admin/lake/quarantine/billing_events?hour=2026-11-30T11",
        )
        .await;
    assert_eq!(none["records"], json!([]));
    for bad in [
        "billing_events?hour=yesterday",
        "billing_events",
        "Bad-Name?hour=2026-11-30T10",
    ] {
        let (status, _) = server
            .get(ADMIN, &format!("/v1/admin/lake/quarantine/{bad}"))
            .await;
        assert!(status.is_client_error(), "{bad}: {status}");
    }
    let (status, _) = server.get(&key, "/v1/admin/lake/tables").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a customer sees no lake admin"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_door_refuses_what_it_cannot_take() {
    let clock = Arc::new(ManualClock::new("2026-11-30T10:05:00Z".parse().unwrap()));
    let server = TestServer::with_lake(clock, |s| {
        s.lake.tables = vec![billing()];
        s.lake.max_request_bytes = 4096;
    })
    .await;
    let (_, key) = server.customer("not-a-sender").await;
    let post = |table: &str, token: &str, body: String| {
        server
            .client
            .post(server.url(&format!("/v1/lake/{table}/records")))
            .bearer_auth(token)
            .body(body)
    };
    let line = json!({"event_id": "x", "ts": "2026-11-30T10:00:00Z"}).to_string();
    let (status, body) = server.send(post("nope", ADMIN, line.clone())).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    for builtin in ["events", "api_requests", "quarantine"] {
        let (status, _) = server.send(post(builtin, ADMIN, line.clone())).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{builtin} takes no posts");
    }
    let (status, body) = server
        .send(post("billing_events", &key, line.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    let (status, body) = server
        .send(post("billing_events", "wrong", line.clone()))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let big = format!("{line}\n").repeat(200);
    let (status, body) = server.send(post("billing_events", ADMIN, big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    // A byte-order mark before line 1 (Windows tools write one) is not part of the record.
    let (status, body) = server
        .send(post("billing_events", ADMIN, format!("\u{feff}{line}")))
        .await;
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn company_keys_have_roles() {
    let clock = Arc::new(ManualClock::new("2026-11-30T10:05:00Z".parse().unwrap()));
    let server = TestServer::with_lake(clock, |s| s.lake.tables = vec![billing()]).await;
    let (customer, customer_key) = server.customer("keys").await;
    let create = |token: &str, body: Value| {
        server
            .client
            .post(server.url("/v1/admin/keys"))
            .bearer_auth(token)
            .json(&body)
    };
    let (status, ingest) = server
        .send(create(ADMIN, json!({"role": "ingest", "name": "billing"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ingest}");
    assert_eq!(
        (ingest["role"].as_str(), ingest["name"].as_str()),
        (Some("ingest"), Some("billing"))
    );
    let ingest_key = ingest["api_key"].as_str().unwrap().to_owned();
    let (status, analyst) = server
        .send(create(ADMIN, json!({"role": "analyst", "name": "bi"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{analyst}");
    let analyst_key = analyst["api_key"].as_str().unwrap().to_owned();
    for bad in [
        json!({"role": "root", "name": "x"}),
        json!({"role": "ingest", "name": "a b"}),
        json!({"role": "ingest"}),
    ] {
        let (status, body) = server.send(create(ADMIN, bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    let (status, _) = server
        .send(create(
            &customer_key,
            json!({"role": "ingest", "name": "sneaky"}),
        ))
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "admin endpoints do not exist for customers"
    );

    // The ingest key posts records and nothing else; the analyst key cannot post.
    let post = |token: &str| {
        server
            .client
            .post(server.url("/v1/lake/billing_events/records"))
            .bearer_auth(token)
            .body(json!({"event_id": "k1", "ts": "2026-11-30T10:00:00Z"}).to_string())
    };
    let (status, body) = server.send(post(&ingest_key)).await;
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{body}"
    );
    let (status, body) = server.send(post(&analyst_key)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    for path in [
        "/v1/images",
        &format!("/v1/customers/{customer}"),
        "/v1/admin/keys",
    ] {
        let (status, body) = server.get(&ingest_key, path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
    }
    let (status, body) = server.get(&ingest_key, "/v1/images").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ingest")
    );

    // Listed without secrets; revoked at once.
    let (status, listed) = server.get(ADMIN, "/v1/admin/keys").await;
    assert_eq!(status, StatusCode::OK);
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{listed}");
    assert!(
        !listed.to_string().contains(&ingest_key),
        "no secret is listed"
    );
    assert!(
        keys.iter()
            .all(|k| k.get("api_key").is_none() && k.get("hash").is_none())
    );
    let revoke = |id: &str| {
        server
            .client
            .delete(server.url(&format!("/v1/admin/keys/{id}")))
            .bearer_auth(ADMIN)
    };
    let id = ingest["key_id"].as_str().unwrap();
    let (status, _) = server.send(revoke(id)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server.send(post(&ingest_key)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a revoked key stops at once"
    );
    let (status, _) = server.send(revoke(id)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = server.get(ADMIN, "/v1/admin/keys").await;
    assert!(listed["keys"][0]["revoked_at"].is_string(), "{listed}");
    server.stop().await;
}

#[tokio::test]
async fn a_full_request_buffer_drops_and_counts_never_fails_a_request() {
    let clock = Arc::new(ManualClock::new("2026-11-30T10:05:00Z".parse().unwrap()));
    // No writer drains the buffer of two records.
    let server = TestServer::with_lake_doors(clock, |s| s.lake.request_buffer = 2).await;
    for _ in 0..5 {
        let (status, _) = server.get(ADMIN, "/healthz").await;
        assert_eq!(status, StatusCode::OK);
    }
    let response = server.get_bytes(ADMIN, "/metrics").await;
    let metrics = response.text().await.unwrap();
    assert!(
        metrics.contains("imagelake_lake_records_dropped_total{table=\"api_requests\"} 3"),
        "{metrics}"
    );
    server.stop().await;
}

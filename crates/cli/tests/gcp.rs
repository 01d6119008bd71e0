//! The Google Cloud deployment as separate processes on the emulators `scripts/test` starts:
//! one `imagelake api` and two `imagelake worker` processes sharing one Pub/Sub subscription,
//! with originals and renditions in a GCS bucket and records in Firestore.

mod common;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use common::{
    Server, create_customer, gcp_settings, get_json,
    kafka::{brokers, create_topics, read_to_end},
    largest_photos, processed, spawn, temp_dir, upload_files,
};
use serde_json::{Value, json};

/// The tests here start several processes each; one at a time keeps the kill timing honest on
/// a small machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn emulator(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the tests through scripts/test, which starts the emulators")
    })
}

/// A fresh bucket and a settings file naming it, a fresh subscription and Firestore, and a fresh
/// events topic (`{bucket}-events`) on the Kafka broker.
async fn gcp_config(dir: &Path, tag: &str) -> String {
    let bucket = format!("{tag}-{}", std::process::id());
    create_topics(&[(&format!("{bucket}-events"), 2)]).await;
    let extra = format!(
        "[processing]\nworkers = 1\nlease = \"10s\"\n[kafka]\nbrokers = \"{}\"\nevents_topic = \"{bucket}-events\"\n",
        brokers()
    );
    gcp_settings(dir, tag, &extra).await
}

fn role(name: &str, dir: &Path) -> Server {
    role_with(name, dir, &[])
}

fn role_with(name: &str, dir: &Path, envs: &[(&str, &str)]) -> Server {
    let config = dir.join("gcp.toml");
    spawn(&[name, "--config", config.to_str().unwrap()], envs)
}

/// A stand-in for Cloud Monitoring (Google ships no emulator of it): `timeSeries.list` answers
/// `undelivered` for `subscription` and nothing for any other.
async fn monitoring(subscription: String, undelivered: u64) -> String {
    use axum::{Json, extract::Query, routing::get};
    let answer = move |Query(q): Query<std::collections::HashMap<String, String>>| async move {
        let filter = &q["filter"];
        let ours = filter.contains("num_undelivered_messages")
            && filter.contains(&format!("subscription_id = \"{subscription}\""));
        let now = chrono::Utc::now().to_rfc3339();
        let point =
            json!({"interval": {"endTime": now}, "value": {"int64Value": undelivered.to_string()}});
        Json(if ours {
            json!({"timeSeries": [{"points": [point]}]})
        } else {
            json!({})
        })
    };
    let app = axum::Router::new().route("/v3/projects/imagelake-test/timeSeries", get(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// Uploads the `count` largest photos.
async fn upload(client: &reqwest::Client, api: &Server, key: &str, count: usize) -> Vec<String> {
    let photos = largest_photos();
    upload_files(client, api, key, &photos[..count]).await
}

/// A signed-URL upload: the API records it and signs, the bytes go straight to the bucket.
async fn direct_upload(client: &reqwest::Client, api: &Server, key: &str, photo: &Path) -> String {
    let bytes = std::fs::read(photo).unwrap();
    let ticket: Value = client
        .post(format!("{}/v1/uploads", api.base))
        .bearer_auth(key)
        .json(&json!({"content_type": "image/jpeg", "bytes": bytes.len()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut put = client.put(ticket["upload_url"].as_str().expect("a signed URL"));
    for (name, value) in ticket["headers"].as_object().unwrap() {
        put = put.header(name, value.as_str().unwrap());
    }
    assert!(put.body(bytes).send().await.unwrap().status().is_success());
    ticket["id"].as_str().unwrap().to_owned()
}

/// The object names in a bucket of the GCS emulator.
async fn objects(bucket: &str) -> Vec<String> {
    let host = emulator("STORAGE_EMULATOR_HOST");
    let list: Value = reqwest::get(format!("http://{host}/storage/v1/b/{bucket}/o"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut names: Vec<String> = list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_workers_as_separate_processes() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = temp_dir("gcp-roles");
    let bucket = gcp_config(&dir, "roles").await;
    let workers = [role("worker", &dir), role("worker", &dir)];
    let monitoring = monitoring(format!("{bucket}-processing"), 1250).await;
    let api = role_with("api", &dir, &[("MONITORING_EMULATOR_HOST", &monitoring)]);
    let client = reqwest::Client::new();
    let dead = get_json(&client, &api, "/v1/admin/dead-letters", common::ADMIN).await;
    assert_eq!(
        dead["queue_depth"], 1250,
        "the backlog from Cloud Monitoring"
    );
    let (_, key) = create_customer(&client, &api, "gcp").await;
    let mut ids = upload(&client, &api, &key, 6).await;
    ids.push(direct_upload(&client, &api, &key, &largest_photos()[6]).await);
    let images = processed(&client, &api, &key, ids.len()).await;

    let mut expected: Vec<String> = Vec::new();
    for image in &images {
        let (c, i) = (
            image["customer_id"].as_str().unwrap(),
            image["id"].as_str().unwrap(),
        );
        expected.push(format!("originals/{c}/{i}"));
        expected.push(format!("renditions/{c}/{i}/preview"));
        expected.push(format!("renditions/{c}/{i}/thumb"));
    }
    expected.sort();
    assert_eq!(objects(&bucket).await, expected);
    let settled: usize = workers
        .iter()
        .map(|w| w.logged("image settled").len())
        .sum();
    assert_eq!(settled, ids.len(), "each image is processed once");
    assert!(
        workers
            .iter()
            .all(|w| !w.logged("image settled").is_empty()),
        "both workers share the subscription"
    );
    // The API role does no processing; the worker role serves no API.
    assert!(api.logged("processing").is_empty());
    let on_worker = client
        .get(format!("{}/v1/images", workers[0].base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(on_worker.status(), 404);
    let ready = client
        .get(format!("{}/readyz", workers[0].base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());

    // The two workers share one Firestore outbox; one at a time publishes it.
    let expected = 1 + 2 * ids.len();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut records = read_to_end(&format!("{bucket}-events"));
    while records.len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        records = read_to_end(&format!("{bucket}-events"));
    }
    let events: Vec<Value> = records
        .iter()
        .map(|r| serde_json::from_slice(rdkafka::Message::payload(r).unwrap()).unwrap())
        .collect();
    let unique: std::collections::HashSet<_> = events.iter().map(|e| &e["event_id"]).collect();
    assert_eq!(unique.len(), events.len(), "no event twice: {events:#?}");
    let count = |kind: &str| events.iter().filter(|e| e["type"] == kind).count();
    assert_eq!(count("customer.created"), 1);
    assert_eq!(count("image.received"), ids.len());
    assert_eq!(count("image.processed"), ids.len(), "{events:#?}");
    assert_eq!(events.len(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_nothing() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = temp_dir("gcp-kill");
    let bucket = gcp_config(&dir, "kill").await;
    let mut doomed = role("worker", &dir);
    let api = role("api", &dir);
    let client = reqwest::Client::new();
    let (_, key) = create_customer(&client, &api, "gcp").await;
    let ids = upload(&client, &api, &key, 4).await;

    let deadline = Instant::now() + Duration::from_secs(60);
    while doomed.logged("processing").is_empty() {
        assert!(Instant::now() < deadline, "the first worker took no work");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    doomed.kill();
    // What the killed worker started and did not finish.
    let settled: Vec<Value> = doomed
        .logged("image settled")
        .iter()
        .map(|e| e["fields"]["image_id"].clone())
        .collect();
    let held: Vec<Value> = doomed
        .logged("processing")
        .iter()
        .map(|e| e["fields"]["image_id"].clone())
        .filter(|id| !settled.contains(id))
        .collect();
    assert!(
        !held.is_empty(),
        "the kill landed while an image was in progress: {:#?}",
        doomed.log.lock().unwrap()
    );

    let survivor = role("worker", &dir);
    processed(&client, &api, &key, ids.len()).await;
    let redone: Vec<Value> = survivor
        .logged("processing")
        .iter()
        .map(|e| e["fields"]["image_id"].clone())
        .collect();
    assert!(
        held.iter().all(|id| redone.contains(id)),
        "the work the killed worker held ({held:?}) was delivered again"
    );
    assert_eq!(
        settled.len() + survivor.logged("image settled").len(),
        ids.len(),
        "every image is processed exactly once"
    );
    assert_eq!(objects(&bucket).await.len(), ids.len() * 3);
}

//! Starting the real `imagelake` binary and finding the photo corpus, for the CLI tests.

#![allow(dead_code)]

pub mod kafka;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

pub const ADMIN: &str = "crash-test-admin";

pub struct Server {
    pub child: Child,
    pub base: String,
    /// Every log line so far (JSON), kept by a thread that drains the process's stderr.
    pub log: Arc<Mutex<Vec<Value>>>,
    drain: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Log entries whose message is `message`.
    pub fn logged(&self, message: &str) -> Vec<Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["fields"]["message"] == message)
            .cloned()
            .collect()
    }

    /// SIGKILL, then waits until everything the process logged has been read.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(drain) = self.drain.take() {
            let _ = drain.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates a customer through the admin API; its id and API key.
pub async fn create_customer(
    client: &reqwest::Client,
    server: &Server,
    name: &str,
) -> (String, String) {
    let created: Value = client
        .post(format!("{}/v1/customers", server.base))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"name": name, "email": unique_email(name)}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        created["id"].as_str().unwrap().to_owned(),
        created["api_key"].as_str().unwrap().to_owned(),
    )
}

/// Uploads `files` through the API, each answered `201`; their image ids.
pub async fn upload_files(
    client: &reqwest::Client,
    server: &Server,
    key: &str,
    files: &[PathBuf],
) -> Vec<String> {
    let mut ids = Vec::new();
    for file in files {
        let response = client
            .post(format!("{}/v1/images", server.base))
            .bearer_auth(key)
            .body(std::fs::read(file).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    ids
}

/// The embedded system in one process over `data_dir`.
pub fn start(data_dir: &Path) -> Server {
    let dir = data_dir.to_str().unwrap();
    spawn(&["serve", "--data-dir", dir], &[])
}

/// Runs `imagelake ARGS` on a free port with JSON logs and the test admin token, and waits until
/// it listens.
pub fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_imagelake"))
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("IMAGELAKE_ADMIN_TOKEN", ADMIN)
        .env("IMAGELAKE_RATE_BURST", "100000")
        .env("RUST_LOG", "info,imagelake_runtime::worker=debug")
        .envs(envs.iter().copied())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start imagelake");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let log = Arc::new(Mutex::new(Vec::new()));
    let addr = loop {
        let line = lines
            .next()
            .expect("imagelake exited before listening")
            .expect("read log");
        let Ok(entry) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let addr = entry["fields"]["addr"].as_str().map(str::to_owned);
        log.lock().unwrap().push(entry);
        if let Some(addr) = addr {
            break addr;
        }
    };
    // Keep draining the log so the process never blocks on a full pipe.
    let kept = log.clone();
    let drain = std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if let Ok(entry) = serde_json::from_str::<Value>(&line) {
                kept.lock().unwrap().push(entry);
            }
        }
    });
    Server {
        child,
        base: format!("http://{addr}"),
        log,
        drain: Some(drain),
    }
}

/// The photos, largest first.
pub fn largest_photos() -> Vec<PathBuf> {
    let mut all = photos();
    all.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)));
    all
}

pub fn photos() -> Vec<PathBuf> {
    let dir = std::env::var("IMAGELAKE_CORPUS")
        .expect("IMAGELAKE_CORPUS is not set: run the tests through scripts/test");
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "jpg" || x == "png") {
                out.push(p);
            }
        }
    }
    out.sort();
    assert!(out.len() >= 10, "the photo corpus is missing");
    out
}

pub async fn wait_until<F: std::future::Future<Output = bool>>(
    deadline: Duration,
    mut probe: impl FnMut() -> F,
) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if probe().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// `GET path` on the server with `token`, answered in JSON.
pub async fn get_json(client: &reqwest::Client, server: &Server, path: &str, token: &str) -> Value {
    let response = client
        .get(format!("{}{path}", server.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    response.json().await.unwrap()
}

/// Waits up to two minutes until the key's customer has at least `count` images, every one
/// processed; returns them.
pub async fn processed(
    client: &reqwest::Client,
    server: &Server,
    key: &str,
    count: usize,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let listing: Value = match client
            .get(format!("{}/v1/images?limit=100", server.base))
            .bearer_auth(key)
            .send()
            .await
        {
            Ok(response) => response.json().await.unwrap_or_default(),
            Err(_) => Value::Null,
        };
        let images = listing["images"].as_array().cloned().unwrap_or_default();
        if images.len() >= count && images.iter().all(|i| i["status"] == "processed") {
            return images;
        }
        assert!(
            Instant::now() < deadline,
            "not {count} images processed: {listing}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fresh folder under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("imagelake-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An email no other test's customer has, in this run or an earlier one on the same emulator:
/// emails are unique per metadata store.
pub fn unique_email(name: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{name}-{}-{n}-{nanos}@example.test", std::process::id())
}

/// A new bucket on the GCS emulator `scripts/test` starts.
pub async fn create_bucket(bucket: &str) {
    let host = std::env::var("STORAGE_EMULATOR_HOST")
        .expect("STORAGE_EMULATOR_HOST is not set: run the tests through scripts/test");
    let created = reqwest::Client::new()
        .post(format!("http://{host}/storage/v1/b?project=imagelake-test"))
        .json(&serde_json::json!({ "name": bucket }))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success());
}

/// A fresh bucket on the GCS emulator and `dir/gcp.toml` naming it, with Firestore (a database of
/// the bucket's name), a Pub/Sub subscription of its own, the test signing key, and `extra`
/// appended (more settings sections); the bucket's name.
pub async fn gcp_settings(dir: &Path, tag: &str, extra: &str) -> String {
    let bucket = format!("{tag}-{}", std::process::id());
    create_bucket(&bucket).await;
    let key =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/test-service-account.json");
    let settings = format!(
        r#"data_dir = "{data}"
[objects]
backend = "gcs"
bucket = "{bucket}"
signing_key_file = "{key}"
[metadata]
backend = "firestore"
database = "{bucket}"
[queue]
backend = "pubsub"
topic = "gcs-notifications"
subscription = "{bucket}-processing"
dead_letter_topic = "{bucket}-dead"
dead_letter_subscription = "{bucket}-dead"
create = true
[gcp]
project = "imagelake-test"
{extra}"#,
        data = dir.display(),
        key = key.display()
    );
    std::fs::write(dir.join("gcp.toml"), settings).unwrap();
    bucket
}

//! A real server on port 0 over a temporary data dir, and the helpers the API tests share.

#![allow(dead_code)]

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use imagelake_core::{Clock, ManualClock, SystemClock};
use imagelake_metadata::SqliteStore;
use imagelake_runtime::{AppState, Settings, keys::AdminToken, state};
use imagelake_server::Running;
use object_store::ObjectStore;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

pub const ADMIN: &str = "test-admin-token";

pub struct TestServer {
    pub base: String,
    /// The PostgreSQL wire's address, when `sql.pg_listen` was set.
    pub pg_addr: Option<std::net::SocketAddr>,
    pub state: AppState,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    running: Option<Running>,
}

pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Logs show up with `RUST_LOG=...` and `--nocapture`.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(tweak: impl FnOnce(&mut Settings)) -> Self {
        Self::build(tweak, Arc::new(SystemClock)).await
    }

    pub async fn with_clock(clock: Arc<ManualClock>, tweak: impl FnOnce(&mut Settings)) -> Self {
        Self::build(tweak, clock).await
    }

    async fn build(tweak: impl FnOnce(&mut Settings), clock: Arc<dyn Clock>) -> Self {
        Self::build_with(tweak, clock, None).await
    }

    /// A server whose objects live in `objects` instead of local files.
    pub async fn with_objects(objects: Arc<dyn ObjectStore>) -> Self {
        Self::build_with(|_| {}, Arc::new(SystemClock), Some(objects)).await
    }

    /// A server built from settings the way the binary builds it (`AppState::from_settings`).
    pub async fn from_settings(tweak: impl FnOnce(&mut Settings)) -> Self {
        init();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = Settings {
            data_dir: dir.path().to_path_buf(),
            admin_token: Some(imagelake_runtime::settings::Secret(ADMIN.to_owned())),
            ..Settings::default()
        };
        settings.processing.workers = 2;
        tweak(&mut settings);
        let state = AppState::from_settings(settings)
            .await
            .expect("backends start");
        Self::run(state, dir).await
    }

    async fn run(state: AppState, dir: tempfile::TempDir) -> Self {
        Self::run_tasks(state, dir, Vec::new()).await
    }

    async fn run_tasks(
        state: AppState,
        dir: tempfile::TempDir,
        mut tasks: Vec<imagelake_server::serve::Spawn>,
    ) -> Self {
        // The scheduler as `serve` runs it, with the image retention (the sweep).
        tasks.extend(imagelake_runtime::jobs::scheduler_task(&state, Vec::new()).unwrap());
        let running = imagelake_server::serve::start_role(
            state.clone(),
            "127.0.0.1:0".parse().unwrap(),
            imagelake_server::serve::Role::All,
            tasks,
        )
        .await
        .expect("server starts");
        Self {
            base: format!("http://{}", running.addr),
            pg_addr: running.pg_addr,
            state,
            client: reqwest::Client::new(),
            dir,
            running: Some(running),
        }
    }

    async fn build_with(
        tweak: impl FnOnce(&mut Settings),
        clock: Arc<dyn Clock>,
        objects: Option<Arc<dyn ObjectStore>>,
    ) -> Self {
        let (state, dir) = Self::assemble(tweak, clock, objects);
        Self::run(state, dir).await
    }

    /// A server with the lake as `serve` runs it: the HTTP door and the hourly writer on the
    /// embedded event log, on `clock`.
    pub async fn with_lake(clock: Arc<ManualClock>, tweak: impl FnOnce(&mut Settings)) -> Self {
        Self::lake(clock, tweak, true).await
    }

    /// The lake's doors without its writer: what comes in stays where the doors leave it.
    pub async fn with_lake_doors(
        clock: Arc<ManualClock>,
        tweak: impl FnOnce(&mut Settings),
    ) -> Self {
        Self::lake(clock, tweak, false).await
    }

    async fn lake(
        clock: Arc<ManualClock>,
        tweak: impl FnOnce(&mut Settings),
        writer: bool,
    ) -> Self {
        use imagelake_runtime::tasks::{OnFailure, Stage, TaskSpec};
        let (mut state, dir) = Self::assemble(tweak, clock, None);
        let lake = imagelake_lake::Lake::open(&state)
            .await
            .expect("lake opens");
        state.lake = Some(lake.clone());
        let mut tasks: Vec<imagelake_server::serve::Spawn> = Vec::new();
        if writer {
            let events = SqliteStore::open(&dir.path().join("metadata.sqlite")).unwrap();
            let spec = TaskSpec {
                name: "lake-writer",
                required: false,
                on_failure: OnFailure::Retry,
                stage: Stage::Flush,
            };
            let writer = imagelake_lake::Writer::new(lake, Some(events))
                .await
                .unwrap();
            tasks.push((spec, Box::new(writer)));
        }
        Self::run_tasks(state, dir, tasks).await
    }

    fn assemble(
        tweak: impl FnOnce(&mut Settings),
        clock: Arc<dyn Clock>,
        objects: Option<Arc<dyn ObjectStore>>,
    ) -> (AppState, tempfile::TempDir) {
        init();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = Settings {
            data_dir: dir.path().to_path_buf(),
            ..Settings::default()
        };
        settings.processing.workers = 2;
        tweak(&mut settings);
        let objects = objects.unwrap_or_else(|| state::object_store(&settings).unwrap());
        let sqlite = SqliteStore::open(&dir.path().join("metadata.sqlite")).unwrap();
        let state = AppState::assemble(
            settings,
            objects,
            Arc::new(sqlite.clone()),
            Arc::new(sqlite),
            clock,
            AdminToken::from_secret(ADMIN),
        );
        (state, dir)
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await.expect("clean shutdown");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Creates a customer; returns its id and API key.
    pub async fn customer(&self, name: &str) -> (String, String) {
        let (status, body) = self
            .send(
                self.client
                    .post(self.url("/v1/customers"))
                    .bearer_auth(ADMIN)
                    .json(&json!({"name": name, "email": unique_email(name)})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["id"].as_str().unwrap().to_owned(),
            body["api_key"].as_str().unwrap().to_owned(),
        )
    }

    /// A company key (`ingest` or `analyst`) made by the admin: its id and the key.
    pub async fn company_key(&self, role: &str, name: &str) -> (String, String) {
        let (status, body) = self
            .send(
                self.client
                    .post(self.url("/v1/admin/keys"))
                    .bearer_auth(ADMIN)
                    .json(&json!({"role": role, "name": name})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["key_id"].as_str().unwrap().to_owned(),
            body["api_key"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn upload(
        &self,
        key: &str,
        bytes: Vec<u8>,
        filename: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .post(self.url("/v1/images"))
            .bearer_auth(key)
            .body(bytes);
        if let Some(name) = filename {
            request = request.query(&[("filename", name)]);
        }
        self.send(request).await
    }

    pub async fn get(&self, key: &str, path: &str) -> (StatusCode, Value) {
        self.send(self.client.get(self.url(path)).bearer_auth(key))
            .await
    }

    /// A request as a signed-in browser sends it: `cookie` (`name=value`) instead of a key.
    pub fn with_cookie(
        &self,
        method: reqwest::Method,
        path: &str,
        cookie: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("cookie", cookie)
    }

    pub async fn get_bytes(&self, key: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("request sent")
    }

    /// Polls the record until processing has settled (processed or failed).
    pub async fn wait_settled(&self, key: &str, id: &str) -> Value {
        wait_for(Duration::from_secs(60), || async {
            let (status, body) = self.get(key, &format!("/v1/images/{id}")).await;
            let settled = body["status"] == "processed" || body["status"] == "failed";
            (status == StatusCode::OK && settled).then_some(body)
        })
        .await
        .unwrap_or_else(|| panic!("image {id} was not processed in time"))
    }

    pub fn objects_dir(&self) -> PathBuf {
        self.dir.path().join("objects")
    }
}

/// Re-checks `probe` until it yields a value or the deadline passes. The pause between checks
/// grows to 100 ms, so a probe that polls the API stays under a key's default rate (20/s) and
/// never spends the burst the test itself needs.
pub async fn wait_for<T, F, Fut>(deadline: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// The real photographs fetched by `scripts/fetch-corpus` (see README).
pub fn corpus() -> Vec<PathBuf> {
    let dir = std::env::var("IMAGELAKE_CORPUS")
        .expect("IMAGELAKE_CORPUS is not set: run the tests through scripts/test, which fetches the photo corpus");
    let mut files: Vec<PathBuf> = walk(PathBuf::from(&dir))
        .into_iter()
        .filter(|p| {
            matches!(
                p.extension()
                    .and_then(|e| e.to_str())
                    .map(str::to_ascii_lowercase)
                    .as_deref(),
                Some("jpg" | "jpeg" | "png")
            )
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "expected the photo corpus under {dir}, found {} images",
        files.len()
    );
    files
}

fn walk(dir: PathBuf) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(path));
        } else {
            out.push(path);
        }
    }
    out
}

pub fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// A fresh bucket on the GCS emulator that `scripts/test` starts.
pub async fn emulator_bucket(prefix: &str) -> String {
    init();
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let host = std::env::var("STORAGE_EMULATOR_HOST").expect(
        "STORAGE_EMULATOR_HOST is not set: run the tests through scripts/test, which starts the GCS emulator",
    );
    let bucket = format!("{prefix}-{}-{n}", std::process::id());
    let created = reqwest::Client::new()
        .post(format!("http://{host}/storage/v1/b?project=imagelake-test"))
        .json(&json!({"name": bucket}))
        .send()
        .await
        .expect("GCS emulator answers");
    assert!(created.status().is_success(), "bucket {bucket} created");
    bucket
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

//! The background tasks as `/readyz` and `/metrics` show them: their state, their last error
//! and how often they were tried again; and a required task that fails makes the process
//! unready until it recovers.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use common::{ADMIN, TestServer, wait_for};
use imagelake_core::{CustomerId, ImageId, JobId, Timestamp, records::DeadLetter, records::Job};
use imagelake_metadata::{Result, SqliteStore, StoreError, WorkQueue};
use imagelake_runtime::{AppState, Settings, keys::AdminToken};
use imagelake_server::start;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn readiness_and_metrics_show_every_task() {
    let server = TestServer::start().await;
    let ready = wait_for(Duration::from_secs(30), || async {
        let (status, body) = server.get("", "/readyz").await;
        let idle = body["checks"]["tasks"]["workers"]["state"] == "idle"
            && body["checks"]["tasks"]["scheduler"]["state"] == "idle";
        (status == StatusCode::OK && idle).then_some(body)
    })
    .await
    .expect("both tasks settle idle");
    let workers = &ready["checks"]["tasks"]["workers"];
    assert_eq!(workers["restarts"], 0);
    assert_eq!(workers["last_error"], Value::Null);
    let metrics = server
        .get_bytes(ADMIN, "/metrics")
        .await
        .text()
        .await
        .unwrap();
    for line in [
        r#"imagelake_task_state{task="workers",state="idle"} 1"#,
        r#"imagelake_task_state{task="workers",state="failing"} 0"#,
        r#"imagelake_task_state{task="scheduler",state="idle"} 1"#,
        r#"imagelake_task_restarts_total{task="workers"} 0"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    server.stop().await;
}

/// The embedded queue, with leases that fail while `broken` is set.
struct Breakable {
    inner: SqliteStore,
    broken: Arc<AtomicBool>,
}

#[async_trait]
impl WorkQueue for Breakable {
    async fn enqueue(&self, image: ImageId, customer: CustomerId, now: Timestamp) -> Result<JobId> {
        self.inner.enqueue(image, customer, now).await
    }
    async fn lease(&self, now: Timestamp, lease_for: Duration, max: usize) -> Result<Vec<Job>> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("the queue is down".into()));
        }
        self.inner.lease(now, lease_for, max).await
    }
    async fn complete(&self, job: JobId) -> Result<()> {
        self.inner.complete(job).await
    }
    async fn retry_at(&self, job: JobId, error: &str, at: Timestamp) -> Result<()> {
        self.inner.retry_at(job, error, at).await
    }
    async fn dead_letter(&self, job: JobId, error: &str, now: Timestamp) -> Result<()> {
        self.inner.dead_letter(job, error, now).await
    }
    async fn depth(&self) -> Result<Option<u64>> {
        self.inner.depth().await
    }
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        self.inner.dead_letters(limit).await
    }
    async fn redrive(&self, job: JobId, now: Timestamp) -> Result<bool> {
        self.inner.redrive(job, now).await
    }
    async fn release_leases(&self) -> Result<u64> {
        self.inner.release_leases().await
    }
}

#[tokio::test]
async fn a_failing_required_task_makes_the_process_unready_until_it_recovers() {
    common::init();
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        data_dir: dir.path().to_path_buf(),
        ..Settings::default()
    };
    let sqlite = SqliteStore::open(&dir.path().join("metadata.sqlite")).unwrap();
    let broken = Arc::new(AtomicBool::new(true));
    let queue = Breakable {
        inner: sqlite.clone(),
        broken: Arc::clone(&broken),
    };
    let objects = imagelake_runtime::state::object_store(&settings).unwrap();
    let state = AppState::assemble(
        settings,
        objects,
        Arc::new(sqlite),
        Arc::new(queue),
        Arc::new(imagelake_core::SystemClock),
        AdminToken::from_secret(ADMIN),
    );
    let running = start(state, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let ready = format!("http://{}/readyz", running.addr);
    let client = reqwest::Client::new();
    let get = || async {
        let response = client.get(&ready).send().await.unwrap();
        (response.status(), response.json::<Value>().await.unwrap())
    };
    let failing = wait_for(Duration::from_secs(30), || async {
        let (status, body) = get().await;
        (status == StatusCode::SERVICE_UNAVAILABLE
            && body["checks"]["tasks"]["workers"]["state"] == "failing")
            .then_some(body)
    })
    .await
    .expect("the workers fail and the process is unready");
    let workers = &failing["checks"]["tasks"]["workers"];
    assert!(
        workers["last_error"]
            .as_str()
            .unwrap()
            .contains("the queue is down"),
        "{workers}"
    );
    broken.store(false, Ordering::SeqCst);
    let recovered = wait_for(Duration::from_secs(60), || async {
        let (status, body) = get().await;
        (status == StatusCode::OK).then_some(body)
    })
    .await
    .expect("ready again once the queue is back");
    assert!(
        recovered["checks"]["tasks"]["workers"]["restarts"]
            .as_u64()
            .unwrap()
            >= 1
    );
    running.shutdown().await.unwrap();
}

/// One process's tasks reach every other through the heartbeats in the metadata store: an `api`
/// process shows a `worker` process's failing task with its error, then the worker as stopped
/// once it shut down; a process that stopped beating without a word shows as gone.
#[tokio::test]
async fn every_process_shows_its_tasks_to_the_others() {
    use imagelake_core::records::{Heartbeat, TaskBeat};
    use imagelake_server::serve::{Role, start_role};

    common::init();
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        data_dir: dir.path().to_path_buf(),
        ..Settings::default()
    };
    let db = dir.path().join("metadata.sqlite");
    let objects = imagelake_runtime::state::object_store(&settings).unwrap();
    let process = |queue: Arc<dyn WorkQueue>| {
        let sqlite = SqliteStore::open(&db).unwrap();
        AppState::assemble(
            settings.clone(),
            objects.clone(),
            Arc::new(sqlite),
            queue,
            Arc::new(imagelake_core::SystemClock),
            AdminToken::from_secret(ADMIN),
        )
    };
    let broken = Arc::new(AtomicBool::new(true));
    let queue = Breakable {
        inner: SqliteStore::open(&db).unwrap(),
        broken: Arc::clone(&broken),
    };
    let localhost = "127.0.0.1:0".parse().unwrap();
    let worker = start_role(process(Arc::new(queue)), localhost, Role::Worker, vec![])
        .await
        .unwrap();
    let api_state = process(Arc::new(SqliteStore::open(&db).unwrap()));
    let silent = Heartbeat {
        process: "killed-pod-1".to_owned(),
        role: "lake-writer".to_owned(),
        host: "killed-pod".to_owned(),
        version: "0.1.0".to_owned(),
        started_at: chrono::Utc::now() - chrono::Duration::minutes(5),
        beat_at: chrono::Utc::now() - chrono::Duration::minutes(1),
        stopped_at: None,
        tasks: vec![TaskBeat {
            name: "lake-writer".to_owned(),
            state: "running".to_owned(),
            last_error: None,
            restarts: 0,
            required: true,
        }],
    };
    api_state.store.put_heartbeat(&silent).await.unwrap();
    let api = start_role(api_state, localhost, Role::Api, vec![])
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let processes = || async {
        let response = client
            .get(format!("http://{}/v1/admin/tasks", api.addr))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<Value>().await.unwrap()["processes"]
            .as_array()
            .unwrap()
            .clone()
    };
    let role = |all: &[Value], role: &str| all.iter().find(|p| p["role"] == role).cloned();

    let failing = wait_for(Duration::from_secs(30), || async {
        let all = processes().await;
        let worker = role(&all, "worker")?;
        let workers = worker["tasks"]
            .as_array()?
            .iter()
            .find(|t| t["name"] == "workers")?;
        (workers["state"] == "failing").then(|| (all.clone(), workers.clone()))
    })
    .await
    .expect("the api process sees the worker's task failing");
    let (all, workers) = failing;
    assert!(
        workers["last_error"]
            .as_str()
            .unwrap()
            .contains("the queue is down"),
        "{workers}"
    );
    assert_eq!(role(&all, "worker").unwrap()["status"], "up");
    assert_eq!(role(&all, "api").unwrap()["status"], "up");
    assert_eq!(role(&all, "lake-writer").unwrap()["status"], "gone");

    worker.shutdown().await.unwrap();
    let stopped = role(&processes().await, "worker").unwrap();
    assert_eq!(stopped["status"], "stopped", "{stopped}");
    assert!(stopped["stopped_at"].is_string());
    api.shutdown().await.unwrap();
}

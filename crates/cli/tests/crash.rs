//! The real binary killed with SIGKILL while uploads and processing are in flight: every upload
//! that got a 201 is there after a restart and ends processed, with one set of renditions.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

const ADMIN: &str = "crash-test-admin";

struct Server {
    child: Child,
    base: String,
}

fn start(data_dir: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_imagelake"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--data-dir",
        ])
        .arg(data_dir)
        .env("IMAGELAKE_ADMIN_TOKEN", ADMIN)
        .env("IMAGELAKE_RATE_BURST", "100000")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start imagelake serve");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("serve exited before listening")
            .expect("read log");
        let Ok(entry) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(addr) = entry["fields"]["addr"].as_str() {
            break addr.to_owned();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        base: format!("http://{addr}"),
    }
}

fn photos() -> Vec<PathBuf> {
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

async fn wait_until<F: std::future::Future<Output = bool>>(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_upload() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile_dir();
    let mut server = start(&dir);
    let client = reqwest::Client::new();
    let created: Value = client
        .post(format!("{}/v1/customers", server.base))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"name": "crash", "email": "crash@example.test"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["api_key"].as_str().unwrap().to_owned();
    let customer = created["id"].as_str().unwrap().to_owned();

    // Real photos plus small generated images, uploaded by four clients until the kill.
    let mut bodies: Vec<Vec<u8>> = photos()
        .iter()
        .take(20)
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    bodies.extend((0..20).map(|i| imagelake_imaging::fixtures::jpeg(300 + i, 200)));
    let bodies = Arc::new(Mutex::new(bodies));
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (client, base, key, bodies, acked) = (
            client.clone(),
            server.base.clone(),
            key.clone(),
            bodies.clone(),
            acknowledged.clone(),
        );
        clients.push(tokio::spawn(async move {
            loop {
                let Some(body) = bodies.lock().unwrap().pop() else {
                    return;
                };
                let Ok(response) = client
                    .post(format!("{base}/v1/images"))
                    .bearer_auth(&key)
                    .body(body)
                    .send()
                    .await
                else {
                    return;
                };
                if response.status() == 201 {
                    let Ok(json) = response.json::<Value>().await else {
                        return;
                    };
                    acked
                        .lock()
                        .unwrap()
                        .push(json["id"].as_str().unwrap().to_owned());
                }
            }
        }));
    }
    assert!(
        wait_until(Duration::from_secs(60), || async {
            acknowledged.lock().unwrap().len() >= 8
        })
        .await,
        "uploads are acknowledged"
    );
    server.child.kill().expect("SIGKILL");
    server.child.wait().unwrap();
    for c in clients {
        let _ = c.await;
    }
    let acked = acknowledged.lock().unwrap().clone();
    assert!(acked.len() >= 8);

    let mut server = start(&dir);
    for id in &acked {
        let url = format!("{}/v1/images/{id}", server.base);
        let settled = wait_until(Duration::from_secs(120), || async {
            let Ok(r) = client.get(&url).bearer_auth(&key).send().await else {
                return false;
            };
            let body: Value = r.json().await.unwrap_or_default();
            body["status"] == "processed"
        })
        .await;
        assert!(
            settled,
            "acknowledged image {id} did not end processed after the restart"
        );
        let renditions = dir.join("objects/renditions").join(&customer).join(id);
        let names: Vec<_> = std::fs::read_dir(&renditions)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            ["preview", "thumb"],
            "one set of renditions for {id}: {names:?}"
        );
    }

    // SIGTERM stops the server in order and cleanly.
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "serve exits cleanly on SIGTERM: {exit:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "imagelake-crash-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

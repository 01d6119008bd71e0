//! Starting the real `imagelake` binary and finding the photo corpus, for the CLI tests.

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

pub const ADMIN: &str = "crash-test-admin";

pub struct Server {
    pub child: Child,
    pub base: String,
}

pub fn start(data_dir: &Path) -> Server {
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

/// A fresh folder under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("imagelake-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

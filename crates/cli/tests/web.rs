//! The customers' web app in a real browser: `tests/web/app.test.mjs` (Debian's Chromium driven
//! by playwright-core, installed by `scripts/test`) against the real binary's `serve` on a free
//! port, with two customers and the photo corpus. Each page state's screenshot is saved under
//! `target/web-screenshots/`.

mod common;

use std::{path::PathBuf, process::Command};

use common::{create_customer, start, temp_dir};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test]
async fn the_app_works_in_chromium() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let data = temp_dir("web");
    let server = start(&data);
    let client = reqwest::Client::new();
    let (_, key_a) = create_customer(&client, &server, "web-alpha").await;
    let (_, key_b) = create_customer(&client, &server, "web-beta").await;
    let root = repo_root();
    let shots = root.join("target/web-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let corpus = std::env::var("IMAGELAKE_CORPUS")
        .expect("IMAGELAKE_CORPUS is not set: run the tests through scripts/test");
    let output = Command::new("node")
        .args(["--test", "--test-reporter=spec", "tests/web/app.test.mjs"])
        .current_dir(&root)
        .env("IMAGELAKE_WEB_URL", &server.base)
        .env("IMAGELAKE_WEB_KEYS", format!("{key_a},{key_b}"))
        .env("IMAGELAKE_CORPUS", corpus)
        .env("IMAGELAKE_WEB_SHOTS", &shots)
        .output()
        .expect("run node: scripts/test installs the browser tests (install_browser)");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}\n{}", String::from_utf8_lossy(&output.stderr));
    println!(
        "screenshots: {}",
        shots.canonicalize().unwrap_or(shots).display()
    );
    assert!(
        output.status.success(),
        "the browser tests failed:\n{report}"
    );
    assert!(
        report.contains("ℹ pass 8"),
        "every browser test ran:\n{report}"
    );
}

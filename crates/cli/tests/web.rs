//! The customers' web app in a real browser: the scripts in `tests/web/` (Debian's Chromium
//! driven by playwright-core, installed by `scripts/test`) against the real binary's `serve` on
//! a free port, with the photo corpus. Each page state's screenshot is saved under
//! `target/web-screenshots/`.

mod common;

use std::{path::PathBuf, process::Command};

use common::{Server, create_bucket, create_customer, spawn, start, temp_dir};

/// One browser at a time: two would share the machine's cores with two servers.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `tests/web/{script}` against `server` with `keys`; asserts it passed all `tests`.
fn browser_tests(script: &str, server: &Server, keys: &[String], tests: usize) {
    let root = repo_root();
    let shots = root
        .join("target/web-screenshots")
        .join(script.trim_end_matches(".test.mjs"));
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let corpus = std::env::var("IMAGELAKE_CORPUS")
        .expect("IMAGELAKE_CORPUS is not set: run the tests through scripts/test");
    let output = Command::new("node")
        .args([
            "--test",
            "--test-reporter=spec",
            &format!("tests/web/{script}"),
        ])
        .current_dir(&root)
        .env("IMAGELAKE_WEB_URL", &server.base)
        .env("IMAGELAKE_WEB_KEYS", keys.join(","))
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
    assert!(output.status.success(), "{script} failed:\n{report}");
    assert!(
        report.contains(&format!("ℹ pass {tests}")),
        "every test of {script} ran:\n{report}"
    );
}

#[tokio::test]
async fn the_app_works_in_chromium() {
    let _one = ONE_AT_A_TIME.lock().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = start(&temp_dir("web"));
    let client = reqwest::Client::new();
    let (_, key_a) = create_customer(&client, &server, "web-alpha").await;
    let (_, key_b) = create_customer(&client, &server, "web-beta").await;
    browser_tests("app.test.mjs", &server, &[key_a, key_b], 8);
}

/// A folder of photos from a key with a low rate limit: every file is stored (a refusal for
/// the rate is sent again after its `Retry-After`) and every thumbnail appears, the gallery's
/// status polling staying within the same rate.
#[tokio::test]
async fn a_folder_of_uploads_keeps_within_the_rate_limit() {
    let _one = ONE_AT_A_TIME.lock().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let data = temp_dir("web-rate");
    let dir = data.to_str().unwrap();
    let server = spawn(
        &["serve", "--data-dir", dir],
        &[("IMAGELAKE_RATE_LIMIT", "2"), ("IMAGELAKE_RATE_BURST", "6")],
    );
    let client = reqwest::Client::new();
    let (_, key) = create_customer(&client, &server, "web-rate").await;
    browser_tests("rate.test.mjs", &server, &[key.clone(), key], 1);
}

/// On Google Cloud's emulators with a signing key: a large photo goes from the page straight to
/// the bucket through a signed URL (the page's CSP allows the bucket's origin, the bucket's
/// CORS the signed headers), a small one through the API, and both end processed.
#[tokio::test]
async fn large_files_go_from_the_page_straight_to_the_bucket() {
    let _one = ONE_AT_A_TIME.lock().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = temp_dir("web-direct");
    let bucket = format!("web-direct-{}", std::process::id());
    create_bucket(&bucket).await;
    let config = dir.join("gcp.toml");
    std::fs::write(
        &config,
        format!(
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
[web]
direct_uploads = true
"#,
            data = dir.display(),
            key = repo_root()
                .join("testdata/test-service-account.json")
                .display()
        ),
    )
    .unwrap();
    let server = spawn(&["serve", "--config", config.to_str().unwrap()], &[]);
    let client = reqwest::Client::new();
    let (_, key) = create_customer(&client, &server, "web-direct").await;
    browser_tests("direct.test.mjs", &server, &[key.clone(), key], 1);
}

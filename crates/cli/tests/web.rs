//! The customers' web app and the engineers' console in a real browser: the scripts in `tests/web/` (Debian's Chromium
//! driven by playwright-core, installed by `scripts/test`) against the real binary's `serve` on
//! a free port, with the photo corpus. Each page state's screenshot is saved under
//! `target/web-screenshots/`.

mod common;

use std::{path::PathBuf, process::Command};

use common::{
    ADMIN, Server, create_customer, gcp_settings,
    kafka::{brokers, create_topics, produce, producer},
    largest_photos, processed, spawn, start, temp_dir, upload_files,
};

/// One browser at a time: two would share the machine's cores with two servers.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `tests/web/{script}` against `server` with `keys`; asserts it passed all `tests`.
fn browser_tests(script: &str, server: &Server, keys: &[String], tests: usize) {
    browser_tests_with(script, server, keys, &[], tests);
}

/// [`browser_tests`] with more environment for the script.
fn browser_tests_with(
    script: &str,
    server: &Server,
    keys: &[String],
    envs: &[(&str, &str)],
    tests: usize,
) {
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
        .envs(envs.iter().copied())
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

/// The chart library the pages embed is the npm package its lock file pins, byte for byte
/// (`scripts/test` installs the package; `scripts/vendor-web` made the copies).
#[test]
fn the_vendored_chart_library_is_the_locked_package() {
    let web = repo_root().join("crates/server/web");
    let package = web.join("node_modules/uplot");
    assert!(
        package.exists(),
        "{} is missing: run the tests through scripts/test, which installs it",
        package.display()
    );
    let lock = std::fs::read_to_string(web.join("package-lock.json")).unwrap();
    let installed = std::fs::read_to_string(package.join("package.json")).unwrap();
    let version = |text: &str, after: &str| -> String {
        let at = text.find(after).unwrap() + after.len();
        let rest = &text[at..];
        let from = rest.find("\"version\": \"").unwrap() + 12;
        rest[from..from + rest[from..].find('"').unwrap()].to_owned()
    };
    assert_eq!(
        version(&lock, "\"node_modules/uplot\""),
        version(&installed, "{"),
        "the installed package is the locked one"
    );
    for (from, to) in [
        ("dist/uPlot.iife.min.js", "uplot.min.js"),
        ("dist/uPlot.min.css", "uplot.min.css"),
        ("LICENSE", "uplot.LICENSE"),
    ] {
        assert!(
            std::fs::read(package.join(from)).unwrap()
                == std::fs::read(web.join("vendor").join(to)).unwrap(),
            "vendor/{to} is not the package's {from}: run scripts/vendor-web"
        );
    }
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

/// The engineers' console: the admin token signs in and lands on it; processes and tasks,
/// customers and keys, a job run and a backfill, a closed lake hour and health, each checked
/// against the API; a customer's session gets `404`. The lake hour: records of three hours ago
/// posted to a declared table, then the process stopped, and the next start writes their hour.
#[tokio::test]
async fn the_console_works_in_chromium() {
    let _one = ONE_AT_A_TIME.lock().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = temp_dir("web-console");
    let settings = dir.join("console.toml");
    std::fs::write(
        &settings,
        format!(
            r#"data_dir = "{data}"
[[lake.tables]]
name = "billing"
time_field = "ts"
id_field = "id"
[lake.tables.columns]
id = "string"
ts = "timestamp"
amount = "float64"
"#,
            data = dir.display()
        ),
    )
    .unwrap();
    let config = settings.to_str().unwrap();
    let client = reqwest::Client::new();
    let hour = chrono::Utc::now() - chrono::Duration::hours(3);
    let mut first = spawn(&["serve", "--config", config], &[]);
    let records: String = (0..2)
        .map(|i| {
            format!(
                r#"{{"id": "r{i}", "ts": "{}", "amount": {i}.5}}"#,
                hour.to_rfc3339()
            ) + "\n"
        })
        .collect();
    let posted = client
        .post(format!("{}/v1/lake/billing/records", first.base))
        .bearer_auth(ADMIN)
        .body(records)
        .send()
        .await
        .unwrap();
    assert!(posted.status().is_success());
    // Stopped (SIGTERM), it gives the jobs' leases up, so the next start runs them at once.
    let stopped = std::process::Command::new("kill")
        .arg(first.child.id().to_string())
        .status()
        .unwrap();
    assert!(stopped.success());
    assert!(first.child.wait().unwrap().success(), "a clean stop");
    let server = spawn(&["serve", "--config", config], &[]);
    let (_, key) = create_customer(&client, &server, "web-console").await;
    let hour = hour.format("%Y-%m-%dT%H").to_string();
    let envs = [("IMAGELAKE_WEB_LAKE_HOUR", hour.as_str())];
    browser_tests_with(
        "console.test.mjs",
        &server,
        &[ADMIN.to_owned(), key],
        &envs,
        7,
    );
}

/// The dashboards: two customers' real photos, an analyst key and a team's dashboard file in the
/// dashboards folder; every panel renders and matches its SQL, the range and refresh live in
/// the URL, panels drill down, and a customer's key sees its own rows only.
#[tokio::test]
async fn the_dashboards_work_in_chromium() {
    let _one = ONE_AT_A_TIME.lock().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = temp_dir("web-dashboards");
    let folder = dir.join("dashboards");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("formats.toml"),
        r#"title = "Formats by customer"
[[panels]]
title = "Images per format and customer"
chart = "bars"
unit = "images"
sql = """
SELECT format, customer_id, count(*) AS images FROM live.images
WHERE uploaded_at >= CAST($1 AS TIMESTAMP) AND uploaded_at < CAST($2 AS TIMESTAMP)
GROUP BY 1, 2 ORDER BY 1, 2
"""
"#,
    )
    .unwrap();
    let data = dir.join("data");
    let server = spawn(
        &[
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--dashboards-dir",
            folder.to_str().unwrap(),
        ],
        &[],
    );
    let client = reqwest::Client::new();
    let photos = largest_photos();
    let (_, key_a) = create_customer(&client, &server, "dash-a").await;
    let (_, key_b) = create_customer(&client, &server, "dash-b").await;
    let small = &photos[photos.len() - 5..];
    upload_files(&client, &server, &key_a, &small[..3]).await;
    upload_files(&client, &server, &key_b, &small[3..]).await;
    processed(&client, &server, &key_a, 3).await;
    processed(&client, &server, &key_b, 2).await;
    let analyst: serde_json::Value = client
        .post(format!("{}/v1/admin/keys", server.base))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"role": "analyst", "name": "dashboards"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let analyst = analyst["api_key"].as_str().unwrap().to_owned();
    browser_tests("dashboards.test.mjs", &server, &[analyst, key_a], 5);
}

/// The console's stream section on the real broker: a real photo produced for a customer that
/// does not exist yet shows in the dead letters with its code; the customer created from the
/// console, a re-drive ends in a processed image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_redrives_dead_letters_on_the_broker() {
    let _one = ONE_AT_A_TIME.lock().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = temp_dir("web-stream");
    let tag = format!("web-stream-{}", std::process::id());
    let (images, dead) = (format!("{tag}-images"), format!("{tag}-images.dlq"));
    create_topics(&[(&images, 2), (&dead, 1), (&format!("{tag}-events"), 1)]).await;
    let settings = dir.join("stream.toml");
    std::fs::write(
        &settings,
        format!(
            r#"data_dir = "{data}"
[kafka]
brokers = "{brokers}"
images_topic = "{images}"
dead_letter_topic = "{dead}"
events_topic = "{tag}-events"
requests_topic = "{tag}-requests"
group_id = "{tag}-group"
[lake]
group_id = "{tag}-lake"
"#,
            data = dir.display(),
            brokers = brokers(),
        ),
    )
    .unwrap();
    let server = spawn(&["serve", "--config", settings.to_str().unwrap()], &[]);
    let missing = imagelake_core::CustomerId::new().to_string();
    let photo = std::fs::read(&largest_photos()[20]).unwrap();
    let headers = [
        ("customer-id", missing.as_str()),
        ("filename", "stream.jpg"),
    ];
    produce(&producer(), &images, &headers, &photo).await;
    browser_tests("stream.test.mjs", &server, &[ADMIN.to_owned(), missing], 3);
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
    gcp_settings(&dir, "web-direct", "[web]\ndirect_uploads = true\n").await;
    let config = dir.join("gcp.toml");
    let server = spawn(&["serve", "--config", config.to_str().unwrap()], &[]);
    let client = reqwest::Client::new();
    let (_, key) = create_customer(&client, &server, "web-direct").await;
    browser_tests("direct.test.mjs", &server, &[key.clone(), key], 1);
}

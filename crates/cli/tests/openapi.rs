//! The OpenAPI document describes the API: schemathesis (from PyPI, installed by `scripts/test`
//! and named by `IMAGELAKE_SCHEMATHESIS`) generates requests from `/openapi.json` for every
//! operation, with its checks on (all but one, see below), once with a customer key and once
//! with the admin token, against the real binary holding real processed photographs. Any answer the document
//! does not describe (status, content type, body schema, headers), any schema-valid request
//! refused or invalid one accepted, any 5xx, fails the test.
//!
//! The seed is fixed, so a run is repeatable; the examples per operation are bounded so the run
//! takes about a minute.

mod common;

use std::{path::Path, process::Command};

use common::{ADMIN, create_customer, photos, spawn, temp_dir, upload_files, wait_until};
use serde_json::Value;

/// Settings schemathesis cannot learn from the document, with the reason for each.
fn config(image_id: &str) -> String {
    format!(
        r#"# Written by crates/cli/tests/openapi.rs.

# Schema-valid bytes need not be an image: bytes that are not one are refused as such (415),
# an empty body is 400, a header declaring too many pixels or too much memory 422. Schemathesis
# takes this block for every POST: lake records go to tables the settings declare (none here:
# 404), and a customer key may not post them (403).
[[operations]]
include-path = "/v1/images"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401, 403, 404, 409, 413, 415, 422, 429]

# A cursor is opaque: a string this API did not return is refused.
[[operations]]
include-path = "/v1/images"
include-method = "GET"
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401, 404, 429]

# The id of a processed photograph, so reading an image answers with a real record and bytes
# (deletions keep generated ids, so the photograph stays).
[[operations]]
include-path-regex = "^/v1/images/\\{{id\\}}"
include-method = "GET"
parameters = {{ id = "{image_id}" }}
"#
    )
}

fn schemathesis(dir: &Path, base: &str, token: &str, extra: &[&str]) {
    let st = std::env::var("IMAGELAKE_SCHEMATHESIS").expect(
        "IMAGELAKE_SCHEMATHESIS is not set: run the tests through scripts/test, which installs schemathesis",
    );
    // The serialiser of the lake's NDJSON bodies.
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let output = Command::new(&st)
        .current_dir(dir)
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .env("PYTHONPATH", hooks)
        .args(["run", &format!("{base}/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--seed",
            "20261130",
        ])
        // A repeated `Idempotency-Key` gets its first answer again even after that image was
        // deleted (as Stripe's keys do); this check reads a replayed `201` whose image is gone
        // as a created resource that went missing, so it is the one check left out.
        .args(["--exclude-checks", "ensure_resource_availability"])
        .args(["--workers", "1", "--no-color", "--warnings", "off"])
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("running {st}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found answers the document does not describe:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(" passed"),
        "schemathesis ran no tests:\n{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_describes_every_answer() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let data = temp_dir("openapi");
    let server = spawn(
        &["serve", "--data-dir", data.to_str().unwrap()],
        &[
            ("IMAGELAKE_RATE_LIMIT", "100000"),
            ("IMAGELAKE_AUTH_FAILURE_BURST", "100000"),
        ],
    );
    let client = reqwest::Client::new();
    let (_, key) = create_customer(&client, &server, "openapi").await;
    let ids = upload_files(&client, &server, &key, &photos()[..2]).await;
    let image = format!("{}/v1/images/{}", server.base, ids[0]);
    let processed = wait_until(std::time::Duration::from_secs(60), || async {
        let record: Value = client
            .get(&image)
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        record["status"] == "processed"
    })
    .await;
    assert!(processed, "the photo was processed");
    let dir = temp_dir("openapi-config");
    std::fs::write(dir.join("schemathesis.toml"), config(&ids[0])).unwrap();

    // A customer: every operation (the admin ones answer it 404, as documented).
    schemathesis(&dir, &server.base, &key, &[]);
    // The admin: every operation but the image ones, which act for a customer (documented 400).
    schemathesis(&dir, &server.base, ADMIN, &["--exclude-tag", "images"]);
}

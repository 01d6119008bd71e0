//! The jobs from outside, with the real binary: `imagelake jobs` on a data dir, the admin API of
//! a running `serve`, the `scheduler` role carrying out a backfill started from the CLI, and the
//! Airflow DAG and CronJobs calling only commands and jobs that exist.

mod common;

use std::{path::Path, process::Command, time::Duration};

use common::{ADMIN, get_json, spawn, temp_dir, wait_until};
use serde_json::{Value, json};

fn imagelake(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_imagelake"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("imagelake runs")
}

fn json_lines(output: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The day before today (UTC), `YYYY-MM-DD`: backfills must lie within the lake retention.
fn days_ago(days: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::days(days))
        .format("%Y-%m-%d")
        .to_string()
}

fn yesterday() -> String {
    days_ago(1)
}

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn job_names(dir: &str) -> Vec<String> {
    let listed = imagelake(&["jobs", "list", "--json", "--data-dir", dir]);
    assert!(listed.status.success(), "{listed:?}");
    json_lines(&listed)
        .iter()
        .map(|j| j["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_airflow_dag_and_the_cronjobs_run_commands_that_exist() {
    let dag = repo("deploy/airflow/imagelake_dag.py");
    let compiled = Command::new("python3")
        .args(["-m", "py_compile"])
        .arg(&dag)
        .output()
        .expect("python3 runs");
    assert!(compiled.status.success(), "{compiled:?}");
    let help = imagelake(&["jobs", "run", "--help"]);
    assert!(help.status.success(), "{help:?}");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--interval"), "{help}");

    let dir = temp_dir("jobs-names");
    let known = job_names(dir.to_str().unwrap());
    let dag = std::fs::read_to_string(dag).unwrap();
    let cronjobs =
        std::fs::read_to_string(repo("deploy/k8s/components/cronjobs/cronjobs.yaml")).unwrap();
    let called = |text: &str, marker: &str| -> Vec<String> {
        text.match_indices(marker)
            .map(|(i, _)| {
                text[i + marker.len()..]
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let from_dag = called(&dag, "job(\"");
    let from_cron = called(&cronjobs, "exec imagelake jobs run ");
    assert_eq!(from_dag.len(), 3, "{from_dag:?}");
    assert_eq!(from_cron.len(), 3, "{from_cron:?}");
    for name in from_dag.iter().chain(&from_cron) {
        assert!(known.contains(name), "{name} is not a job: {known:?}");
    }
    assert!(dag.contains("{IMAGELAKE} jobs run {name} --interval"));
}

#[test]
fn jobs_commands_run_record_and_refuse() {
    let dir = temp_dir("jobs-cli");
    let dir = dir.to_str().unwrap();
    // An interval inside the catch-up window, whatever day the test runs.
    let day = yesterday();
    let (hour, at_start, half_past, two_days_ago) = (
        format!("{day}T10"),
        format!("{day}T10:00:00+00:00"),
        format!("{day}T10:30"),
        format!("{}T10", days_ago(2)),
    );
    let hour = hour.as_str();
    assert_eq!(
        job_names(dir),
        ["lake-transform", "lake-retention", "image-retention"]
    );

    let ran = imagelake(&[
        "jobs",
        "run",
        "lake-retention",
        "--interval",
        hour,
        "--data-dir",
        dir,
    ]);
    assert!(ran.status.success(), "{ran:?}");
    let run = &json_lines(&ran)[0];
    assert_eq!(
        (
            &run["interval"],
            &run["state"],
            &run["trigger"],
            &run["rows"]
        ),
        (&json!(hour), &json!("success"), &json!("manual"), &json!(0))
    );

    // No hour of the lake is written: the transform's input is not there, exit 75.
    let waiting = imagelake(&[
        "jobs",
        "run",
        "lake-transform",
        "--interval",
        at_start.as_str(),
        "--data-dir",
        dir,
    ]);
    assert_eq!(waiting.status.code(), Some(75), "{waiting:?}");
    let said = String::from_utf8_lossy(&waiting.stderr);
    assert!(
        said.contains(&format!("lake/events/dt={day}/hour=10/_SUCCESS")),
        "{said}"
    );

    let history = imagelake(&[
        "jobs",
        "history",
        "lake-transform",
        "--json",
        "--data-dir",
        dir,
    ]);
    let runs = json_lines(&history);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["state"], "failed");
    assert!(runs[0]["error"].as_str().unwrap().starts_with("waiting: "));
    let table = imagelake(&["jobs", "history", "lake-retention", "--data-dir", dir]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.lines().next().unwrap().starts_with("INTERVAL"),
        "{table}"
    );
    assert!(table.contains(hour) && table.contains("success"), "{table}");

    for (args, message) in [
        (
            vec!["jobs", "run", "lake-trnsform", "--interval", hour],
            "no job named",
        ),
        (
            vec![
                "jobs",
                "run",
                "lake-transform",
                "--interval",
                half_past.as_str(),
            ],
            "not at its start",
        ),
        (
            vec!["jobs", "run", "lake-transform", "--interval", "yesterday"],
            "expected YYYY-MM-DDTHH",
        ),
        (
            vec![
                "jobs",
                "backfill",
                "lake-transform",
                "--from",
                hour,
                "--to",
                two_days_ago.as_str(),
            ],
            "is after",
        ),
        (
            vec![
                "jobs",
                "run",
                "lake-retention",
                "--interval",
                "2099-01-01T00",
            ],
            "has not ended yet",
        ),
        (
            vec![
                "jobs",
                "backfill",
                "lake-retention",
                "--from",
                "2020-01-01T00",
                "--to",
                "2020-01-01T05",
            ],
            "older than the lake keeps",
        ),
    ] {
        let out = imagelake(&[args.as_slice(), &["--data-dir", dir]].concat());
        assert!(!out.status.success(), "{args:?}");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains(message), "{args:?}: {said}");
    }
}

#[tokio::test]
async fn serve_runs_queued_runs_and_backfills_from_the_admin_api() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = temp_dir("jobs-api");
    let server = spawn(&["serve", "--data-dir", dir.to_str().unwrap()], &[]);
    let client = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", server.base);
    let jobs = get_json(&client, &server, "/v1/admin/jobs", ADMIN).await;
    let names: Vec<&str> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["lake-transform", "lake-retention", "image-retention"]
    );
    assert_eq!(jobs["jobs"][0]["schedule"], "10 * * * *");
    assert!(jobs["jobs"][0]["next_run"].is_string(), "{jobs}");

    // While serve's scheduler holds the job, a mistyped interval is still refused as such
    // (exit 1), not put off as busy (exit 75, which callers retry).
    let data_dir = dir.to_str().unwrap();
    for interval in ["garbage", "2099-01-01T00"] {
        let args = ["jobs", "run", "lake-transform", "--interval", interval];
        let out = imagelake(&[args.as_slice(), &["--data-dir", data_dir]].concat());
        assert_eq!(out.status.code(), Some(1), "{interval}: {out:?}");
    }

    let queued = client
        .post(url("/v1/admin/jobs/lake-retention/runs"))
        .bearer_auth(ADMIN)
        .json(&json!({"interval": format!("{}T10", yesterday())}))
        .send()
        .await
        .unwrap();
    assert_eq!(queued.status(), 202);
    let queued: Value = queued.json().await.unwrap();
    assert_eq!(
        (queued["state"].as_str(), queued["attempt"].as_u64()),
        (Some("queued"), Some(1))
    );
    let history = || async {
        let page = get_json(
            &client,
            &server,
            "/v1/admin/jobs/lake-retention/runs?limit=100",
            ADMIN,
        )
        .await;
        page["runs"].as_array().unwrap().clone()
    };
    wait_until(Duration::from_secs(30), || async {
        history()
            .await
            .iter()
            .any(|r| r["interval"] == format!("{}T10", yesterday()) && r["state"] == "success")
    })
    .await;

    let started = client
        .post(url("/v1/admin/jobs/lake-retention/backfills"))
        .bearer_auth(ADMIN)
        .json(&json!({"from": format!("{}T00", yesterday()), "to": format!("{}T23", yesterday()), "reprocess": "all", "max_active": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 201);
    let backfill: Value = started.json().await.unwrap();
    wait_until(Duration::from_secs(60), || async {
        let list = get_json(
            &client,
            &server,
            "/v1/admin/jobs/lake-retention/backfills",
            ADMIN,
        )
        .await;
        list["backfills"][0]["id"] == backfill["id"] && list["backfills"][0]["state"] == "done"
    })
    .await;
    let runs = history().await;
    let backfilled = runs.iter().filter(|r| r["trigger"] == "backfill").count();
    assert_eq!(backfilled, 24);

    for (path, body, status) in [
        (
            "/v1/admin/jobs/nope/runs",
            json!({"interval": format!("{}T10", yesterday())}),
            404,
        ),
        (
            "/v1/admin/jobs/lake-retention/runs",
            json!({"interval": "noon"}),
            400,
        ),
        (
            "/v1/admin/jobs/lake-retention/runs",
            json!({"hour": format!("{}T10", yesterday())}),
            400,
        ),
        (
            "/v1/admin/jobs/lake-retention/backfills",
            json!({"from": format!("{}T00", yesterday()), "to": format!("{}T01", yesterday()), "max_active": 0}),
            400,
        ),
    ] {
        let answer = client
            .post(url(path))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status, "{path} {body}");
    }
    let customer = client
        .get(url("/v1/admin/jobs"))
        .bearer_auth("ilk_not_an_admin")
        .send()
        .await
        .unwrap();
    assert_eq!(customer.status(), 401);
}

#[tokio::test]
async fn the_scheduler_role_carries_out_a_backfill_started_from_the_cli() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = temp_dir("jobs-scheduler");
    let data_dir = dir.to_str().unwrap();
    let scheduler = spawn(&["scheduler", "--data-dir", data_dir], &[]);
    let client = reqwest::Client::new();
    let ready: Value = client
        .get(format!("{}/readyz", scheduler.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(ready["checks"]["tasks"]["scheduler"].is_object(), "{ready}");

    let started = imagelake(&[
        "jobs",
        "backfill",
        "lake-retention",
        "--from",
        &format!("{}T00", yesterday()),
        "--to",
        &format!("{}T05", yesterday()),
        "--max-active",
        "2",
        "--data-dir",
        data_dir,
    ]);
    assert!(started.status.success(), "{started:?}");
    let backfill = &json_lines(&started)[0];
    assert_eq!(backfill["state"], "running");
    wait_until(Duration::from_secs(60), || async {
        let history = imagelake(&[
            "jobs",
            "history",
            "lake-retention",
            "--json",
            "--limit",
            "100",
            "--data-dir",
            data_dir,
        ]);
        json_lines(&history)
            .iter()
            .filter(|r| r["trigger"] == "backfill" && r["state"] == "success")
            .count()
            == 6
    })
    .await;
}

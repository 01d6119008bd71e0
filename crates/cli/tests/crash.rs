//! The real binary killed with SIGKILL while uploads and processing are in flight: every upload
//! that got a 201 is there after a restart and ends processed, with one set of renditions.

mod common;

use std::{
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{photos, start, temp_dir, wait_until};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_upload() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = temp_dir("crash");
    let mut server = start(&dir);
    let client = reqwest::Client::new();
    let (customer, key) = common::create_customer(&client, &server, "crash").await;

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

/// Records posted to the lake's door and answered `200` are in the lake's log after a SIGKILL,
/// each once, and the restarted process takes more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_lake_record() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = temp_dir("crash-lake");
    let config = dir.join("lake.toml");
    std::fs::write(
        &config,
        r#"
[[lake.tables]]
name = "clicks"
time_field = "ts"
id_field = "id"
columns = { id = "string", ts = "timestamp", page = "string" }
"#,
    )
    .unwrap();
    let args = [
        "serve",
        "--data-dir",
        dir.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    let mut server = common::spawn(&args, &[]);
    let client = reqwest::Client::new();
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (client, base, acked, next) = (
            client.clone(),
            server.base.clone(),
            acknowledged.clone(),
            next.clone(),
        );
        clients.push(tokio::spawn(async move {
            loop {
                let batch = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let now = chrono::Utc::now().to_rfc3339();
                let ids: Vec<String> = (0..200).map(|i| format!("b{batch}-{i}")).collect();
                let body: String = ids
                    .iter()
                    .map(|id| format!("{{\"id\":\"{id}\",\"ts\":\"{now}\",\"page\":\"/p\"}}\n"))
                    .collect();
                let Ok(response) = client
                    .post(format!("{base}/v1/lake/clicks/records"))
                    .bearer_auth(common::ADMIN)
                    .body(body)
                    .send()
                    .await
                else {
                    return;
                };
                let Ok(answer) = response.json::<Value>().await else {
                    return;
                };
                assert_eq!(answer["accepted"], 200, "{answer}");
                acked.lock().unwrap().extend(ids);
            }
        }));
    }
    assert!(
        wait_until(Duration::from_secs(60), || async {
            acknowledged.lock().unwrap().len() >= 20_000
        })
        .await,
        "records are acknowledged"
    );
    server.child.kill().expect("SIGKILL");
    server.child.wait().unwrap();
    for c in clients {
        let _ = c.await;
    }
    let acked = acknowledged.lock().unwrap().clone();

    let log = rusqlite::Connection::open(dir.join("lake.sqlite")).unwrap();
    let mut stmt = log
        .prepare("SELECT json_extract(row, '$.id') FROM records WHERE dataset = 'clicks'")
        .unwrap();
    let kept: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let distinct: std::collections::BTreeSet<&String> = kept.iter().collect();
    assert_eq!(distinct.len(), kept.len(), "no record twice");
    let missing: Vec<&String> = acked.iter().filter(|id| !distinct.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged records lost",
        missing.len()
    );

    // The restarted process takes more, and a record sent again is kept once.
    let server = common::spawn(&args, &[]);
    let again = format!(
        "{{\"id\":\"{}\",\"ts\":\"{}\"}}\n{{\"id\":\"fresh\",\"ts\":\"{}\"}}",
        acked[0],
        chrono::Utc::now().to_rfc3339(),
        chrono::Utc::now().to_rfc3339()
    );
    let answer: Value = client
        .post(format!("{}/v1/lake/clicks/records", server.base))
        .bearer_auth(common::ADMIN)
        .body(again)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["accepted"], 2, "{answer}");
    let count: i64 = log
        .query_row(
            "SELECT count(*) FROM records WHERE dataset = 'clicks'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(count as usize, kept.len() + 1, "only the fresh one is new");
}

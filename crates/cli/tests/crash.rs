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

//! The internal image stream on a real Kafka-protocol broker (tansu, started by `scripts/test`):
//! the real binary consumes a topic of real photographs, claim-checks and poison messages.

mod common;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use common::{
    ADMIN, Server, create_bucket, create_customer,
    kafka::{brokers, create_topics, produce, produce_to, producer, read_to_end},
    largest_photos, photos, processed, spawn, temp_dir, upload_files, wait_until,
};
use rdkafka::{
    ClientConfig, Message,
    consumer::{Consumer, StreamConsumer},
    message::Headers,
    producer::{FutureProducer, FutureRecord},
};
use serde_json::Value;

/// The tests here start several processes each; one at a time keeps the kill timing honest on
/// a small machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Headers, value, and the error code the dead letter must carry.
type Poison<'a> = (&'a [(&'a str, &'a str)], &'a [u8], &'a str);

/// The `content-type` of a claim-check message.
const CLAIM: &str = "application/vnd.imagelake.claim+json";

/// One test's topics.
struct Topics {
    images: String,
    dead: String,
    events: String,
}

/// Topic names for one test.
fn names(tag: &str) -> Topics {
    let images = format!("{tag}-images-{}", std::process::id());
    Topics {
        dead: format!("{images}.dlq"),
        events: format!("{tag}-events-{}", std::process::id()),
        images,
    }
}

/// Fresh topics for one test, made through the admin API.
async fn topics(tag: &str) -> Topics {
    let topics = names(tag);
    create_topics(&[(&topics.images, 2), (&topics.dead, 1), (&topics.events, 2)]).await;
    topics
}

fn config(dir: &Path, topics: &Topics) -> std::path::PathBuf {
    config_with(dir, "kafka.toml", topics, &brokers())
}

/// A settings file named `name` in `dir` for these topics on `brokers`.
fn config_with(dir: &Path, name: &str, topics: &Topics, brokers: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let Topics {
        images,
        dead,
        events,
    } = topics;
    std::fs::write(
        &path,
        format!(
            r#"data_dir = "{data}"
[kafka]
brokers = "{brokers}"
images_topic = "{images}"
dead_letter_topic = "{dead}"
events_topic = "{events}"
requests_topic = "{images}.requests"
group_id = "{images}-group"
[kafka.config]
"session.timeout.ms" = "6000"
"#,
            data = dir.display(),
        ),
    )
    .unwrap();
    path
}

/// Every message of a topic, read by a fresh consumer until `count` arrived.
async fn read_all(topic: &str, count: usize) -> Vec<rdkafka::message::OwnedMessage> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", format!("{topic}-reader"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    while out.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .expect("dead letters arrive")
            .unwrap();
        out.push(message.detach());
    }
    out
}

fn header(message: &impl Message, name: &str) -> Option<String> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .map(|h| String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photos_claims_and_poison_from_the_stream() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = temp_dir("kafka");
    let topics = topics("stream").await;
    let (images, dead) = (&topics.images, &topics.dead);
    let settings = config(&dir, &topics);
    let server = spawn(&["serve", "--config", settings.to_str().unwrap()], &[]);
    let client = reqwest::Client::new();
    let (customer, key) = create_customer(&client, &server, "stream").await;
    let producer = producer();
    let photos = largest_photos();

    for (n, photo) in photos.iter().skip(10).take(5).enumerate() {
        let name = format!("stream-{n}.jpg");
        let headers = [
            ("customer-id", customer.as_str()),
            ("filename", name.as_str()),
        ];
        produce(&producer, images, &headers, &std::fs::read(photo).unwrap()).await;
    }
    // A claim-check: the bytes wait under claims/ in the object store.
    let claimed = std::fs::read(&photos[15]).unwrap();
    std::fs::create_dir_all(dir.join("objects/claims/batch")).unwrap();
    std::fs::write(dir.join("objects/claims/batch/big.jpg"), &claimed).unwrap();
    let claim_headers = [
        ("customer-id", customer.as_str()),
        ("content-type", CLAIM),
        ("idempotency-key", "claim-batch-big"),
    ];
    let send_claim = async || {
        let claim = br#"{"object": "claims/batch/big.jpg"}"#;
        produce(&producer, images, &claim_headers, claim).await;
    };
    send_claim().await;

    let unknown = imagelake_core::CustomerId::new().to_string();
    let bomb = imagelake_imaging::fixtures::png_bomb(20_000, 20_000);
    let poison: [Poison; 5] = [
        (
            &[("customer-id", unknown.as_str())],
            b"\xff\xd8\xff",
            "not_found",
        ),
        (&[("filename", "x.jpg")], b"\xff\xd8\xff", "invalid_request"),
        (
            &[("customer-id", customer.as_str())],
            b"plain text",
            "unsupported_media_type",
        ),
        (
            &[("customer-id", customer.as_str())],
            &bomb,
            "pixel_limit_exceeded",
        ),
        (
            &[("customer-id", customer.as_str()), ("content-type", CLAIM)],
            br#"{"object": "originals/someone/else"}"#,
            "invalid_request",
        ),
    ];
    for (headers, payload, _) in &poison {
        produce(&producer, images, headers, payload).await;
    }
    // The partitions keep flowing after poison.
    produce(
        &producer,
        images,
        &[("customer-id", customer.as_str())],
        &std::fs::read(&photos[16]).unwrap(),
    )
    .await;

    let listing = processed(&client, &server, &key, 7).await;
    assert_eq!(
        listing.len(),
        7,
        "every good message is one image, nothing else"
    );
    assert!(listing.iter().any(|i| i["filename"] == "stream-0.jpg"));
    assert!(
        !dir.join("objects/claims/batch/big.jpg").exists(),
        "a claim taken in is removed"
    );
    // The same claim message again, as after a crash between removing the claim and committing
    // the offset: its object is gone, and it replays instead of becoming a dead letter.
    send_claim().await;
    wait_metric(
        &client,
        &server,
        r#"imagelake_stream_messages_total{outcome="replay"} 1"#,
    )
    .await;
    // The same key for other bytes is a conflict, and a dead letter.
    produce(
        &producer,
        images,
        &[
            ("customer-id", customer.as_str()),
            ("idempotency-key", "claim-batch-big"),
        ],
        &std::fs::read(&photos[18]).unwrap(),
    )
    .await;

    let letters = read_all(dead, poison.len() + 1).await;
    let mut codes: Vec<String> = letters
        .iter()
        .map(|m| header(m, "imagelake-error-code").unwrap())
        .collect();
    codes.sort();
    let mut expected: Vec<String> = poison.iter().map(|p| p.2.to_owned()).collect();
    expected.push("conflict".to_owned());
    expected.sort();
    assert_eq!(codes, expected);
    assert!(
        letters
            .iter()
            .all(|m| header(m, "imagelake-error-message").is_some_and(|m| !m.is_empty()))
    );

    // Operations see the stream: brokers reachable, lag per partition, dead letters counted.
    let ready = wait_ready(&client, &server, "ok").await;
    assert_eq!(ready.0, 200);
    let metrics = wait_metric(&client, &server, "imagelake_stream_consumer_lag{").await;
    assert!(
        metrics.contains(r#"imagelake_stream_messages_total{outcome="dead_letter"} 6"#),
        "{metrics}"
    );
    assert!(
        wait_until(Duration::from_secs(20), || async {
            metric_value(&client, &server, "imagelake_stream_messages_per_second").await > 0.0
        })
        .await,
        "messages/s shows the messages just taken in"
    );

    // A restart resumes from the committed offsets: only the new message becomes an image.
    stop(server);
    let server = spawn(&["serve", "--config", settings.to_str().unwrap()], &[]);
    let last = std::fs::read(&photos[17]).unwrap();
    produce(
        &producer,
        images,
        &[("customer-id", customer.as_str())],
        &last,
    )
    .await;
    let listing = processed(&client, &server, &key, 8).await;
    assert_eq!(listing.len(), 8, "nothing was taken in twice");
}

/// Waits until `/readyz` shows the Kafka check in `state`; returns the status and body.
async fn wait_ready(client: &reqwest::Client, server: &Server, state: &str) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = client
            .get(format!("{}/readyz", server.base))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        if body["checks"]["kafka"] == state {
            return (status, body);
        }
        assert!(Instant::now() < deadline, "kafka never {state}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of `/metrics`.
async fn metrics(client: &reqwest::Client, server: &Server) -> String {
    client
        .get(format!("{}/metrics", server.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until `/metrics` has a sample starting with `name`; returns the whole text.
async fn wait_metric(client: &reqwest::Client, server: &Server, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = metrics(client, server).await;
        if text.lines().any(|l| l.starts_with(name)) {
            return text;
        }
        assert!(Instant::now() < deadline, "no {name} in {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_brokers_show_in_readiness() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let nowhere = nowhere();
    let client = reqwest::Client::new();
    let env = [("IMAGELAKE_KAFKA_BROKERS", nowhere.as_str())];
    let dir = temp_dir("kafka-down");
    let data = dir.to_str().unwrap();
    let ingest = spawn(&["kafka-ingest", "--data-dir", data], &env);
    let (status, body) = wait_ready(&client, &ingest, "unreachable").await;
    assert_eq!(
        status, 503,
        "kafka-ingest cannot work without brokers: {body}"
    );
    drop(ingest);
    let serve = spawn(&["serve", "--data-dir", data], &env);
    let (status, body) = wait_ready(&client, &serve, "unreachable").await;
    assert_eq!(status, 200, "the API keeps serving without Kafka: {body}");
    assert_eq!(body["checks"]["metadata"], "ok");
}

/// An address where no broker listens.
fn nowhere() -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    closed.local_addr().unwrap().to_string()
}

/// Runs the binary to its end with `args`; its exit status and what it printed on stderr.
fn run(args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_imagelake"))
        .args(args)
        .env_remove("IMAGELAKE_KAFKA_BROKERS")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), said)
}

/// Commands that need brokers or a topic say so at once instead of starting or waiting:
/// `kafka-ingest` without brokers, or with settings librdkafka refuses, starts nothing, and `kafka produce` and `create-topics` fail
/// within their deadline when the brokers are out of reach or the topic was never created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_refuse_missing_brokers_and_topics() {
    let dir = temp_dir("kafka-refusals");
    let data = dir.join("data");
    let (ok, said) = run(&["kafka-ingest", "--data-dir", data.to_str().unwrap()]);
    assert!(
        !ok && said.contains("kafka-ingest needs kafka.brokers"),
        "{said}"
    );
    assert!(!data.exists(), "nothing was started or written");
    let (ok, said) = run(&["lake-writer", "--data-dir", data.to_str().unwrap()]);
    assert!(
        !ok && said.contains("lake-writer needs kafka.brokers"),
        "{said}"
    );
    assert!(!data.exists(), "nothing was started or written");
    let settings = config_with(&dir, "refused.toml", &names("refused"), &brokers());
    let mut text = std::fs::read_to_string(&settings).unwrap();
    text.push_str("\"no.such.property\" = \"1\"\n");
    std::fs::write(&settings, text).unwrap();
    for role in ["kafka-ingest", "serve", "lake-writer"] {
        let (ok, said) = run(&[role, "--config", settings.to_str().unwrap()]);
        assert!(!ok && said.contains("no.such.property"), "{role}: {said}");
    }
    assert!(!dir.join("admin-token").exists() && !dir.join("metadata.sqlite").exists());

    let photo = &photos()[0];
    let customer = imagelake_core::CustomerId::new().to_string();
    let push = |brokers: &str, topic: &str| {
        run(&[
            "kafka",
            "produce",
            "--brokers",
            brokers,
            "--topic",
            topic,
            "--customer",
            &customer,
            photo.to_str().unwrap(),
        ])
    };
    let never_made = format!("never-made-{}", std::process::id());
    let (ok, said) = push(&brokers(), &never_made);
    assert!(!ok && said.contains("does not exist"), "{said}");
    let (ok, said) = push(&nowhere(), &never_made);
    assert!(
        !ok && said.contains("cannot reach the Kafka brokers"),
        "{said}"
    );
    let (ok, said) = run(&["kafka", "create-topics", "--brokers", &nowhere()]);
    assert!(
        !ok && said.contains("cannot reach the Kafka brokers"),
        "{said}"
    );
}

/// SIGTERM, and waits for the process to finish its shutdown (offsets committed).
fn stop(mut server: Server) {
    let pid = server.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(server.child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_consumer_hands_its_partitions_over() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = temp_dir("kafka-group");
    let topics = topics("group").await;
    let images = &topics.images;
    let settings = config(&dir, &topics);
    let settings = settings.to_str().unwrap();
    let verbose = [("RUST_LOG", "info,imagelake_kafka=debug")];
    let api = spawn(&["api", "--config", settings], &[]);
    let _worker = spawn(&["worker", "--config", settings], &[]);
    let mut doomed = spawn(&["kafka-ingest", "--config", settings], &verbose);
    let survivor = spawn(&["kafka-ingest", "--config", settings], &verbose);
    let client = reqwest::Client::new();
    let (customer, key) = create_customer(&client, &api, "group").await;
    // Both consumers hold a partition before anything is produced.
    let deadline = Instant::now() + Duration::from_secs(60);
    let holds = |server: &Server| {
        server
            .logged("image stream: partitions assigned")
            .last()
            .is_some_and(|e| e["fields"]["partitions"] != "[]")
    };
    while !(holds(&doomed) && holds(&survivor)) {
        assert!(
            Instant::now() < deadline,
            "the group never shared its partitions"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let producer = producer();
    // Both partitions get a backlog, so the killed consumer leaves work behind.
    let photos = largest_photos();
    let count = 30;
    for (n, photo) in photos.iter().take(count).enumerate() {
        let bytes = std::fs::read(photo).unwrap();
        let partition = Some((n % 2) as i32);
        produce_to(
            &producer,
            images,
            partition,
            &[("customer-id", customer.as_str())],
            &bytes,
        )
        .await;
    }
    // Kill one consumer as soon as it has stored something; it may hold uncommitted offsets.
    let deadline = Instant::now() + Duration::from_secs(60);
    while doomed.logged("stream message stored").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the first consumer took no message"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    doomed.kill();
    let partitions = |server: &Server| -> Vec<Value> {
        server
            .logged("stream message stored")
            .iter()
            .map(|e| e["fields"]["partition"].clone())
            .collect()
    };
    let held = partitions(&doomed);
    let listing = processed(&client, &api, &key, count).await;
    assert_eq!(
        listing.len(),
        count,
        "every message is one image, none twice"
    );
    let taken = partitions(&survivor);
    assert!(
        held.iter().all(|p| taken.contains(p)),
        "the survivor took over partitions {held:?} (it stored from {taken:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_produce_pushes_files_and_claim_checks() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = temp_dir("kafka-produce");
    let topics = topics("produce").await;
    let settings = config(&dir, &topics);
    let server = spawn(&["serve", "--config", settings.to_str().unwrap()], &[]);
    let client = reqwest::Client::new();
    let (customer, key) = create_customer(&client, &server, "stream").await;
    let folder = dir.join("to-send");
    std::fs::create_dir_all(&folder).unwrap();
    let photos = largest_photos();
    let chosen = &photos[30..33];
    for photo in chosen {
        std::fs::copy(photo, folder.join(photo.file_name().unwrap())).unwrap();
    }
    std::fs::write(folder.join("notes.txt"), b"not an image").unwrap();
    // Over the default 50 MiB body limit; sparse, and refused before it is read.
    std::fs::File::create(folder.join("huge.jpg"))
        .unwrap()
        .set_len((50 << 20) + 1)
        .unwrap();
    let smallest = chosen
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .min()
        .unwrap();
    let produce = |customer: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_imagelake"))
            .args(["kafka", "produce", "--config", settings.to_str().unwrap()])
            .args([
                "--customer",
                customer,
                "--claim-above",
                &smallest.to_string(),
            ])
            .arg(&folder)
            .output()
            .unwrap()
    };
    let typo = produce("acme");
    assert!(!typo.status.success());
    let said = String::from_utf8_lossy(&typo.stderr);
    assert!(said.contains("is not a customer id"), "{said}");
    let output = produce(&customer);
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "a file was not sent: {printed}");
    assert!(
        printed.contains("sent: 3") && printed.contains("(2 as claim-checks), not sent: 2"),
        "{printed}"
    );
    assert!(
        printed.contains("notes.txt") && printed.contains("not a supported image"),
        "{printed}"
    );
    assert!(
        printed.contains("huge.jpg: 52428801 bytes is over limits.max_body_bytes"),
        "{printed}"
    );
    let listing = processed(&client, &server, &key, 3).await;
    assert_eq!(listing.len(), 3);
    let claims_left = std::fs::read_dir(dir.join("objects/claims"))
        .map(|d| {
            d.flatten()
                .flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten())
                .count()
        })
        .unwrap_or(0);
    assert_eq!(claims_left, 0, "claims taken in are removed");
}

/// The value of a counter or gauge in `/metrics`, 0 when it has no sample yet.
async fn metric_value(client: &reqwest::Client, server: &Server, name: &str) -> f64 {
    metrics(client, server)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Every lifecycle change is one event on the events topic: also when the process was killed with
/// its events still in the outbox (the brokers were out of reach), and when a crash came between
/// the broker taking events and the outbox marking them (the publisher reads the topic back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_topic_carries_one_event_per_change() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = temp_dir("kafka-events");
    let topics = topics("events").await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = closed.local_addr().unwrap().to_string();
    drop(closed);
    let offline = config_with(&dir, "offline.toml", &topics, &nowhere);
    let online = config(&dir, &topics);
    let (offline, online) = (offline.to_str().unwrap(), online.to_str().unwrap());
    let client = reqwest::Client::new();
    let photos = photos();

    // Changes while the brokers are out of reach, then SIGKILL: the events wait in the outbox.
    let mut server = spawn(&["serve", "--config", offline], &[]);
    let (customer, key) = create_customer(&client, &server, "events").await;
    let uploaded = upload_files(&client, &server, &key, &photos[..3]).await;
    processed(&client, &server, &key, 3).await;
    let changed = client
        .patch(format!("{}/v1/customers/{customer}", server.base))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"plan": "enterprise"}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let deleted = client
        .delete(format!("{}/v1/images/{}", server.base, uploaded[0]))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    server.kill();
    assert!(
        read_to_end(&topics.events).is_empty(),
        "nothing could be published"
    );

    // With the brokers: the backlog goes out, and so do the changes the stream makes.
    let server = spawn(&["serve", "--config", online], &[]);
    let producer = producer();
    for photo in &photos[3..5] {
        let headers = [("customer-id", customer.as_str())];
        produce(
            &producer,
            &topics.images,
            &headers,
            &std::fs::read(photo).unwrap(),
        )
        .await;
    }
    processed(&client, &server, &key, 4).await;
    // customer.created and .updated, 5 received, 5 processed, 1 deleted.
    let before_crash = 13;
    let published = "imagelake_events_published_total";
    assert!(
        wait_until(Duration::from_secs(90), || async {
            metric_value(&client, &server, published).await >= before_crash as f64
        })
        .await,
        "the backlog and the new events were published"
    );
    stop(server);

    // The state a crash between the broker's acknowledgement and the outbox's mark leaves.
    let db = rusqlite::Connection::open(dir.join("metadata.sqlite")).unwrap();
    let unmarked = db
        .execute("UPDATE events SET published_at = NULL", [])
        .unwrap();
    assert_eq!(unmarked, before_crash, "the outbox is the local event log");
    drop(db);
    let server = spawn(&["serve", "--config", online], &[]);
    let gone = client
        .delete(format!("{}/v1/customers/{customer}", server.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    // 4 image.deleted in the cascade, then customer.deleted.
    assert!(
        wait_until(Duration::from_secs(60), || async {
            metric_value(&client, &server, published).await >= 5.0
        })
        .await,
        "the customer's deletion was published"
    );
    let found =
        server.logged("event publisher: events sent before a restart were already on the topic");
    assert_eq!(found.len(), 1, "the topic was read back once");
    assert_eq!(found[0]["fields"]["count"], before_crash);
    assert_eq!(metric_value(&client, &server, published).await, 5.0);
    stop(server);

    let total = before_crash + 5;
    let records = read_to_end(&topics.events);
    assert_eq!(records.len(), total, "nothing was sent twice");
    let mut ids = std::collections::HashSet::new();
    let mut seen: Vec<(String, String, i32, i64)> = Vec::new();
    for record in &records {
        let event: Value = serde_json::from_slice(record.payload().unwrap()).unwrap();
        assert_eq!(event["schema_version"], 1, "{event}");
        assert_eq!(event["customer_id"], customer.as_str());
        assert_eq!(record.key(), Some(customer.as_bytes()), "keyed by customer");
        let id = event["event_id"].as_str().unwrap().to_owned();
        assert_eq!(header(record, "event-id").as_deref(), Some(id.as_str()));
        assert_eq!(
            header(record, "event-type").as_ref(),
            event["type"].as_str().map(str::to_owned).as_ref()
        );
        assert!(ids.insert(id), "event ids are unique");
        let entity = event["image_id"].as_str().unwrap_or("customer").to_owned();
        let kind = event["type"].as_str().unwrap().to_owned();
        seen.push((kind, entity, record.partition(), record.offset()));
    }
    let count = |kind: &str| seen.iter().filter(|s| s.0 == kind).count();
    for (kind, expected) in [
        ("customer.created", 1),
        ("customer.updated", 1),
        ("customer.deleted", 1),
        ("image.received", 5),
        ("image.processed", 5),
        ("image.deleted", 5),
    ] {
        assert_eq!(count(kind), expected, "{kind}: {seen:?}");
    }
    // One customer's events are on one partition, in the order they happened.
    let position = |kind: &str, entity: &str| {
        let s = seen.iter().find(|s| s.0 == kind && s.1 == entity).unwrap();
        (s.2, s.3)
    };
    let images: std::collections::HashSet<_> = seen
        .iter()
        .filter(|s| s.0 == "image.received")
        .map(|s| s.1.clone())
        .collect();
    assert_eq!(images.len(), 5);
    for image in &images {
        let (received, processed, deleted) = (
            position("image.received", image),
            position("image.processed", image),
            position("image.deleted", image),
        );
        assert!(
            received < processed && processed < deleted,
            "{image}: {seen:?}"
        );
    }
    assert!(position("customer.created", "customer") < position("customer.deleted", "customer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topics_makes_the_configured_topics_once() {
    let dir = temp_dir("kafka-topics");
    let topics = names("made");
    let settings = config(&dir, &topics);
    let create = || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_imagelake"))
            .args(["kafka", "create-topics", "--partitions", "3", "--config"])
            .arg(&settings)
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{printed} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        printed
    };
    let first = create();
    let requests = format!("{}.requests", topics.images);
    for topic in [&topics.images, &topics.dead, &topics.events, &requests] {
        assert!(first.contains(&format!("created: {topic}\n")), "{first}");
    }
    let again = create();
    assert_eq!(again.matches("exists: ").count(), 4, "{again}");
    let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let partitions = |topic: &str| {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        metadata.topics()[0].partitions().len()
    };
    assert_eq!(partitions(&topics.images), 3);
    assert_eq!(partitions(&topics.dead), 1);
    assert_eq!(partitions(&topics.events), 3);
    assert_eq!(partitions(&requests), 3);
}

/// The lake's settings for one test: a GCS bucket of the emulator, its own topics and group, a
/// declared table fed by `{tag}-billing` and an idle one fed by `{tag}-idle`.
fn lake_config(dir: &Path, tag: &str, bucket: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("lake.toml");
    std::fs::write(
        &path,
        format!(
            r#"data_dir = "{data}"
[objects]
backend = "gcs"
bucket = "{bucket}"
[kafka]
brokers = "{brokers}"
events_topic = "{tag}-events"
requests_topic = "{tag}-requests"
[kafka.config]
"session.timeout.ms" = "6000"
[lake]
group_id = "{tag}-lake"
max_buffer_bytes = 16777216
[[lake.tables]]
name = "billing"
topic = "{tag}-billing"
time_field = "ts"
id_field = "id"
customer_field = "customer"
columns = {{ id = "string", ts = "timestamp", customer = "string", amount = "float64", note = "string" }}
[[lake.tables]]
name = "idle"
topic = "{tag}-idle"
time_field = "ts"
columns = {{ ts = "timestamp" }}
"#,
            data = dir.display(),
            brokers = brokers(),
        ),
    )
    .unwrap();
    path
}

fn gcs_host() -> String {
    std::env::var("STORAGE_EMULATOR_HOST")
        .expect("STORAGE_EMULATOR_HOST is not set: run the tests through scripts/test")
}

/// The bucket's objects under `prefix`: name and generation.
async fn bucket_objects(bucket: &str, prefix: &str) -> Vec<(String, String)> {
    let list: Value = reqwest::get(format!(
        "http://{}/storage/v1/b/{bucket}/o?prefix={prefix}",
        gcs_host()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let mut out: Vec<(String, String)> = list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|o| {
            (
                o["name"].as_str().unwrap().to_owned(),
                o["generation"].to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

async fn bucket_get(bucket: &str, name: &str) -> Option<Vec<u8>> {
    let response = reqwest::get(format!(
        "http://{}/storage/v1/b/{bucket}/o/{}?alt=media",
        gcs_host(),
        name.replace('/', "%2F")
    ))
    .await
    .unwrap();
    response
        .status()
        .is_success()
        .then_some(response.bytes().await.unwrap().to_vec())
}

/// The `_SUCCESS` of a table's hour, if written.
async fn bucket_marker(
    bucket: &str,
    table: &str,
    hour: chrono::DateTime<chrono::Utc>,
) -> Option<Value> {
    let name = format!(
        "lake/{table}/{}/_SUCCESS",
        hour.format("dt=%Y-%m-%d/hour=%H")
    );
    let bytes = bucket_get(bucket, &name).await?;
    Some(serde_json::from_slice(&bytes).unwrap())
}

/// Copies the bucket's `lake/` into `dir` and reads `table` with DuckDB and pyarrow (which must
/// agree); the rows.
async fn read_lake(bucket: &str, dir: &Path, table: &str) -> Vec<Value> {
    let _ = std::fs::remove_dir_all(dir);
    for (name, _) in bucket_objects(bucket, "lake/").await {
        let path = dir.join(&name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bucket_get(bucket, &name).await.unwrap()).unwrap();
    }
    let python = std::env::var("IMAGELAKE_LAKE_PYTHON").expect(
        "IMAGELAKE_LAKE_PYTHON is not set: run the tests through scripts/test, which installs DuckDB and pyarrow",
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/lake-read.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(dir)
        .arg(table)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let both: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        both["duckdb"], both["pyarrow"],
        "DuckDB and pyarrow read {table} alike"
    );
    both["duckdb"].as_array().unwrap().clone()
}

/// One billing record; `hour` hours ago, about 400 bytes.
fn billing(i: usize, hours_ago: i64) -> (String, Vec<u8>) {
    let id = format!("r{i:06}");
    let ts = chrono::Utc::now()
        - chrono::Duration::hours(hours_ago)
        - chrono::Duration::seconds((i % 1800) as i64);
    let record = serde_json::json!({
        "id": id,
        "ts": ts.to_rfc3339(),
        "customer": format!("c{}", i % 7),
        "amount": i as f64 / 100.0,
        "note": "x".repeat(300),
    });
    (id, record.to_string().into_bytes())
}

async fn produce_billing(producer: &FutureProducer, topic: &str, records: &[(String, Vec<u8>)]) {
    let sends = records.iter().map(|(id, payload)| {
        producer.send(
            FutureRecord::<str, [u8]>::to(topic)
                .key(id)
                .payload(payload),
            Duration::from_secs(60),
        )
    });
    for sent in futures::future::join_all(sends).await {
        sent.map_err(|(e, _)| e).unwrap();
    }
}

fn start_writer(config: &Path) -> Server {
    spawn(&["lake-writer", "--config", config.to_str().unwrap()], &[])
}

/// The hour whose grace (5 minutes) has passed, as the writer computes it.
fn due_hour() -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now() - chrono::Duration::minutes(5);
    let hour = now.timestamp().div_euclid(3600) - 1;
    chrono::DateTime::from_timestamp(hour * 3600, 0).unwrap()
}

/// Two `lake-writer`s share the group on the GCS emulator; one is killed while they write a
/// backlog;
/// every record is in the lake once, the idle table's hour is closed, and a restarted writer
/// rewrites nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lake_writers_share_a_group_and_survive_a_kill() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tag = format!("lakegrp-{}", std::process::id());
    let dir = temp_dir("lake-writers");
    let billing_topic = format!("{tag}-billing");
    create_topics(&[
        (&billing_topic, 4),
        (&format!("{tag}-idle"), 1),
        (&format!("{tag}-events"), 2),
        (&format!("{tag}-requests"), 1),
    ])
    .await;
    create_bucket(&tag).await;
    let due = due_hour();
    let (config_a, config_b) = (
        lake_config(&dir.join("a"), &tag, &tag),
        lake_config(&dir.join("b"), &tag, &tag),
    );
    // A backlog of two hours past their grace, some records sent twice, more than the writers'
    // buffers hold.
    let records: Vec<(String, Vec<u8>)> = (0..60_000)
        .map(|i| billing(i, 2 + (i % 2) as i64))
        .collect();
    let producer = producer();
    produce_billing(&producer, &billing_topic, &records).await;
    produce_billing(&producer, &billing_topic, &records[..500]).await;
    let mut a = start_writer(&config_a);
    let b = start_writer(&config_b);
    let written = wait_until(Duration::from_secs(120), || async {
        bucket_objects(&tag, "lake/billing/")
            .await
            .iter()
            .any(|(n, _)| n.ends_with(".parquet"))
    })
    .await;
    assert!(written, "the writers write the first records");
    a.kill();

    // Every record, once, in both hours' markers, after the survivor took the partitions over.
    let hours: std::collections::BTreeSet<_> = (0..=10)
        .map(|j| {
            let t = chrono::Utc::now() - chrono::Duration::minutes(120 + j * 10);
            chrono::DateTime::from_timestamp(t.timestamp().div_euclid(3600) * 3600, 0).unwrap()
        })
        .collect();
    let complete = wait_until(Duration::from_secs(240), || async {
        let mut rows = 0;
        for hour in &hours {
            if let Some(m) = bucket_marker(&tag, "billing", *hour).await {
                rows += m["rows"].as_u64().unwrap();
            }
        }
        rows >= 60_000
    })
    .await;
    let rows = read_lake(&tag, &dir.join("read"), "billing").await;
    assert!(
        complete,
        "the markers count every record: {} rows read",
        rows.len()
    );
    let mut ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let total = ids.len();
    ids.dedup();
    assert_eq!((total, ids.len()), (60_000, 60_000), "every record once");
    let row = rows.iter().find(|r| r["id"] == "r000007").unwrap();
    assert_eq!(
        row["customer_id"], "c0",
        "customer_field is copied to customer_id"
    );

    // The idle table's due hour is closed, empty.
    let idle = bucket_marker(&tag, "idle", due)
        .await
        .expect("the idle hour is closed");
    assert_eq!(idle["rows"], 0);

    // A restarted writer takes its share back and rewrites nothing.
    let before = bucket_objects(&tag, "lake/billing/").await;
    let a = start_writer(&config_a);
    let rejoined = wait_until(Duration::from_secs(120), || async {
        !a.logged("lake partition closed").is_empty()
    })
    .await;
    assert!(rejoined, "the restarted writer holds partitions again");
    assert_eq!(
        bucket_objects(&tag, "lake/billing/").await,
        before,
        "nothing rewritten"
    );
    stop(a);
    stop(b);
}

/// With brokers, `serve`'s lake door sends every posted line to the table's topic (keyed by its
/// id, stamped with the time received) and answers after the brokers have them; the request
/// records go to the requests topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_brokers_sends_the_lake_to_kafka() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = temp_dir("kafka-lake-door");
    let topics = topics("lakedoor").await;
    let (clicks, requests) = (
        format!("{}-clicks", topics.images),
        format!("{}.requests", topics.images),
    );
    create_topics(&[(&clicks, 2), (&requests, 1)]).await;
    let settings = config(&dir, &topics);
    let mut text = std::fs::read_to_string(&settings).unwrap();
    text.push_str(&format!(
        r#"[[lake.tables]]
name = "clicks"
topic = "{clicks}"
time_field = "ts"
id_field = "id"
columns = {{ id = "string", ts = "timestamp", page = "string" }}
"#
    ));
    std::fs::write(&settings, text).unwrap();
    let server = spawn(&["serve", "--config", settings.to_str().unwrap()], &[]);
    let ts = chrono::Utc::now().to_rfc3339();
    let lines = [
        format!(r#"{{"id": "a", "ts": "{ts}", "page": "/"}}"#),
        format!(r#"{{"id": "b", "ts": "{ts}", "page": "/x"}}"#),
        "{not json".to_owned(),
    ];
    let before = chrono::Utc::now().timestamp_millis();
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/v1/lake/clicks/records", server.base))
        .bearer_auth(ADMIN)
        .header("content-type", "application/x-ndjson")
        .body(lines.join("\n"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["accepted"], 2, "{answer}");
    assert_eq!(answer["quarantined"][0]["line"], 3, "{answer}");

    // On the topic as soon as answered: every line, the bad one too (the writer quarantines it).
    let mut sent: Vec<(Option<String>, String, i64)> = read_to_end(&clicks)
        .iter()
        .map(|m| {
            (
                m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                String::from_utf8_lossy(m.payload().unwrap()).into_owned(),
                m.timestamp().to_millis().unwrap(),
            )
        })
        .collect();
    sent.sort();
    let keys: Vec<_> = sent.iter().map(|(k, _, _)| k.clone()).collect();
    assert_eq!(keys, [None, Some("a".into()), Some("b".into())]);
    let mut payloads: Vec<_> = sent.iter().map(|(_, p, _)| p.clone()).collect();
    payloads.sort();
    let mut expected = lines.to_vec();
    expected.sort();
    assert_eq!(payloads, expected);
    assert!(sent.iter().all(|(_, _, t)| *t >= before - 1000));

    let recorded = wait_until(Duration::from_secs(30), || async {
        read_to_end(&requests).iter().any(|m| {
            let row: Value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
            row["route"] == "/v1/lake/{table}/records" && row["status"] == 200
        })
    })
    .await;
    assert!(
        recorded,
        "the post's request record is on the requests topic"
    );
    stop(server);
}

//! The Google Cloud deployment in one process, on the emulators `scripts/test` starts: originals
//! in a GCS bucket, records in Firestore, and work that arrives only through the bucket's
//! Pub/Sub notifications (`AppState::from_settings` with the settings `gcp.toml` ships).

mod common;

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use common::{ADMIN, TestServer, corpus, wait_for};
use imagelake_core::{ImageId, paths};
use imagelake_gcp::{
    PubSub,
    signing::{ServiceAccountKey, UrlRequest, canonical},
};
use imagelake_runtime::settings::{MetadataBackend, ObjectBackend, QueueBackend, Settings};
use object_store::{ObjectStoreExt, PutPayload, path::Path as ObjectPath};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The topic `scripts/emulators.sh` has the GCS emulator publish every bucket's notifications to.
const TOPIC: &str = "gcs-notifications";
const PROJECT: &str = "imagelake-test";

async fn gcp_server(tag: &str, tweak: impl FnOnce(&mut Settings)) -> (TestServer, String) {
    let bucket = common::emulator_bucket(tag).await;
    let subscription = format!("{bucket}-processing");
    let b = bucket.clone();
    let server = TestServer::from_settings(move |s| {
        s.objects.backend = ObjectBackend::Gcs;
        s.objects.bucket = Some(b);
        s.metadata.backend = MetadataBackend::Firestore;
        s.queue.backend = QueueBackend::Pubsub;
        s.queue.topic = TOPIC.into();
        s.queue.dead_letter_topic = format!("{subscription}-dead");
        s.queue.dead_letter_subscription = format!("{subscription}-dead");
        s.queue.subscription = subscription;
        s.queue.create = true;
        s.gcp.project = Some(PROJECT.into());
        s.limits.burst = 1000;
        tweak(s);
    })
    .await;
    (server, bucket)
}

async fn stored_generation(server: &TestServer, id: &str) -> Option<i64> {
    let id: ImageId = id.parse().unwrap();
    server.state.store.get_image(id).await.unwrap()?.generation
}

#[tokio::test]
async fn notifications_drive_processing_and_repeats_do_nothing() {
    let (server, bucket) = gcp_server("flow", |_| {}).await;
    let (customer, key) = server.customer("cloud").await;
    let photos = corpus();
    let mut ids = Vec::new();
    for photo in photos.iter().take(3) {
        let (status, body) = server
            .upload(&key, std::fs::read(photo).unwrap(), Some("photo.jpg"))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["status"], "received");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        let record = server.wait_settled(&key, id).await;
        assert_eq!(record["status"], "processed", "{record}");
        assert!(
            stored_generation(&server, id).await.is_some(),
            "the record knows the generation it describes"
        );
    }
    let (_, listing) = server.get(&key, "/v1/images").await;
    let listed: Vec<&str> = listing["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first);

    // The same notification again (same generation): nothing is processed a second time.
    let id = &ids[0];
    let before = server.get(&key, &format!("/v1/images/{id}")).await.1;
    let generation = stored_generation(&server, id).await.unwrap();
    let processed = server.state.metrics.processed.get();
    let skipped = server.state.metrics.skipped.get();
    let pubsub = PubSub::from_env(PROJECT).unwrap();
    let object = paths::original(customer.parse().unwrap(), id.parse().unwrap());
    let attributes = HashMap::from([
        ("payloadFormat".to_owned(), "JSON_API_V1".to_owned()),
        ("eventType".to_owned(), "OBJECT_FINALIZE".to_owned()),
        ("bucketId".to_owned(), bucket.clone()),
        ("objectId".to_owned(), object.to_string()),
        ("objectGeneration".to_owned(), generation.to_string()),
    ]);
    pubsub.publish(TOPIC, b"{}", &attributes).await.unwrap();
    wait_for(Duration::from_secs(30), || async {
        (server.state.metrics.skipped.get() > skipped).then_some(())
    })
    .await
    .expect("the repeated notification is consumed");
    assert_eq!(server.state.metrics.processed.get(), processed);
    let after = server.get(&key, &format!("/v1/images/{id}")).await.1;
    assert_eq!(after["processed_at"], before["processed_at"]);

    // An overwrite (a new generation) is processed again and the record describes the new bytes.
    let replacement = std::fs::read(&photos[5]).unwrap();
    server
        .state
        .objects
        .put(&object, PutPayload::from(replacement.clone()))
        .await
        .unwrap();
    let sha = hex::encode(Sha256::digest(&replacement));
    let record = wait_for(Duration::from_secs(60), || async {
        let (_, r) = server.get(&key, &format!("/v1/images/{id}")).await;
        (r["sha256"] == sha.as_str() && r["status"] == "processed").then_some(r)
    })
    .await
    .expect("the overwrite is processed");
    assert_eq!(record["bytes"], replacement.len());
    assert!(stored_generation(&server, id).await.unwrap() > generation);
    assert_ne!(record["processed_at"], before["processed_at"]);
    server.stop().await;
}

#[tokio::test]
async fn failing_work_reaches_the_dead_letter_topic_and_can_be_redriven() {
    let (server, _) = gcp_server("dead", |s| {
        s.processing.max_attempts = 5;
        s.processing.retry_backoff = imagelake_runtime::settings::HumanDurationMs(1);
    })
    .await;
    let (customer, key) = server.customer("unlucky").await;
    let (status, body) = server
        .upload(&key, std::fs::read(&corpus()[0]).unwrap(), None)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = body["id"].as_str().unwrap().to_owned();
    server.wait_settled(&key, &id).await;

    // Work for a record whose original is gone fails on every attempt.
    let image: ImageId = id.parse().unwrap();
    let customer = customer.parse().unwrap();
    let mut record = server.state.store.get_image(image).await.unwrap().unwrap();
    record.status = imagelake_core::records::ImageStatus::Received;
    server.state.store.update_image(&record).await.unwrap();
    let original = paths::original(customer, image);
    let bytes = server
        .state
        .objects
        .get(&original)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    server.state.objects.delete(&original).await.unwrap();
    server
        .state
        .queue
        .enqueue(image, customer, chrono::Utc::now())
        .await
        .unwrap();
    let dead = wait_for(Duration::from_secs(60), || async {
        let (_, body) = server.get(ADMIN, "/v1/admin/dead-letters").await;
        body["dead_letters"]
            .as_array()
            .and_then(|l| l.iter().find(|d| d["image_id"] == id.as_str()).cloned())
    })
    .await
    .expect("the work reaches the dead letters");
    assert_eq!(dead["attempts"], 5);
    assert!(!dead["last_error"].as_str().unwrap().is_empty());

    // Restoring the original is a new generation: its notification processes the image.
    server
        .state
        .objects
        .put(&original, PutPayload::from(bytes))
        .await
        .unwrap();
    let record = server.wait_settled(&key, &id).await;
    assert_eq!(record["status"], "processed");
    // The re-driven work then finds nothing left to do, and leaves the dead letters.
    let skipped = server.state.metrics.skipped.get();
    let job = dead["id"].as_str().unwrap();
    let (status, _) = server
        .send(
            server
                .client
                .post(server.url(&format!("/v1/admin/dead-letters/{job}/retry")))
                .bearer_auth(ADMIN),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    wait_for(Duration::from_secs(30), || async {
        (server.state.metrics.skipped.get() > skipped).then_some(())
    })
    .await
    .expect("the re-driven work is delivered again");
    let (_, body) = server.get(ADMIN, "/v1/admin/dead-letters").await;
    assert!(
        !body["dead_letters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == job),
        "{body}"
    );
    server.stop().await;
}

fn test_key_file() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/test-service-account.json")
}

/// Asks for a signed URL and `PUT`s `bytes` to it as told; returns the image id.
async fn direct_upload(
    server: &TestServer,
    key: &str,
    bytes: &[u8],
    content_type: &str,
) -> (String, Value) {
    let (status, ticket) = server
        .send(server.client.post(server.url("/v1/uploads")).bearer_auth(key).json(
            &json!({"filename": "direct.jpg", "content_type": content_type, "bytes": bytes.len()}),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ticket}");
    assert_eq!(ticket["method"], "PUT");
    let mut put = server.client.put(ticket["upload_url"].as_str().unwrap());
    for (name, value) in ticket["headers"].as_object().unwrap() {
        put = put.header(name, value.as_str().unwrap());
    }
    let response = put.body(bytes.to_vec()).send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    (ticket["id"].as_str().unwrap().to_owned(), ticket)
}

#[tokio::test]
async fn signed_url_uploads_are_processed_like_api_uploads() {
    let (server, _) = gcp_server("direct", |s| {
        s.objects.signing_key_file = Some(test_key_file());
        s.limits.max_pixels = 50_000_000;
    })
    .await;
    let (_, key) = server.customer("direct").await;
    let photo = std::fs::read(&corpus()[1]).unwrap();

    let (status, ticket) = server
        .send(server.client.post(server.url("/v1/uploads")).bearer_auth(&key).json(
            &json!({"filename": "x.jpg", "content_type": "image/jpeg", "bytes": photo.len()}),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let pending = server
        .get(
            &key,
            &format!("/v1/images/{}", ticket["id"].as_str().unwrap()),
        )
        .await
        .1;
    assert_eq!(pending["status"], "pending_upload", "{pending}");

    let (id, _) = direct_upload(&server, &key, &photo, "image/jpeg").await;
    let record = server.wait_settled(&key, &id).await;
    assert_eq!(record["status"], "processed", "{record}");
    assert_eq!(record["sha256"], hex::encode(Sha256::digest(&photo)));
    assert_eq!(record["bytes"], photo.len());
    assert_eq!(record["filename"], "direct.jpg");

    // What the API refuses before answering ends as `failed` with the same codes here.
    let not_an_image = b"plain text, not a picture".to_vec();
    let bomb = imagelake_imaging::fixtures::png_bomb(10_000, 10_000);
    for (bytes, content_type, code) in [
        (not_an_image, "image/jpeg", "unsupported_media_type"),
        (bomb, "image/png", "pixel_limit_exceeded"),
        (photo.clone(), "image/jpeg", "conflict"),
    ] {
        let (id, _) = direct_upload(&server, &key, &bytes, content_type).await;
        let record = server.wait_settled(&key, &id).await;
        assert_eq!(record["status"], "failed", "{record}");
        assert_eq!(record["error"]["code"], code, "{record}");
    }

    // Refused before any record is made.
    for (body, status) in [
        (
            json!({"content_type": "text/plain", "bytes": 10}),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            json!({"content_type": "image/png", "bytes": 0}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"content_type": "image/png", "bytes": 1u64 << 40}),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            json!({"content_type": "image/png", "bytes": 5, "path": "x"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (got, answer) = server
            .send(
                server
                    .client
                    .post(server.url("/v1/uploads"))
                    .bearer_auth(&key)
                    .json(&body),
            )
            .await;
        assert_eq!(got, status, "{body} -> {answer}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_signed_url_binds_its_object_and_headers() {
    let (server, bucket) = gcp_server("bound", |s| {
        s.objects.signing_key_file = Some(test_key_file());
    })
    .await;
    let (customer, key) = server.customer("bound").await;
    let (_, ticket) = server
        .send(
            server
                .client
                .post(server.url("/v1/uploads"))
                .bearer_auth(&key)
                .json(&json!({"content_type": "image/jpeg", "bytes": 1234})),
        )
        .await;
    let url = reqwest::Url::parse(ticket["upload_url"].as_str().unwrap()).unwrap();
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let signature = hex::decode(&query["X-Goog-Signature"]).unwrap();
    let signer = ServiceAccountKey::from_file(&test_key_file()).unwrap();
    let endpoint = format!("{}://{}", url.scheme(), url.authority());
    let headers: BTreeMap<String, String> = ticket["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    let id = ticket["id"].as_str().unwrap();
    let object = format!("originals/{customer}/{id}");
    assert_eq!(url.path(), format!("/{bucket}/{object}"));
    assert_eq!(headers["x-goog-meta-customer-id"], customer);
    assert_eq!(headers["content-length"], "1234");
    assert_eq!(headers["x-goog-if-generation-match"], "0");
    // GCS checks a request by rebuilding the canonical request from what it received.
    let check = |object: &str, headers: &BTreeMap<String, String>| {
        let request = UrlRequest {
            method: "PUT".into(),
            bucket: bucket.clone(),
            object: object.into(),
            headers: headers.clone(),
            expires: Duration::from_secs(query["X-Goog-Expires"].parse().unwrap()),
            now: chrono::NaiveDateTime::parse_from_str(&query["X-Goog-Date"], "%Y%m%dT%H%M%SZ")
                .unwrap()
                .and_utc(),
        };
        let c = canonical(&endpoint, &signer.client_email, &request);
        signer.verify(c.to_sign().as_bytes(), &signature)
    };
    assert!(check(&object, &headers), "the URL as issued verifies");
    let other = imagelake_core::CustomerId::new();
    assert!(
        !check(&format!("originals/{other}/{id}"), &headers),
        "another customer's object"
    );
    assert!(
        !check(
            &format!("originals/{customer}/{}", ImageId::new()),
            &headers
        ),
        "another image"
    );
    for (name, value) in [
        ("x-goog-meta-customer-id", other.to_string()),
        ("content-length", "99999999".into()),
        ("content-type", "image/png".into()),
    ] {
        let mut changed = headers.clone();
        changed.insert(name.into(), value);
        assert!(!check(&object, &changed), "a changed {name}");
    }
    let mut fewer = headers.clone();
    fewer.remove("x-goog-if-generation-match");
    assert!(!check(&object, &fewer), "create-only cannot be dropped");
    server.stop().await;
}

const PUSH_AUDIENCE: &str = "https://imagelake.test/v1/pubsub/push";

/// An OIDC token as Pub/Sub push would send it, signed with the test key, with `change` applied.
fn push_token(change: impl FnOnce(&mut Value)) -> String {
    let key = ServiceAccountKey::from_file(&test_key_file()).unwrap();
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "aud": PUSH_AUDIENCE, "iss": "https://accounts.google.com", "iat": now, "exp": now + 3600,
        "email": key.client_email, "email_verified": true, "sub": "1234567890",
    });
    change(&mut claims);
    key.jwt(&claims).unwrap()
}

#[tokio::test]
async fn pushed_notifications_are_processed_with_a_verified_token() {
    let (server, bucket) = gcp_server("push", |s| {
        s.queue.pull = false;
        s.push.enabled = true;
        s.push.audience = Some(PUSH_AUDIENCE.into());
        s.push.jwks_file = Some(test_key_file().with_file_name("test-jwks.json"));
        s.push.service_account_email = Some(
            ServiceAccountKey::from_file(&test_key_file())
                .unwrap()
                .client_email,
        );
    })
    .await;
    let (_, key) = server.customer("pushed").await;
    let (status, body) = server
        .upload(&key, std::fs::read(&corpus()[2]).unwrap(), None)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = body["id"].as_str().unwrap().to_owned();

    // Play Pub/Sub's part: take the real notification off the subscription and push it.
    let pubsub = PubSub::from_env(PROJECT).unwrap();
    let subscription = format!("{bucket}-processing");
    let message = wait_for(Duration::from_secs(30), || async {
        let pulled = pubsub.pull(&subscription, 10).await.unwrap();
        pulled.into_iter().find(|m| {
            m.attributes
                .get("objectId")
                .is_some_and(|o| o.ends_with(&id))
        })
    })
    .await
    .expect("the bucket's notification arrives");
    let envelope = json!({
        "message": {
            "attributes": message.attributes, "messageId": message.message_id,
            "data": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &message.data),
        },
        "subscription": format!("projects/{PROJECT}/subscriptions/{subscription}"),
        "deliveryAttempt": 1,
    });
    let push = |token: Option<String>, body: Value| {
        let mut request = server
            .client
            .post(server.url("/v1/pubsub/push"))
            .json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        server.send(request)
    };

    let refused = [
        None,
        Some("not.a.token".to_owned()),
        Some(push_token(|c| c["aud"] = json!("https://elsewhere.test"))),
        Some(push_token(|c| c["iss"] = json!("https://evil.test"))),
        Some(push_token(|c| {
            c["exp"] = json!(c["iat"].as_i64().unwrap() - 7200)
        })),
        Some(push_token(|c| c["email"] = json!("someone@else.test"))),
        Some(push_token(|c| c["email_verified"] = json!(false))),
        Some({
            let token = push_token(|_| {});
            let (signed, _) = token.rsplit_once('.').unwrap();
            format!("{signed}.{}", "A".repeat(342))
        }),
    ];
    for token in refused {
        let (status, answer) = push(token.clone(), envelope.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?} -> {answer}");
    }
    let pending = server.get(&key, &format!("/v1/images/{id}")).await.1;
    assert_eq!(pending["status"], "received", "refused pushes do no work");

    let (status, answer) = push(Some(push_token(|_| {})), json!({"message": "nope"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = push(Some(push_token(|_| {})), envelope.clone()).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    let record = server.get(&key, &format!("/v1/images/{id}")).await.1;
    assert_eq!(
        record["status"], "processed",
        "processed before the push is answered"
    );
    // Pushed again (Pub/Sub delivers at least once): acknowledged, nothing redone.
    let processed = server.state.metrics.processed.get();
    let (status, _) = push(Some(push_token(|_| {})), envelope).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(server.state.metrics.processed.get(), processed);
    server.stop().await;
}

/// Sixteen concurrent uploads of the same bytes by one customer, while a worker processes the
/// earlier rounds: one is stored (`201`), the rest are its duplicates (`200`), never a `500`.
#[tokio::test]
async fn concurrent_identical_uploads_are_duplicates_on_firestore() {
    let (server, _) = gcp_server("racing", |_| {}).await;
    let (_, key) = server.customer("racing").await;
    for (round, photo) in corpus().iter().take(8).enumerate() {
        let bytes = std::fs::read(photo).unwrap();
        let uploads = (0..16).map(|_| server.upload(&key, bytes.clone(), None));
        let answers = futures::future::join_all(uploads).await;
        let mut statuses: Vec<u16> = answers.iter().map(|(s, _)| s.as_u16()).collect();
        statuses.sort_unstable();
        let mut expected = vec![200; 15];
        expected.push(201);
        assert_eq!(statuses, expected, "round {round}: {answers:?}");
        let ids: std::collections::BTreeSet<&str> = answers
            .iter()
            .map(|(_, b)| b["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 1, "round {round}: one image");
        for (status, body) in &answers {
            assert_eq!(body["duplicate"], *status == StatusCode::OK, "{body}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn retention_removes_objects_and_records_on_google_cloud() {
    // The sweep is run here, once the image has expired, so its outcome (or its error) is the
    // test's; the background sweeper waits an hour.
    let (server, bucket) = gcp_server("expire", |s| {
        s.retention = imagelake_core::duration::HumanDuration(Duration::from_secs(3));
        s.sweep_interval = imagelake_core::duration::HumanDuration(Duration::from_secs(3600));
    })
    .await;
    let (status, _) = server
        .send(server.client.post(server.url("/v1/pubsub/push")).body("{}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "push is off unless enabled");
    let (customer, key) = server.customer("brief").await;
    let (status, body) = server
        .upload(&key, std::fs::read(&corpus()[3]).unwrap(), None)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(server.wait_settled(&key, &id).await["status"], "processed");
    let prefix = |kind: &str| ObjectPath::from(format!("{kind}/{customer}/{id}"));
    let image: ImageId = id.parse().unwrap();
    let expires_at = server
        .state
        .store
        .get_image(image)
        .await
        .unwrap()
        .unwrap()
        .expires_at;
    wait_for(Duration::from_secs(30), || async {
        (chrono::Utc::now() > expires_at).then_some(())
    })
    .await
    .expect("the image expires");
    let removed = imagelake_runtime::sweeper::sweep_once(&server.state)
        .await
        .expect("the sweep runs");
    assert!(removed >= 1, "the expired image is removed");
    assert_eq!(server.state.store.get_image(image).await.unwrap(), None);
    assert!(
        server
            .state
            .objects
            .head(&prefix("originals"))
            .await
            .is_err(),
        "the original is deleted"
    );
    let left: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(
        server.state.objects.list(Some(&prefix("renditions"))),
    )
    .await
    .unwrap();
    assert!(
        left.is_empty(),
        "renditions are deleted too: {left:?} in {bucket}"
    );
    server.stop().await;
}

#[tokio::test]
async fn workers_without_their_subscription_are_not_ready() {
    let (server, _) = gcp_server("nosub", |s| {
        s.queue.create = false;
        s.queue.subscription = format!("missing-{}", std::process::id());
    })
    .await;
    let ready = wait_for(Duration::from_secs(30), || async {
        let response = server
            .client
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        (body["checks"]["queue"] == "unreachable").then_some((status, body))
    })
    .await
    .expect("the missing subscription shows in /readyz");
    assert_eq!(ready.0, StatusCode::SERVICE_UNAVAILABLE, "{}", ready.1);
    assert_eq!(ready.1["checks"]["metadata"], "ok");
    server.stop().await;
}

//! Real photographs end to end, retention on an injected clock, and the dead-letter path.

mod common;

use std::{sync::Arc, time::Duration};

use common::{ADMIN, TestServer, content_type, corpus};
use imagelake_core::{
    Clock, CustomerId, ImageId, ManualClock,
    records::{Image, ImageStatus},
};
use imagelake_imaging::fixtures::{self, ExifSpec};
use imagelake_metadata::NewImage;
use object_store::{ObjectStoreExt, PutPayload, path::Path as ObjectPath};
use reqwest::StatusCode;
use serde_json::Value;

fn hamming(a: &Value, b: &Value) -> u32 {
    let parse = |v: &Value| u64::from_str_radix(v.as_str().unwrap(), 16).unwrap();
    (parse(a) ^ parse(b)).count_ones()
}

#[tokio::test]
async fn real_photographs_are_processed_and_served() {
    let server = TestServer::with(|s| s.limits.burst = 1000).await;
    let (_, key) = server.customer("photographer").await;
    // Every camera photo (they carry EXIF) and a spread of the others, 16 in all.
    let (camera, plain): (Vec<_>, Vec<_>) = corpus().into_iter().partition(|p| {
        std::fs::read(p)
            .unwrap()
            .windows(6)
            .take(70_000)
            .any(|w| w == b"Exif\0\0")
    });
    let files: Vec<_> = camera
        .iter()
        .take(6)
        .chain(plain.iter().step_by(3))
        .take(16)
        .cloned()
        .collect();
    let mut uploads = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let name = file.file_name().unwrap().to_str().unwrap().to_owned();
        let (status, body) = server.upload(&key, bytes.clone(), Some(&name)).await;
        assert!(
            status == StatusCode::CREATED || body["duplicate"] == true,
            "{name}: {status} {body}"
        );
        uploads.push((bytes, body["id"].as_str().unwrap().to_owned()));
    }
    let mut with_camera = 0;
    for (bytes, id) in &uploads {
        let record = server.wait_settled(&key, id).await;
        assert_eq!(record["status"], "processed", "{record}");
        let header =
            imagelake_imaging::inspect(bytes, &imagelake_imaging::Options::unlimited()).unwrap();
        let (w, h) = (
            record["width"].as_u64().unwrap() as u32,
            record["height"].as_u64().unwrap() as u32,
        );
        assert!(
            (w, h) == (header.width, header.height) || (h, w) == (header.width, header.height),
            "{record}"
        );
        with_camera += usize::from(record["exif"]["make"].is_string());
        assert_eq!(record["phash"].as_str().unwrap().len(), 16);
        assert!(record["average_color"].as_str().unwrap().starts_with('#'));

        for (kind, side) in [("thumb", 256), ("preview", 1024)] {
            let info = &record["renditions"][kind];
            let longest = info["width"]
                .as_u64()
                .unwrap()
                .max(info["height"].as_u64().unwrap());
            assert_eq!(longest, u64::from(side.min(w.max(h))), "{kind} of {id}");
            let response = server
                .get_bytes(&key, &format!("/v1/images/{id}/renditions/{kind}"))
                .await;
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(
                content_type(&response),
                info["content_type"].as_str().unwrap()
            );
            let etag = response.headers()["etag"].to_str().unwrap().to_owned();
            assert!(
                response.headers()["cache-control"]
                    .to_str()
                    .unwrap()
                    .contains("private")
            );
            let body = response.bytes().await.unwrap();
            assert_eq!(body.len() as u64, info["bytes"].as_u64().unwrap());
            assert!(
                !fixtures::has_metadata(&body),
                "{kind} of {id} carries metadata"
            );
            let decoded = image::load_from_memory(&body).unwrap();
            assert_eq!(u64::from(decoded.width()), info["width"].as_u64().unwrap());
            let again = server
                .client
                .get(server.url(&format!("/v1/images/{id}/renditions/{kind}")))
                .bearer_auth(&key)
                .header("if-none-match", &etag)
                .send()
                .await
                .unwrap();
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        }
        let original = server
            .get_bytes(&key, &format!("/v1/images/{id}/original"))
            .await;
        assert_eq!(
            content_type(&original),
            record["content_type"].as_str().unwrap()
        );
        assert_eq!(
            original.bytes().await.unwrap().as_ref(),
            bytes.as_slice(),
            "the original comes back byte for byte"
        );
    }
    assert!(with_camera > 0, "some corpus photos carry camera EXIF");

    // The preview of a photo, uploaded as an image of its own, hashes close to the photo.
    let (_, first_id) = &uploads[0];
    let (_, record) = server.get(&key, &format!("/v1/images/{first_id}")).await;
    let preview = server
        .get_bytes(&key, &format!("/v1/images/{first_id}/renditions/preview"))
        .await
        .bytes()
        .await
        .unwrap();
    let (_, copy) = server.upload(&key, preview.to_vec(), None).await;
    let copy = server
        .wait_settled(&key, copy["id"].as_str().unwrap())
        .await;
    assert!(
        hamming(&record["phash"], &copy["phash"]) <= 8,
        "{} vs {}",
        record["phash"],
        copy["phash"]
    );
    server.stop().await;
}

#[tokio::test]
async fn orientation_and_gps_on_a_real_photo() {
    let photo = corpus()
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "jpg"))
        .unwrap();
    let bytes = std::fs::read(&photo).unwrap();
    let header =
        imagelake_imaging::inspect(&bytes, &imagelake_imaging::Options::unlimited()).unwrap();
    let tagged = fixtures::with_exif(
        &bytes,
        &ExifSpec {
            orientation: Some(6),
            make: Some("TestCam"),
            gps: Some((-33.8568, 151.2153)),
            ..Default::default()
        },
    );

    for keep_gps in [false, true] {
        let server = TestServer::with(|s| s.processing.keep_gps = keep_gps).await;
        let (_, key) = server.customer("traveller").await;
        let (_, body) = server.upload(&key, tagged.clone(), Some("trip.jpg")).await;
        let record = server
            .wait_settled(&key, body["id"].as_str().unwrap())
            .await;
        assert_eq!(
            (record["width"].as_u64(), record["height"].as_u64()),
            (
                Some(u64::from(header.height)),
                Some(u64::from(header.width))
            )
        );
        assert_eq!(record["exif"]["orientation"], 6);
        assert_eq!(record["exif"]["make"], "TestCam");
        let preview = &record["renditions"]["preview"];
        assert!(
            preview["height"].as_u64() > preview["width"].as_u64(),
            "the preview is upright"
        );
        if keep_gps {
            assert!((record["exif"]["gps"]["lat"].as_f64().unwrap() + 33.8568).abs() < 1e-3);
        } else {
            assert!(
                record["exif"].get("gps").is_none(),
                "GPS is not kept by default"
            );
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn retention_expires_on_time_and_not_before() {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let server =
        TestServer::with_clock(clock.clone(), |s| s.retention = "1h".parse().unwrap()).await;
    let (customer, key) = server.customer("ephemeral").await;
    let (_, body) = server.upload(&key, fixtures::jpeg(400, 300), None).await;
    let id = body["id"].as_str().unwrap().to_owned();
    server.wait_settled(&key, &id).await;
    // A claim-check the stream never took in stays for the retention window too, and so do
    // objects of images without a record (a process killed before the record was written).
    let objects = server.objects_dir();
    let claim = objects.join("claims/batch/left.jpg");
    let (lost, half) = (ImageId::new(), ImageId::new());
    let kept = [
        claim.clone(),
        objects.join(format!("originals/{customer}/{lost}")),
        objects.join(format!("renditions/{customer}/{half}/thumb")),
    ];
    for file in &kept {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, fixtures::jpeg(10, 10)).unwrap();
    }
    let files = || walk_files(&objects) - kept.iter().filter(|f| f.exists()).count();
    assert_eq!(files(), 3, "original and two renditions");

    clock.advance(Duration::from_secs(3599));
    assert_eq!(
        imagelake_runtime::sweeper::sweep_once(&server.state)
            .await
            .unwrap(),
        0,
        "nothing deleted early"
    );
    assert_eq!(
        server.get(&key, &format!("/v1/images/{id}")).await.0,
        StatusCode::OK
    );
    assert_eq!(files(), 3);

    clock.advance(Duration::from_secs(1));
    assert_eq!(
        server.get(&key, &format!("/v1/images/{id}")).await.0,
        StatusCode::NOT_FOUND,
        "not served once expired"
    );
    assert_eq!(
        server
            .get_bytes(&key, &format!("/v1/images/{id}/original"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let (_, page) = server.get(&key, "/v1/images").await;
    assert_eq!(page["images"].as_array().unwrap().len(), 0);
    assert_eq!(files(), 3, "still on disk until the sweep");

    assert_eq!(
        imagelake_runtime::sweeper::sweep_once(&server.state)
            .await
            .unwrap(),
        1
    );
    assert_eq!(files(), 0, "original and renditions deleted together");
    assert!(
        kept.iter().all(|f| f.exists()),
        "a claim-check and objects without a record are kept for the retention window"
    );
    let image_dir = |kind: &str| objects.join(kind).join(&customer).join(&id);
    assert!(
        !image_dir("originals").exists() && !image_dir("renditions").exists(),
        "no folder left empty"
    );
    assert!(
        server
            .state
            .store
            .get_image(id.parse().unwrap())
            .await
            .unwrap()
            .is_none(),
        "record deleted too"
    );
    let events = server.state.store.unpublished_events(100).await.unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .filter(|e| e.image_id.is_some_and(|i| i.to_string() == id))
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(
        kinds,
        ["image.received", "image.processed", "image.expired"],
        "the local event log"
    );

    clock.advance(Duration::from_secs(3601));
    imagelake_runtime::sweeper::sweep_once(&server.state)
        .await
        .unwrap();
    let events = server.state.store.unpublished_events(100).await.unwrap();
    assert!(
        events.is_empty(),
        "events past retention are purged: {events:?}"
    );
    assert!(
        kept.iter().all(|f| !f.exists()),
        "a claim-check and objects without a record are removed past retention"
    );
    assert!(folders(&objects).is_empty(), "{:?}", folders(&objects));
    server.stop().await;
}

/// The names of the entries of `dir`, sorted.
fn folders(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn walk_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            if e.path().is_dir() {
                walk_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// A record as the API writes it on upload, for tests that assemble the path by hand.
fn received_image(customer: CustomerId, id: imagelake_core::ImageId) -> Image {
    let now = imagelake_core::clock::to_micros_precision(chrono::Utc::now());
    Image {
        id,
        customer_id: customer,
        status: ImageStatus::Received,
        bytes: 1,
        sha256: "0".repeat(64),
        content_type: "image/jpeg".into(),
        filename: None,
        uploaded_at: now,
        expires_at: now + chrono::Duration::days(7),
        facts: None,
        error: None,
        processed_at: None,
        generation: None,
        source: None,
    }
}

#[tokio::test]
async fn failing_jobs_end_in_the_dead_letters_and_can_be_redriven() {
    let server = TestServer::with(|s| {
        s.processing.max_attempts = 3;
        s.processing.retry_backoff = imagelake_runtime::settings::HumanDurationMs(1);
    })
    .await;
    let (customer, key) = server.customer("unlucky").await;
    let customer: CustomerId = customer.parse().unwrap();
    // A record whose original is missing: every attempt fails to read it.
    let image = received_image(customer, imagelake_core::ImageId::new());
    server
        .state
        .store
        .insert_image(
            &NewImage {
                image: image.clone(),
                idempotency: None,
            },
            true,
        )
        .await
        .unwrap();
    server.state.work_ready.notify_one();

    let dead = common::wait_for(Duration::from_secs(30), || async {
        let (_, body) = server.get(ADMIN, "/v1/admin/dead-letters").await;
        let list = body["dead_letters"].as_array().cloned().unwrap_or_default();
        (!list.is_empty()).then_some(list)
    })
    .await
    .expect("the job reaches the dead letters");
    assert_eq!(dead[0]["image_id"], image.id.to_string());
    assert_eq!(dead[0]["attempts"], 3);
    assert!(!dead[0]["last_error"].as_str().unwrap().is_empty());

    let bytes = fixtures::jpeg(300, 200);
    let location = imagelake_core::paths::original(customer, image.id);
    server
        .state
        .objects
        .put(&location, PutPayload::from(bytes))
        .await
        .unwrap();
    let job = dead[0]["id"].as_str().unwrap();
    let (status, _) = server
        .send(
            server
                .client
                .post(server.url(&format!("/v1/admin/dead-letters/{job}/retry")))
                .bearer_auth(ADMIN),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let record = server.wait_settled(&key, &image.id.to_string()).await;
    assert_eq!(record["status"], "processed");
    let (_, body) = server.get(ADMIN, "/v1/admin/dead-letters").await;
    assert_eq!(body["dead_letters"].as_array().unwrap().len(), 0);
    let (status, _) = server
        .send(
            server
                .client
                .post(server.url(&format!("/v1/admin/dead-letters/{job}/retry")))
                .bearer_auth(ADMIN),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn work_that_arrives_before_its_record_waits_for_it() {
    let server = TestServer::with(|s| {
        s.processing.max_attempts = 50;
        s.processing.retry_backoff = imagelake_runtime::settings::HumanDurationMs(50);
    })
    .await;
    let (customer, key) = server.customer("early").await;
    let customer: CustomerId = customer.parse().unwrap();
    let id = imagelake_core::ImageId::new();
    // The original and the work exist, the record not yet (as when a notification is early).
    put_original(&server, customer, id).await;
    server
        .state
        .queue
        .enqueue(id, customer, chrono::Utc::now())
        .await
        .unwrap();
    server.state.work_ready.notify_one();
    // Without its record the work is retried, not dropped.
    common::wait_for(Duration::from_secs(30), || async {
        (server.state.metrics.retries.get() >= 1).then_some(())
    })
    .await
    .expect("the work is retried while its record is missing");
    server
        .state
        .store
        .insert_image(
            &NewImage {
                image: received_image(customer, id),
                idempotency: None,
            },
            false,
        )
        .await
        .unwrap();
    let record = server.wait_settled(&key, &id.to_string()).await;
    assert_eq!(
        record["status"], "processed",
        "the retried work finds its record"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_original_whose_record_never_comes_is_removed() {
    let server = TestServer::with(|s| {
        s.processing.max_attempts = 3;
        s.processing.retry_backoff = imagelake_runtime::settings::HumanDurationMs(10);
        s.processing.orphan_grace = imagelake_core::duration::HumanDuration(Duration::ZERO);
    })
    .await;
    let customer = CustomerId::new();
    let id = imagelake_core::ImageId::new();
    let location = put_original(&server, customer, id).await;
    server
        .state
        .queue
        .enqueue(id, customer, chrono::Utc::now())
        .await
        .unwrap();
    server.state.work_ready.notify_one();
    common::wait_for(Duration::from_secs(60), || async {
        server
            .state
            .objects
            .head(&location)
            .await
            .is_err()
            .then_some(())
    })
    .await
    .expect("the abandoned original is removed");
    assert_eq!(
        server.state.metrics.retries.get(),
        2,
        "after the last attempt, not before"
    );
    common::wait_for(Duration::from_secs(10), || async {
        (server.state.queue.depth().await.unwrap() == Some(0)).then_some(())
    })
    .await
    .expect("the work is finished");
    assert!(
        server
            .state
            .queue
            .dead_letters(10)
            .await
            .unwrap()
            .is_empty()
    );
    server.stop().await;
}

async fn put_original(
    server: &TestServer,
    customer: CustomerId,
    id: imagelake_core::ImageId,
) -> ObjectPath {
    let location = imagelake_core::paths::original(customer, id);
    server
        .state
        .objects
        .put(&location, PutPayload::from(fixtures::jpeg(200, 150)))
        .await
        .unwrap();
    location
}

#[tokio::test]
async fn direct_uploads_whose_bytes_never_come_end_failed() {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let server = TestServer::with_clock(clock.clone(), |_| {}).await;
    let (customer, key) = server.customer("hesitant").await;
    let customer: CustomerId = customer.parse().unwrap();
    let pending = |id| {
        let mut image = received_image(customer, id);
        image.status = ImageStatus::PendingUpload;
        image.sha256 = String::new();
        image.uploaded_at = clock.now();
        image
    };
    let (never, arrived) = (
        imagelake_core::ImageId::new(),
        imagelake_core::ImageId::new(),
    );
    for image in [pending(never), pending(arrived)] {
        let new = NewImage {
            image,
            idempotency: None,
        };
        server.state.store.insert_image(&new, false).await.unwrap();
    }
    put_original(&server, customer, arrived).await;
    let status = |id: imagelake_core::ImageId| {
        let (server, key) = (&server, &key);
        async move { server.get(key, &format!("/v1/images/{id}")).await.1 }
    };

    // The URL lives 15 minutes and the grace is 10: not before 25 minutes.
    clock.advance(Duration::from_secs(24 * 60));
    imagelake_runtime::sweeper::sweep_once(&server.state)
        .await
        .unwrap();
    assert_eq!(status(never).await["status"], "pending_upload");
    clock.advance(Duration::from_secs(2 * 60));
    imagelake_runtime::sweeper::sweep_once(&server.state)
        .await
        .unwrap();
    let failed = status(never).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "invalid_request");
    assert_eq!(
        status(arrived).await["status"],
        "pending_upload",
        "bytes that arrived are left to their notification"
    );
    server.stop().await;
}

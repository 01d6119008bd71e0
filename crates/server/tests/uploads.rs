//! The upload contract over real HTTP: answers, refusals, idempotency, duplicates, batches.

mod common;

use common::TestServer;
use imagelake_imaging::fixtures;
use reqwest::StatusCode;

#[tokio::test]
async fn upload_answers_201_with_the_record() {
    let server = TestServer::start().await;
    let (_, key) = server.customer("uploader").await;
    let bytes = fixtures::png(320, 200);
    // A wrong Content-Type header is not an error when the bytes are a supported image.
    let request = server
        .client
        .post(server.url("/v1/images?filename=../../etc/passwd.png"))
        .bearer_auth(&key)
        .header("content-type", "text/plain")
        .body(bytes.clone());
    let (status, body) = server.send(request).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "received");
    assert_eq!(body["content_type"], "image/png");
    assert_eq!(body["bytes"], bytes.len());
    assert_eq!(
        body["filename"], "passwd.png",
        "path-like names keep only their last component"
    );
    assert_eq!(body["sha256"].as_str().unwrap().len(), 64);
    let uploaded =
        chrono::DateTime::parse_from_rfc3339(body["uploaded_at"].as_str().unwrap()).unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires - uploaded, chrono::Duration::days(7));
    let id = body["id"].as_str().unwrap();

    let processed = server.wait_settled(&key, id).await;
    assert_eq!(processed["status"], "processed", "{processed}");
    assert_eq!(
        (processed["width"].as_u64(), processed["height"].as_u64()),
        (Some(320), Some(200))
    );
    assert_eq!(processed["renditions"]["thumb"]["width"], 256);
    assert_eq!(
        processed["renditions"]["preview"]["width"], 320,
        "no upscaling"
    );
    assert!(processed["processed_at"].is_string());

    // Nothing was written outside the data dir's object tree under the client's name.
    let escaped = server.dir.path().parent().unwrap().join("etc");
    assert!(!escaped.exists());
    server.stop().await;
}

#[tokio::test]
async fn refusals_have_the_right_codes() {
    let server = TestServer::with(|s| s.limits.max_pixels = 10_000_000).await;
    let (_, key) = server.customer("refused").await;

    let (status, body) = server
        .upload(&key, b"hello, not an image".to_vec(), None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("unsupported_media_type")
        )
    );

    let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic\0\0\0\0".to_vec();
    let (status, body) = server.upload(&key, heic, None).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("HEIC"),
        "{body}"
    );

    let (status, body) = server
        .upload(&key, fixtures::png_bomb(100_000, 100_000), None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("pixel_limit_exceeded")
        )
    );

    let (status, body) = server.upload(&key, Vec::new(), None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );

    let (status, body) = server
        .send(
            server
                .client
                .post(server.url("/v1/images?colour=red"))
                .bearer_auth(&key)
                .body(fixtures::png(10, 10)),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour")
    );

    assert_eq!(
        server.get(&key, "/healthz").await.0,
        StatusCode::OK,
        "the process stays healthy"
    );
    server.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_refused_without_reading_them() {
    let server = TestServer::with(|s| s.limits.max_body_bytes = 100_000).await;
    let (_, key) = server.customer("big").await;
    let (status, body) = server.upload(&key, vec![0xFF; 200_000], None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );

    // A streamed body without Content-Length is cut off at the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..50).map(|_| Ok(vec![0xAB; 10_000])).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let (status, answer) = server
        .send(
            server
                .client
                .post(server.url("/v1/images"))
                .bearer_auth(&key)
                .body(body),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    server.stop().await;
}

#[tokio::test]
async fn broken_images_are_accepted_then_fail_with_a_reason() {
    let server = TestServer::start().await;
    let (_, key) = server.customer("broken").await;
    let jpeg = fixtures::jpeg(900, 700);
    let (status, body) = server
        .upload(&key, jpeg[..jpeg.len() / 3].to_vec(), Some("cut.jpg"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let settled = server
        .wait_settled(&key, body["id"].as_str().unwrap())
        .await;
    assert_eq!(settled["status"], "failed");
    assert_eq!(settled["error"]["code"], "corrupt_image");
    assert!(!settled["error"]["message"].as_str().unwrap().is_empty());

    // The worker is still there for the next image.
    let (_, good) = server.upload(&key, fixtures::jpeg(300, 300), None).await;
    assert_eq!(
        server
            .wait_settled(&key, good["id"].as_str().unwrap())
            .await["status"],
        "processed"
    );
    server.stop().await;
}

#[tokio::test]
async fn idempotency_keys_replay_and_conflict() {
    let server = TestServer::start().await;
    let (_, key) = server.customer("idem").await;
    let post = |bytes: Vec<u8>, idem: &str| {
        server
            .client
            .post(server.url("/v1/images"))
            .bearer_auth(&key)
            .header("idempotency-key", idem.to_owned())
            .body(bytes)
    };
    let (first_status, first) = server.send(post(fixtures::png(64, 64), "order-1")).await;
    assert_eq!(first_status, StatusCode::CREATED);
    let replay = post(fixtures::png(64, 64), "order-1").send().await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let (again_status, again) = (
        replay.status(),
        replay.json::<serde_json::Value>().await.unwrap(),
    );
    assert_eq!(
        (again_status, &again),
        (StatusCode::CREATED, &first),
        "a replay returns the original answer"
    );
    let (status, body) = server.send(post(fixtures::png(65, 64), "order-1")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
    let (status, _) = server.send(post(fixtures::png(64, 64), "bad key")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Keys are per customer.
    let (_, other) = server.customer("idem-other").await;
    let request = server
        .client
        .post(server.url("/v1/images"))
        .bearer_auth(&other)
        .header("idempotency-key", "order-1")
        .body(fixtures::png(66, 64));
    assert_eq!(server.send(request).await.0, StatusCode::CREATED);
    server.stop().await;
}

#[tokio::test]
async fn same_bytes_are_stored_once_per_customer() {
    let server = TestServer::start().await;
    let (_, key) = server.customer("dups").await;
    let bytes = fixtures::gif(120, 80);
    let (status, first) = server.upload(&key, bytes.clone(), Some("one.gif")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, second) = server.upload(&key, bytes.clone(), Some("two.gif")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["id"], first["id"]);
    assert_eq!(
        second["expires_at"], first["expires_at"],
        "expiry unchanged"
    );
    let (_, other) = server.customer("dups-other").await;
    assert_eq!(
        server.upload(&other, bytes, None).await.0,
        StatusCode::CREATED,
        "another customer stores its own copy"
    );
    server.stop().await;
}

#[tokio::test]
async fn multipart_uploads_answer_per_file() {
    let server = TestServer::start().await;
    let (_, key) = server.customer("batch").await;
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(fixtures::jpeg(200, 100)).file_name("a.jpg"),
        )
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"plain text".to_vec()).file_name("notes.txt"),
        )
        .part(
            "file",
            reqwest::multipart::Part::bytes(fixtures::jpeg(200, 100)).file_name("a-again.jpg"),
        );
    let (status, body) = server
        .send(
            server
                .client
                .post(server.url("/v1/images"))
                .bearer_auth(&key)
                .multipart(form),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(
        (
            results[0]["filename"].as_str(),
            results[0]["status"].as_u64()
        ),
        (Some("a.jpg"), Some(201))
    );
    assert_eq!(results[0]["image"]["status"], "received");
    assert_eq!(results[1]["status"], 415);
    assert_eq!(results[1]["error"]["code"], "unsupported_media_type");
    assert_eq!(results[2]["status"], 200);
    assert_eq!(results[2]["image"]["duplicate"], true);

    let empty = reqwest::multipart::Form::new().text("note", "no files");
    let (status, _) = server
        .send(
            server
                .client
                .post(server.url("/v1/images"))
                .bearer_auth(&key)
                .multipart(empty),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.stop().await;
}

#[tokio::test]
async fn listing_pages_through_a_window() {
    let server = TestServer::start().await;
    let (_, key) = server.customer("lister").await;
    let (_, other) = server.customer("lister-other").await;
    let mut ids = Vec::new();
    for i in 0..7u32 {
        let (status, body) = server.upload(&key, fixtures::png(20 + i, 20), None).await;
        assert_eq!(status, StatusCode::CREATED);
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    server.upload(&other, fixtures::png(99, 20), None).await;
    ids.reverse();

    let mut seen = Vec::new();
    let mut path = "/v1/images?limit=3".to_owned();
    loop {
        let (status, page) = server.get(&key, &path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(
            page["images"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/images?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ids, "own images only, newest first, each once");

    let (_, all) = server.get(&key, "/v1/images").await;
    let times: Vec<&str> = all["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["uploaded_at"].as_str().unwrap())
        .collect();
    let (since, until) = (times[5], times[1]);
    let (_, window) = server
        .get(&key, &format!("/v1/images?since={since}&until={until}"))
        .await;
    let got: Vec<&str> = window["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        ids[2..6].iter().map(String::as_str).collect::<Vec<_>>(),
        "since inclusive, until exclusive"
    );

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("since=yesterday", "since"),
        ("cursor=zzz", "cursor"),
        ("sort=asc", "sort"),
    ] {
        let (status, body) = server.get(&key, &format!("/v1/images?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(field),
            "{query}: {body}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn another_customers_image_does_not_exist() {
    let server = TestServer::start().await;
    let (_, owner) = server.customer("owner").await;
    let (_, stranger) = server.customer("stranger").await;
    let (_, image) = server.upload(&owner, fixtures::jpeg(300, 200), None).await;
    let id = image["id"].as_str().unwrap();
    server.wait_settled(&owner, id).await;
    for path in [
        format!("/v1/images/{id}"),
        format!("/v1/images/{id}/original"),
        format!("/v1/images/{id}/renditions/thumb"),
    ] {
        let (status, body) = server.get(&stranger, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["error"]["code"], "not_found");
        let (status, _) = server
            .get(
                &stranger,
                &format!("/v1/images/{}", imagelake_core::ImageId::new()),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "unknown ids look the same");
    }
    let (status, _) = server
        .send(
            server
                .client
                .delete(server.url(&format!("/v1/images/{id}")))
                .bearer_auth(&stranger),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        server.get(&owner, &format!("/v1/images/{id}")).await.0,
        StatusCode::OK,
        "still there for its owner"
    );

    let (status, _) = server
        .send(
            server
                .client
                .delete(server.url(&format!("/v1/images/{id}")))
                .bearer_auth(&owner),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        server.get(&owner, &format!("/v1/images/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server.get(&owner, "/v1/images/not-a-uuid").await.0,
        StatusCode::NOT_FOUND
    );
    server.stop().await;
}

#[tokio::test]
async fn keys_are_rate_limited() {
    let server = TestServer::with(|s| {
        s.limits.requests_per_second = 1.0;
        s.limits.burst = 3;
    })
    .await;
    let (_, key) = server.customer("chatty").await;
    for _ in 0..3 {
        assert_eq!(server.get(&key, "/v1/images").await.0, StatusCode::OK);
    }
    let response = server.get_bytes(&key, "/v1/images").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    server.stop().await;
}

#[tokio::test]
async fn operations_endpoints_answer() {
    let server = TestServer::start().await;
    let (_, key) = server.customer("ops").await;
    let (_, image) = server.upload(&key, fixtures::png(50, 50), None).await;
    server
        .wait_settled(&key, image["id"].as_str().unwrap())
        .await;
    assert_eq!(server.get("", "/healthz").await.0, StatusCode::OK);
    let (status, ready) = server.get("", "/readyz").await;
    assert_eq!(
        (status, ready["status"].as_str()),
        (StatusCode::OK, Some("ready"))
    );
    assert_eq!(
        server.get_bytes("", "/metrics").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server.get_bytes(&key, "/metrics").await.status(),
        StatusCode::NOT_FOUND,
        "not for customers"
    );
    let metrics = server
        .get_bytes(common::ADMIN, "/metrics")
        .await
        .text()
        .await
        .unwrap();
    for name in [
        "imagelake_uploads_total",
        "imagelake_upload_bytes_total",
        "imagelake_processing_seconds_bucket",
        "imagelake_queue_depth",
        "imagelake_upload_to_processed_seconds_count",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert!(metrics.contains("imagelake_images_processed_total 1"));
    let (status, spec) = server.get("", "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/v1/images",
        "/v1/images/{id}",
        "/v1/customers",
        "/v1/admin/dead-letters",
    ] {
        assert!(
            spec["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    let (status, body) = server
        .send(
            server
                .client
                .put(server.url("/v1/images"))
                .bearer_auth(&key),
        )
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "invalid_request", "{body}");
    let (status, body) = server.get("", "/nowhere").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    server.stop().await;
}

#[tokio::test]
async fn uploads_beyond_the_memory_budget_wait_instead_of_failing() {
    // Room for one body at a time: concurrent uploads queue for it and all succeed.
    let server = TestServer::with(|s| {
        s.limits.max_body_bytes = 2 * 1024 * 1024;
        s.limits.max_inflight_upload_bytes = 1;
    })
    .await;
    let (_, key) = server.customer("crowd").await;
    let uploads = (0..6u32).map(|i| server.upload(&key, fixtures::jpeg(400 + i, 300), None));
    for (status, body) in futures::future::join_all(uploads).await {
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    server.stop().await;
}

//! What hostile clients and real files found, each kept as a test: multipart uploads of real
//! photographs, stalled and crawling bodies on raw sockets, deep PNGs and frame-bomb GIFs,
//! concurrent requests with one idempotency key, forged filenames, guessed keys, and emails
//! that differ only in case.

mod common;

use std::time::Duration;

use common::{ADMIN, TestServer, corpus};
use imagelake_core::records::Customer;
use imagelake_imaging::fixtures;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A multipart form of `file` parts.
fn form(files: &[(String, Vec<u8>)]) -> reqwest::multipart::Form {
    files
        .iter()
        .fold(reqwest::multipart::Form::new(), |form, (name, bytes)| {
            form.part(
                "file",
                reqwest::multipart::Part::bytes(bytes.clone()).file_name(name.clone()),
            )
        })
}

async fn post_form(
    server: &TestServer,
    key: &str,
    form: reqwest::multipart::Form,
) -> (StatusCode, Value) {
    server
        .send(
            server
                .client
                .post(server.url("/v1/images"))
                .bearer_auth(key)
                .multipart(form),
        )
        .await
}

/// Real photographs, several to a body, up to a body just under the limit; one byte over is
/// refused whole.
#[tokio::test]
async fn multipart_uploads_of_real_photos() {
    let limit: u64 = 24 * 1024 * 1024;
    let server = TestServer::with(|s| s.limits.max_body_bytes = limit).await;
    let (_, key) = server.customer("multipart-photos").await;
    let mut photos: Vec<(String, Vec<u8>)> = corpus()
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(p).unwrap())
        })
        .filter(|(_, bytes)| bytes.len() > 64 * 1024)
        .collect();
    photos.sort_by_key(|(_, bytes)| bytes.len());

    // As many photos as fit under the limit, with room for the multipart framing.
    let mut batch = Vec::new();
    let mut total = 0;
    for photo in &photos {
        if total + photo.1.len() + 512 * (batch.len() + 1) > limit as usize {
            break;
        }
        total += photo.1.len();
        batch.push(photo.clone());
    }
    assert!(batch.len() >= 3, "several photos in one body");
    assert!(
        total as u64 > limit / 2,
        "a body near the limit: {total} bytes"
    );
    let (status, body) = post_form(&server, &key, form(&batch)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), batch.len());
    for (result, (name, bytes)) in results.iter().zip(&batch) {
        assert_eq!(result["status"], 201, "{result}");
        assert_eq!(result["filename"], name.as_str());
        assert_eq!(result["image"]["bytes"], bytes.len());
        let id = result["image"]["id"].as_str().unwrap();
        let record = server.wait_settled(&key, id).await;
        assert_eq!(record["status"], "processed", "{record}");
    }

    // Over the limit: 413 naming the limit.
    let mut over = batch.clone();
    over.push(photos.last().unwrap().clone());
    assert!(over.iter().map(|p| p.1.len()).sum::<usize>() as u64 > limit);
    let (status, body) = post_form(&server, &key, form(&over)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&limit.to_string())
    );
    server.stop().await;
}

/// A multipart body that breaks off (here: over the limit, sent chunked so the size is only
/// seen as it arrives) after some parts were stored lists those parts, and the refusal last.
#[tokio::test]
async fn a_multipart_body_cut_off_keeps_the_parts_before() {
    let server = TestServer::with(|s| s.limits.max_body_bytes = 1 << 20).await;
    let (_, key) = server.customer("cut-off").await;
    let boundary = "imagelake-test-boundary";
    let part = |name: &str, bytes: &[u8]| {
        let mut part = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\n"
        )
        .into_bytes();
        part.extend_from_slice(bytes);
        part.extend_from_slice(b"\r\n");
        part
    };
    let mut body = part("a.jpg", &fixtures::jpeg(40, 30));
    body.extend(part("b.jpg", &fixtures::jpeg(41, 30)));
    body.extend(part("big.bin", &vec![7u8; 2 << 20]));
    body.extend(format!("--{boundary}--\r\n").into_bytes());
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let response = server
        .client
        .post(server.url("/v1/images"))
        .bearer_auth(&key)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let statuses: Vec<u64> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 201, 413], "{body}");
    assert_eq!(body["results"][2]["error"]["code"], "payload_too_large");
    let (_, listing) = server.get(&key, "/v1/images").await;
    assert_eq!(
        listing["images"].as_array().unwrap().len(),
        2,
        "both stored"
    );
    server.stop().await;
}

/// Sends a request head declaring `length` body bytes, then `sent` bytes of it.
async fn stalled(server: &TestServer, key: &str, length: u64, sent: &[u8]) -> TcpStream {
    let mut socket = TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "POST /v1/images HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: image/jpeg\r\nContent-Length: {length}\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(sent).await.unwrap();
    socket
}

/// Same, chunked: one chunk of `sent`, then nothing.
async fn stalled_chunked(server: &TestServer, key: &str, sent: &[u8]) -> TcpStream {
    let mut socket = TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "POST /v1/images HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        sent.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(sent).await.unwrap();
    socket.write_all(b"\r\n").await.unwrap();
    socket
}

/// Everything the server sends until it closes the connection.
async fn read_to_close(socket: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Ten stalled uploads of one key (declared 50 MiB, then silence; chunked too) hold only that
/// key's share of the upload budget: another key's small upload is answered while they are all
/// open. Each stalled upload ends in `408 request_timeout` (or `429` if it never got room) and a
/// closed connection.
#[tokio::test]
async fn stalled_uploads_block_only_their_own_key() {
    let server = TestServer::with(|s| {
        s.limits.body_idle_timeout = "1s".parse().unwrap();
    })
    .await;
    let (_, stalling) = server.customer("stalling").await;
    let (_, other) = server.customer("bystander").await;
    let mut sockets = Vec::new();
    for n in 0..10 {
        sockets.push(if n % 2 == 0 {
            stalled(&server, &stalling, 52_428_800, b"0123456789").await
        } else {
            stalled_chunked(&server, &stalling, b"0123456789").await
        });
    }
    let small = fixtures::jpeg(40, 30);
    assert!(small.len() < 4096);
    let (status, body) = tokio::time::timeout(
        Duration::from_secs(10),
        server.upload(&other, small, Some("small.jpg")),
    )
    .await
    .expect("another key's upload does not wait for the stalled ones");
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Each ends: `408` once it had room and stalled, or `429` when it waited for its key's share
    // longer than the idle timeout; either way the connection is closed.
    let mut timed_out = 0;
    for socket in &mut sockets {
        let answer = read_to_close(socket).await;
        let expected = ["HTTP/1.1 408", "HTTP/1.1 429"];
        assert!(expected.iter().any(|s| answer.starts_with(s)), "{answer}");
        timed_out += usize::from(answer.contains("request_timeout"));
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    }
    assert!(timed_out >= 1, "the stalled bodies that had room timed out");
    // The stalled key can upload again once its bodies timed out.
    let (status, _) = server.upload(&stalling, fixtures::jpeg(41, 30), None).await;
    assert_eq!(status, StatusCode::CREATED);
    server.stop().await;
}

/// A body that trickles in stays under the idle timeout but not under the total one; a request
/// head that never ends is cut off by the header timeout.
#[tokio::test]
async fn crawling_bodies_and_heads_time_out() {
    let server = TestServer::with(|s| {
        s.limits.body_idle_timeout = "2s".parse().unwrap();
        s.limits.body_timeout = "2s".parse().unwrap();
        s.limits.header_read_timeout = "1s".parse().unwrap();
    })
    .await;
    let (_, key) = server.customer("crawler").await;
    let mut socket = stalled(&server, &key, 1000, b"\xFF\xD8").await;
    // A byte every 250 ms until the server answers (writing on would reset the connection and
    // lose the answer).
    for _ in 0..80 {
        tokio::select! {
            _ = socket.readable() => break,
            () = tokio::time::sleep(Duration::from_millis(250)) => {
                socket.write_all(b"x").await.unwrap();
            }
        }
    }
    let answer = read_to_close(&mut socket).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("longer than"), "{answer}");

    let mut slow_head = TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap();
    slow_head
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut slow_head).await;
    assert!(!answer.contains("200 OK"), "the head never ended: {answer}");
    // A connection that sends nothing at all is closed too.
    let mut silent = TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap();
    assert_eq!(read_to_close(&mut silent).await, "");
    assert_eq!(
        server.get(&key, "/healthz").await.0,
        StatusCode::OK,
        "the server is fine"
    );
    server.stop().await;
}

/// A client that asks for an original and never reads it does not hold its connection: the
/// write stalls, and after `body_idle_timeout` the server gives up on it.
#[tokio::test]
async fn a_client_that_never_reads_is_cut_off() {
    let server = TestServer::with(|s| s.limits.body_idle_timeout = "1s".parse().unwrap()).await;
    let (_, key) = server.customer("never-reads").await;
    let photo = corpus()
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .unwrap();
    let bytes = std::fs::read(&photo).unwrap();
    let (status, body) = server.upload(&key, bytes.clone(), None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut socket = socket
        .connect(server.base.trim_start_matches("http://").parse().unwrap())
        .await
        .unwrap();
    let request = format!(
        "GET /v1/images/{id}/original HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    // Longer than the idle timeout without reading a byte: what the scenario is.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut received));
    read.await.expect("the connection ends").ok();
    assert!(
        received.len() < bytes.len(),
        "the server stopped writing to a client that did not read: {} of {} bytes",
        received.len(),
        bytes.len()
    );
    assert_eq!(server.get(&key, "/healthz").await.0, StatusCode::OK);
    server.stop().await;
}

/// An upload that finds no room in the budget within `body_idle_timeout` is answered at once
/// (`429` when its own key's uploads hold the share) instead of holding its connection.
#[tokio::test]
async fn waiting_for_upload_room_is_bounded() {
    let server = TestServer::with(|s| {
        s.limits.max_body_bytes = 4 << 20;
        s.limits.max_inflight_upload_bytes_per_key = Some(4 << 20);
        s.limits.body_idle_timeout = "1s".parse().unwrap();
    })
    .await;
    let (_, key) = server.customer("holder").await;
    // A body that trickles in: never idle, so it keeps the key's whole share.
    let mut socket = stalled(&server, &key, 4 << 20, b"\xFF\xD8").await;
    let trickle = tokio::spawn(async move {
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if socket.write_all(b"x").await.is_err() {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = server
        .client
        .post(server.url("/v1/images"))
        .bearer_auth(&key)
        .body(fixtures::jpeg(30, 20))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(body["error"]["message"].as_str().unwrap().contains("share"));
    trickle.abort();
    server.stop().await;
}

/// A multipart body's parts count against the key's rate like single uploads, and at most
/// `MAX_PARTS` are read.
#[tokio::test]
async fn multipart_parts_are_limited() {
    let server = TestServer::with(|s| {
        s.limits.requests_per_second = 0.01;
        s.limits.burst = 3;
    })
    .await;
    let (_, key) = server.customer("parts").await;
    let files: Vec<(String, Vec<u8>)> = (0..5)
        .map(|n| (format!("{n}.jpg"), fixtures::jpeg(20 + n, 20)))
        .collect();
    let (status, body) = post_form(&server, &key, form(&files)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let statuses: Vec<u64> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    // The request and two more parts take the burst of 3; the fourth part is over the rate.
    assert_eq!(statuses, [201, 201, 201, 429], "{body}");
    server.stop().await;

    let server = TestServer::start().await;
    let (_, key) = server.customer("many-parts").await;
    let tiny = b"not an image".to_vec();
    let files: Vec<(String, Vec<u8>)> = (0..=imagelake_server::api::MAX_PARTS)
        .map(|n| (format!("{n}.txt"), tiny.clone()))
        .collect();
    let (status, body) = post_form(&server, &key, form(&files)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), imagelake_server::api::MAX_PARTS + 1);
    assert_eq!(
        results.last().unwrap()["status"],
        413,
        "{}",
        results.last().unwrap()
    );
    server.stop().await;
}

/// A 16-bit RGBA PNG is processed within the decode budget; one whose processing the budget
/// could never hold is refused at upload with its own code.
#[tokio::test]
async fn deep_images_are_processed_within_the_decode_budget() {
    let server = TestServer::start().await;
    let (_, key) = server.customer("deep").await;
    let (status, body) = server
        .upload(&key, fixtures::deep_png(4000, 3000), Some("deep.png"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let record = server
        .wait_settled(&key, body["id"].as_str().unwrap())
        .await;
    assert_eq!(record["status"], "processed", "{record}");
    assert_eq!(
        (record["width"].as_u64(), record["height"].as_u64()),
        (Some(4000), Some(3000))
    );
    server.stop().await;

    let small = TestServer::with(|s| s.limits.max_decode_bytes = 32 << 20).await;
    let (_, key) = small.customer("deep-small").await;
    let (status, body) = small
        .upload(&key, fixtures::progressive_jpeg(4000, 3000), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "decode_limit_exceeded");
    small.stop().await;
}

/// A GIF whose frame is larger than its screen is judged by the frame.
#[tokio::test]
async fn gif_frame_bombs_are_refused_or_fail_cheaply() {
    let server = TestServer::start().await;
    let (_, key) = server.customer("frames").await;
    let (status, body) = server
        .upload(&key, fixtures::gif_frame_bomb(20_000, 10_000), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "pixel_limit_exceeded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("20000x10000")
    );
    // At the limit, it is accepted and fails as the truncated image it is.
    let (status, body) = server
        .upload(&key, fixtures::gif_frame_bomb(10_000, 10_000), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let record = server
        .wait_settled(&key, body["id"].as_str().unwrap())
        .await;
    assert_eq!(record["error"]["code"], "corrupt_image", "{record}");
    server.stop().await;
}

/// Every request with one idempotency key gets the first answer: concurrent ones, and repeats of
/// a key whose first answer was a duplicate.
#[tokio::test]
async fn one_idempotency_key_gets_one_answer() {
    let server = TestServer::start().await;
    let (_, key) = server.customer("one-answer").await;
    let bytes = fixtures::jpeg(321, 123);
    let requests = (0..16).map(|_| {
        server
            .client
            .post(server.url("/v1/images"))
            .bearer_auth(&key)
            .header("idempotency-key", "order-7")
            .body(bytes.clone())
            .send()
    });
    let mut ids = Vec::new();
    let mut replayed = 0;
    for response in futures::future::join_all(requests).await {
        let response = response.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        replayed += usize::from(response.headers().contains_key("idempotent-replayed"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["duplicate"], false, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one image: {ids:?}");
    assert_eq!(replayed, 15, "all but the first are replays");

    // A key whose first answer was a duplicate replays that duplicate.
    let first_key_answer = |key_value: &'static str| {
        server
            .client
            .post(server.url("/v1/images"))
            .bearer_auth(&key)
            .header("idempotency-key", key_value)
            .body(bytes.clone())
            .send()
    };
    let first = first_key_answer("again-1").await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert!(!first.headers().contains_key("idempotent-replayed"));
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["duplicate"], true);
    let repeat = first_key_answer("again-1").await.unwrap();
    assert_eq!(repeat.status(), StatusCode::OK);
    assert_eq!(repeat.headers()["idempotent-replayed"], "true");
    assert_eq!(repeat.json::<Value>().await.unwrap(), first);
    server.stop().await;
}

/// Invisible and bidirectional formatting characters never reach a stored filename.
#[tokio::test]
async fn filenames_lose_bidi_and_invisible_characters() {
    let server = TestServer::start().await;
    let (_, key) = server.customer("names").await;
    let (status, body) = server
        .upload(&key, fixtures::jpeg(50, 50), Some("\u{202E}gpj.exe"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["filename"], "gpj.exe");
    let batch = vec![("x\u{200B}\u{2067}y.jpg".to_owned(), fixtures::jpeg(51, 50))];
    let (_, body) = post_form(&server, &key, form(&batch)).await;
    assert_eq!(body["results"][0]["filename"], "xy.jpg", "{body}");
    server.stop().await;
}

/// Guessing keys from one address is cut off with `429` while keys in use keep working; behind
/// a trusted proxy each forwarded client has its own allowance.
#[tokio::test]
async fn failed_authentication_is_limited_per_address() {
    let server = TestServer::with(|s| {
        s.limits.auth_failures_per_second = 0.01;
        s.limits.auth_failure_burst = 5;
        s.trusted_proxies = vec!["127.0.0.1".to_owned()];
    })
    .await;
    let (_, key) = server.customer("guessed").await;
    let (_, never_used) = server.customer("quiet").await;
    assert_eq!(server.get(&key, "/v1/images").await.0, StatusCode::OK);
    // Many at once from one address: only the burst is looked up.
    let at_once = (0..30).map(|_| {
        server
            .client
            .get(server.url("/v1/images"))
            .bearer_auth("ilk_111111111111111111111111111111111111111111111111")
            .header("x-forwarded-for", "192.0.2.44")
            .send()
    });
    let mut unauthorized = 0;
    for response in futures::future::join_all(at_once).await {
        unauthorized += usize::from(response.unwrap().status() == StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        unauthorized, 5,
        "the burst, and not one more, reaches a lookup"
    );
    let guess = |forwarded: &'static str| {
        server
            .client
            .get(server.url("/v1/images"))
            .bearer_auth("ilk_000000000000000000000000000000000000000000000000")
            .header("x-forwarded-for", forwarded)
            .send()
    };
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(guess("198.51.100.7").await.unwrap().status().as_u16());
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    let refused = guess("198.51.100.7").await.unwrap();
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");

    // Another forwarded client is not affected, nor is a valid key from the limited address.
    assert_eq!(
        guess("203.0.113.9").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    for valid_key in [&key, &never_used] {
        let valid = server
            .client
            .get(server.url("/v1/images"))
            .bearer_auth(valid_key)
            .header("x-forwarded-for", "198.51.100.7")
            .send()
            .await
            .unwrap();
        assert_eq!(
            valid.status(),
            StatusCode::OK,
            "a key in use or just issued"
        );
    }
    server.stop().await;
}

/// One customer per email, whatever its case, on create and on change.
#[tokio::test]
async fn customer_emails_are_unique() {
    let server = TestServer::start().await;
    let create = |email: &str| {
        server.send(
            server
                .client
                .post(server.url("/v1/customers"))
                .bearer_auth(ADMIN)
                .json(&json!({"name": "Acme", "email": email})),
        )
    };
    let (status, first) = create("Ops@Acme.test").await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, body) = create("ops@acme.TEST").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("email"));

    let (status, second) = create("billing@acme.test").await;
    assert_eq!(status, StatusCode::CREATED);
    let second: Customer = serde_json::from_value(second).unwrap();
    let patch = |email: &str| {
        server.send(
            server
                .client
                .patch(server.url(&format!("/v1/customers/{}", second.id)))
                .bearer_auth(ADMIN)
                .json(&json!({"email": email})),
        )
    };
    let (status, body) = patch("OPS@acme.test").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = patch("Billing@Acme.test").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "its own email in another case: {body}"
    );
    server.stop().await;
}

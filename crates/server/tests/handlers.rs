//! The API's error answers, one request each, through `api::router` with
//! `tower::ServiceExt::oneshot`: no port, no workers, no photographs. Every endpoint answers
//! at least one error here, and every code an HTTP answer can carry (README's errors table)
//! appears at least once; the raw-socket cases (`408`, slow clients) live in `hostile.rs`.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    http::{Method, Request, StatusCode, header},
};
use http_body_util::BodyExt;
use imagelake_core::{KeyId, SystemClock};
use imagelake_imaging::fixtures;
use imagelake_metadata::SqliteStore;
use imagelake_runtime::{AppState, Settings, keys::AdminToken, settings::Limits};
use object_store::{ObjectStore, local::LocalFileSystem, memory::InMemory};
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN: &str = "handler-admin";

struct App {
    router: Router,
    state: AppState,
}

impl App {
    fn new(limits: impl FnOnce(&mut Limits)) -> Self {
        Self::with_objects(limits, Arc::new(InMemory::new()))
    }

    fn with_objects(limits: impl FnOnce(&mut Limits), objects: Arc<dyn ObjectStore>) -> Self {
        let mut settings = Settings::default();
        limits(&mut settings.limits);
        let store = SqliteStore::in_memory().unwrap();
        let state = AppState::assemble(
            settings,
            objects,
            Arc::new(store.clone()),
            Arc::new(store),
            Arc::new(SystemClock),
            AdminToken::from_secret(ADMIN),
        );
        Self {
            router: imagelake_server::api::router(state.clone(), &Default::default()),
            state,
        }
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: impl Into<Body>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request.body(body.into()).unwrap();
        let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn json(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        self.call(
            method,
            uri,
            token,
            body.to_string(),
            &[("content-type", "application/json")],
        )
        .await
    }

    async fn get(&self, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, uri, token, Body::empty(), &[]).await
    }

    async fn upload(
        &self,
        key: &str,
        bytes: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        self.call(Method::POST, "/v1/images", Some(key), bytes, headers)
            .await
    }

    /// A new customer: its id, API key and key id.
    async fn customer(&self, name: &str) -> (String, String, String) {
        let (status, body) = self
            .json(
                Method::POST,
                "/v1/customers",
                Some(ADMIN),
                json!({"name": name, "email": format!("{name}@example.com")}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let field = |name: &str| body[name].as_str().unwrap().to_owned();
        (field("id"), field("api_key"), field("key_id"))
    }
}

/// The documented error: the status, the code, and a message that says something.
#[track_caller]
fn refused((status, body): (StatusCode, Value), expected: StatusCode, code: &str) -> String {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!message.is_empty(), "{body}");
    message
}

const NOBODY: &str = "01890a5d-ac96-774b-bcce-b302099a8057";

#[tokio::test]
async fn customer_endpoints() {
    let app = App::new(|_| {});
    let (id, key, key_id) = app.customer("ada").await;
    let customer = format!("/v1/customers/{id}");

    refused(
        app.json(
            Method::POST,
            "/v1/customers",
            None,
            json!({"name": "x", "email": "x@example.com"}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    refused(
        app.json(
            Method::POST,
            "/v1/customers",
            Some("il_not_a_key"),
            json!({}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let message = refused(
        app.call(
            Method::POST,
            "/v1/customers",
            Some(ADMIN),
            "{\"name\": ",
            &[("content-type", "application/json")],
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert!(
        message.contains("JSON") || message.contains("EOF"),
        "{message}"
    );
    refused(
        app.json(
            Method::POST,
            "/v1/customers",
            Some(ADMIN),
            json!({"name": "x", "email": "x@example.com", "colour": 1}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    refused(
        app.json(
            Method::POST,
            "/v1/customers",
            Some(ADMIN),
            json!({"name": "ADA", "email": "ADA@EXAMPLE.COM"}),
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
    );
    refused(
        app.get(&format!("/v1/customers/{NOBODY}"), Some(ADMIN))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    refused(
        app.get("/v1/customers/not-an-id", Some(ADMIN)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // A customer sees itself, never another.
    let (other, _, _) = app.customer("grace").await;
    assert_eq!(app.get(&customer, Some(&key)).await.0, StatusCode::OK);
    refused(
        app.get(&format!("/v1/customers/{other}"), Some(&key)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    refused(
        app.json(Method::PATCH, &customer, Some(ADMIN), json!({"plan": 7}))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    refused(
        app.json(Method::PATCH, &customer, Some(&key), json!({"name": "x"}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    refused(
        app.call(
            Method::DELETE,
            &format!("/v1/customers/{NOBODY}"),
            Some(ADMIN),
            Body::empty(),
            &[],
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    refused(
        app.call(
            Method::POST,
            &format!("/v1/customers/{NOBODY}/keys"),
            Some(ADMIN),
            Body::empty(),
            &[],
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    refused(
        app.get(&format!("{customer}/keys"), Some(&key)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    refused(
        app.call(
            Method::DELETE,
            &format!("{customer}/keys/{NOBODY}"),
            Some(ADMIN),
            Body::empty(),
            &[],
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // A revoked key is unknown at once.
    let revoke = format!("{customer}/keys/{key_id}");
    assert_eq!(
        app.call(Method::DELETE, &revoke, Some(ADMIN), Body::empty(), &[])
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    refused(
        app.get("/v1/images", Some(&key)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
}

#[tokio::test]
async fn image_endpoints() {
    let app = App::new(|_| {});
    let (_, key, _) = app.customer("ada").await;
    let (_, other_key, _) = app.customer("grace").await;
    let (status, image) = app.upload(&key, fixtures::jpeg(40, 30), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{image}");
    let id = image["id"].as_str().unwrap();

    refused(
        app.get("/v1/images", None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    refused(
        app.get("/v1/images", Some(ADMIN)).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    refused(
        app.get("/v1/images?limit=0", Some(&key)).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    refused(
        app.get("/v1/images?since=yesterday", Some(&key)).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    for path in [
        format!("/v1/images/{id}"),
        format!("/v1/images/{id}/original"),
        format!("/v1/images/{id}/renditions/thumb"),
    ] {
        refused(
            app.get(&path, Some(&other_key)).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
    }
    refused(
        app.get(&format!("/v1/images/{id}/renditions/huge"), Some(&key))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    refused(
        app.call(
            Method::DELETE,
            &format!("/v1/images/{id}"),
            Some(&other_key),
            Body::empty(),
            &[],
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    refused(
        app.json(
            Method::POST,
            "/v1/uploads",
            Some(&key),
            json!({"content_type": "image/jpeg", "bytes": 10}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    refused(
        app.get("/v1/admin/dead-letters", Some(&key)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    refused(
        app.call(
            Method::POST,
            &format!("/v1/admin/dead-letters/{NOBODY}/retry"),
            Some(ADMIN),
            Body::empty(),
            &[],
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    refused(
        app.json(Method::POST, "/v1/pubsub/push", None, json!({}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    refused(
        app.get("/v1/nothing-here", Some(&key)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let (status, body) = app
        .call(Method::PUT, "/v1/images", Some(&key), Body::empty(), &[])
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    refused(
        app.get("/metrics", Some(&key)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn uploads_that_are_refused() {
    let app = App::new(|limits| {
        limits.max_body_bytes = 64 * 1024;
        limits.max_pixels = 10_000_000;
    });
    let (_, key, _) = app.customer("ada").await;

    refused(
        app.upload(&key, Vec::new(), &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    let message = refused(
        app.upload(&key, b"just some text, not an image".to_vec(), &[])
            .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    assert!(!message.is_empty());
    let message = refused(
        app.upload(&key, vec![0xff; 64 * 1024 + 1], &[]).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    assert!(
        message.contains("65536"),
        "the message names the limit: {message}"
    );
    refused(
        app.upload(&key, fixtures::png_bomb(100_000, 100_000), &[])
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "pixel_limit_exceeded",
    );
    let once = [("idempotency-key", "k-1")];
    assert_eq!(
        app.upload(&key, fixtures::jpeg(40, 30), &once).await.0,
        StatusCode::CREATED
    );
    refused(
        app.upload(&key, fixtures::jpeg(41, 30), &once).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    refused(
        app.call(
            Method::POST,
            "/v1/images",
            Some(&key),
            "--x--\r\n",
            &[("content-type", "multipart/form-data; boundary=x")],
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );

    let small_budget = App::new(|limits| limits.max_decode_bytes = 8 << 20);
    let (_, key, _) = small_budget.customer("ada").await;
    refused(
        small_budget
            .upload(&key, fixtures::deep_png_header(3_000, 3_000), &[])
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "decode_limit_exceeded",
    );
}

#[tokio::test]
async fn limits_answer_429_and_503() {
    let app = App::new(|limits| {
        limits.requests_per_second = 0.01;
        limits.burst = 2;
    });
    let (_, key, _) = app.customer("ada").await;
    assert_eq!(app.get("/v1/images", Some(&key)).await.0, StatusCode::OK);
    assert_eq!(app.get("/v1/images", Some(&key)).await.0, StatusCode::OK);
    refused(
        app.get("/v1/images", Some(&key)).await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    );

    // The whole upload budget held by another key's uploads.
    let app = App::new(|limits| {
        limits.max_body_bytes = 1 << 20;
        limits.max_inflight_upload_bytes = 1 << 20;
        limits.body_idle_timeout =
            imagelake_core::duration::HumanDuration(Duration::from_millis(50));
    });
    let (_, key, _) = app.customer("ada").await;
    let held = app
        .state
        .upload_budget
        .reserve(KeyId::new(), 1 << 20, Duration::from_secs(1))
        .await
        .unwrap();
    refused(
        app.upload(&key, fixtures::jpeg(40, 30), &[]).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    );
    drop(held);
    assert_eq!(
        app.upload(&key, fixtures::jpeg(40, 30), &[]).await.0,
        StatusCode::CREATED
    );
}

/// A store that fails is `500 internal`, and the message shows nothing of the cause.
#[tokio::test]
async fn a_failing_store_is_internal() {
    let dir = tempfile::tempdir().unwrap();
    let objects = dir.path().join("objects");
    std::fs::create_dir(&objects).unwrap();
    let app = App::with_objects(
        |_| {},
        Arc::new(LocalFileSystem::new_with_prefix(&objects).unwrap()),
    );
    let (_, key, _) = app.customer("ada").await;
    // Where the originals go is a file now: every write fails.
    std::fs::write(objects.join("originals"), b"in the way").unwrap();
    let message = refused(
        app.upload(&key, fixtures::jpeg(40, 30), &[]).await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
    );
    assert!(
        !message.contains("originals") && !message.contains("in the way"),
        "{message}"
    );
}

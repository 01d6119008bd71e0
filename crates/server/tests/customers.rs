//! Customers and keys over real HTTP: who may do what, and what a key can see.

mod common;

use common::{ADMIN, TestServer};
use imagelake_imaging::fixtures;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn admin_creates_customers_and_keys_are_shown_once() {
    let server = TestServer::start().await;
    let (status, body) = server
        .send(
            server
                .client
                .post(server.url("/v1/customers"))
                .bearer_auth(ADMIN)
                .json(&json!({"name": "Acme", "email": "ops@acme.test", "plan": "pro"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for field in ["id", "name", "email", "plan", "created_at", "api_key"] {
        assert!(body.get(field).is_some(), "missing {field}: {body}");
    }
    assert_eq!(body["plan"], "pro");
    let id = body["id"].as_str().unwrap();
    let key = body["api_key"].as_str().unwrap();

    let (status, own) = server.get(key, &format!("/v1/customers/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(own["email"], "ops@acme.test");
    assert!(own.get("api_key").is_none(), "the key is never shown again");

    let db = std::fs::read(server.dir.path().join("metadata.sqlite")).unwrap();
    let wal = std::fs::read(server.dir.path().join("metadata.sqlite-wal")).unwrap_or_default();
    let needle = key.as_bytes();
    assert!(
        !db.windows(needle.len())
            .chain(wal.windows(needle.len()))
            .any(|w| w == needle),
        "keys are stored only hashed"
    );
    server.stop().await;
}

#[tokio::test]
async fn customers_see_only_themselves_and_cannot_administer() {
    let server = TestServer::start().await;
    let (a_id, a_key) = server.customer("a").await;
    let (b_id, _) = server.customer("b").await;
    let (status, body) = server.get(&a_key, &format!("/v1/customers/{b_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    let (status, _) = server.get(ADMIN, &format!("/v1/customers/{a_id}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .send(
            server
                .client
                .post(server.url("/v1/customers"))
                .bearer_auth(&a_key)
                .json(&json!({"name": "x", "email": "x@x.test"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "customers cannot create customers"
    );
    let (status, _) = server.get(&a_key, "/v1/admin/dead-letters").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn bad_customer_bodies_name_the_field() {
    let server = TestServer::start().await;
    let post = |body: &'static str| {
        server
            .client
            .post(server.url("/v1/customers"))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(body)
    };
    for (body, needle) in [
        ("{not json", "invalid JSON"),
        (r#"{"name": "x"}"#, "email"),
        (
            r#"{"name": "x", "email": "x@x.test", "color": "red"}"#,
            "color",
        ),
        (r#"{"name": "x", "email": "nope"}"#, "email"),
        (r#"{"name": "", "email": "x@x.test"}"#, "name"),
    ] {
        let (status, answer) = server.send(post(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer["error"]["code"], "invalid_request");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains(needle),
            "{body}: {answer}"
        );
    }
    let huge = format!(
        r#"{{"name": "{}", "email": "x@x.test"}}"#,
        "n".repeat(100_000)
    );
    let request = server
        .client
        .post(server.url("/v1/customers"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body(huge);
    let (status, answer) = server.send(request).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    server.stop().await;
}

#[tokio::test]
async fn keys_rotate_and_revoke() {
    let server = TestServer::start().await;
    let (id, old_key) = server.customer("rotator").await;
    let (status, created) = server
        .send(
            server
                .client
                .post(server.url(&format!("/v1/customers/{id}/keys")))
                .bearer_auth(ADMIN),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let new_key = created["api_key"].as_str().unwrap().to_owned();
    assert_eq!(server.get(&new_key, "/v1/images").await.0, StatusCode::OK);

    let (_, keys) = server.get(ADMIN, &format!("/v1/customers/{id}/keys")).await;
    let old_key_id = keys["keys"][0]["id"].as_str().unwrap().to_owned();
    assert!(
        keys.to_string().find(&old_key).is_none(),
        "listing never shows secrets"
    );
    let (status, _) = server
        .send(
            server
                .client
                .delete(server.url(&format!("/v1/customers/{id}/keys/{old_key_id}")))
                .bearer_auth(ADMIN),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = server.get(&old_key, "/v1/images").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(
        server.get(&new_key, "/v1/images").await.0,
        StatusCode::OK,
        "the new key still works"
    );
    server.stop().await;
}

#[tokio::test]
async fn updating_and_deleting_a_customer_cascades_to_its_images() {
    let server = TestServer::start().await;
    let (id, key) = server.customer("leaver").await;
    let (status, updated) = server
        .send(
            server
                .client
                .patch(server.url(&format!("/v1/customers/{id}")))
                .bearer_auth(ADMIN)
                .json(&json!({"plan": "enterprise"})),
        )
        .await;
    assert_eq!(
        (status, updated["plan"].as_str()),
        (StatusCode::OK, Some("enterprise"))
    );
    let (status, image) = server
        .upload(&key, fixtures::jpeg(640, 480), Some("a.jpg"))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    server
        .wait_settled(&key, image["id"].as_str().unwrap())
        .await;
    let customer_dir = server.objects_dir().join("originals").join(&id);
    assert!(customer_dir.exists());

    let (status, _) = server
        .send(
            server
                .client
                .delete(server.url(&format!("/v1/customers/{id}")))
                .bearer_auth(ADMIN),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        server.get(ADMIN, &format!("/v1/customers/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server.get(&key, "/v1/images").await.0,
        StatusCode::UNAUTHORIZED,
        "its keys are gone"
    );
    let leftovers = std::fs::read_dir(&customer_dir)
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "its originals are deleted");
    server.stop().await;
}

#[tokio::test]
async fn missing_and_malformed_credentials_are_unauthorized() {
    let server = TestServer::start().await;
    let (status, body) = server
        .send(server.client.get(server.url("/v1/images")))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let (status, _) = server
        .send(
            server
                .client
                .get(server.url("/v1/images"))
                .header("authorization", "Basic abc"),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = server
        .get(
            "ilk_000000000000000000000000000000000000000000000000",
            "/v1/images",
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

//! Customers and keys over real HTTP: who may do what, and what a key can see.

mod common;

use common::{ADMIN, TestServer};
use imagelake_imaging::fixtures;
use reqwest::{Method, StatusCode};
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

/// The console's listing: newest first in cursor pages, searched by name or email in any case;
/// for the admin only.
#[tokio::test]
async fn customers_are_listed_newest_first_and_searched() {
    let server = TestServer::start().await;
    let mut ids = Vec::new();
    for name in ["Ada-Lovelace", "Grace-Hopper", "Alan-Turing"] {
        ids.push(server.customer(name).await.0);
    }
    let (status, first) = server.get(ADMIN, "/v1/customers?limit=2").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let names = |page: &serde_json::Value| -> Vec<String> {
        page["customers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&first), ["Alan-Turing", "Grace-Hopper"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = server
        .get(ADMIN, &format!("/v1/customers?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(names(&second), ["Ada-Lovelace"]);
    assert!(second["next_cursor"].is_null());

    let (_, found) = server.get(ADMIN, "/v1/customers?q=GRACE").await;
    assert_eq!(names(&found), ["Grace-Hopper"]);
    let email = first["customers"][1]["email"].as_str().unwrap();
    let (_, by_email) = server
        .get(
            ADMIN,
            &format!("/v1/customers?q={}", &email["Grace-Hopper".len()..]),
        )
        .await;
    assert_eq!(names(&by_email), ["Grace-Hopper"]);
    let (_, none) = server.get(ADMIN, "/v1/customers?q=nobody-here").await;
    assert_eq!(names(&none), Vec::<String>::new());

    for bad in ["?cursor=garbage", "?limit=0", "?limit=201", "?sort=name"] {
        let (status, body) = server.get(ADMIN, &format!("/v1/customers{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (_, key) = server.customer("Curious").await;
    let (status, _) = server.get(&key, "/v1/customers").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a customer lists no one");
    server.stop().await;
}

/// Keys with pages sign in; an ingest key, which only sends records, is told so.
#[tokio::test]
async fn an_ingest_key_has_no_pages() {
    let server = TestServer::start().await;
    let (_, ingest) = server.company_key("ingest", "pipeline").await;
    let (_, analyst) = server.company_key("analyst", "bi").await;
    let sign_in = |key: &str| {
        server
            .client
            .post(server.url("/v1/session"))
            .json(&json!({ "key": key }))
    };
    let (status, body) = server.send(sign_in(&ingest)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no pages")
    );
    let (status, body) = server.send(sign_in(&analyst)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["role"], "analyst");
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
    let patch = |change: serde_json::Value| {
        server.send(
            server
                .client
                .patch(server.url(&format!("/v1/customers/{id}")))
                .bearer_auth(ADMIN)
                .json(&change),
        )
    };
    let (status, updated) = patch(json!({"plan": "enterprise"})).await;
    assert_eq!(
        (status, updated["plan"].as_str()),
        (StatusCode::OK, Some("enterprise"))
    );
    // A change to nothing writes nothing.
    for unchanged in [json!({}), json!({"plan": "enterprise"})] {
        let (status, same) = patch(unchanged.clone()).await;
        assert_eq!(status, StatusCode::OK, "{same}");
        assert_eq!(same["updated_at"], updated["updated_at"], "{unchanged}");
    }
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
    // Its objects are gone, and with them the folders they emptied.
    for kind in ["originals", "renditions"] {
        assert!(
            !server.objects_dir().join(kind).join(&id).exists(),
            "{kind}"
        );
    }
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

/// Signs `key` in; the session cookie (`name=value`) and the CSRF token.
async fn sign_in(server: &TestServer, key: &str) -> (String, String) {
    let response = server
        .client
        .post(server.url("/v1/session"))
        .json(&json!({ "key": key }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let body: serde_json::Value = response.json().await.unwrap();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    (cookie, body["csrf_token"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_browser_session_acts_for_its_key_until_signed_out_or_revoked() {
    let server = TestServer::start().await;
    let (id, key) = server.customer("browser").await;
    let (status, image) = server.upload(&key, fixtures::jpeg(64, 48), None).await;
    assert_eq!(status, StatusCode::CREATED);
    let image = image["id"].as_str().unwrap().to_owned();

    // Sign-ins only from the site's own pages, as JSON.
    let form = server
        .client
        .post(server.url("/v1/session"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("key={key}"));
    assert_eq!(server.send(form).await.0, StatusCode::FORBIDDEN);
    let cross = server
        .client
        .post(server.url("/v1/session"))
        .header("sec-fetch-site", "cross-site")
        .json(&json!({ "key": key }));
    assert_eq!(server.send(cross).await.0, StatusCode::FORBIDDEN);
    let wrong = server
        .client
        .post(server.url("/v1/session"))
        .json(&json!({ "key": "il_wrong" }));
    assert_eq!(server.send(wrong).await.0, StatusCode::UNAUTHORIZED);

    let (cookie, csrf) = sign_in(&server, &key).await;
    let (status, current) = server
        .send(server.with_cookie(Method::GET, "/v1/session", &cookie))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(current["role"], "customer");
    assert_eq!(current["customer_id"], id.as_str());
    assert_eq!(current["csrf_token"], csrf.as_str());
    assert!(current["limits"]["max_body_bytes"].as_u64().unwrap() > 0);
    let (status, page) = server
        .send(server.with_cookie(Method::GET, "/v1/images", &cookie))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["images"][0]["id"], image.as_str());

    // A change through the cookie needs the session's CSRF token.
    let delete = || server.with_cookie(Method::DELETE, &format!("/v1/images/{image}"), &cookie);
    let (status, refused) = server.send(delete()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("X-CSRF-Token")
    );
    let (status, _) = server.send(delete().header("x-csrf-token", "forged")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        server.get(&key, &format!("/v1/images/{image}")).await.0,
        StatusCode::OK
    );
    let (status, _) = server.send(delete().header("x-csrf-token", &csrf)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // The session is listed under the key; the bearer key is not a session.
    let (status, listed) = server.get(&key, "/v1/sessions").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(
        server.get(&key, "/v1/session").await.0,
        StatusCode::UNAUTHORIZED
    );

    // Signing out ends it at once.
    let response = server
        .with_cookie(Method::DELETE, "/v1/session", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(
        response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (status, _) = server
        .send(server.with_cookie(Method::GET, "/v1/images", &cookie))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Revoking the key ends its other sessions at once.
    let (cookie, _) = sign_in(&server, &key).await;
    let (_, keys) = server.get(ADMIN, &format!("/v1/customers/{id}/keys")).await;
    let key_id = keys["keys"][0]["id"].as_str().unwrap();
    let revoke = server
        .client
        .delete(server.url(&format!("/v1/customers/{id}/keys/{key_id}")))
        .bearer_auth(ADMIN);
    assert_eq!(server.send(revoke).await.0, StatusCode::NO_CONTENT);
    let (status, _) = server
        .send(server.with_cookie(Method::GET, "/v1/images", &cookie))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn pages_are_embedded_and_every_answer_carries_strict_headers() {
    let server = TestServer::with(|s| s.web.secure_cookies = true).await;
    let (_, key) = server.customer("pages").await;
    let signed_out = server.client.get(server.url("/")).send().await.unwrap();
    assert_eq!(signed_out.status(), StatusCode::OK);
    for (name, value) in [
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
        ("x-content-type-options", "nosniff"),
    ] {
        assert_eq!(signed_out.headers()[name], value);
    }
    let csp = signed_out.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert!(signed_out.text().await.unwrap().contains("signin.js"));

    let response = server
        .client
        .post(server.url("/v1/session"))
        .json(&json!({ "key": key }))
        .send()
        .await
        .unwrap();
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(set_cookie.contains("; Secure"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap();
    let home = server
        .with_cookie(Method::GET, "/", cookie)
        .send()
        .await
        .unwrap();
    assert!(home.text().await.unwrap().contains("/assets/js/app.js"));

    let script = server
        .client
        .get(server.url("/assets/js/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let etag = script.headers()["etag"].clone();
    let again = server
        .client
        .get(server.url("/assets/js/app.js"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    let api = server
        .client
        .get(server.url("/v1/images"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.headers()["x-frame-options"], "DENY");
    for missing in [
        "/assets/nope.js",
        "/assets/index.html",
        "/assets/%2e%2e/Cargo.toml",
    ] {
        let response = server.client.get(server.url(missing)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{missing}");
    }
    // Signed out, an image's page leads to the sign-in, and back.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let id = uuid::Uuid::now_v7();
    let page = no_redirects
        .get(server.url(&format!("/images/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        page.headers()["location"],
        format!("/?next=/images/{id}").as_str()
    );
    let page = server
        .with_cookie(Method::GET, &format!("/images/{id}"), cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn failed_sign_ins_spend_the_address_budget() {
    let server = TestServer::with(|s| {
        s.limits.auth_failure_burst = 3;
        s.limits.auth_failures_per_second = 0.01;
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let wrong = server
            .client
            .post(server.url("/v1/session"))
            .json(&json!({ "key": "il_guess" }));
        statuses.push(server.send(wrong).await.0.as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
    let forged = server.with_cookie(Method::GET, "/v1/images", "imagelake_session=guess");
    assert_eq!(server.send(forged).await.0, StatusCode::TOO_MANY_REQUESTS);
    server.stop().await;
}

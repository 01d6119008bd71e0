//! IAM `signBlob` signing (GKE Workload Identity has no key file). No emulator serves the IAM
//! Credentials API, so a local stand-in answers exactly as the API documents it, signing with
//! the test key; the URL it produces must verify with that key like a key-file URL does.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use axum::{Json, Router, http::StatusCode, http::Uri, http::header::HeaderMap};
use base64::{Engine, engine::general_purpose::STANDARD};
use imagelake_gcp::{
    TokenSource,
    signing::{ServiceAccountKey, Signer, UrlRequest, canonical, signed_url},
};
use serde_json::{Value, json};

fn test_key() -> ServiceAccountKey {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/test-service-account.json");
    ServiceAccountKey::from_file(&path).unwrap()
}

/// The IAM Credentials API's `signBlob`, for one service account and one bearer token.
async fn iam_stand_in(key: Arc<ServiceAccountKey>) -> String {
    let app = Router::new().fallback(
        move |uri: Uri, headers: HeaderMap, Json(body): Json<Value>| {
            let key = key.clone();
            async move {
                let expected = format!(
                    "/v1/projects/-/serviceAccounts/{}:signBlob",
                    key.client_email
                );
                let authorised = headers.get("authorization").and_then(|v| v.to_str().ok())
                    == Some("Bearer workload-token");
                if uri.path() != expected || !authorised {
                    return (StatusCode::FORBIDDEN, Json(json!({"error": {"code": 403}})));
                }
                let payload = STANDARD.decode(body["payload"].as_str().unwrap()).unwrap();
                let signed = key.sign(&payload).unwrap();
                (
                    StatusCode::OK,
                    Json(json!({"keyId": "k1", "signedBlob": STANDARD.encode(signed)})),
                )
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn request() -> UrlRequest {
    UrlRequest {
        method: "PUT".into(),
        bucket: "images".into(),
        object: "originals/c/i".into(),
        headers: BTreeMap::from([("content-type".into(), "image/jpeg".into())]),
        expires: Duration::from_secs(900),
        now: chrono::Utc::now(),
    }
}

#[tokio::test]
async fn sign_blob_urls_verify_like_key_file_urls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let key = Arc::new(test_key());
    let endpoint = iam_stand_in(key.clone()).await;
    let signer = Signer::Iam {
        email: key.client_email.clone(),
        tokens: TokenSource::Static("workload-token".into()),
        client: reqwest::Client::new(),
        endpoint: endpoint.clone(),
    };
    let request = request();
    let url = signed_url(&signer, "https://storage.googleapis.com", &request)
        .await
        .unwrap();
    let signature = hex::decode(url.rsplit_once("X-Goog-Signature=").unwrap().1).unwrap();
    let c = canonical(
        "https://storage.googleapis.com",
        &key.client_email,
        &request,
    );
    assert!(key.verify(c.to_sign().as_bytes(), &signature));
    assert_eq!(url, c.url(&signature));

    // The same URL from the key file (RSA PKCS#1 v1.5 is deterministic).
    let from_file = signed_url(
        &Signer::Key(test_key()),
        "https://storage.googleapis.com",
        &request,
    )
    .await
    .unwrap();
    assert_eq!(url, from_file);

    let refused = Signer::Iam {
        email: key.client_email.clone(),
        tokens: TokenSource::Static("someone-else".into()),
        client: reqwest::Client::new(),
        endpoint,
    };
    let error = signed_url(&refused, "https://storage.googleapis.com", &request)
        .await
        .unwrap_err();
    assert!(
        matches!(error, imagelake_gcp::Error::Refused { status: 403, .. }),
        "{error}"
    );
}

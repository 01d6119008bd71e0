//! The Pub/Sub backlog read from Cloud Monitoring's `timeSeries.list`. Google ships no emulator
//! for Monitoring, so a local server answers in the API's JSON, checks what the client asks and
//! counts the calls.

use std::{
    collections::HashMap,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    routing::get,
};
use imagelake_gcp::{Backlog, TokenSource, signing::ServiceAccountKey};
use serde_json::{Value, json};

#[derive(Clone)]
struct Monitoring {
    calls: Arc<AtomicUsize>,
    /// What to answer, by subscription.
    answers: Arc<HashMap<&'static str, (StatusCode, Value)>>,
}

async fn time_series(
    State(m): State<Monitoring>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    m.calls.fetch_add(1, Ordering::SeqCst);
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ey"));
    let filter = query.get("filter").cloned().unwrap_or_default();
    let window = ["interval.startTime", "interval.endTime"].iter().all(|k| {
        query
            .get(*k)
            .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok())
    });
    if !bearer {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"code": 401}})),
        );
    }
    if !window
        || !filter.contains(
            "metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\"",
        )
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"code": 400, "message": filter}})),
        );
    }
    let subscription = filter
        .split("resource.labels.subscription_id = \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default();
    match m.answers.get(subscription) {
        Some((status, answer)) => (*status, Json(answer.clone())),
        None => (StatusCode::OK, Json(json!({}))),
    }
}

fn series(points: &[(&str, &str)]) -> Value {
    let points: Vec<Value> = points
        .iter()
        .map(|(end, value)| json!({"interval": {"startTime": end, "endTime": end}, "value": {"int64Value": value}}))
        .collect();
    json!({"timeSeries": [{
        "metric": {"type": "pubsub.googleapis.com/subscription/num_undelivered_messages"},
        "resource": {"type": "pubsub_subscription", "labels": {"project_id": "p", "subscription_id": "work"}},
        "metricKind": "GAUGE", "valueType": "INT64", "points": points}], "unit": "1"})
}

async fn monitoring() -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let answers = HashMap::from([
        (
            "work",
            (
                StatusCode::OK,
                series(&[
                    ("2026-12-02T03:22:00Z", "1250"),
                    ("2026-12-02T03:21:00Z", "980"),
                ]),
            ),
        ),
        (
            "forbidden",
            (
                StatusCode::FORBIDDEN,
                json!({"error": {"code": 403, "status": "PERMISSION_DENIED"}}),
            ),
        ),
        ("broken", (StatusCode::OK, json!({"timeSeries": "no"}))),
        (
            "failing",
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": {"code": 503}}),
            ),
        ),
    ]);
    let app = Router::new()
        .route("/v3/projects/p/timeSeries", get(time_series))
        .with_state(Monitoring {
            calls: calls.clone(),
            answers: Arc::new(answers),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), calls)
}

fn backlog(endpoint: &str, subscription: &str) -> Backlog {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let key =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/test-service-account.json");
    let key = ServiceAccountKey::from_file(&key).unwrap();
    Backlog::new(
        endpoint,
        TokenSource::ServiceAccount(Box::new(key), Default::default()),
        "p",
        subscription,
    )
    .unwrap()
}

#[tokio::test]
async fn the_newest_sample_is_the_backlog_and_is_reused_for_a_while() {
    let (endpoint, calls) = monitoring().await;
    let work = backlog(&endpoint, "work");
    assert_eq!(work.undelivered().await, Some(1250));
    assert_eq!(work.undelivered().await, Some(1250));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the second look is the cached answer"
    );
}

#[tokio::test]
async fn what_cannot_be_read_is_unknown_never_zero() {
    let (endpoint, calls) = monitoring().await;
    for subscription in ["forbidden", "broken", "failing", "no-sample-yet"] {
        assert_eq!(
            backlog(&endpoint, subscription).undelivered().await,
            None,
            "{subscription}"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    let unsigned = Backlog::new(&endpoint, TokenSource::Anonymous, "p", "work").unwrap();
    assert_eq!(
        unsigned.undelivered().await,
        None,
        "the fake refuses calls without a token"
    );
    let nobody = Backlog::new("http://127.0.0.1:9", TokenSource::Anonymous, "p", "work").unwrap();
    assert_eq!(nobody.undelivered().await, None, "unreachable");
}

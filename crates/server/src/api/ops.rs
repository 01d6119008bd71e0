//! Health, readiness, metrics and the OpenAPI document.

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;
use utoipa::OpenApi;

use super::ApiDoc;
use crate::{auth::Admin, state::AppState};

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "alive")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The process can serve: the metadata store answers, and so does every part its role needs
/// (the Kafka brokers for `kafka-ingest`). Parts a role can do without (Kafka in `serve`) show
/// in the body without making the process unready.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, description = "ready"), (status = 503, description = "a dependency is down")))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let (parts, parts_ready) = state.health.snapshot();
    let mut checks = serde_json::Map::new();
    let metadata = match state.store.ping().await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed: metadata store");
            false
        }
    };
    checks.insert(
        "metadata".into(),
        json!(if metadata { "ok" } else { "unreachable" }),
    );
    for (part, part_state) in parts {
        checks.insert(part.into(), json!(part_state));
    }
    let (status, word) = if metadata && parts_ready {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    (status, Json(json!({"status": word, "checks": checks}))).into_response()
}

/// Prometheus metrics in the text exposition format, for the admin token (business figures such
/// as upload counts are not for customers).
#[utoipa::path(get, path = "/metrics", tag = "ops", security(("bearer" = [])),
    responses((status = 200, description = "metrics", content_type = "text/plain"), (status = 401, description = "no admin token")))]
pub async fn metrics(_: Admin, State(state): State<AppState>) -> Response {
    if let Ok(Some(depth)) = state.queue.depth().await {
        state
            .metrics
            .queue_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    #[cfg_attr(not(feature = "gcp"), allow(unused_mut))]
    let mut doc = ApiDoc::openapi();
    #[cfg(feature = "gcp")]
    doc.merge(super::push::PushDoc::openapi());
    Json(doc)
}

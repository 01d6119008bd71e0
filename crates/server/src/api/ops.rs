//! Health, readiness, metrics and the OpenAPI document.

use imagelake_runtime::AppState;

use crate::auth::MetricsReader;
use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

/// `{"status": "ok"}`
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Health {
    status: String,
}

/// Whether the process can serve, and each part's state.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    status: String,
    /// `metadata`, and where they run `queue`, `kafka`, `events`: `ok` or what is wrong; and
    /// `tasks`: each background task's `state` (`running`, `idle`, `failing`), `last_error`
    /// and `restarts`.
    #[schema(value_type = Object)]
    checks: std::collections::BTreeMap<String, serde_json::Value>,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "alive", body = Health)))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The process can serve: the metadata store answers, so does every part its role needs (the
/// Kafka brokers for `kafka-ingest`), and no required background task is failing. Parts and
/// tasks a role can do without (Kafka in `serve`, the sweeper) show in the body without making
/// the process unready.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, description = "ready", body = Readiness), (status = 503, description = "a part the role needs is down", body = Readiness)))]
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
    let (tasks, tasks_ready) = state.tasks.snapshot();
    if !tasks.is_empty() {
        checks.insert("tasks".into(), json!(tasks));
    }
    let (status, word) = if metadata && parts_ready && tasks_ready {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    (status, Json(json!({"status": word, "checks": checks}))).into_response()
}

/// Prometheus metrics in the text exposition format, for the admin token (business figures such
/// as upload counts are not for customers), or for the metrics token (`metrics_token`), which
/// a scraper holds instead of the admin token.
#[utoipa::path(get, path = "/metrics", tag = "ops", security(("bearer" = [])),
    responses((status = 200, description = "metrics in the OpenMetrics text format", body = String, content_type = "application/openmetrics-text"),
        (status = 404, body = super::ErrorBody, description = "called with a customer key: metrics are for the admin")))]
pub async fn metrics(_: MetricsReader, State(state): State<AppState>) -> Response {
    state.metrics.tasks(&state.tasks);
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

/// This document: the OpenAPI 3.1 description of every operation this process serves.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "the OpenAPI document", body = Object)))]
pub async fn openapi(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(super::docs::document(&state.settings))
}

//! Operator endpoints: the dead letters of the processing queue.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use imagelake_core::{JobId, records::DeadLetter};
use serde_json::{Value, json};

use super::parse_id;
use crate::{auth::Admin, error::ApiError, state::AppState};

/// Jobs that failed `max_attempts` times, newest first.
#[utoipa::path(get, path = "/v1/admin/dead-letters", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "dead letters", body = Vec<DeadLetter>)))]
pub async fn dead_letters(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let dead = state.queue.dead_letters(1000).await?;
    Ok(Json(json!({"dead_letters": dead})))
}

/// Puts a dead job back on the queue with a fresh attempt count.
#[utoipa::path(post, path = "/v1/admin/dead-letters/{id}/retry", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "dead letter id")),
    responses((status = 202, description = "queued again"), (status = 404, description = "no such dead letter")))]
pub async fn retry_dead_letter(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: JobId = parse_id(&id)?;
    if !state.queue.redrive(id, state.clock.now()).await? {
        return Err(ApiError::not_found("no such dead letter"));
    }
    state.work_ready.notify_one();
    Ok(StatusCode::ACCEPTED)
}

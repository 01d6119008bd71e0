//! Operator endpoints: the dead letters of the processing queue.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use imagelake_core::{JobId, records::DeadLetter};
use serde::Serialize;
use utoipa::ToSchema;

use super::parse_id;
use imagelake_runtime::AppState;

use crate::{auth::Admin, error::ApiError};

/// Dead letters, newest first (at most 1000).
#[derive(Serialize, ToSchema)]
pub struct DeadLetterList {
    dead_letters: Vec<DeadLetter>,
}

/// Jobs that failed `max_attempts` times, newest first.
#[utoipa::path(get, path = "/v1/admin/dead-letters", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "dead letters", body = DeadLetterList),
        (status = 404, body = super::ErrorBody, description = "called with a customer key: admin endpoints do not exist for customers")))]
pub async fn dead_letters(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Json<DeadLetterList>, ApiError> {
    let dead_letters = state.queue.dead_letters(1000).await?;
    Ok(Json(DeadLetterList { dead_letters }))
}

/// Puts a dead job back on the queue with a fresh attempt count.
#[utoipa::path(post, path = "/v1/admin/dead-letters/{id}/retry", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "dead letter id")),
    responses((status = 202, description = "queued again"),
        (status = 404, body = super::ErrorBody, description = "no such dead letter; or called with a customer key")))]
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

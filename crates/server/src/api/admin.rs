//! Operator endpoints: the dead letters of the processing queue and the tasks of every process.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use imagelake_core::{
    JobId,
    records::{DeadLetter, Heartbeat},
};
use serde::Serialize;
use utoipa::ToSchema;

use super::parse_id;
use imagelake_runtime::{AppState, heartbeat::GONE_AFTER};

use crate::{auth::Admin, error::ApiError};

/// Dead letters, newest first (at most 1000), and how much work waits.
#[derive(Serialize, ToSchema)]
pub struct DeadLetterList {
    dead_letters: Vec<DeadLetter>,
    /// Jobs waiting in the queue; on Pub/Sub the subscription's `num_undelivered_messages` from
    /// Cloud Monitoring, a few minutes old. Null where it cannot be read (no
    /// `roles/monitoring.viewer`, no sample yet, the emulator): never 0 for unknown.
    queue_depth: Option<u64>,
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
    let queue_depth = state.queue.depth().await?;
    Ok(Json(DeadLetterList {
        dead_letters,
        queue_depth,
    }))
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

/// A process as its last heartbeat shows it.
#[derive(Serialize, ToSchema)]
pub struct Process {
    #[serde(flatten)]
    beat: Heartbeat,
    /// `up`; `stopped` (its last beat said so) or `gone` (no beat for 30 s: killed, or cut off
    /// from the store).
    status: &'static str,
}

/// Every process of every role, by role.
#[derive(Serialize, ToSchema)]
pub struct ProcessList {
    processes: Vec<Process>,
}

/// Every process's background tasks and their states, from the heartbeats each process of each
/// role writes every 5 seconds.
#[utoipa::path(get, path = "/v1/admin/tasks", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "processes of the last day", body = ProcessList),
        (status = 404, body = super::ErrorBody, description = "called with a customer key")))]
pub async fn tasks(_: Admin, State(state): State<AppState>) -> Result<Json<ProcessList>, ApiError> {
    let now = state.clock.now();
    let processes = state
        .store
        .heartbeats()
        .await?
        .into_iter()
        .map(|beat| Process {
            status: if beat.stopped_at.is_some() {
                "stopped"
            } else if beat.beat_at < now - GONE_AFTER {
                "gone"
            } else {
                "up"
            },
            beat,
        })
        .collect();
    Ok(Json(ProcessList { processes }))
}

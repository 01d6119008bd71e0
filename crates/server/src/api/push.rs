//! `POST /v1/pubsub/push`: the same work as the pulled subscription, delivered by a Pub/Sub
//! push subscription. The answer is the acknowledgement: 2xx acks, anything else makes Pub/Sub
//! deliver again with backoff (and dead-letter after the subscription's limit).

use std::sync::Arc;

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use imagelake_gcp::{Received, Work, work_of};
use serde_json::json;

use imagelake_runtime::{AppState, worker};

use crate::{auth::BearerToken, error::ApiError};

#[derive(utoipa::OpenApi)]
#[openapi(paths(push))]
pub struct PushDoc;

/// Work pushed by Pub/Sub, authenticated by its OIDC token.
#[utoipa::path(post, path = "/v1/pubsub/push", tag = "ops", security(("bearer" = [])), request_body(content = String, content_type = "application/json", description = "a Pub/Sub push envelope"),
    responses((status = 204, description = "done (acknowledged)"), (status = 400, body = super::ErrorBody, description = "not a push message"),
        (status = 401, body = super::ErrorBody), (status = 404, body = super::ErrorBody, description = "push is not enabled"),
        (status = 503, body = super::ErrorBody, description = "failed for now; deliver again")))]
pub async fn push(
    State(state): State<AppState>,
    token: Result<BearerToken, ApiError>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(verifier) = state.push.clone() else {
        return Err(ApiError::not_found(
            "push delivery is not enabled here (push.enabled)",
        ));
    };
    let BearerToken(token) = token?;
    if let Err(reason) = verifier.verify(&token, state.clock.now()).await {
        tracing::warn!(%reason, "push refused");
        return Err(ApiError::unauthorized(format!(
            "the push token was refused: {reason}"
        )));
    }
    let message = Received::from_push(&body).map_err(|e| match e {
        imagelake_gcp::Error::Malformed { message, .. } => {
            ApiError::invalid(format!("not a Pub/Sub push message: {message}"))
        }
        other => ApiError::internal(&other),
    })?;
    let job = match work_of(&message, state.settings.objects.bucket.as_deref()) {
        Work::Job(job) => job,
        Work::Ignore(reason) => {
            tracing::debug!(message_id = %message.message_id, reason, "pushed notification is not work");
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        Work::Malformed(error) => return Err(ApiError::invalid(error)),
    };
    // Pushed work takes a worker's slot like pulled work, however many pushes arrive at once.
    let _slot = Arc::clone(&state.processing_slots)
        .acquire_owned()
        .await
        .map_err(|e| ApiError::internal(&e))?;
    match worker::process_job(&state, &job).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(error) => {
            state.metrics.retries.inc();
            tracing::warn!(job_id = %job.id, image_id = %job.image_id, attempts = job.attempts, %error, "pushed work failed; Pub/Sub delivers it again");
            Ok((
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": {"code": "internal", "message": error.to_string()}})),
            )
                .into_response())
        }
    }
}

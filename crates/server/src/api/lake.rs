//! The lake's HTTP door: records of a declared table, posted as NDJSON by the company's own
//! senders (an `ingest` key or the admin token), durable before the answer.

use axum::{
    Json,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, header},
};
use imagelake_runtime::{AppState, Error, lake::Appended};

use crate::{auth::LakeSender, error::ApiError};

/// Appends records to a declared table: one JSON object per line. Lines that do not fit the
/// table (bad JSON, a wrong type, no time field, too large) are quarantined with the reason and
/// listed; the others are kept. Answers once every kept record is durable.
#[utoipa::path(post, path = "/v1/lake/{table}/records", tag = "lake", security(("bearer" = [])),
    params(("table" = String, Path, description = "a table declared in `[[lake.tables]]`")),
    request_body(content = String, content_type = "application/x-ndjson",
        description = "one JSON object per line"),
    responses(
        (status = 200, description = "kept and quarantined records", body = Appended),
        (status = 401, body = super::ErrorBody, description = "no or a bad key"),
        (status = 403, body = super::ErrorBody, description = "a key whose role may not post records"),
        (status = 404, body = super::ErrorBody, description = "no such table"),
        (status = 408, body = super::ErrorBody, description = "the body came too slowly"),
        (status = 413, body = super::ErrorBody, description = "the body is over `lake.max_request_bytes`"),
        (status = 429, body = super::ErrorBody, description = "this key's posts in progress hold its share of the upload memory budget"),
        (status = 503, body = super::ErrorBody, description = "posts and uploads in progress hold the whole upload memory budget")))]
pub async fn append(
    LakeSender(key): LakeSender,
    State(state): State<AppState>,
    Path(table): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Appended>, ApiError> {
    let lake = match &state.lake {
        Some(lake) if lake.has_table(&table) => lake.clone(),
        _ => return Err(ApiError::not_found(format!("no lake table {table:?}"))),
    };
    let limit = state.settings.lake.max_request_bytes;
    // The body and its checked rows are held until the answer: room for both is taken from
    // the upload memory budget first, so concurrent posts wait (or get `429`/`503`) rather
    // than grow the process.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .map_or(limit, |n| n.min(limit));
    let wait = state.settings.limits.body_idle_timeout.0;
    let _room = state
        .upload_budget
        .reserve(key, declared.saturating_mul(2), wait)
        .await
        .map_err(|busy| Error::busy(busy, wait))?;
    let bytes = axum::body::to_bytes(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .await
        .map_err(|e| ApiError::unreadable_body(&e, limit))?;
    let appended = lake.append(&table, bytes, state.clock.now()).await?;
    Ok(Json(appended))
}

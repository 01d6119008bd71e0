//! The lake's HTTP door: records of a declared table, posted as NDJSON by the company's own
//! senders (an `ingest` key or the admin token), durable before the answer.

use axum::{
    Json,
    body::Body,
    extract::{Path, State},
};
use imagelake_runtime::{AppState, lake::Appended};

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
        (status = 413, body = super::ErrorBody, description = "the body is over `lake.max_request_bytes`")))]
pub async fn append(
    _: LakeSender,
    State(state): State<AppState>,
    Path(table): Path<String>,
    body: Body,
) -> Result<Json<Appended>, ApiError> {
    let lake = match &state.lake {
        Some(lake) if lake.has_table(&table) => lake.clone(),
        _ => return Err(ApiError::not_found(format!("no lake table {table:?}"))),
    };
    let limit = state.settings.lake.max_request_bytes;
    let bytes = axum::body::to_bytes(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .await
        .map_err(|e| ApiError::unreadable_body(&e, limit))?;
    let appended = lake.append(&table, bytes, state.clock.now()).await?;
    Ok(Json(appended))
}

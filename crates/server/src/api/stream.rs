//! The Kafka stream for the admin: topics, partitions and lag, the image stream's dead letters,
//! and re-driving them. Answered by the `StreamAdmin` of the process where `kafka.brokers` is
//! set (`serve` and `api`); without brokers the overview says the stream is off.

use std::collections::HashMap;

use axum::{
    Json,
    extract::{Query, State},
};
use imagelake_runtime::{
    AppState,
    stream::{DeadLetterPage, StreamAdmin, StreamOverview},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::paging::parse_limit;
use crate::{
    auth::Admin,
    error::{ApiError, JsonBody},
};

/// Ids one re-drive may name.
const MAX_IDS: usize = 1000;

fn stream(state: &AppState) -> Result<&dyn StreamAdmin, ApiError> {
    state.stream.as_deref().ok_or_else(|| {
        ApiError::not_found("the Kafka stream is off here: kafka.brokers is not set")
    })
}

/// The topics of the deployment, each partition's offsets, the lag of the group that reads it
/// and the messages per second since the previous look; and the dead letters waiting.
#[utoipa::path(get, path = "/v1/admin/stream", tag = "stream", security(("bearer" = [])),
    responses((status = 200, body = StreamOverview, description = "`enabled: false` where kafka.brokers is not set"),
        (status = 404, body = super::ErrorBody, description = "called with a customer key"),
        (status = 503, body = super::ErrorBody, description = "`unavailable`: the brokers did not answer")))]
pub async fn overview(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Json<StreamOverview>, ApiError> {
    match state.stream.as_deref() {
        Some(stream) => Ok(Json(stream.overview().await?)),
        None => Ok(Json(StreamOverview::disabled())),
    }
}

/// The dead-letter topic's messages, newest first: why each was refused and where it came from,
/// never its bytes.
#[utoipa::path(get, path = "/v1/admin/stream/dead-letters", tag = "stream", security(("bearer" = [])),
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "default 100"),
           ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page")),
    responses((status = 200, body = DeadLetterPage),
        (status = 400, body = super::ErrorBody, description = "`invalid_request`: a bad limit or cursor"),
        (status = 404, body = super::ErrorBody, description = "no stream here (kafka.brokers is not set); or called with a customer key"),
        (status = 503, body = super::ErrorBody, description = "`unavailable`: the brokers did not answer")))]
pub async fn dead_letters(
    _: Admin,
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    let (mut limit, mut before) = (100, None);
    for (name, value) in &params {
        match name.as_str() {
            "limit" => limit = parse_limit(name, value, 500)?,
            "cursor" if value.is_empty() => {}
            "cursor" => before = Some(parse_message_id(value, "cursor")?),
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown query parameter `{other}`; use limit or cursor"
                )));
            }
        }
    }
    Ok(Json(stream(&state)?.dead_letters(before, limit).await?))
}

/// Which dead letters to send back: `{"ids": [...]}` or `{"all": true}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Redrive {
    /// Dead letters' `id`s (`{partition}-{offset}`), at most 1000.
    ids: Option<Vec<String>>,
    /// Every dead letter on the topic (at most 10,000 a request).
    #[serde(default)]
    all: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Redriven {
    /// Messages produced back to the images topic.
    redriven: u64,
    /// Ids that are not (or no longer) on the dead-letter topic.
    missing: Vec<String>,
}

/// Produces dead letters back to the images topic, each with its original headers and
/// `imagelake-redrive-count` one higher; the stream consumer takes them as new messages. One
/// refused again comes back to the dead letters with the higher count.
#[utoipa::path(post, path = "/v1/admin/stream/dead-letters/redrive", tag = "stream", security(("bearer" = [])),
    request_body = Redrive,
    responses((status = 200, body = Redriven),
        (status = 400, body = super::ErrorBody, description = "`invalid_request`: neither or both of ids and all, a bad id, more than 1000 ids"),
        (status = 404, body = super::ErrorBody, description = "no stream here (kafka.brokers is not set); or called with a customer key"),
        (status = 503, body = super::ErrorBody, description = "`unavailable`: the brokers did not answer or take a message")))]
pub async fn redrive(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Redrive>,
) -> Result<Json<Redriven>, ApiError> {
    let which = match (body.ids, body.all) {
        (Some(ids), false) if !ids.is_empty() && ids.len() <= MAX_IDS => Some(
            ids.iter()
                .map(|id| parse_message_id(id, "ids"))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        (None, true) => None,
        _ => {
            return Err(ApiError::invalid(
                "send {\"ids\": [1 to 1000 dead-letter ids]} or {\"all\": true}",
            ));
        }
    };
    let (redriven, missing) = stream(&state)?.redrive(which).await?;
    Ok(Json(Redriven { redriven, missing }))
}

/// A dead letter's id, `{partition}-{offset}`.
fn parse_message_id(text: &str, field: &str) -> Result<(i32, i64), ApiError> {
    text.split_once('-')
        .and_then(|(p, o)| Some((p.parse().ok()?, o.parse().ok()?)))
        .filter(|&(p, o): &(i32, i64)| p >= 0 && o >= 0)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "`{field}`: {text:?} is not a dead letter's id ({{partition}}-{{offset}})"
            ))
        })
}

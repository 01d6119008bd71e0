//! The scheduled jobs (admin): list them with their newest run, read a job's history, queue a
//! run of an interval, start and follow backfills. The scheduler holding a job's lease runs
//! what is queued.

use std::collections::HashMap;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use imagelake_core::jobs::{Backfill, JobRun, Reprocess};
use imagelake_metadata::RunCursor;
use imagelake_runtime::{
    AppState,
    jobs::{
        control::{self, JobOverview},
        scheduler::start_backfill,
    },
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    auth::Admin,
    error::{ApiError, JsonBody},
};

/// Every job.
#[derive(Serialize, ToSchema)]
pub struct JobList {
    jobs: Vec<JobOverview>,
}

/// A page of a job's runs, newest interval first, each interval's attempts newest first.
#[derive(Serialize, ToSchema)]
pub struct RunPage {
    runs: Vec<JobRun>,
    /// Pass as `cursor` for the next page; absent on the last.
    next_cursor: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRun {
    /// `2026-11-30T10` for an hour, `2026-11-30` for a day, or an RFC 3339 time inside it.
    interval: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBackfill {
    /// The first interval, included.
    from: String,
    /// The last interval, included.
    to: String,
    /// `missing` (default: intervals never run), `failed` (and those whose last attempt
    /// failed) or `all`.
    #[serde(default)]
    reprocess: Reprocess,
    /// Runs of the backfill open at once (default 2); the schedule's runs go on beside them.
    #[serde(default = "two")]
    max_active: u32,
}

fn two() -> u32 {
    2
}

/// A job's backfills, newest first.
#[derive(Serialize, ToSchema)]
pub struct BackfillList {
    backfills: Vec<Backfill>,
}

/// The jobs, their schedules, their newest runs and next firings.
#[utoipa::path(get, path = "/v1/admin/jobs", tag = "jobs", security(("bearer" = [])),
    responses((status = 200, body = JobList),
        (status = 404, body = super::ErrorBody, description = "called with a customer key")))]
pub async fn list(_: Admin, State(state): State<AppState>) -> Result<Json<JobList>, ApiError> {
    let jobs = control::overview(&state).await?;
    Ok(Json(JobList { jobs }))
}

/// A job's run history: every attempt of every interval, newest first.
#[utoipa::path(get, path = "/v1/admin/jobs/{name}/runs", tag = "jobs", security(("bearer" = [])),
    params(("name" = String, Path, description = "lake-transform, lake-retention or image-retention"),
        ("limit" = Option<usize>, Query, description = "1-1000, default 100"),
        ("cursor" = Option<String>, Query, description = "the `next_cursor` of the page before")),
    responses((status = 200, body = RunPage),
        (status = 400, body = super::ErrorBody, description = "`invalid_request`: a bad limit or cursor"),
        (status = 404, body = super::ErrorBody, description = "no such job; or called with a customer key")))]
pub async fn runs(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<RunPage>, ApiError> {
    let info = control::find(&state, &name)?;
    let limit = match query.get("limit") {
        None => 100,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::invalid("limit must be a whole number from 1 to 1000"))?,
    };
    let cursor = query.get("cursor").map(|c| parse_cursor(c)).transpose()?;
    let runs = state
        .store
        .recent_runs(info.name, cursor.as_ref(), limit)
        .await?;
    let next_cursor = (runs.len() == limit)
        .then(|| runs.last().map(|r| format!("{}~{}", r.interval, r.attempt)))
        .flatten();
    Ok(Json(RunPage { runs, next_cursor }))
}

fn parse_cursor(text: &str) -> Result<RunCursor, ApiError> {
    let (interval, attempt) = text
        .rsplit_once('~')
        .ok_or_else(|| ApiError::invalid("cursor: pass the `next_cursor` of the page before"))?;
    let attempt = attempt
        .parse()
        .map_err(|_| ApiError::invalid("cursor: pass the `next_cursor` of the page before"))?;
    Ok(RunCursor {
        interval: interval.to_owned(),
        attempt,
    })
}

/// Queues a run of one interval (a new attempt if it ran before); the scheduler runs it.
#[utoipa::path(post, path = "/v1/admin/jobs/{name}/runs", tag = "jobs", security(("bearer" = [])),
    params(("name" = String, Path)), request_body = NewRun,
    responses((status = 202, body = JobRun, description = "queued"),
        (status = 400, body = super::ErrorBody, description = "`invalid_request`: not an interval of the job"),
        (status = 404, body = super::ErrorBody, description = "no such job; or called with a customer key"),
        (status = 409, body = super::ErrorBody, description = "`conflict`: the interval has a run queued or running")))]
pub async fn queue(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<NewRun>,
) -> Result<(StatusCode, Json<JobRun>), ApiError> {
    let run = control::queue_run(&state, &name, &body.interval).await?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}

/// Starts a backfill of a range of intervals, at most `max_active` runs at once, beside the
/// schedule; it survives restarts.
#[utoipa::path(post, path = "/v1/admin/jobs/{name}/backfills", tag = "jobs", security(("bearer" = [])),
    params(("name" = String, Path)), request_body = NewBackfill,
    responses((status = 201, body = Backfill, description = "started"),
        (status = 400, body = super::ErrorBody, description = "`invalid_request`: bad intervals, `from` after `to`, or `max_active` 0"),
        (status = 404, body = super::ErrorBody, description = "no such job; or called with a customer key")))]
pub async fn backfill(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<NewBackfill>,
) -> Result<(StatusCode, Json<Backfill>), ApiError> {
    let info = control::find(&state, &name)?;
    let backfill = start_backfill(
        &state,
        info.name,
        &body.from,
        &body.to,
        body.reprocess,
        body.max_active,
    )
    .await
    .map_err(ApiError::invalid)?;
    tracing::info!(job = info.name, backfill = %backfill.id, from = %backfill.from, to = %backfill.to, "backfill started");
    Ok((StatusCode::CREATED, Json(backfill)))
}

/// A job's backfills, newest first, with how far each has got.
#[utoipa::path(get, path = "/v1/admin/jobs/{name}/backfills", tag = "jobs", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = BackfillList),
        (status = 404, body = super::ErrorBody, description = "no such job; or called with a customer key")))]
pub async fn backfills(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<BackfillList>, ApiError> {
    let info = control::find(&state, &name)?;
    let backfills = state.store.backfills(info.name).await?;
    Ok(Json(BackfillList { backfills }))
}

//! The HTTP API: routes, the OpenAPI document generated from the handlers, and the layers every
//! request passes (tracing with the matched route, panic catching, body limits per handler).

mod admin;
mod customers;
mod dashboards;
pub mod docs;
mod images;
mod jobs;
mod keys;
mod lake;
mod lake_tables;
pub mod multipart;
mod ops;
mod paging;
#[cfg(feature = "gcp")]
mod push;
pub mod session;
#[cfg(feature = "sql")]
mod sql;
mod stream;
#[cfg(feature = "sql")]
pub use sql::SqlDoor;

/// The SQL doors' shared engine: none in a build without SQL.
#[cfg(not(feature = "sql"))]
#[derive(Clone, Default)]
pub struct SqlDoor;
mod uploads;

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request},
    routing::{get, post},
};
use tower_http::{catch_panic::CatchPanicLayer, trace::TraceLayer};

pub use docs::{ApiDoc, ErrorBody, ImageRecord};
pub use multipart::MAX_PARTS;

use imagelake_runtime::AppState;

use crate::error::ApiError;

/// The whole API as a router over `state`, its SQL on `sql`'s engine (shared with the
/// Postgres wire). Every endpoint: the API role (and `serve`).
pub fn router(state: AppState, sql: &SqlDoor) -> Router {
    with_layers(
        api_routes()
            .merge(ops_routes())
            .merge(push_routes())
            .merge(sql_routes(sql))
            .merge(crate::web::routes()),
        state,
    )
}

#[cfg(feature = "sql")]
fn sql_routes(door: &SqlDoor) -> Router<AppState> {
    Router::new()
        .route("/v1/sql", post(sql::query))
        .route("/v1/admin/lake/quarantine/{table}", get(sql::quarantine))
        .layer(axum::Extension(door.clone()))
}

#[cfg(not(feature = "sql"))]
fn sql_routes(_: &SqlDoor) -> Router<AppState> {
    Router::new()
}

/// Health, readiness, metrics and pushed work: the worker role's port.
pub fn ops_router(state: AppState) -> Router {
    with_layers(ops_routes().merge(push_routes()), state)
}

#[cfg(feature = "gcp")]
fn push_routes() -> Router<AppState> {
    Router::new().route("/v1/pubsub/push", post(push::push))
}

#[cfg(not(feature = "gcp"))]
fn push_routes() -> Router<AppState> {
    Router::new()
}

fn ops_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
}

fn api_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/customers",
            post(customers::create).get(customers::list),
        )
        .route(
            "/v1/customers/{id}",
            get(customers::get_one)
                .patch(customers::update)
                .delete(customers::delete),
        )
        .route(
            "/v1/customers/{id}/keys",
            post(customers::create_key).get(customers::list_keys),
        )
        .route(
            "/v1/customers/{id}/keys/{key_id}",
            axum::routing::delete(customers::revoke_key),
        )
        .route(
            "/v1/images",
            // Uploads read their body themselves, within `limits.max_body_bytes`.
            post(images::upload)
                .layer(DefaultBodyLimit::disable())
                .get(images::list),
        )
        .route("/v1/uploads", post(uploads::create))
        .route(
            "/v1/session",
            post(session::sign_in)
                .get(session::get_current)
                .delete(session::sign_out),
        )
        .route("/v1/sessions", get(session::list))
        .route("/v1/sessions/{id}", axum::routing::delete(session::end))
        .route(
            "/v1/images/{id}",
            get(images::get_one).delete(images::delete),
        )
        .route("/v1/images/{id}/original", get(images::original))
        .route("/v1/images/{id}/renditions/{kind}", get(images::rendition))
        .route(
            "/v1/lake/{table}/records",
            // Read within `lake.max_request_bytes` by the handler.
            post(lake::append).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/admin/keys", post(keys::create).get(keys::list))
        .route(
            "/v1/admin/keys/{key_id}",
            axum::routing::delete(keys::revoke),
        )
        .route("/v1/admin/jobs", get(jobs::list))
        .route(
            "/v1/admin/jobs/{name}/runs",
            get(jobs::runs).post(jobs::queue),
        )
        .route(
            "/v1/admin/jobs/{name}/backfills",
            get(jobs::backfills).post(jobs::backfill),
        )
        .route("/v1/admin/dead-letters", get(admin::dead_letters))
        .route("/v1/admin/tasks", get(admin::tasks))
        .route("/v1/dashboards", get(dashboards::list))
        .route("/v1/dashboards/{name}", get(dashboards::get_one))
        .route("/v1/admin/lake/tables", get(lake_tables::tables))
        .route("/v1/admin/stream", get(stream::overview))
        .route("/v1/admin/stream/dead-letters", get(stream::dead_letters))
        .route(
            "/v1/admin/stream/dead-letters/redrive",
            post(stream::redrive),
        )
        .route(
            "/v1/admin/dead-letters/{id}/retry",
            post(admin::retry_dead_letter),
        )
}

fn with_layers(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            let error = ApiError::invalid(format!(
                "method {method} is not allowed on this endpoint; see /openapi.json"
            ));
            (
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                axum::Json(error.body()),
            )
        })
        // JSON bodies are small; uploads read their own body with the configured limit.
        .layer(DefaultBodyLimit::max(crate::error::JSON_LIMIT as usize))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::requests::record,
        ))
        .layer(axum::middleware::from_fn_with_state(
            crate::web::PagePolicy::for_state(&state),
            crate::web::security_headers,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::new(
                imagelake_core::ErrorCode::Internal,
                "internal error; it was logged",
            ))
        }))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str)
                .unwrap_or("unmatched");
            tracing::info_span!("http", method = %req.method(), route, uri = %req.uri())
        }))
        .with_state(state)
}

/// Parses an id from a path; anything malformed is simply not found.
fn parse_id<T: std::str::FromStr>(raw: &str) -> Result<T, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found("no such resource"))
}

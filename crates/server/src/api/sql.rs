//! `POST /v1/sql`: a read-only query over the lake, answered in JSON (the default), CSV, JSON
//! lines or an Arrow stream as the `Accept` header asks. The query layer (`imagelake_sql`)
//! decides what the caller sees: a customer's key its own rows, an analyst key and the admin
//! token every row. The rows are computed up to `sql.max_rows` within the query's limits, then
//! streamed out as they are encoded; `Imagelake-Truncated` and `Imagelake-Rows` say how many
//! came and whether more were cut (the JSON body says it too).

use std::sync::Arc;

use axum::{
    Extension, Json,
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use imagelake_core::{ErrorCode, records::KeyRole};
use imagelake_runtime::AppState;
use imagelake_sql::{
    Asker, QueryEngine, QueryError, SharedEngine, Viewer, datafusion::arrow::error::ArrowError,
    format::Format, query::Position,
};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::{
    auth::Caller,
    error::{ApiError, JsonBody},
};

/// The query engine of the process, shared with the Postgres wire.
#[derive(Clone, Default)]
pub struct SqlDoor(SharedEngine);

impl SqlDoor {
    async fn engine(&self, state: &AppState) -> Result<Arc<QueryEngine>, ApiError> {
        self.0
            .get(state)
            .await
            .map_err(|e| ApiError::internal(&format!("{e:#}")))
    }

    /// The engine, for the other doors of the process.
    pub fn shared(&self) -> SharedEngine {
        self.0.clone()
    }
}

/// The SQL door's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(query), components(schemas(SqlRequest)))]
pub struct SqlDoc;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One read-only statement: `SELECT`, `WITH`, `VALUES`, `SHOW TABLES`, `DESCRIBE`, `EXPLAIN`.
    pub sql: String,
    /// Values of `$1`, `$2`, ...: strings, numbers, booleans or null.
    #[serde(default)]
    pub params: Vec<serde_json::Value>,
}

/// Runs one read-only SQL statement over the lake.
#[utoipa::path(post, path = "/v1/sql", tag = "sql", security(("bearer" = [])), request_body = SqlRequest,
    responses(
        (status = 200, description = "`{\"columns\": [{\"name\", \"type\"}], \"rows\": [[...]], \"row_count\", \"truncated\"}`; with `Accept: text/csv`, `application/x-ndjson` or `application/vnd.apache.arrow.stream` those formats, with the headers `Imagelake-Rows` and `Imagelake-Truncated`"),
        (status = 400, body = super::ErrorBody, description = "`invalid_sql` (with `position` when known) or `forbidden_statement` (anything but a query)"),
        (status = 403, body = super::ErrorBody, description = "an ingest key"),
        (status = 408, body = super::ErrorBody, description = "`query_timeout`: past `sql.timeout`"),
        (status = 413, body = super::ErrorBody, description = "`query_too_large`: past `sql.max_memory_bytes`"),
        (status = 429, body = super::ErrorBody, description = "`rate_limited`: the key's request rate or its queries at once")))]
pub async fn query(
    caller: Caller,
    State(state): State<AppState>,
    Extension(door): Extension<SqlDoor>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SqlRequest>,
) -> Result<Response, ApiError> {
    let asker = asker(caller)?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::from_accept(accept).unwrap_or(Format::Json);
    let engine = door.engine(&state).await?;
    let answer = match engine.run(&asker, &body.sql, &body.params).await {
        Ok(answer) => answer,
        Err(e) => return Ok(refusal(&e)),
    };
    let (rows, truncated) = (answer.rows, answer.truncated);
    let pieces = format
        .encode(answer)
        .map_err(|e| match e {
            ArrowError::CsvError(message) => ApiError::invalid(message),
            e => ApiError::internal(&e),
        })?
        .map(|piece| {
            piece
                .map(axum::body::Bytes::from)
                .map_err(std::io::Error::other)
        });
    let mut response = Response::new(Body::from_stream(futures::stream::iter(pieces)));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    h.insert("imagelake-rows", HeaderValue::from(rows));
    h.insert(
        "imagelake-truncated",
        HeaderValue::from_static(if truncated { "true" } else { "false" }),
    );
    Ok(response)
}

fn asker(caller: Caller) -> Result<Asker, ApiError> {
    let (viewer, key) = match caller {
        Caller::Admin => (Viewer::Admin, "admin".to_owned()),
        Caller::Customer { id, key } => (Viewer::Customer(id), key.to_string()),
        Caller::Service {
            role: KeyRole::Analyst,
            key,
        } => (Viewer::Analyst, key.to_string()),
        Caller::Service { role, .. } => {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "an {} key may not query the lake; use an analyst key",
                    role.as_str()
                ),
            ));
        }
    };
    Ok(Asker {
        viewer,
        key,
        door: "http",
    })
}

/// A refused query in the API's error format, with the position in the SQL when known.
fn refusal(e: &QueryError) -> Response {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        code: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        position: Option<Position>,
    }
    let status = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let body = Body {
        code: e.code.as_str(),
        message: &e.message,
        position: e.position,
    };
    let mut response = (status, Json(serde_json::json!({ "error": body }))).into_response();
    response.extensions_mut().insert(e.code);
    if e.code == ErrorCode::RateLimited {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(1));
    }
    response
}

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
use imagelake_core::ErrorCode;
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
#[openapi(paths(query, quarantine), components(schemas(SqlRequest, Quarantined)))]
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
        (status = 504, body = super::ErrorBody, description = "`query_timeout`: past `sql.timeout`"),
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
    caller.may_query()?;
    let (viewer, key) = match caller {
        Caller::Admin => (Viewer::Admin, "admin".to_owned()),
        Caller::Customer { id, key } => (Viewer::Customer(id), key.to_string()),
        Caller::Service { key, .. } => (Viewer::Analyst, key.to_string()),
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

/// One hour of a table's quarantine.
#[derive(serde::Serialize, ToSchema)]
pub struct Quarantined {
    table: String,
    /// `2026-11-30T10`.
    hour: String,
    /// Each refused record: `received_at`, `line` (in its request), `reason` and `raw` (the
    /// record as sent, cut at 64 KiB), oldest first.
    #[schema(value_type = Vec<Object>)]
    records: Vec<serde_json::Value>,
    /// More records than `sql.max_rows` were refused in the hour; the first are here.
    truncated: bool,
}

/// The records a lake table refused in one hour, with the reasons, read through the query
/// layer from `quarantine.<table>`.
#[utoipa::path(get, path = "/v1/admin/lake/quarantine/{table}", tag = "lake", security(("bearer" = [])),
    params(("table" = String, Path, description = "a lake table"),
           ("hour" = String, Query, description = "the hour, `2026-11-30T10` (UTC)")),
    responses((status = 200, body = Quarantined, description = "`records` is empty when the hour has none"),
        (status = 400, body = super::ErrorBody, description = "`invalid_request`: no or a bad `hour`"),
        (status = 404, body = super::ErrorBody, description = "not a table name; or called with a customer key")))]
pub async fn quarantine(
    _: crate::auth::Admin,
    State(state): State<AppState>,
    Extension(door): Extension<SqlDoor>,
    axum::extract::Path(table): axum::extract::Path<String>,
    axum::extract::Query(params): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Json<Quarantined>, ApiError> {
    let table = imagelake_core::paths::LakeTable::parse(&table)
        .map_err(|_| ApiError::not_found("no such table"))?;
    let hour_text = params.get("hour").map(String::as_str).unwrap_or_default();
    let hour = chrono::NaiveDateTime::parse_from_str(&format!("{hour_text}:00"), "%Y-%m-%dT%H:%M")
        .map_err(|_| {
            ApiError::invalid("query parameter `hour` must be an hour such as 2026-11-30T10")
        })?
        .and_utc();
    let empty = Quarantined {
        table: table.to_string(),
        hour: hour_text.to_owned(),
        records: Vec::new(),
        truncated: false,
    };
    let folder = imagelake_core::paths::quarantine_partition(&table, hour);
    let mut listing = state.objects.list(Some(&folder));
    if futures::StreamExt::next(&mut listing).await.is_none() {
        return Ok(Json(empty));
    }
    let at = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let sql = format!(
        "SELECT received_at, line, reason, raw FROM quarantine.\"{table}\" \
         WHERE dt = '{day}' AND received_at >= TIMESTAMP '{from}' AND received_at < TIMESTAMP '{to}' \
         ORDER BY received_at, line",
        day = hour.format("%Y-%m-%d"),
        from = at(hour),
        to = at(hour + chrono::Duration::hours(1)),
    );
    let admin = asker(Caller::Admin)?;
    let answer = door
        .engine(&state)
        .await?
        .run(&admin, &sql, &[])
        .await
        .map_err(|e| ApiError::new(e.code, e.message))?;
    let truncated = answer.truncated;
    let mut lines = Vec::new();
    for piece in Format::Ndjson
        .encode(answer)
        .map_err(|e| ApiError::internal(&e))?
    {
        lines.extend(piece.map_err(|e| ApiError::internal(&e))?);
    }
    let records = lines
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(serde_json::from_slice)
        .collect::<Result<_, _>>()
        .map_err(|e| ApiError::internal(&e))?;
    Ok(Json(Quarantined {
        records,
        truncated,
        ..empty
    }))
}

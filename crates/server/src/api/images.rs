//! Uploading, reading, listing and deleting a customer's images. Another customer's ids, expired
//! images and malformed ids all answer the same `404`, so existence never leaks.

use std::collections::HashMap;

use axum::{
    Json,
    body::Body,
    extract::{Path, Query, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use imagelake_core::{
    CustomerId, ErrorCode, ImageId,
    paths::{self, RenditionKind},
    records::{Image, ImageStatus, Source},
};
use imagelake_metadata::{Cursor, ImageQuery, Removal};
use object_store::{GetOptions, path::Path as ObjectPath};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::{
    multipart::{self, FileParts, MAX_PARTS},
    paging::{self, After, decode_cursor, encode_cursor},
    parse_id,
};
use imagelake_runtime::{
    AppState, Error,
    ingest::{self, Accepted, Upload, clean_filename},
    sweeper::remove_image,
};

use crate::{
    auth::{Caller, CustomerCaller, RateKey},
    error::ApiError,
};

/// The renditions an image has.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum RenditionName {
    Thumb,
    Preview,
}

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

/// One page of images, newest first.
#[derive(Serialize, ToSchema)]
pub struct ImagePage {
    #[schema(value_type = Vec<super::ImageRecord>)]
    images: Vec<Image>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

/// Per-file outcomes of a multipart upload.
#[derive(Serialize, ToSchema)]
pub struct BatchResults {
    /// One for each `file` part, in order.
    #[schema(value_type = Vec<BatchResult>)]
    results: Vec<Value>,
}

/// The outcome of one part of a multipart upload: its `image` (status 200 or 201, as a single
/// upload answers) or its `error` (the status and error a single upload would get).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct BatchResult {
    filename: Option<String>,
    status: u16,
    image: Option<super::ImageRecord>,
    error: Option<super::docs::ErrorDetail>,
}

/// The answer `200` carries: an image the customer already had, or a multipart batch.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum UploadAnswer {
    Duplicate(Box<super::ImageRecord>),
    Batch(BatchResults),
}

/// Image bytes as the body.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct ImageBytes(Vec<u8>);

/// Several images at once.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// One part per image, each with its file name.
    #[schema(value_type = Vec<String>, format = Binary, min_items = 1)]
    file: Vec<Vec<u8>>,
}

/// Uploads an image (raw body) or several (`multipart/form-data` with `file` parts).
#[utoipa::path(post, path = "/v1/images", tag = "images", security(("bearer" = [])),
    params(("filename" = Option<String>, Query, description = "original file name, kept as metadata"),
           ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$",
            description = "1-255 visible ASCII characters; a repeat gets the first answer again, with `Idempotent-Replayed: true`")),
    request_body(content(
        (ImageBytes = "application/octet-stream"),
        (UploadForm = "multipart/form-data")),
        description = "the image bytes (JPEG, PNG, WebP or GIF; the format comes from the bytes), or several as `file` parts"),
    responses(
        (status = 201, body = super::ImageRecord, description = "stored; processing follows"),
        (status = 200, body = UploadAnswer, description = "the same bytes are already stored (`duplicate: true`), or a multipart batch: one result per part, the last one the refusal that ended it early, if any"),
        (status = 400, body = super::ErrorBody, description = "`invalid_request`: an empty body, a multipart body without a `file` part, an unknown query parameter, a malformed `Idempotency-Key` or one on a multipart body, or an admin token (uploads act for a customer)"),
        (status = 409, body = super::ErrorBody, description = "`conflict`: the `Idempotency-Key` was used with another body"),
        (status = 413, body = super::ErrorBody, description = "`payload_too_large`: over `max_body_bytes`"),
        (status = 415, body = super::ErrorBody, description = "`unsupported_media_type`: not JPEG, PNG, WebP or GIF"),
        (status = 422, body = super::ErrorBody, description = "`pixel_limit_exceeded` (the canvas or a frame is over `max_pixels`) or `decode_limit_exceeded` (decoding it would need more than `max_decode_bytes`)"),
        (status = 503, body = super::ErrorBody, description = "`unavailable`: uploads in progress hold the whole upload memory budget; see `Retry-After`")))]
pub async fn upload(
    CustomerCaller(customer): CustomerCaller,
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let answered = receive(&state, customer, query, request).await;
    if let Err(Refused(refusal)) = &answered {
        let bytes = declared.unwrap_or(0);
        ingest::refused(&state, customer, Source::Api, &refusal.0, bytes, None).await;
    }
    answered.map_err(|Refused(e)| e)
}

/// An upload refused before it reached `ingest::accept` (which records its own refusals), so
/// the handler records `upload.refused` for it.
struct Refused(ApiError);

impl<E: Into<ApiError>> From<E> for Refused {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

/// Reads the body within the limits and hands it to `ingest::accept`: one image, or a
/// multipart batch.
async fn receive(
    state: &AppState,
    customer: CustomerId,
    query: HashMap<String, String>,
    request: Request,
) -> Result<Response, Refused> {
    if let Some(field) = query.keys().find(|k| *k != "filename") {
        return Err(ApiError::invalid(format!(
            "unknown query parameter `{field}`; only `filename` is accepted"
        ))
        .into());
    }
    let limit = state.settings.limits.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(limit).into());
    }
    let idempotency_key = request
        .headers()
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| ApiError::invalid("Idempotency-Key must be ASCII"))
        })
        .transpose()?;
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if is_multipart && idempotency_key.is_some() {
        return Err(ApiError::invalid(
            "Idempotency-Key is not supported on multipart uploads; upload files one by one to use it",
        )
        .into());
    }
    let key = match request.extensions().get::<Caller>() {
        Some(Caller::Customer { key, .. }) => *key,
        _ => return Err(ApiError::internal(&"upload without a customer key").into()),
    };
    // Wait for room before reading the body: the bodies held at once stay within the budget,
    // and within this key's share of it.
    let wait = state.settings.limits.body_idle_timeout.0;
    let _room = state
        .upload_budget
        .reserve(key, declared.unwrap_or(limit), wait)
        .await
        .map_err(|busy| Error::busy(busy, wait))?;
    let (parts, body) = request.into_parts();
    let limited = Body::new(Limited::new(
        body,
        usize::try_from(limit).unwrap_or(usize::MAX),
    ));
    let request = Request::from_parts(parts, limited);
    if is_multipart {
        // A batch records the refusals of its parts itself.
        let answered = upload_batch(state, customer, request).await;
        return Ok(answered.unwrap_or_else(IntoResponse::into_response));
    }
    let bytes = read_body(request.into_body(), declared, limit).await?;
    let filename = query.get("filename").and_then(|f| clean_filename(f));
    let accepted = ingest::accept(
        state,
        Upload {
            customer,
            bytes,
            filename,
            idempotency_key,
            source: Source::Api,
            delivery: None,
        },
    )
    .await;
    match accepted {
        Ok(accepted) => Ok(answer(accepted)),
        // `accept` recorded this refusal itself.
        Err(refusal) => Ok(ApiError::from(refusal).into_response()),
    }
}

/// The answer to an accepted upload: `201` with the record, `200` with the image the customer
/// already had, or the first answer to the idempotency key, byte for byte, marked replayed.
fn answer(accepted: Accepted) -> Response {
    match accepted {
        Accepted::Replayed(replay) => {
            let status = StatusCode::from_u16(replay.status).unwrap_or(StatusCode::CREATED);
            let mut response = (status, replay.body).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
            response
        }
        fresh => {
            let status = StatusCode::from_u16(fresh.status()).unwrap_or(StatusCode::CREATED);
            (status, Json(fresh.body())).into_response()
        }
    }
}

/// Reads the body into one buffer sized from `Content-Length`, so a body is held once, not
/// once in chunks and again when they are joined.
async fn read_body(mut body: Body, declared: Option<u64>, limit: u64) -> Result<Bytes, ApiError> {
    let capacity = usize::try_from(declared.unwrap_or(0).min(limit)).unwrap_or(0);
    let mut buffer = bytes::BytesMut::with_capacity(capacity);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::unreadable_body(&e, limit))?;
        if let Ok(data) = frame.into_data() {
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer.freeze())
}

/// A multipart body: every `file` part is one upload, read and accepted in turn, so one part is
/// held in memory at a time. Each part after the first takes a request from the key's rate
/// limit, as a single upload would. A part over the rate or beyond [`MAX_PARTS`], or a body
/// that breaks off (too large, too slow, malformed) after some parts were stored, ends the
/// batch with that refusal as the last result: the parts before it are stored and listed, and
/// the rest of the body is not read.
async fn upload_batch(
    state: &AppState,
    customer: CustomerId,
    request: Request,
) -> Result<Response, ApiError> {
    let limit = state.settings.limits.max_body_bytes;
    let rate_key = request.extensions().get::<RateKey>().cloned();
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let multipart_error = |e: multipart::Error| multipart::refusal(&e, limit);
    let mut parts = match FileParts::new(&content_type, request.into_body()) {
        Ok(parts) => parts,
        Err(e) => {
            let refusal = multipart_error(e);
            ingest::refused(state, customer, Source::Api, &refusal.0, 0, None).await;
            return Err(refusal);
        }
    };
    let mut results = Vec::new();
    let mut ended = None;
    loop {
        let part = match parts.next().await {
            Ok(Some(part)) => part,
            Ok(None) => break,
            Err(e) => {
                ended = Some((None, multipart_error(e)));
                break;
            }
        };
        let filename = part.filename();
        if let Err(refused) = next_part_allowed(state, results.len(), rate_key.as_ref()) {
            ended = Some((filename, refused));
            break;
        }
        let bytes = match part.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => {
                ended = Some((filename, multipart_error(e)));
                break;
            }
        };
        let outcome = ingest::accept(
            state,
            Upload {
                customer,
                bytes,
                filename: filename.clone(),
                idempotency_key: None,
                source: Source::Api,
                delivery: None,
            },
        )
        .await;
        results.push(match outcome {
            Ok(accepted) => {
                json!({"filename": filename, "status": accepted.status(), "image": accepted.body()})
            }
            Err(e) => {
                json!({"filename": filename, "status": e.http_status(), "error": e.body()["error"]})
            }
        });
    }
    let unread = ended.is_some();
    if let Some((_, refusal)) = &ended {
        ingest::refused(state, customer, Source::Api, &refusal.0, 0, None).await;
    }
    match ended {
        // Nothing was stored: the request as a whole is refused.
        Some((_, refused)) if results.is_empty() => return Err(refused),
        Some((filename, refused)) => results.push(
            json!({"filename": filename, "status": refused.status().as_u16(), "error": refused.body()["error"]}),
        ),
        None if results.is_empty() => {
            let refusal = ApiError::invalid("the multipart body has no `file` part");
            ingest::refused(state, customer, Source::Api, &refusal.0, 0, None).await;
            return Err(refusal);
        }
        None => {}
    }
    let mut response = (StatusCode::OK, Json(json!({"results": results}))).into_response();
    if unread {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

/// Whether the part after `parts` parts may be read.
fn next_part_allowed(
    state: &AppState,
    parts: usize,
    rate_key: Option<&RateKey>,
) -> Result<(), ApiError> {
    if parts >= MAX_PARTS {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "at most {MAX_PARTS} file parts in one request; this part and the rest were not read"
            ),
        ));
    }
    match rate_key {
        Some(key) if parts > 0 => Ok(state.limiter.check(&key.0, state.clock.now())?),
        _ => Ok(()),
    }
}

/// The caller's live image, or `not_found`.
async fn own_image(
    state: &AppState,
    customer: CustomerId,
    raw_id: &str,
) -> Result<Image, ApiError> {
    let id: ImageId = parse_id(raw_id)?;
    match state.store.get_image(id).await? {
        Some(image) if image.customer_id == customer && !image.is_expired(state.clock.now()) => {
            Ok(image)
        }
        _ => Err(ApiError::not_found("no such image")),
    }
}

/// An image record.
#[utoipa::path(get, path = "/v1/images/{id}", tag = "images", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = super::ImageRecord),
        (status = 400, body = super::ErrorBody, description = "an admin token: image endpoints act for a customer"),
        (status = 404, body = super::ErrorBody, description = "no such image, another customer's, or expired")))]
pub async fn get_one(
    CustomerCaller(customer): CustomerCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Image>, ApiError> {
    Ok(Json(own_image(&state, customer, &id).await?))
}

/// Deletes an image, its renditions and its record.
#[utoipa::path(delete, path = "/v1/images/{id}", tag = "images", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)),
    responses((status = 204, description = "deleted everywhere"),
        (status = 400, body = super::ErrorBody, description = "an admin token: image endpoints act for a customer"),
        (status = 404, body = super::ErrorBody, description = "no such image, another customer's, or expired")))]
pub async fn delete(
    CustomerCaller(customer): CustomerCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let image = own_image(&state, customer, &id).await?;
    remove_image(&state, &image, Removal::Deleted)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// The original bytes as uploaded.
#[utoipa::path(get, path = "/v1/images/{id}/original", tag = "images", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = ImageBytes, content_type = "image/*", description = "the bytes, with `ETag` and `Cache-Control`"),
        (status = 304, description = "`If-None-Match` matched"),
        (status = 400, body = super::ErrorBody, description = "an admin token: image endpoints act for a customer"),
        (status = 404, body = super::ErrorBody, description = "no such image, another customer's, or expired")))]
pub async fn original(
    CustomerCaller(customer): CustomerCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let image = own_image(&state, customer, &id).await?;
    let key = paths::original(image.customer_id, image.id);
    serve_object(
        &state,
        &key,
        &image.content_type,
        &format!("\"{}\"", image.sha256),
        &headers,
    )
    .await
}

/// A rendition (`thumb`: 256 px, `preview`: 1024 px on the longest side).
#[utoipa::path(get, path = "/v1/images/{id}/renditions/{kind}", tag = "images", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid), ("kind" = RenditionName, Path)),
    responses((status = 200, body = ImageBytes, content_type = "image/*", description = "JPEG, or PNG for images with transparency"),
        (status = 304, description = "`If-None-Match` matched"),
        (status = 400, body = super::ErrorBody, description = "an admin token: image endpoints act for a customer"),
        (status = 404, body = super::ErrorBody, description = "no such image (another customer's, expired), no such rendition, or not processed (yet)")))]
pub async fn rendition(
    CustomerCaller(customer): CustomerCaller,
    State(state): State<AppState>,
    Path((id, kind)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let image = own_image(&state, customer, &id).await?;
    let kind = RenditionKind::parse(&kind)
        .ok_or_else(|| ApiError::not_found("no such rendition; use thumb or preview"))?;
    let info = image
        .facts
        .as_ref()
        .and_then(|f| f.renditions.get(kind.as_str()))
        .ok_or_else(|| ApiError::not_found("this image has no renditions (yet); see its status"))?;
    let key = paths::rendition(image.customer_id, image.id, kind);
    let etag = format!("\"{}-{}-{}\"", image.id, kind.as_str(), info.bytes);
    serve_object(&state, &key, &info.content_type, &etag, &headers).await
}

async fn serve_object(
    state: &AppState,
    key: &ObjectPath,
    content_type: &str,
    etag: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let cache = [
        (
            header::ETAG,
            HeaderValue::from_str(etag).map_err(|e| ApiError::internal(&e))?,
        ),
        // Private data whose bytes never change under one id.
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, max-age=86400, immutable"),
        ),
    ];
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    let result = match state.objects.get_opts(key, GetOptions::default()).await {
        Ok(result) => result,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(ApiError::not_found("no such image"));
        }
        Err(e) => return Err(e.into()),
    };
    let length = result.meta.size;
    let stream = result.into_stream();
    let mut response = (StatusCode::OK, cache, Body::from_stream(stream)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).map_err(|e| ApiError::internal(&e))?,
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// The caller's images, newest first, optionally within `[since, until)`, of one status, or
/// whose file name contains `q` (any case).
#[utoipa::path(get, path = "/v1/images", tag = "images", security(("bearer" = [])),
    params(("since" = Option<String>, Query, format = DateTime, description = "RFC 3339, inclusive"),
           ("until" = Option<String>, Query, format = DateTime, description = "RFC 3339, exclusive"),
           ("status" = Option<ImageStatus>, Query, description = "only images in this state"),
           ("q" = Option<String>, Query, description = "only images whose file name contains this, in any case"),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "default 50"),
           ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page; empty or absent for the first")),
    responses((status = 200, body = ImagePage, description = "With `status` or `q`, a page looks at no more than 5,000 images: it may hold fewer than `limit` and still have a `next_cursor`"),
        (status = 400, body = super::ErrorBody, description = "`invalid_request`: a bad or unknown query parameter, a cursor this API did not return, or an admin token")))]
pub async fn list(
    CustomerCaller(customer): CustomerCaller,
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<ImagePage>, ApiError> {
    let mut query = ImageQuery {
        since: None,
        until: None,
        after: None,
        limit: DEFAULT_LIMIT,
        now: state.clock.now(),
    };
    let mut filter = Filter::default();
    for (name, value) in &params {
        match name.as_str() {
            "since" => query.since = Some(parse_time(name, value)?),
            "until" => query.until = Some(parse_time(name, value)?),
            "limit" => query.limit = parse_limit(value)?,
            "status" if value.is_empty() => {}
            "status" => filter.status = Some(parse_status(value)?),
            "q" if value.is_empty() => {}
            "q" => filter.name = Some(value.to_lowercase()),
            // An empty cursor is the first page, like no cursor.
            "cursor" if value.is_empty() => {}
            "cursor" => {
                let (uploaded_at, id) = decode_cursor(value)?;
                query.after = Some(Cursor { uploaded_at, id });
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown query parameter `{other}`; use since, until, status, q, limit or cursor"
                )));
            }
        }
    }
    let (images, next) = filtered_page(&state, customer, query, &filter).await?;
    Ok(Json(ImagePage {
        images,
        next_cursor: next.map(|c| encode_cursor(c.uploaded_at, &c.id)),
    }))
}

/// What a listing keeps beyond its time window.
#[derive(Default)]
struct Filter {
    status: Option<ImageStatus>,
    /// Lowercase.
    name: Option<String>,
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.status.is_none() && self.name.is_none()
    }

    fn keeps(&self, image: &Image) -> bool {
        self.status.is_none_or(|s| s == image.status)
            && self.name.as_ref().is_none_or(|name| {
                image
                    .filename
                    .as_ref()
                    .is_some_and(|f| f.to_lowercase().contains(name))
            })
    }
}

/// Up to `query.limit` of the customer's images the filter keeps, and where the next page
/// starts.
async fn filtered_page(
    state: &AppState,
    customer: CustomerId,
    query: ImageQuery,
    filter: &Filter,
) -> Result<(Vec<Image>, Option<Cursor>), ApiError> {
    let after = query.after.map(|c| (c.uploaded_at, c.id));
    let fetch = |after: After<ImageId>, limit| {
        let query = ImageQuery {
            after: after.map(|(uploaded_at, id)| Cursor { uploaded_at, id }),
            limit,
            ..query.clone()
        };
        async move { Ok(state.store.list_images(Some(customer), &query).await?) }
    };
    let (page, next) = paging::filtered_page(
        query.limit,
        after,
        !filter.is_empty(),
        fetch,
        |image: &Image| (image.uploaded_at, image.id),
        |image| filter.keeps(image),
    )
    .await?;
    Ok((
        page,
        next.map(|(uploaded_at, id)| Cursor { uploaded_at, id }),
    ))
}

fn parse_status(value: &str) -> Result<ImageStatus, ApiError> {
    serde_json::from_value(serde_json::Value::String(value.to_owned())).map_err(|_| {
        ApiError::invalid(
            "query parameter `status` must be pending_upload, received, processed or failed",
        )
    })
}

fn parse_time(name: &str, value: &str) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| imagelake_core::clock::to_micros_precision(t.to_utc()))
        .map_err(|_| {
            ApiError::invalid(format!(
                "query parameter `{name}` must be an RFC 3339 time such as 2026-01-31T00:00:00Z"
            ))
        })
}

fn parse_limit(value: &str) -> Result<usize, ApiError> {
    paging::parse_limit("limit", value, MAX_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert!(
            parse_limit("0").is_err() && parse_limit("1001").is_err() && parse_limit("x").is_err()
        );
        assert!(
            parse_time("since", "yesterday")
                .unwrap_err()
                .message
                .contains("`since`")
        );
    }
}

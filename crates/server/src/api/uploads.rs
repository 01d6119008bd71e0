//! `POST /v1/uploads`: a signed URL to put one image straight into the bucket.

use axum::{Json, extract::State, http::StatusCode};

use imagelake_runtime::{
    AppState,
    direct::{self, UploadRequest, UploadTicket},
};

use crate::{
    auth::CustomerCaller,
    error::{ApiError, JsonBody},
};

/// Records an upload and answers a signed URL the customer `PUT`s the bytes to. Processing
/// follows the bucket's notification; `GET /v1/images/{id}` shows `pending_upload` until the
/// bytes arrive. Needs the GCS backend with a signing key or IAM signing.
#[utoipa::path(post, path = "/v1/uploads", tag = "images", security(("bearer" = [])), request_body = UploadRequest,
    responses((status = 201, body = UploadTicket),
        (status = 400, body = super::ErrorBody, description = "`invalid_request`: a field is missing, unknown or invalid; or an admin token (uploads act for a customer)"),
        (status = 404, body = super::ErrorBody, description = "direct uploads are not enabled here (they need the GCS backend and a signer)"),
        (status = 413, body = super::ErrorBody, description = "`payload_too_large`: `bytes` is over `max_body_bytes`, or the JSON body over 64 KiB"),
        (status = 415, body = super::ErrorBody, description = "`unsupported_media_type`: `content_type` is not an image type imagelake decodes")))]
pub async fn create(
    CustomerCaller(customer): CustomerCaller,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<UploadRequest>,
) -> Result<(StatusCode, Json<UploadTicket>), ApiError> {
    let Some(urls) = state.upload_urls.clone() else {
        return Err(ApiError::not_found(
            "direct uploads are not enabled here: they need objects.backend = \"gcs\" with objects.signing_key_file or objects.signing_email",
        ));
    };
    let ticket = direct::issue(&state, &urls, customer, request).await?;
    Ok((StatusCode::CREATED, Json(ticket)))
}

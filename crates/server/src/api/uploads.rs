//! `POST /v1/uploads`: a signed URL to put one image straight into the bucket.

use axum::{Json, extract::State, http::StatusCode};

use crate::{
    auth::CustomerCaller,
    direct::{self, UploadRequest, UploadTicket},
    error::{ApiError, JsonBody},
    state::AppState,
};

/// Records an upload and answers a signed URL the customer `PUT`s the bytes to. Processing
/// follows the bucket's notification; `GET /v1/images/{id}` shows `pending_upload` until the
/// bytes arrive. Needs the GCS backend with a signing key or IAM signing.
#[utoipa::path(post, path = "/v1/uploads", tag = "images", security(("bearer" = [])), request_body = UploadRequest,
    responses((status = 201, body = UploadTicket), (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody, description = "direct uploads are not enabled"),
        (status = 413, body = super::ErrorBody), (status = 415, body = super::ErrorBody)))]
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

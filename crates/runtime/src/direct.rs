//! Direct-to-bucket uploads: the API makes the record (`pending_upload`) and hands the customer
//! a signed URL for exactly one object, `originals/{customer}/{image}`, so large files never pass
//! through the API. The URL's signed headers pin the content type, the length, the customer and
//! image metadata and create-only, so it cannot write anywhere else or write anything else. The
//! bucket's notification then drives processing like any upload; the checks an API upload makes
//! before it answers (format, pixel limit, duplicate) end the record as `failed` with the same
//! codes.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use imagelake_core::{
    CustomerId, Timestamp, paths,
    records::{Image, ImageStatus},
};
use imagelake_metadata::{InsertOutcome, NewImage};
use object_store::path::Path as ObjectPath;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    error::Error,
    ingest::{clean_filename, new_image},
    state::AppState,
};

/// Signs URLs for one object each; the GCS implementation lives with the GCP backends.
#[async_trait]
pub trait UploadUrls: Send + Sync + 'static {
    /// A URL that allows `PUT` of `object` with exactly `headers`, until `now + expires`.
    async fn put_url(
        &self,
        object: &ObjectPath,
        headers: &BTreeMap<String, String>,
        expires: Duration,
        now: Timestamp,
    ) -> Result<String, Error>;

    /// Where the signed URLs point, as a Content-Security-Policy source: scheme, host and the
    /// bucket's path (`https://storage.googleapis.com/my-bucket/`), or none when the endpoint
    /// is not a plain `http(s)://host[:port]`.
    fn csp_source(&self) -> Option<String>;
}

/// What the customer is about to upload.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    pub filename: Option<String>,
    /// `image/jpeg`, `image/png`, `image/webp` or `image/gif`.
    #[schema(value_type = ImageContentType)]
    pub content_type: String,
    /// The exact size of the file in bytes (a number with no fraction), at most
    /// `max_body_bytes`.
    #[serde(deserialize_with = "whole_number")]
    #[schema(minimum = 1)]
    pub bytes: u64,
}

/// The image types a direct upload may declare.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub enum ImageContentType {
    #[serde(rename = "image/jpeg")]
    Jpeg,
    #[serde(rename = "image/png")]
    Png,
    #[serde(rename = "image/webp")]
    Webp,
    #[serde(rename = "image/gif")]
    Gif,
}

/// A JSON number with no fractional part, written as an integer (`2345678`) or not
/// (`2345678.0`): JSON Schema counts both as integers, and so do many clients' encoders.
fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(n) = number.as_u64() {
        return Ok(n);
    }
    match number.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= 9_007_199_254_740_992.0 => Ok(f as u64),
        _ => Err(serde::de::Error::custom(format!(
            "expected a whole number of bytes, got {number}"
        ))),
    }
}

/// Where and how to send the bytes.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadTicket {
    /// The image id; `GET /v1/images/{id}` follows its processing.
    pub id: String,
    pub upload_url: String,
    pub method: &'static str,
    /// Send exactly these headers with the `PUT`; the signature covers them.
    pub headers: BTreeMap<String, String>,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
}

/// Records the upload and signs its URL.
pub async fn issue(
    state: &AppState,
    urls: &Arc<dyn UploadUrls>,
    customer: CustomerId,
    request: UploadRequest,
) -> Result<UploadTicket, Error> {
    // Exactly one of the four types, as the signed `Content-Type` header must be.
    let format = imagelake_imaging::Format::ALL
        .into_iter()
        .find(|f| f.content_type() == request.content_type)
        .ok_or_else(
        || {
            Error::new(
                imagelake_core::ErrorCode::UnsupportedMediaType,
                format!(
                    "content_type {:?} is not accepted; send image/jpeg, image/png, image/webp or image/gif",
                    request.content_type
                ),
            )
        },
    )?;
    if request.bytes == 0 {
        return Err(Error::invalid("bytes must be the file's size, above 0"));
    }
    if request.bytes > state.settings.limits.max_body_bytes {
        return Err(Error::too_large(state.settings.limits.max_body_bytes));
    }
    let now = state.clock.now();
    let image = new_image(
        state,
        customer,
        ImageStatus::PendingUpload,
        format,
        request.bytes,
        request.filename.as_deref().and_then(clean_filename),
        imagelake_core::records::Source::Direct,
    );
    let headers = signed_headers(&image);
    let ttl = state.settings.objects.upload_url_ttl.0;
    let object = paths::original(customer, image.id);
    let upload_url = urls.put_url(&object, &headers, ttl, now).await?;
    let new = NewImage {
        image: image.clone(),
        idempotency: None,
    };
    match state.store.insert_image(&new, false).await? {
        InsertOutcome::Created => {}
        other => return Err(Error::internal(&format!("unexpected {other:?}"))),
    }
    state.metrics.upload("direct");
    tracing::info!(image_id = %image.id, customer_id = %customer, bytes = request.bytes, "direct upload issued");
    Ok(UploadTicket {
        id: image.id.to_string(),
        upload_url,
        method: "PUT",
        headers,
        expires_at: now + chrono::Duration::from_std(ttl).unwrap_or_default(),
    })
}

/// The headers the signed `PUT` must carry.
fn signed_headers(image: &Image) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("content-type".to_owned(), image.content_type.clone()),
        ("content-length".to_owned(), image.bytes.to_string()),
        ("x-goog-if-generation-match".to_owned(), "0".to_owned()),
        (
            "x-goog-meta-customer-id".to_owned(),
            image.customer_id.to_string(),
        ),
        ("x-goog-meta-image-id".to_owned(), image.id.to_string()),
    ])
}

//! One error type for every HTTP answer: `{"error": {"code", "message"}}` with the status that
//! goes with the code. Internal causes are logged with their chain and never shown to clients.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use imagelake_core::ErrorCode;
use imagelake_metadata::StoreError;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds to wait, for `rate_limited`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    pub fn too_large(limit: u64) -> Self {
        Self::new(
            ErrorCode::PayloadTooLarge,
            format!("request body is larger than the limit of {limit} bytes"),
        )
    }

    /// A request body that could not be read: over `limit`, too slow (`408`), or broken.
    pub fn unreadable_body(e: &(dyn std::error::Error + 'static), limit: u64) -> Self {
        if let Some(timeout) = find_cause::<crate::connections::BodyTimeout>(e) {
            return Self::new(ErrorCode::RequestTimeout, timeout.to_string());
        }
        if find_cause::<http_body_util::LengthLimitError>(e).is_some() {
            return Self::too_large(limit);
        }
        Self::invalid(format!("could not read the request body: {e}"))
    }

    /// No room for an upload body in time: `429` when the key's own uploads hold its share,
    /// `503` when all uploads hold the whole budget.
    pub fn busy(busy: crate::budget::Busy, waited: std::time::Duration) -> Self {
        let (code, message) = match busy {
            crate::budget::Busy::Key => (
                ErrorCode::RateLimited,
                "this key's uploads in progress hold its share of the upload memory budget",
            ),
            crate::budget::Busy::Total => (
                ErrorCode::Unavailable,
                "uploads in progress hold the whole upload memory budget",
            ),
        };
        let mut error = Self::new(
            code,
            format!(
                "{message}; waited {} s for room, retry later",
                waited.as_secs()
            ),
        );
        error.retry_after = Some(5);
        error
    }

    /// Logs the cause and answers a bare `internal`.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::Internal, "internal error; it was logged")
    }

    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"code": self.code.as_str(), "message": self.message}})
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        // The rest of a refused or abandoned body is not read (too slow, too large, no room for
        // it, over the rate): the connection cannot carry another request.
        if matches!(
            self.code,
            ErrorCode::RequestTimeout
                | ErrorCode::PayloadTooLarge
                | ErrorCode::Unavailable
                | ErrorCode::RateLimited
        ) {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::not_found("no such resource"),
            StoreError::AlreadyExists(what) => Self::conflict(format!("{what} already exists")),
            StoreError::Backend(_) => Self::internal(&e),
        }
    }
}

impl From<object_store::Error> for ApiError {
    fn from(e: object_store::Error) -> Self {
        Self::internal(&e)
    }
}

impl From<imagelake_imaging::ImagingError> for ApiError {
    fn from(e: imagelake_imaging::ImagingError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

/// The first error of type `T` in `e`'s chain of causes.
pub fn find_cause<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        source = err.source();
    }
    None
}

/// The largest JSON body (the default body limit of the router).
pub const JSON_LIMIT: u64 = 64 * 1024;

/// JSON bodies whose errors come back in the API's format, naming the field.
pub struct JsonBody<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    Self::Rejection::new(
                        ErrorCode::PayloadTooLarge,
                        "JSON bodies are limited to 64 KiB",
                    )
                } else {
                    Self::Rejection::unreadable_body(&e, JSON_LIMIT)
                }
            })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
    }
}

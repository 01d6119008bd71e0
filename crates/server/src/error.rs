//! The system's [`Error`] as an HTTP answer: `{"error": {"code", "message"}}` with the status
//! that goes with the code, `Retry-After` where it helps, and `Connection: close` where part of
//! a body was left unread. Internal causes are logged with their chain and never shown.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use imagelake_core::ErrorCode;
use imagelake_runtime::error::{Error, find_cause};

/// An [`Error`] of the system, as an HTTP answer.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl std::ops::Deref for ApiError {
    type Target = Error;

    fn deref(&self) -> &Error {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut Error {
        &mut self.0
    }
}

impl<E: Into<Error>> From<E> for ApiError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(Error::new(code, message))
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self(Error::unauthorized(message))
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self(Error::not_found(message))
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self(Error::invalid(message))
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self(Error::conflict(message))
    }

    pub fn too_large(limit: u64) -> Self {
        Self(Error::too_large(limit))
    }

    /// Logs the cause and answers a bare `internal`.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        Self(Error::internal(cause))
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

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        // For the request's `api_requests` record.
        response.extensions_mut().insert(self.code);
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

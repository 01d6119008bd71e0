//! One error for every refusal and failure, in the vocabulary clients see: an [`ErrorCode`]
//! (which fixes the HTTP status and the Kafka dead-letter code), a message a client can act on,
//! and, where it helps, when to try again. The doors turn it into their own answers (the HTTP
//! API into `{"error": {"code", "message"}}`, the stream into dead-letter headers); internal
//! causes are logged with their chain here and never shown.

use imagelake_core::ErrorCode;
use imagelake_metadata::StoreError;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds to wait before trying again (`rate_limited`, `unavailable`).
    pub retry_after: Option<u64>,
}

impl Error {
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

    /// `{"error": {"code", "message"}}`
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"code": self.code.as_str(), "message": self.message}})
    }

    /// The HTTP status that goes with the code.
    pub fn http_status(&self) -> u16 {
        self.code.http_status()
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::not_found("no such resource"),
            StoreError::AlreadyExists(what) => Self::conflict(format!("{what} already exists")),
            StoreError::Backend(_) => Self::internal(&e),
        }
    }
}

impl From<object_store::Error> for Error {
    fn from(e: object_store::Error) -> Self {
        Self::internal(&e)
    }
}

impl From<imagelake_imaging::ImagingError> for Error {
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

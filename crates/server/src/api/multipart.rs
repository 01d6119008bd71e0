//! Reading a `multipart/form-data` upload: only its `file` parts, in order, one held at a time.
//!
//! `multer` is used directly (axum's extractor wraps it) because its fields own their stream, so
//! the walk over parts is a plain type the upload handler and the multipart fuzz target share:
//! what is fuzzed is what the API runs.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use imagelake_core::ErrorCode;
use imagelake_runtime::ingest::clean_filename;

use crate::error::ApiError;

pub use multer::Error;

/// The `file` parts one multipart body may carry.
pub const MAX_PARTS: usize = 100;

/// The `file` parts of one body; parts of other names are skipped unread.
pub struct FileParts(multer::Multipart<'static>);

/// One `file` part, its bytes not read yet.
pub struct FilePart(multer::Field<'static>);

/// What the client is told when its body cannot be read as parts: `408` or `413` when the body
/// was too slow or too large, `400 invalid_request` for anything malformed.
pub fn refusal(e: &Error, limit: u64) -> ApiError {
    let refused = ApiError::unreadable_body(e, limit);
    if refused.code == ErrorCode::InvalidRequest {
        ApiError::invalid(format!("invalid multipart body: {e}"))
    } else {
        refused
    }
}

impl FileParts {
    /// The parts of `body`, split by the boundary its `Content-Type` names.
    pub fn new(content_type: &str, body: Body) -> Result<Self, Error> {
        let boundary = multer::parse_boundary(content_type)?;
        Ok(Self(multer::Multipart::new(
            body.into_data_stream(),
            boundary,
        )))
    }

    /// The next `file` part, or `None` after the last.
    pub async fn next(&mut self) -> Result<Option<FilePart>, Error> {
        while let Some(field) = self.0.next_field().await? {
            if field.name() == Some("file") {
                return Ok(Some(FilePart(field)));
            }
        }
        Ok(None)
    }
}

impl FilePart {
    /// The part's filename as it is stored: cleaned, or none.
    pub fn filename(&self) -> Option<String> {
        self.0.file_name().and_then(clean_filename)
    }

    /// The part's bytes, in one buffer.
    pub async fn bytes(mut self) -> Result<Bytes, Error> {
        let mut buffer = BytesMut::new();
        while let Some(chunk) = self.0.chunk().await? {
            buffer.extend_from_slice(&chunk);
        }
        Ok(buffer.freeze())
    }
}

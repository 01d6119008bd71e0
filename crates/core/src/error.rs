//! The error codes clients see, shared by the HTTP API, processing failures and (later) the
//! Kafka dead-letter headers, so one vocabulary describes every refusal.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Unauthorized,
    /// The key is good but its role may not do this.
    Forbidden,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    PixelLimitExceeded,
    InvalidRequest,
    Conflict,
    RateLimited,
    Internal,
    /// The bytes looked like a supported image but could not be decoded (truncated, corrupt).
    CorruptImage,
    /// Decoding the image would need more memory than the whole decode budget.
    DecodeLimitExceeded,
    /// The client stopped sending the request body, or took longer than allowed.
    RequestTimeout,
    /// The server is at its capacity for the moment (the upload budget); retry later.
    Unavailable,
    /// SQL that does not parse, plan or run (unknown table or column, bad cast).
    InvalidSql,
    /// SQL that is not a query: the SQL doors are read-only.
    ForbiddenStatement,
    /// A query ran past the SQL timeout and was cancelled.
    QueryTimeout,
    /// A query needed more memory than the SQL memory cap.
    QueryTooLarge,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PixelLimitExceeded => "pixel_limit_exceeded",
            Self::InvalidRequest => "invalid_request",
            Self::Conflict => "conflict",
            Self::RateLimited => "rate_limited",
            Self::Internal => "internal",
            Self::CorruptImage => "corrupt_image",
            Self::DecodeLimitExceeded => "decode_limit_exceeded",
            Self::RequestTimeout => "request_timeout",
            Self::Unavailable => "unavailable",
            Self::InvalidSql => "invalid_sql",
            Self::ForbiddenStatement => "forbidden_statement",
            Self::QueryTimeout => "query_timeout",
            Self::QueryTooLarge => "query_too_large",
        }
    }

    /// The HTTP status that goes with the code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::PayloadTooLarge | Self::QueryTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::PixelLimitExceeded | Self::CorruptImage | Self::DecodeLimitExceeded => 422,
            Self::RequestTimeout => 408,
            // Google's APIs answer a deadline passed with 504 too; a 408 would be sent again
            // by browsers on a kept-alive connection, running the query twice.
            Self::QueryTimeout => 504,
            Self::Unavailable => 503,
            Self::InvalidRequest | Self::InvalidSql | Self::ForbiddenStatement => 400,
            Self::Conflict => 409,
            Self::RateLimited => 429,
            Self::Internal => 500,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

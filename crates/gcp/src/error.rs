//! What can go wrong talking to Google's APIs, sorted by what the caller should do about it:
//! treat the thing as absent, re-read and decide again, retry later, or give up.

use reqwest::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The resource does not exist.
    #[error("{0}: not found")]
    NotFound(String),
    /// A condition the request was made on (exists, generation, update time) no longer holds.
    #[error("{0}: precondition failed")]
    Precondition(String),
    /// The service or the network failed in a way that passes: the same request may succeed
    /// later (unreachable, timeouts, 429, 5xx).
    #[error("{service} unavailable: {message}")]
    Unavailable {
        service: &'static str,
        message: String,
    },
    /// The service refused the request as it stands (bad request, permission, conflict): sending
    /// it again will not help.
    #[error("{service} refused the request ({status}): {message}")]
    Refused {
        service: &'static str,
        status: u16,
        message: String,
    },
    /// Credentials that cannot be read or used.
    #[error("credentials: {0}")]
    Credentials(String),
    /// An answer or a message without the expected shape.
    #[error("malformed {what}: {message}")]
    Malformed { what: &'static str, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// The error an unsuccessful answer stands for; `context` names what was asked.
    pub(crate) fn from_status(
        service: &'static str,
        status: StatusCode,
        context: &str,
        body: impl std::fmt::Display,
    ) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::NotFound(context.to_owned()),
            StatusCode::PRECONDITION_FAILED => Self::Precondition(context.to_owned()),
            s if s == StatusCode::TOO_MANY_REQUESTS
                || s == StatusCode::REQUEST_TIMEOUT
                || s.is_server_error() =>
            {
                Self::Unavailable {
                    service,
                    message: format!("{context}: {s} {body}"),
                }
            }
            s => Self::Refused {
                service,
                status: s.as_u16(),
                message: format!("{context}: {body}"),
            },
        }
    }

    /// A request that got no answer.
    pub(crate) fn unreachable(service: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Unavailable {
            service,
            message: e.to_string(),
        }
    }

    pub(crate) fn malformed(what: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Malformed {
            what,
            message: e.to_string(),
        }
    }
}

impl From<Error> for imagelake_metadata::StoreError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound(_) => Self::NotFound,
            other => Self::Backend(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_sort_by_what_to_do() {
        let of = |s: u16| Error::from_status("Pub/Sub", StatusCode::from_u16(s).unwrap(), "x", "");
        assert!(matches!(of(404), Error::NotFound(_)));
        assert!(matches!(of(412), Error::Precondition(_)));
        for retryable in [408, 429, 500, 503] {
            assert!(of(retryable).is_retryable(), "{retryable}");
        }
        for refused in [400, 403, 409] {
            assert!(matches!(of(refused), Error::Refused { .. }), "{refused}");
        }
    }
}

//! One error type for the core, and its one mapping to HTTP status codes (PS3.18 §10.4.3 and
//! Table 8.5-1). Frontends render it; they never pick statuses of their own for core errors.

use http::StatusCode;

/// Everything that can go wrong while answering a WADO-RS request or deriving stored objects.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request is malformed: a bad UID, frame list, parameter or header (400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The target resource does not exist (404).
    #[error("not found: {0}")]
    NotFound(String),
    /// None of the acceptable media types can be produced (406). The message says what can be.
    #[error("not acceptable: {0}")]
    NotAcceptable(String),
    /// The method is not GET or HEAD (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// No valid credentials (401); `invalid` when a token was presented but is not valid.
    #[error("unauthorized: {reason}")]
    Unauthorized {
        /// Why.
        reason: String,
        /// A token was presented but is not valid.
        invalid: bool,
    },
    /// Valid credentials that may not read this (403).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A stored object is corrupt or inconsistent with its derived objects (500, logged).
    #[error("corrupt stored object {key}: {reason}")]
    Corrupt {
        /// The storage key of the object.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The storage backend failed (500, logged).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The search index failed (500, logged). One at a limit becomes [`Error::Busy`].
    #[error(transparent)]
    Index(IndexError),
    /// The upstream archive behind a read-through cache failed or answered nonsense (502).
    #[error("upstream archive: {0}")]
    Upstream(String),
    /// The server is at a limit it keeps to stay responsive (the conversion queue is full):
    /// 503 with `Retry-After`; the request may be repeated.
    #[error("busy: {0}")]
    Busy(String),
    /// A request body of a media type the resource does not take (415).
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// A request body larger than the server takes (413).
    #[error("request too large: {0}")]
    TooLarge(String),
    /// A store request to a server that does not store (405).
    #[error("not allowed here: {0}")]
    NotWritable(String),
}

impl From<wado_codec::Error> for Error {
    /// Stored pixel data that cannot be read is corrupt (500, logged); a coding the codec does
    /// not take is not acceptable (406, the client asked for it).
    fn from(e: wado_codec::Error) -> Error {
        match e {
            wado_codec::Error::Malformed { what, reason } => Error::Corrupt { key: what, reason },
            other => Error::NotAcceptable(other.to_string()),
        }
    }
}

impl From<IndexError> for Error {
    fn from(e: IndexError) -> Error {
        if e.busy {
            Error::Busy(e.message)
        } else {
            Error::Index(e)
        }
    }
}

/// Errors that mean the same on every backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The object does not exist.
    #[error("object not found: {0}")]
    NotFound(String),
    /// The key is not a valid storage key.
    #[error("invalid storage key: {0:?}")]
    InvalidKey(String),
    /// A byte range past the end of the object.
    #[error("range {start}..{end} outside object {key} of {size} bytes")]
    Range {
        /// The key.
        key: String,
        /// Requested start.
        start: u64,
        /// Requested end (exclusive).
        end: u64,
        /// The object's size.
        size: u64,
    },
    /// The backend failed (IO error, network, permissions).
    #[error("storage backend error: {0}")]
    Backend(String),
    /// The backend has no room (disk full, quota reached): a write failed for lack of space.
    #[error("storage full: {0}")]
    Full(String),
}

/// An index failure: the database's own message, and whether it was a limit the index keeps
/// to stay responsive (a search past its deadline, too many at once): those are 503 with
/// `Retry-After`, the others 500.
#[derive(Debug, thiserror::Error)]
#[error("search index: {message}")]
pub struct IndexError {
    /// What the database said.
    pub message: String,
    /// A limit was reached; the request may be repeated later.
    pub busy: bool,
}

impl IndexError {
    /// A failure.
    pub fn new(message: impl Into<String>) -> IndexError {
        IndexError {
            message: message.into(),
            busy: false,
        }
    }

    /// A limit reached (503, retry later).
    pub fn busy(message: impl Into<String>) -> IndexError {
        IndexError {
            message: message.into(),
            busy: true,
        }
    }
}

/// The core's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The HTTP status code for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Store(StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
            Error::Corrupt { .. } | Error::Store(_) | Error::Index(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Error::Upstream(_) => StatusCode::BAD_GATEWAY,
            Error::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::NotWritable(_) => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// True when the error is the server's fault: log it, and keep its details off the wire.
    pub fn is_server_error(&self) -> bool {
        self.status().is_server_error()
    }

    /// The text sent to the client: the full message for client errors, a generic one for
    /// server errors (their details go to the log only).
    pub fn public_message(&self) -> String {
        if let Error::Busy(_) = self {
            self.to_string()
        } else if let Error::Upstream(_) = self {
            "the origin archive could not provide this; the server log has the details".into()
        } else if self.is_server_error() {
            "internal error while reading stored data; the server log has the details".into()
        } else {
            self.to_string()
        }
    }

    pub(crate) fn corrupt(key: impl Into<String>, reason: impl std::fmt::Display) -> Error {
        Error::Corrupt {
            key: key.into(),
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        let cases: Vec<(Error, u16)> = vec![
            (Error::BadRequest("x".into()), 400),
            (Error::NotFound("x".into()), 404),
            (Error::NotAcceptable("x".into()), 406),
            (Error::MethodNotAllowed, 405),
            (Error::UnsupportedMediaType("x".into()), 415),
            (Error::TooLarge("x".into()), 413),
            (Error::NotWritable("x".into()), 405),
            (Error::corrupt("k", "r"), 500),
            (Error::Store(StoreError::NotFound("k".into())), 404),
            (Error::Store(StoreError::Backend("disk".into())), 500),
        ];
        for (e, want) in cases {
            assert_eq!(e.status().as_u16(), want, "{e}");
        }
    }

    #[test]
    fn server_errors_hide_details() {
        let e = Error::corrupt("studies/1/x.dcm", "secret detail");
        assert!(!e.public_message().contains("secret"));
        let e = Error::BadRequest("frame 0".into());
        assert!(e.public_message().contains("frame 0"));
    }
}

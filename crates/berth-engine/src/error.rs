//! The engine's typed errors. Each variant names the Docker error class it
//! maps to; `berth-api` turns the class into an HTTP status exactly once.

use berth_storage::StorageError;

/// What kind of failure an [`EngineError`] is, in Docker's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 404: no such image, container, volume...
    NotFound,
    /// 409: name in use, image in use, container running...
    Conflict,
    /// 400: bad parameter, malformed input, hostile archive.
    InvalidParameter,
    /// 403: the operation is not allowed in this state.
    Forbidden,
    /// 501: not implemented by berth (yet).
    NotImplemented,
    /// 304: nothing to do (start of a running container, stop of a stopped one).
    NotModified,
    /// 500: everything else.
    Internal,
}

/// An engine failure with a Docker-style message.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotImplemented(String),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    NotModified(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl EngineError {
    /// The Docker error class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::NotFound(_) => ErrorKind::NotFound,
            EngineError::Conflict(_) => ErrorKind::Conflict,
            EngineError::InvalidParameter(_) => ErrorKind::InvalidParameter,
            EngineError::Forbidden(_) => ErrorKind::Forbidden,
            EngineError::NotImplemented(_) => ErrorKind::NotImplemented,
            EngineError::NotModified(_) => ErrorKind::NotModified,
            EngineError::Internal(_) | EngineError::Io { .. } => ErrorKind::Internal,
            EngineError::Storage(e) if e.is_invalid_input() => ErrorKind::InvalidParameter,
            EngineError::Storage(e) if e.is_not_found() => ErrorKind::NotFound,
            EngineError::Storage(_) => ErrorKind::Internal,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        EngineError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias for engine operations.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

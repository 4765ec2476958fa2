//! Typed errors of the storage layer. Callers tell bad input (a hostile or
//! corrupt archive, an unknown option) from a missing layer and from a
//! failing filesystem, so the API can answer 400, 404 or 500.

use std::path::PathBuf;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The archive is malformed, truncated, or tries to escape the layer.
    #[error("{0}")]
    InvalidArchive(String),
    /// An option (daemon-wide or per container) is unknown or out of range.
    #[error("{0}")]
    InvalidOption(String),
    /// The driver cannot run here (wrong filesystem, missing kernel feature).
    #[error("{0}")]
    Unsupported(String),
    /// A layer or mount the caller named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The layer is in use or already exists.
    #[error("{0}")]
    Conflict(String),
    /// The content read does not match the digest it was announced with.
    #[error("{0}")]
    DigestMismatch(String),
    /// A system call or file operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    /// Wraps an I/O error with what was being done and to which path.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StorageError::Io {
            context: context.into(),
            source,
        }
    }

    /// Wraps an I/O error about a path.
    pub fn at(path: impl Into<PathBuf>, what: &str, source: std::io::Error) -> Self {
        StorageError::Io {
            context: format!("{what} {}", path.into().display()),
            source,
        }
    }

    /// Whether the failure was caused by the caller's input (HTTP 400).
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            StorageError::InvalidArchive(_)
                | StorageError::InvalidOption(_)
                | StorageError::DigestMismatch(_)
        )
    }

    /// Whether the failure is a missing object (HTTP 404).
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound(_))
    }
}

impl From<rustix::io::Errno> for StorageError {
    fn from(e: rustix::io::Errno) -> Self {
        StorageError::io("system call", e.into())
    }
}

/// Result alias for storage operations.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

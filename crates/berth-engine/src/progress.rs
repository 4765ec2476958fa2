//! Progress of long operations (load, import, pull) as the engine reports
//! it, and the byte streams it hands out (save, export). `berth-api` turns
//! [`Progress`] into Docker's JSON message stream.

use std::pin::Pin;

use bytes::Bytes;
use futures_core::Stream;

/// One progress message of a streaming operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// A status line about one object (`id`), optionally with byte counts.
    Status {
        id: Option<String>,
        status: String,
        current: Option<u64>,
        total: Option<u64>,
    },
    /// Free text for the client to print (`{"stream": ...}`).
    Stream(String),
    /// The operation failed after the response started.
    Error(String),
}

/// A stream of bytes the API sends as a response body (save, export).
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

//! The streams of a container or exec process as the API sees them:
//! output chunks tagged stdout/stderr, a stdin writer, and attach sessions
//! that end on detach keys or process exit.

use std::pin::Pin;

use bytes::Bytes;
use futures_core::Stream;
use tokio::io::AsyncWrite;

/// Which standard stream a chunk belongs to (Docker's stream numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdStream {
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
}

/// A piece of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    pub stream: StdStream,
    pub data: Bytes,
}

/// Output as the API sends it: multiplexed when there is no TTY, raw
/// (stream ignored) when there is.
pub type OutputStream = Pin<Box<dyn Stream<Item = OutputChunk> + Send>>;

/// `attach` query parameters.
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// `stream`: follow live output.
    pub stream: bool,
    /// `logs`: replay the log first.
    pub logs: bool,
    /// `detachKeys` (`ctrl-p,ctrl-q` by default).
    pub detach_keys: Option<String>,
}

/// A live attachment. The API copies `output` to the client and the
/// client's bytes into `stdin`; the engine watches stdin for the detach
/// keys and ends `output` when they come or the process exits.
pub struct AttachSession {
    /// Whether the process has a TTY (raw stream).
    pub tty: bool,
    pub output: Option<OutputStream>,
    pub stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
}

//! Progress of long operations (load, import, pull) as the engine reports
//! it, and the byte streams it hands out (save, export): blocking workers
//! write into bounded channels, the API reads them as the client does. A
//! client that goes away closes the channel and the worker stops.

use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use tokio::sync::mpsc;

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
    /// Structured data for the client (`{"aux": ...}`; a push's digest).
    Aux(serde_json::Value),
}

/// A stream of bytes the API sends as a response body (save, export).
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// The sending side of a progress channel, for blocking workers.
#[derive(Clone)]
pub struct ProgressSender {
    tx: mpsc::Sender<Progress>,
    /// Whether per-byte progress is wanted (not `quiet`).
    pub verbose: bool,
}

impl ProgressSender {
    /// A channel whose receiver the API streams to the client.
    pub fn channel(verbose: bool) -> (ProgressSender, mpsc::Receiver<Progress>) {
        let (tx, rx) = mpsc::channel(64);
        (ProgressSender { tx, verbose }, rx)
    }

    /// Sends one message; a gone client is not an error of the sender.
    pub fn send(&self, p: Progress) {
        let _ = self.tx.blocking_send(p);
    }

    /// Sends text for the client to print.
    pub fn stream(&self, text: impl Into<String>) {
        self.send(Progress::Stream(text.into()));
    }

    /// A status line with byte counts, sent only when verbose.
    pub fn bytes(&self, id: &str, status: &str, current: u64, total: u64) {
        if self.verbose {
            self.send(Progress::Status {
                id: Some(id.to_string()),
                status: status.to_string(),
                current: Some(current),
                total: Some(total),
            });
        }
    }

    /// Whether the client is still there.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// A `Write` that sends what it is given, in chunks, down a channel that
/// the API turns into a response body.
pub struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 256 * 1024;

/// A writer for a blocking worker and the body stream that carries it.
pub fn byte_channel() -> (ChannelWriter, ByteStream) {
    let (tx, rx) = mpsc::channel(8);
    (
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        },
        Box::pin(ReceiverStream(rx)),
    )
}

impl ChannelWriter {
    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }

    /// Ends the stream with an error the client will see as a cut body.
    pub fn fail(mut self, err: io::Error) {
        let _ = self.send_buf();
        let _ = self.tx.blocking_send(Err(err));
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send_buf()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buf()
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        let _ = self.send_buf();
    }
}

struct ReceiverStream<T>(mpsc::Receiver<T>);

impl<T> Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

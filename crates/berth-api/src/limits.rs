//! What one client may cost the daemon: request head size, the time to send
//! a request head or finish a TLS handshake, how many connections are open
//! at once, and the size and pace of the bodies the API buffers whole (JSON).
//! Streaming endpoints are deliberately unlimited: events, logs, stats,
//! attach, exec and load/import last as long as the client reads or writes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;

use crate::error::ApiError;

/// The most a JSON request body may hold. Container create, exec and
/// network bodies are a few KiB; a process's whole environment cannot
/// exceed ~2 MiB (the kernel's ARG_MAX share), so 4 MiB refuses nothing
/// real while keeping a burst of clients from making the daemon buffer GiBs.
pub const MAX_JSON_BODY: usize = 4 * 1024 * 1024;

/// How long a JSON body may go without a byte arriving. A request head has
/// arrived, so the client is there; one that stops sending mid-body would
/// otherwise hold its connection and buffer forever.
pub const BODY_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Connection-level limits applied by [`crate::Server`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once over all listeners, TLS handshakes and
    /// hijacked attach/exec streams included. Connections beyond it are
    /// answered `503` (plain listeners) or closed (TLS) at once.
    pub max_connections: usize,
    /// Largest request head (request line and headers). Larger ones get
    /// `431 Request Header Fields Too Large` and the connection is closed.
    pub max_header_bytes: usize,
    /// Time a connection gets to deliver a complete request head, counted
    /// from the accept (after the TLS handshake) or from the end of the
    /// previous response on a kept-alive connection. When it runs out the
    /// connection is closed: this ends slowloris clients and idle
    /// keep-alive connections alike.
    pub header_timeout: Duration,
    /// Time a TLS client gets to complete its handshake.
    pub handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Each `docker logs -f`, `docker stats` or attach holds one;
            // thousands of those are real, tens of thousands are an attack
            // or a leak. An idle connection costs ~20 KiB.
            max_connections: 4096,
            // Go's net/http (dockerd) allows 1 MiB; a docker CLI's largest
            // head (X-Registry-Config with every registry's auth on build)
            // is a few KiB. 256 KiB keeps room for big auth configs.
            max_header_bytes: 256 * 1024,
            // dockerd waits 5 minutes; half a minute is plenty for a
            // client that is sending a request at all.
            header_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(30),
        }
    }
}

/// The connection's byte stream, holding one of the [`Limits::max_connections`]
/// permits until the stream is dropped — including after hyper hands it to
/// a hijacked attach/exec session, so those count too.
pub(crate) struct Counted<I> {
    io: I,
    _permit: OwnedSemaphorePermit,
}

impl<I> Counted<I> {
    pub(crate) fn new(io: I, permit: OwnedSemaphorePermit) -> Self {
        Counted {
            io,
            _permit: permit,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Counted<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The plain-text answer for a connection over the cap, written without
/// waiting (a client that does not read it just gets the close).
pub(crate) const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: application/json\r\n\
Connection: close\r\n\
Content-Length: 77\r\n\
\r\n\
{\"message\":\"too many open connections to the daemon; try again in a moment\"}\n";

/// Why a buffered body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body is too large: the limit is {limit} bytes")]
    TooLarge { limit: usize },
    #[error("request body stalled: no data for {0:?}")]
    Stalled(Duration),
    #[error("reading the request body: {0}")]
    Read(String),
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge { .. } => ApiError::payload_too_large(e.to_string()),
            BodyError::Stalled(_) => ApiError::request_timeout(e.to_string()),
            BodyError::Read(_) => ApiError::invalid(e.to_string()),
        }
    }
}

/// Reads a whole body of at most `limit` bytes, giving up when no data
/// arrives for `stall`. A declared Content-Length over the limit is refused
/// before reading anything.
pub async fn collect_body(
    declared_len: Option<u64>,
    body: Body,
    limit: usize,
    stall: Duration,
) -> Result<Bytes, BodyError> {
    if declared_len.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = body;
    let mut out = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(stall, body.frame()).await {
            Err(_) => return Err(BodyError::Stalled(stall)),
            Ok(None) => return Ok(out.freeze()),
            Ok(Some(Err(e))) => return Err(earlier_verdict(e)),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(BodyError::TooLarge { limit });
            }
            out.extend_from_slice(&data);
        }
    }
}

/// The error a body failed with. An earlier reader (the debug request log)
/// may have hit a limit already and passed its [`BodyError`] on as the
/// body's error, possibly wrapped again by each `Body` layer since.
fn earlier_verdict(e: axum::Error) -> BodyError {
    let mut inner = e.into_inner();
    loop {
        inner = match inner.downcast::<BodyError>() {
            Ok(verdict) => return *verdict,
            Err(other) => match other.downcast::<axum::Error>() {
                Ok(wrapped) => wrapped.into_inner(),
                Err(other) => return BodyError::Read(other.to_string()),
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_503_declares_its_length() {
        let text = std::str::from_utf8(TOO_MANY_CONNECTIONS).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), len);
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }

    #[tokio::test]
    async fn bodies_are_bounded_in_size() {
        let body = Body::from(vec![b'x'; 100]);
        assert_eq!(
            collect_body(None, body, 100, BODY_STALL_TIMEOUT)
                .await
                .unwrap()
                .len(),
            100
        );
        let body = Body::from(vec![b'x'; 101]);
        let err = collect_body(None, body, 100, BODY_STALL_TIMEOUT)
            .await
            .unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { limit: 100 }), "{err}");
        // A declared length over the limit is refused without reading.
        let err = collect_body(Some(1 << 40), Body::empty(), 100, BODY_STALL_TIMEOUT)
            .await
            .unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { .. }));
        assert_eq!(
            ApiError::from(err).status(),
            axum::http::StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[tokio::test]
    async fn an_earlier_verdict_passes_through_wrapped_bodies() {
        let failed = futures_util::stream::once(async {
            Err::<Bytes, _>(BodyError::Stalled(Duration::from_secs(1)))
        });
        // Wrapped twice, as the request log's body is by later layers.
        let body = Body::new(Body::from_stream(failed).map_err(axum::Error::new));
        let err = collect_body(None, body, 100, BODY_STALL_TIMEOUT)
            .await
            .unwrap_err();
        assert!(matches!(err, BodyError::Stalled(_)), "{err}");
    }

    #[tokio::test]
    async fn a_stalled_body_times_out() {
        let stalled = futures_util::stream::pending::<Result<Bytes, io::Error>>();
        let body = Body::from_stream(stalled);
        let err = collect_body(None, body, 100, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, BodyError::Stalled(_)), "{err}");
        assert_eq!(
            ApiError::from(err).status(),
            axum::http::StatusCode::REQUEST_TIMEOUT
        );
    }
}

//! Request bodies streamed into the engine (`docker load`, `docker import`).
//! The engine reads as it goes; when it stops early (bad archive, refused
//! up front) the rest of the upload is drained before the response ends,
//! so the client reads our answer instead of a broken pipe.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use futures_util::stream::MapErr;
use futures_util::TryStreamExt;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::oneshot;
use tokio_util::io::StreamReader;

type Inner = StreamReader<MapErr<BodyDataStream, fn(axum::Error) -> io::Error>, bytes::Bytes>;

/// How long to wait for the engine to let go of a body after it finished
/// reporting; a reader it never drops must not hold the response open.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(30);

/// The request body as the engine's byte reader. Dropping it hands the
/// unread rest to the matching [`Remainder`].
pub struct Upload {
    inner: Option<Inner>,
    on_drop: Option<oneshot::Sender<Inner>>,
}

/// The part of an upload the engine did not read.
pub struct Remainder(oneshot::Receiver<Inner>);

/// Splits a request body into the reader for the engine and the handle
/// that drains what the engine leaves.
pub fn upload(body: Body) -> (Upload, Remainder) {
    let to_io: fn(axum::Error) -> io::Error = io::Error::other;
    let reader = StreamReader::new(body.into_data_stream().map_err(to_io));
    let (tx, rx) = oneshot::channel();
    (
        Upload {
            inner: Some(reader),
            on_drop: Some(tx),
        },
        Remainder(rx),
    )
}

impl AsyncRead for Upload {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(r) => Pin::new(r).poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let (Some(reader), Some(tx)) = (self.inner.take(), self.on_drop.take()) {
            let _ = tx.send(reader);
        }
    }
}

impl Remainder {
    /// Waits for the engine to drop its reader, then reads and discards
    /// whatever the client still sends.
    pub async fn drain(self) {
        let mut reader = match tokio::time::timeout(RELEASE_TIMEOUT, self.0).await {
            Ok(Ok(reader)) => reader,
            _ => return,
        };
        match tokio::io::copy(&mut reader, &mut tokio::io::sink()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!("discarded {n} unread request body bytes"),
            Err(e) => tracing::debug!("draining request body: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn engine_reads_through_and_remainder_is_drained() {
        let chunks: Vec<Result<bytes::Bytes, io::Error>> = vec![
            Ok(bytes::Bytes::from_static(b"head")),
            Ok(bytes::Bytes::from_static(b"tail-the-engine-never-reads")),
        ];
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        let (mut up, rest) = upload(body);
        let mut first = [0u8; 4];
        up.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"head");
        drop(up);
        tokio::time::timeout(Duration::from_secs(5), rest.drain())
            .await
            .unwrap();
    }
}

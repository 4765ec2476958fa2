//! berthd's side of a shim socket (tokio): wait for the exit record,
//! attach to output frames and stdin, resize the PTY, close stdin. Each
//! call is one connection that opens with one request line.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio_util::codec::{Decoder, FramedRead};

use crate::protocol::{
    frame_header, parse_frame_header, ExitRecord, Reply, Request, FRAME_HEADER_LEN, MAX_FRAME_LEN,
    MAX_REQUEST_LINE, STREAM_STDIN,
};

/// A failed conversation with a shim.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// Nobody listens on the socket: the shim has exited (or never ran).
    #[error("shim at {path} is not running: {source}")]
    Gone {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("shim connection: {0}")]
    Io(#[from] io::Error),
    /// The shim said something that is not the protocol.
    #[error("shim protocol: {0}")]
    Protocol(String),
    /// The shim understood and refused (e.g. resize without a TTY).
    #[error("{0}")]
    Refused(String),
}

/// An attach connection: output frames (stream number, bytes) that end
/// when the process's output is drained, and the stdin writer whose
/// shutdown is the client's end of input.
pub struct Attachment {
    pub output: FramedRead<OwnedReadHalf, FrameCodec>,
    pub input: StdinWriter,
}

/// Writes stdin as frames. `shutdown` sends the empty frame that tells
/// the shim the input really ended; merely dropping the writer (or the
/// process dying) does not, so a daemon restart never closes a
/// container's stdin.
pub struct StdinWriter {
    inner: OwnedWriteHalf,
    /// Framed bytes accepted but not yet written to the socket.
    pending: BytesMut,
    ended: bool,
}

impl StdinWriter {
    fn new(inner: OwnedWriteHalf) -> StdinWriter {
        StdinWriter {
            inner,
            pending: BytesMut::new(),
            ended: false,
        }
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for StdinWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.ended {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        ready!(self.poll_drain(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Accepted once framed; written by the next call, flush or shutdown.
        let n = buf.len().min(MAX_FRAME_LEN);
        self.pending
            .extend_from_slice(&frame_header(STREAM_STDIN, n));
        self.pending.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.ended {
            self.ended = true;
            self.pending
                .extend_from_slice(&frame_header(STREAM_STDIN, 0));
        }
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Decodes the multiplexed frames of an attach.
#[derive(Debug, Default, Clone, Copy)]
pub struct FrameCodec;

impl Decoder for FrameCodec {
    type Item = (u8, Bytes);
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<(u8, Bytes)>> {
        if src.len() < FRAME_HEADER_LEN {
            return Ok(None);
        }
        let header: [u8; FRAME_HEADER_LEN] = src[..FRAME_HEADER_LEN].try_into().expect("len");
        let (stream, len) = parse_frame_header(&header)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if stream == STREAM_STDIN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "stdin frame from the shim",
            ));
        }
        if src.len() < FRAME_HEADER_LEN + len {
            src.reserve(FRAME_HEADER_LEN + len - src.len());
            return Ok(None);
        }
        src.advance(FRAME_HEADER_LEN);
        Ok(Some((stream, src.split_to(len).freeze())))
    }
}

async fn connect(socket: &Path) -> Result<UnixStream, ShimError> {
    UnixStream::connect(socket)
        .await
        .map_err(|source| ShimError::Gone {
            path: socket.to_path_buf(),
            source,
        })
}

async fn send(stream: &mut UnixStream, req: &Request) -> Result<(), ShimError> {
    let mut line = serde_json::to_vec(req).map_err(|e| ShimError::Protocol(e.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line).await?;
    Ok(())
}

/// Reads one line without reading past it: what follows an attach reply
/// is frame data that must stay in the socket for the frame decoder.
async fn read_line(stream: &mut UnixStream) -> Result<Vec<u8>, ShimError> {
    let mut line = Vec::new();
    loop {
        let b = match stream.read_u8().await {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(ShimError::Protocol(
                    "shim closed the connection without answering".into(),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        if b == b'\n' {
            return Ok(line);
        }
        if line.len() >= MAX_REQUEST_LINE {
            return Err(ShimError::Protocol("answer line too long".into()));
        }
        line.push(b);
    }
}

async fn expect_ok(stream: &mut UnixStream) -> Result<(), ShimError> {
    let line = read_line(stream).await?;
    let reply: Reply =
        serde_json::from_slice(&line).map_err(|e| ShimError::Protocol(e.to_string()))?;
    match (reply.ok, reply.error) {
        (true, _) => Ok(()),
        (false, Some(e)) => Err(ShimError::Refused(e)),
        (false, None) => Err(ShimError::Protocol("empty reply".into())),
    }
}

/// Resolves with the exit record once the process has exited (at once if
/// it already has).
pub async fn wait(socket: &Path) -> Result<ExitRecord, ShimError> {
    let mut stream = connect(socket).await?;
    send(&mut stream, &Request::Wait).await?;
    let line = read_line(&mut stream).await?;
    serde_json::from_slice(&line).map_err(|e| ShimError::Protocol(e.to_string()))
}

/// Attaches to the process's output and (if `stdin`) its input. The shim
/// has registered the client when this returns, so output produced after
/// it is not missed.
pub async fn attach(
    socket: &Path,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> Result<Attachment, ShimError> {
    let mut stream = connect(socket).await?;
    send(
        &mut stream,
        &Request::Attach {
            stdin,
            stdout,
            stderr,
        },
    )
    .await?;
    expect_ok(&mut stream).await?;
    let (r, w) = stream.into_split();
    Ok(Attachment {
        output: FramedRead::new(r, FrameCodec),
        input: StdinWriter::new(w),
    })
}

/// Sets the PTY's window size.
pub async fn resize(socket: &Path, height: u16, width: u16) -> Result<(), ShimError> {
    let mut stream = connect(socket).await?;
    send(&mut stream, &Request::Resize { height, width }).await?;
    expect_ok(&mut stream).await
}

/// Closes the process's stdin (its reads see EOF).
pub async fn close_stdin(socket: &Path) -> Result<(), ShimError> {
    let mut stream = connect(socket).await?;
    send(&mut stream, &Request::CloseStdin).await?;
    expect_ok(&mut stream).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encode_frame;

    #[test]
    fn codec_waits_for_whole_frames() {
        let mut buf = BytesMut::new();
        let mut codec = FrameCodec;
        let f1 = encode_frame(1, b"hello\n");
        let f2 = encode_frame(2, b"err");
        buf.extend_from_slice(&f1[..5]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&f1[5..]);
        buf.extend_from_slice(&f2[..9]);
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some((1, Bytes::from_static(b"hello\n")))
        );
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&f2[9..]);
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some((2, Bytes::from_static(b"err")))
        );
        assert!(buf.is_empty());
        buf.extend_from_slice(&[7, 0, 0, 0, 0, 0, 0, 0]);
        assert!(codec.decode(&mut buf).is_err());
    }

    #[tokio::test]
    async fn stdin_is_framed_and_shutdown_sends_the_end() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let (_r, w) = a.into_split();
        let mut stdin = StdinWriter::new(w);
        stdin.write_all(b"abc").await.unwrap();
        stdin.flush().await.unwrap();
        stdin.shutdown().await.unwrap();
        assert!(stdin.write_all(b"late").await.is_err());
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        let mut want = encode_frame(STREAM_STDIN, b"abc");
        want.extend_from_slice(&frame_header(STREAM_STDIN, 0));
        assert_eq!(got, want);
    }
}

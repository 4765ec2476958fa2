//! Hijacked connections for attach and exec: an upgrade request gets
//! dockerd's `101 UPGRADED` and the connection becomes the process's stdio
//! (output out, framed unless TTY; client bytes to stdin; client half-close
//! closes stdin; end of output closes the connection). Clients that do not
//! ask for an upgrade get a 200 streaming the output only.

use std::convert::Infallible;
use std::future::Future;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use berth_engine::containers::{AttachSession, OutputChunk, OutputStream, StdStream};
use futures_util::StreamExt;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::ApiError;
use crate::stdcopy;
use crate::version::ApiVersion;

/// What a request offers for hijacking: whether the client asked for an
/// upgrade, and hyper's handle on the connection if it can have it.
pub struct Hijack {
    /// The client sent an `Upgrade` header; dockerd looks only at its
    /// presence, not its value (clients send `tcp`).
    requested: bool,
    upgrade: Option<OnUpgrade>,
}

impl<S: Send + Sync> FromRequestParts<S> for Hijack {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(Hijack {
            requested: parts.headers.contains_key(header::UPGRADE),
            upgrade: parts.extensions.remove::<OnUpgrade>(),
        })
    }
}

impl Hijack {
    /// The response that hands the connection to `session`. Call it only
    /// once the engine has accepted the attach, so refusals (404, 409)
    /// still reach the client as ordinary error responses.
    pub fn respond(self, session: AttachSession, v: &ApiVersion) -> Response {
        let multiplexed = !session.tty;
        self.respond_with(multiplexed, v, std::future::ready(Ok(session)))
    }

    /// Like [`Hijack::respond`], but `session` is started only once the
    /// connection is the client's: dockerd hijacks before it starts an exec,
    /// so a fast process's first bytes never arrive with the response head
    /// (clients such as docker-py read the head through a buffer and then
    /// the raw socket, losing whatever the buffer took). A failure to start
    /// is written into the stream, as dockerd writes it.
    pub fn respond_with<F>(self, multiplexed: bool, v: &ApiVersion, session: F) -> Response
    where
        F: Future<Output = Result<AttachSession, ApiError>> + Send + 'static,
    {
        match self.upgrade.filter(|_| self.requested) {
            Some(upgrade) => upgraded(upgrade, multiplexed, v, session),
            None => {
                if self.requested {
                    // HTTP/1.0 and in-process callers cannot be upgraded.
                    tracing::debug!("upgrade requested but not possible; streaming output only");
                }
                streamed(multiplexed, session)
            }
        }
    }
}

/// dockerd's answer to an upgrade request, with the copying handed to a
/// task that runs once hyper has given up the connection.
fn upgraded<F>(upgrade: OnUpgrade, multiplexed: bool, v: &ApiVersion, session: F) -> Response
where
    F: Future<Output = Result<AttachSession, ApiError>> + Send + 'static,
{
    tokio::spawn(async move {
        let io = match upgrade.await {
            Ok(io) => TokioIo::new(io),
            // The client went away between our 101 and the handover.
            Err(e) => return tracing::debug!("hijack: connection upgrade failed: {e}"),
        };
        match session.await {
            Ok(session) => pump(io, session, multiplexed).await,
            Err(e) => report_failure(io, &e, multiplexed).await,
        }
    });
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    // dockerd's status line reads `101 UPGRADED`; keep it for clients
    // and scripts that match on it.
    resp.extensions_mut()
        .insert(hyper::ext::ReasonPhrase::from_static(b"UPGRADED"));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(stdcopy::content_type(multiplexed, v)),
    );
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    resp
}

/// A failure after the hijack, as dockerd reports it: one line on stdout.
fn failure_chunk(e: &ApiError) -> OutputChunk {
    OutputChunk {
        stream: StdStream::Stdout,
        data: format!("{}\r\n", e.message()).into(),
    }
}

async fn report_failure<IO>(mut io: IO, e: &ApiError, multiplexed: bool)
where
    IO: AsyncWrite + Unpin,
{
    tracing::debug!("hijack: session failed to start: {e}");
    let _ = io
        .write_all(&stdcopy::encode(failure_chunk(e), multiplexed))
        .await;
    let _ = io.shutdown().await;
}

/// A 200 carrying the output; dockerd labels it raw-stream whatever the
/// framing. Such a client has no way to send stdin, so the writer is only
/// held (never closed) until the output ends, as a client that never
/// types would leave it.
fn streamed<F>(multiplexed: bool, session: F) -> Response
where
    F: Future<Output = Result<AttachSession, ApiError>> + Send + 'static,
{
    let bytes = futures_util::stream::once(session).flat_map(move |started| {
        let output: OutputStream = match started {
            Ok(AttachSession {
                output: Some(output),
                stdin,
                ..
            }) => Box::pin(output.map(move |chunk| {
                let _held = &stdin;
                chunk
            })),
            Ok(_) => Box::pin(futures_util::stream::empty()),
            Err(e) => Box::pin(futures_util::stream::iter([failure_chunk(&e)])),
        };
        output
    });
    let mut resp = Response::new(stdcopy::body(Box::pin(bytes), multiplexed));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(stdcopy::RAW_STREAM),
    );
    resp
}

/// How the client's side of a hijacked connection ended.
enum ClientInput {
    /// It half-closed (or closed): no more stdin.
    Closed,
    /// The connection failed: nobody is listening any more.
    Gone,
}

/// Copies `session` over a hijacked connection, stdcopy-framed when
/// `multiplexed`, until the output ends or the client goes away, then
/// closes the connection.
pub async fn pump<IO>(io: IO, session: AttachSession, multiplexed: bool)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin,
{
    let AttachSession { output, stdin, .. } = session;
    if output.is_none() && stdin.is_none() {
        // Nothing to copy either way (a detached start).
        return;
    }
    let has_output = output.is_some();
    let (from_client, to_client) = tokio::io::split(io);
    let send = send_output(to_client, output, multiplexed);
    let recv = recv_input(from_client, stdin);
    tokio::pin!(send, recv);
    let mut client_closed = false;
    loop {
        tokio::select! {
            () = &mut send, if has_output => break,
            input = &mut recv, if !client_closed => match input {
                // stdin is done but the process may still be talking
                // (`docker exec -i ... < file`).
                ClientInput::Closed if has_output => client_closed = true,
                ClientInput::Closed | ClientInput::Gone => break,
            },
        }
    }
    // Dropping both halves closes the connection; dropping `recv` lets go
    // of stdin without closing it, as a detach does.
}

async fn send_output<W>(mut to_client: W, output: Option<OutputStream>, multiplexed: bool)
where
    W: AsyncWrite + Unpin,
{
    let Some(mut output) = output else {
        return;
    };
    while let Some(chunk) = output.next().await {
        if chunk.data.is_empty() {
            continue;
        }
        let bytes = stdcopy::encode(chunk, multiplexed);
        // Flush each chunk: an interactive shell's prompt must not wait
        // for a buffer to fill.
        if let Err(e) = async {
            to_client.write_all(&bytes).await?;
            to_client.flush().await
        }
        .await
        {
            tracing::debug!("hijack: client stopped reading: {e}");
            return;
        }
    }
    let _ = to_client.shutdown().await;
}

async fn recv_input<R>(
    mut from_client: R,
    mut stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
) -> ClientInput
where
    R: AsyncRead + Unpin,
{
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from_client.read(&mut buf).await {
            Ok(0) => {
                if let Some(mut stdin) = stdin.take() {
                    let _ = stdin.shutdown().await;
                }
                return ClientInput::Closed;
            }
            Ok(n) => {
                if let Some(writer) = stdin.as_mut() {
                    let delivered = async {
                        writer.write_all(&buf[..n]).await?;
                        writer.flush().await
                    }
                    .await;
                    if let Err(e) = delivered {
                        // The process closed its stdin or exited; keep
                        // reading so a client close is still noticed.
                        tracing::debug!("hijack: stdin closed: {e}");
                        stdin = None;
                    }
                }
            }
            Err(e) => {
                tracing::debug!("hijack: client connection failed: {e}");
                return ClientInput::Gone;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::routing::post;
    use axum::Router;
    use bytes::Bytes;
    use tokio::io::DuplexStream;
    use tokio::sync::mpsc;
    use tower::ServiceExt;

    use super::*;
    use crate::json_body::JsonBody;
    use crate::stdcopy::tests::demux;
    use crate::test_server;

    /// A session whose output the test feeds and whose stdin it reads.
    fn fake_session(tty: bool) -> (AttachSession, mpsc::Sender<OutputChunk>, DuplexStream) {
        let (out_tx, out_rx) = mpsc::channel(8);
        let output = futures_util::stream::unfold(out_rx, |mut rx| async move {
            rx.recv().await.map(|c| (c, rx))
        });
        let (stdin_w, stdin_r) = tokio::io::duplex(1024);
        let session = AttachSession {
            tty,
            output: Some(Box::pin(output)),
            stdin: Some(Box::new(stdin_w)),
        };
        (session, out_tx, stdin_r)
    }

    /// A router whose `/attach` hands out `session` once; the exec-style
    /// route reads a JSON body first, as exec start does.
    fn router(session: AttachSession) -> Router {
        let slot = Arc::new(Mutex::new(Some(session)));
        let exec_slot = slot.clone();
        Router::new()
            .route(
                "/attach",
                post(move |hijack: Hijack| async move {
                    let session = slot.lock().unwrap().take().unwrap();
                    hijack.respond(session, &ApiVersion::newest())
                }),
            )
            .route(
                "/exec/start",
                post(
                    move |hijack: Hijack, JsonBody(cfg): JsonBody<serde_json::Value>| async move {
                        assert_eq!(cfg.unwrap()["Detach"], false);
                        let session = exec_slot.lock().unwrap().take().unwrap();
                        hijack.respond(session, &ApiVersion::newest())
                    },
                ),
            )
    }

    fn out(stream: StdStream, data: &'static [u8]) -> OutputChunk {
        OutputChunk {
            stream,
            data: Bytes::from_static(data),
        }
    }

    #[tokio::test]
    async fn upgrade_frames_output_and_feeds_stdin() {
        let (session, out_tx, mut stdin) = fake_session(false);
        let mut client = test_server::connect(router(session));
        client
            .write_all(
                b"POST /attach?stream=1&stdin=1 HTTP/1.1\r\nHost: berth\r\n\
                  Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n",
            )
            .await
            .unwrap();
        let head = test_server::read_head(&mut client).await;
        assert!(head.starts_with("HTTP/1.1 101 UPGRADED\r\n"), "{head}");
        assert!(head.contains("\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\n"));
        assert!(head.contains("\r\nUpgrade: tcp\r\n"));

        out_tx
            .send(out(StdStream::Stdout, b"hello\n"))
            .await
            .unwrap();
        out_tx
            .send(out(StdStream::Stderr, b"warn\n"))
            .await
            .unwrap();
        let mut wire = vec![0u8; 2 * stdcopy::HEADER_LEN + 11];
        client.read_exact(&mut wire).await.unwrap();
        assert_eq!(
            demux(&wire),
            vec![(1, b"hello\n".to_vec()), (2, b"warn\n".to_vec())]
        );

        client.write_all(b"echo hi\n").await.unwrap();
        let mut got = [0u8; 8];
        stdin.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"echo hi\n");

        // Half-close: stdin sees EOF, output keeps flowing.
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        stdin.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        out_tx.send(out(StdStream::Stdout, b"bye")).await.unwrap();
        drop(out_tx);
        let mut tail = Vec::new();
        client.read_to_end(&mut tail).await.unwrap();
        assert_eq!(demux(&tail), vec![(1, b"bye".to_vec())]);
    }

    #[tokio::test]
    async fn exec_upgrade_after_json_body_is_raw_with_tty() {
        // Under -D the request log reads the JSON body before the handler
        // does; the upgrade must survive that.
        let _log = test_server::debug_logging();
        let (session, out_tx, mut stdin) = fake_session(true);
        let mut client = test_server::connect(router(session));
        let body = r#"{"Detach":false,"Tty":true}"#;
        let req = format!(
            "POST /exec/start HTTP/1.1\r\nHost: berth\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        client.write_all(req.as_bytes()).await.unwrap();
        let head = test_server::read_head(&mut client).await;
        assert!(head.starts_with("HTTP/1.1 101 UPGRADED\r\n"), "{head}");
        assert!(head.contains("\r\nContent-Type: application/vnd.docker.raw-stream\r\n"));

        client.write_all(b"ls\r").await.unwrap();
        let mut got = [0u8; 3];
        stdin.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ls\r");

        out_tx
            .send(out(StdStream::Stdout, b"\x1b[0m$ "))
            .await
            .unwrap();
        drop(out_tx);
        let mut tail = Vec::new();
        client.read_to_end(&mut tail).await.unwrap();
        assert_eq!(tail, b"\x1b[0m$ ");
        // The connection closed with the output: stdin was let go.
        let mut rest = Vec::new();
        stdin.read_to_end(&mut rest).await.unwrap();
    }

    #[tokio::test]
    async fn without_upgrade_the_output_is_a_raw_stream_200() {
        let (session, out_tx, _stdin) = fake_session(false);
        out_tx
            .send(out(StdStream::Stdout, b"log line\n"))
            .await
            .unwrap();
        drop(out_tx);
        let req = axum::http::Request::post("/attach")
            .body(Body::empty())
            .unwrap();
        let resp = router(session).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], stdcopy::RAW_STREAM);
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(demux(&bytes), vec![(1, b"log line\n".to_vec())]);
    }

    /// A router whose `/exec` starts its session only when the test says.
    fn deferred_router(
        start: tokio::sync::oneshot::Receiver<Result<AttachSession, ApiError>>,
    ) -> Router {
        let slot = Arc::new(Mutex::new(Some(start)));
        Router::new().route(
            "/exec",
            post(move |hijack: Hijack| async move {
                let start = slot.lock().unwrap().take().unwrap();
                hijack.respond_with(
                    true,
                    &ApiVersion::newest(),
                    async move { start.await.unwrap() },
                )
            }),
        )
    }

    const EXEC_UPGRADE: &[u8] = b"POST /exec HTTP/1.1\r\nHost: berth\r\n\
        Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n";

    #[tokio::test]
    async fn deferred_session_starts_after_the_client_has_the_head() {
        let (start_tx, start_rx) = tokio::sync::oneshot::channel();
        let mut client = test_server::connect(deferred_router(start_rx));
        client.write_all(EXEC_UPGRADE).await.unwrap();
        // The head arrives while the session has not even been started.
        let head = test_server::read_head(&mut client).await;
        assert!(head.starts_with("HTTP/1.1 101 UPGRADED\r\n"), "{head}");
        let (session, out_tx, _stdin) = fake_session(false);
        start_tx.send(Ok(session)).map_err(|_| ()).unwrap();
        out_tx
            .send(out(StdStream::Stdout, b"fast\n"))
            .await
            .unwrap();
        drop(out_tx);
        let mut wire = Vec::new();
        client.read_to_end(&mut wire).await.unwrap();
        assert_eq!(demux(&wire), vec![(1, b"fast\n".to_vec())]);
    }

    #[tokio::test]
    async fn a_session_that_fails_to_start_reports_in_the_stream() {
        let (start_tx, start_rx) = tokio::sync::oneshot::channel();
        let mut client = test_server::connect(deferred_router(start_rx));
        client.write_all(EXEC_UPGRADE).await.unwrap();
        test_server::read_head(&mut client).await;
        let refused = ApiError::new(
            berth_engine::ErrorKind::Conflict,
            "Container abc is not running",
        );
        start_tx.send(Err(refused)).map_err(|_| ()).unwrap();
        let mut wire = Vec::new();
        client.read_to_end(&mut wire).await.unwrap();
        assert_eq!(
            demux(&wire),
            vec![(1, b"Container abc is not running\r\n".to_vec())]
        );
    }

    #[tokio::test]
    async fn a_vanished_client_ends_the_session() {
        let (session, out_tx, _stdin) = fake_session(false);
        let (client, server) = tokio::io::duplex(64);
        let task = tokio::spawn(pump(server, session, true));
        drop(client);
        // Output has nowhere to go: the first write fails and pump returns.
        let _ = out_tx.send(out(StdStream::Stdout, b"x")).await;
        task.await.unwrap();
    }
}

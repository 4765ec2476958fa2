//! Serving the API: accept loops over any [`Listener`] (unix sockets, TCP,
//! TLS over TCP in `tls`), one HTTP/1.1 connection task per client with
//! upgrades enabled (attach/exec hijack the connection) under the
//! connection [`Limits`], and a shutdown that stops accepting, lets requests
//! finish, then cuts the rest.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::util::BoxCloneSyncService;

use crate::limits::{Counted, Limits, TOO_MANY_CONNECTIONS};

/// The whole API as one service: what each connection serves.
pub type ApiService = BoxCloneSyncService<hyper::Request<Incoming>, Response, Infallible>;

/// A source of client connections: tokio's unix and TCP listeners, and
/// [`crate::tls::TlsListener`]. Accepting is split from establishing so
/// that a slow handshake runs in the connection's own task, never in the
/// accept loop.
pub trait Listener: Send + 'static {
    /// A connection as accepted, before any handshake.
    type Accepted: Send + 'static;
    /// The byte stream HTTP is spoken on.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Waits for the next connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Accepted>> + Send;

    /// Makes an accepted connection ready for HTTP (the TLS handshake).
    fn establish(
        &self,
        conn: Self::Accepted,
    ) -> impl Future<Output = io::Result<Self::Io>> + Send + 'static;

    /// Turns away a connection over the connection cap. Plain listeners
    /// write `response` (an HTTP 503) if the socket takes it at once;
    /// the default just closes.
    fn refuse(&self, conn: Self::Accepted, response: &[u8]) {
        let _ = response;
        drop(conn);
    }
}

impl Listener for tokio::net::UnixListener {
    type Accepted = tokio::net::UnixStream;
    type Io = tokio::net::UnixStream;

    async fn accept(&mut self) -> io::Result<Self::Accepted> {
        tokio::net::UnixListener::accept(self).await.map(|(s, _)| s)
    }

    fn establish(
        &self,
        conn: Self::Accepted,
    ) -> impl Future<Output = io::Result<Self::Io>> + Send + 'static {
        std::future::ready(Ok(conn))
    }

    fn refuse(&self, conn: Self::Accepted, response: &[u8]) {
        let _ = conn.try_write(response);
    }
}

impl Listener for tokio::net::TcpListener {
    type Accepted = tokio::net::TcpStream;
    type Io = tokio::net::TcpStream;

    async fn accept(&mut self) -> io::Result<Self::Accepted> {
        let (stream, _) = tokio::net::TcpListener::accept(self).await?;
        // API responses are small and interactive; don't wait to batch.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    fn establish(
        &self,
        conn: Self::Accepted,
    ) -> impl Future<Output = io::Result<Self::Io>> + Send + 'static {
        std::future::ready(Ok(conn))
    }

    fn refuse(&self, conn: Self::Accepted, response: &[u8]) {
        let _ = conn.try_write(response);
    }
}

/// Runs accept loops and connections until [`Server::shutdown`].
pub struct Server {
    service: ApiService,
    limits: Limits,
    /// One permit per open connection, over all listeners.
    connections: Arc<Semaphore>,
    /// Stop accepting; ask connections to close once idle.
    graceful: CancellationToken,
    /// Drop connections that did not finish within the grace period.
    force: CancellationToken,
    tasks: TaskTracker,
}

impl Server {
    /// A server that answers every connection with `service`, under the
    /// default [`Limits`].
    pub fn new(service: ApiService) -> Self {
        Self::with_limits(service, Limits::default())
    }

    /// A server that answers every connection with `service` under `limits`.
    pub fn with_limits(service: ApiService, limits: Limits) -> Self {
        Server {
            service,
            limits,
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            graceful: CancellationToken::new(),
            force: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// Connections open right now, over all listeners.
    pub fn open_connections(&self) -> usize {
        self.limits.max_connections - self.connections.available_permits()
    }

    /// Starts accepting on `listener`, known in logs as `addr` (e.g.
    /// `unix:///run/berth.sock`). Call from inside the runtime.
    pub fn serve<L: Listener>(&self, mut listener: L, addr: impl Into<String>) {
        let service = self.service.clone();
        let limits = self.limits;
        let connections = self.connections.clone();
        let graceful = self.graceful.clone();
        let force = self.force.clone();
        let tasks = self.tasks.clone();
        let addr = addr.into();
        tracing::info!("API listen on {addr}");
        self.tasks.spawn(async move {
            let mut refused = RefusalLog::default();
            loop {
                let accepted = tokio::select! {
                    _ = graceful.cancelled() => break,
                    accepted = listener.accept() => accepted,
                };
                let conn = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off
                        // instead of spinning, and keep serving.
                        tracing::warn!("accept on {addr}: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    // Over the cap: answer at once rather than queue, so
                    // the client learns why instead of hanging.
                    listener.refuse(conn, TOO_MANY_CONNECTIONS);
                    refused.note(&addr, limits.max_connections);
                    continue;
                };
                let handshake = listener.establish(conn);
                let (service, graceful, force) = (service.clone(), graceful.clone(), force.clone());
                tasks.spawn(async move {
                    let io = tokio::select! {
                        _ = force.cancelled() => return,
                        io = tokio::time::timeout(limits.handshake_timeout, handshake) => io,
                    };
                    match io {
                        Ok(Ok(io)) => {
                            let io = Counted::new(io, permit);
                            serve_connection(io, service, limits, graceful, force).await;
                        }
                        // The listener logged why.
                        Ok(Err(_)) => {}
                        Err(_) => tracing::info!(
                            "TLS handshake not completed within {:?}; connection closed",
                            limits.handshake_timeout
                        ),
                    }
                });
            }
            tracing::debug!("stopped accepting on {addr}");
        });
    }

    /// Stops accepting, lets in-flight requests finish for up to `grace`,
    /// then drops whatever is still open. Listeners are closed on return.
    pub async fn shutdown(self, grace: Duration) {
        self.graceful.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::info!(
                "{} API connection(s) still open after {grace:?}; closing them",
                self.tasks.len()
            );
            self.force.cancel();
            self.tasks.wait().await;
        }
    }
}

/// Rate-limited warnings about refused connections: one line per ten
/// seconds with the count, however hard a client hammers the socket.
#[derive(Default)]
struct RefusalLog {
    since_last: u64,
    last: Option<Instant>,
}

impl RefusalLog {
    fn note(&mut self, addr: &str, cap: usize) {
        self.since_last += 1;
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(10))
        {
            return;
        }
        tracing::warn!(
            "{addr}: refused {} connection(s): {cap} connections are open, the limit \
             (--api-max-connections)",
            self.since_last
        );
        self.since_last = 0;
        self.last = Some(Instant::now());
    }
}

pub(crate) async fn serve_connection<I>(
    io: I,
    service: ApiService,
    limits: Limits,
    graceful: CancellationToken,
    force: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = http1::Builder::new()
        // Header names as dockerd (Go) writes them: `Api-Version`, not
        // `api-version`. Clients must not care; some scripts do.
        .title_case_headers(true)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes)
        // The read buffer must hold a whole head; beyond that hyper
        // streams bodies, so this does not cap uploads.
        .max_buf_size(limits.max_header_bytes.max(64 * 1024) + 8 * 1024)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
        .with_upgrades();
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    // Clients hanging up mid-request is routine, and so is
                    // an idle keep-alive connection timing out.
                    tracing::debug!("API connection: {e}");
                }
                return;
            }
            _ = graceful.cancelled(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = force.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tower::ServiceBuilder;

    fn ping_service() -> ApiService {
        let router = axum::Router::new().route("/_ping", get(|| async { "OK" }));
        let svc = ServiceBuilder::new()
            .map_request(|req: hyper::Request<Incoming>| req.map(Body::new))
            .service(router);
        BoxCloneSyncService::new(svc)
    }

    async fn start(limits: Limits) -> (Server, std::net::SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::with_limits(ping_service(), limits);
        server.serve(listener, format!("tcp://{addr}"));
        (server, addr)
    }

    /// Everything the server sends until it closes (or 5 s pass).
    async fn read_all(stream: &mut TcpStream) -> String {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    async fn ping(addr: std::net::SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        read_all(&mut s).await
    }

    #[tokio::test]
    async fn an_oversized_head_gets_431_and_others_are_served() {
        let limits = Limits {
            max_header_bytes: 16 * 1024,
            ..Limits::default()
        };
        let (server, addr) = start(limits).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let big = "a".repeat(64 * 1024);
        let req = format!("GET /_ping HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
        // The server may close before taking all of it.
        let _ = s.write_all(req.as_bytes()).await;
        let answer = read_all(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
        assert!(ping(addr).await.ends_with("OK"));
        server.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_after_the_header_timeout() {
        let limits = Limits {
            header_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let (server, addr) = start(limits).await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut partial = TcpStream::connect(addr).await.unwrap();
        partial
            .write_all(b"GET /_ping HTTP/1.1\r\nHo")
            .await
            .unwrap();
        // Closed without a response: there is no complete request to answer.
        assert_eq!(read_all(&mut silent).await, "");
        assert_eq!(read_all(&mut partial).await, "");
        assert!(ping(addr).await.ends_with("OK"));
        // Kept-alive connections are closed once idle for as long.
        let mut kept = TcpStream::connect(addr).await.unwrap();
        kept.write_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let answer = read_all(&mut kept).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        server.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn connections_over_the_cap_get_503_until_one_closes() {
        let limits = Limits {
            max_connections: 3,
            ..Limits::default()
        };
        let (server, addr) = start(limits).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(TcpStream::connect(addr).await.unwrap());
        }
        // The accept loop takes connections in order; wait until it holds
        // all three before the fourth.
        for _ in 0..500 {
            if server.open_connections() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(server.open_connections(), 3);
        let answer = ping(addr).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("too many open connections"), "{answer}");
        held.pop();
        for _ in 0..500 {
            if server.open_connections() < 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(ping(addr).await.ends_with("OK"));
        drop(held);
        server.shutdown(Duration::from_secs(1)).await;
    }
}

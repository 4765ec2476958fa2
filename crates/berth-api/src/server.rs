//! Serving the API: accept loops over any [`Listener`] (unix sockets now,
//! TCP and TLS-wrapped streams later), one HTTP/1.1 connection task per
//! client with upgrades enabled (attach/exec hijack the connection), and a
//! shutdown that stops accepting, lets requests finish, then cuts the rest.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::time::Duration;

use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::util::BoxCloneSyncService;

/// The whole API as one service: what each connection serves.
pub type ApiService = BoxCloneSyncService<hyper::Request<Incoming>, Response, Infallible>;

/// A source of client connections. Implemented for tokio's unix and TCP
/// listeners; a TLS listener wraps a TCP one and does its handshake in
/// `accept`.
pub trait Listener: Send + 'static {
    /// The byte stream of one connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Waits for the next connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;

    async fn accept(&mut self) -> io::Result<Self::Io> {
        tokio::net::UnixListener::accept(self).await.map(|(s, _)| s)
    }
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;

    async fn accept(&mut self) -> io::Result<Self::Io> {
        let (stream, _) = tokio::net::TcpListener::accept(self).await?;
        // API responses are small and interactive; don't wait to batch.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// Runs accept loops and connections until [`Server::shutdown`].
pub struct Server {
    service: ApiService,
    /// Stop accepting; ask connections to close once idle.
    graceful: CancellationToken,
    /// Drop connections that did not finish within the grace period.
    force: CancellationToken,
    tasks: TaskTracker,
}

impl Server {
    /// A server that answers every connection with `service`.
    pub fn new(service: ApiService) -> Self {
        Server {
            service,
            graceful: CancellationToken::new(),
            force: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// Starts accepting on `listener`, known in logs as `addr` (e.g.
    /// `unix:///run/berth.sock`). Call from inside the runtime.
    pub fn serve<L: Listener>(&self, mut listener: L, addr: impl Into<String>) {
        let service = self.service.clone();
        let graceful = self.graceful.clone();
        let force = self.force.clone();
        let tasks = self.tasks.clone();
        let addr = addr.into();
        tracing::info!("API listen on {addr}");
        self.tasks.spawn(async move {
            loop {
                let io = tokio::select! {
                    _ = graceful.cancelled() => break,
                    accepted = listener.accept() => accepted,
                };
                match io {
                    Ok(io) => {
                        tasks.spawn(serve_connection(
                            io,
                            service.clone(),
                            graceful.clone(),
                            force.clone(),
                        ));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off
                        // instead of spinning, and keep serving.
                        tracing::warn!("accept on {addr}: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
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

pub(crate) async fn serve_connection<I>(
    io: I,
    service: ApiService,
    graceful: CancellationToken,
    force: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = http1::Builder::new()
        // Header names as dockerd (Go) writes them: `Api-Version`, not
        // `api-version`. Clients must not care; some scripts do.
        .title_case_headers(true)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
        .with_upgrades();
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    // Clients hanging up mid-request is routine.
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

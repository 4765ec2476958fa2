//! An in-process HTTP/1.1 connection for tests: a router served over a
//! tokio duplex pipe by the same connection code and request log berthd's
//! listeners use (upgrades on, dockerd header case), with the client end
//! handed to the test to speak raw HTTP on, and `-D` logging on demand.

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, DuplexStream};
use tokio_util::sync::CancellationToken;
use tower::util::BoxCloneSyncService;
use tower::ServiceBuilder;

use crate::limits::Limits;
use crate::request_log::RequestLogLayer;
use crate::server::{serve_connection, ApiService};

/// Serves `router` on a fresh connection and returns the client's end.
pub(crate) fn connect(router: Router) -> DuplexStream {
    let (client, server) = tokio::io::duplex(1 << 16);
    let svc = ServiceBuilder::new()
        .map_request(|req: hyper::Request<Incoming>| req.map(Body::new))
        .layer(RequestLogLayer)
        .service(router);
    let service: ApiService = BoxCloneSyncService::new(svc);
    tokio::spawn(serve_connection(
        server,
        service,
        Limits::default(),
        CancellationToken::new(),
        CancellationToken::new(),
    ));
    client
}

/// Reads a response head (status line and headers, through the blank
/// line) byte by byte, so nothing after it is consumed.
pub(crate) async fn read_head(client: &mut DuplexStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let b = client
            .read_u8()
            .await
            .expect("connection closed inside the head");
        head.push(b);
    }
    String::from_utf8(head).expect("response head is not UTF-8")
}

/// Turns debug logging on for this thread (the request log then buffers
/// small JSON bodies, as under `berthd -D`) until the guard is dropped.
/// Tests run on a current-thread runtime, so spawned tasks see it too.
pub(crate) fn debug_logging() -> tracing::subscriber::DefaultGuard {
    tracing::subscriber::set_default(EverythingEnabled)
}

/// A subscriber that enables every event and keeps none.
struct EverythingEnabled;

impl tracing::Subscriber for EverythingEnabled {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

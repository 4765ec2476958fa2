//! berth-api: the Docker Engine API over HTTP/1.1. It routes requests to
//! the [`berth_engine::Engine`], negotiates API versions like dockerd,
//! shapes JSON with `bollard-stubs` models and streams progress and tars.
//!
//! It knows nothing of filesystems or cgroups; berthd binds the sockets and
//! hands them over, this crate serves them (TLS and connection limits included).

pub mod api_metrics;
pub mod error;
pub mod filters;
pub mod hijack;
pub mod json_body;
pub mod json_stream;
pub mod limits;
pub mod query;
pub mod request_log;
mod routes;
pub mod server;
pub mod stdcopy;
#[cfg(test)]
mod test_server;
pub mod tls;
pub mod upload;
pub mod version;

use std::sync::Arc;

use axum::body::Body;
use berth_engine::Engine;
use tower::util::BoxCloneSyncService;
use tower::ServiceBuilder;

pub use api_metrics::ApiMetrics;
pub use error::ApiError;
pub use limits::Limits;
pub use routes::AppState;
pub use server::{ApiService, Listener, Server};

/// The complete API service for `engine`: version prefixes stripped,
/// dockerd's headers on every response, requests logged under `-D`.
pub fn service(engine: Arc<Engine>) -> ApiService {
    service_with_metrics(engine, Arc::new(ApiMetrics::default()))
}

/// [`service`], counting requests into `api_metrics` (which berthd also
/// hands to the `/metrics` registry).
pub fn service_with_metrics(engine: Arc<Engine>, api_metrics: Arc<ApiMetrics>) -> ApiService {
    let router = routes::router(AppState {
        engine,
        api_metrics,
    });
    let svc = ServiceBuilder::new()
        .map_request(|req: hyper::Request<hyper::body::Incoming>| req.map(Body::new))
        .layer(request_log::RequestLogLayer)
        .map_response(version::stamp_headers)
        .map_request(version::strip_version_prefix)
        .service(router);
    BoxCloneSyncService::new(svc)
}

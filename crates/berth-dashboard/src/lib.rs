//! berth-dashboard: what berthd serves on `--metrics-addr`. `/metrics` in
//! Prometheus text or OpenMetrics with cAdvisor's container metrics and the
//! engine's own; the dashboard page (HTML, JS and CSS embedded in the
//! binary, berth's own charts) and its `/api/` endpoints; and the pollers
//! of other hosts (berthd or dockerd) the dashboard shows beside this one.
//!
//! It reads the engine's stats sampler and event bus and never samples.

pub mod api;
pub mod hosts;
pub mod metrics;
pub mod view;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use berth_api::{ApiMetrics, ApiService};
use berth_engine::Engine;
use tower::util::BoxCloneSyncService;
use tower::ServiceBuilder;

pub use hosts::{parse_host_spec, HostSpec, Hosts};
pub use metrics::Metrics;

/// The front-end, compiled in: the page works with no network and no
/// file next to the binary.
const ASSETS: [(&str, &str, &str); 4] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../dashboard/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../dashboard/app.js"),
    ),
    (
        "/charts.js",
        "text/javascript; charset=utf-8",
        include_str!("../dashboard/charts.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../dashboard/style.css"),
    ),
];

fn asset(path: &'static str, ctype: &'static str, body: &'static str) -> Response {
    let _ = path;
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

#[derive(Clone)]
struct MetricsState(Arc<Metrics>);

async fn metrics_route(State(m): State<MetricsState>, headers: HeaderMap) -> Response {
    metrics::scrape(m.0, headers).await
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// Everything served on the metrics address. Blocking (reads the
/// daemon's identity once); start the hosts' pollers with
/// [`Hosts::start`].
pub fn service(engine: Arc<Engine>, api_metrics: &ApiMetrics, hosts: Arc<Hosts>) -> ApiService {
    let metrics = Arc::new(Metrics::new(Arc::clone(&engine), api_metrics));
    let mut pages = Router::new();
    for (path, ctype, body) in ASSETS {
        pages = pages.route(path, get(move || async move { asset(path, ctype, body) }));
    }
    let api = Router::new()
        .route("/api/hosts", get(api::hosts))
        .route("/api/overview", get(api::overview))
        .route("/api/containers", get(api::containers))
        .route("/api/containers/{host}/{id}", get(api::container))
        .route("/api/containers/{host}/{id}/processes", get(api::processes))
        .route("/api/events", get(api::events))
        .with_state(api::DashState::new(engine, hosts));
    let router = Router::new()
        .route("/metrics", get(metrics_route))
        .with_state(MetricsState(metrics))
        .merge(pages)
        .merge(api)
        .fallback(not_found);
    let svc = ServiceBuilder::new()
        .map_request(|req: hyper::Request<hyper::body::Incoming>| req.map(Body::new))
        .service(router);
    BoxCloneSyncService::new(svc)
}

//! Engine API request metrics for `/metrics`: a count per method, route and
//! status and a latency histogram per method and route. One route-level
//! middleware records them, so the route label is the matched pattern
//! (`/containers/{id}/json`), never a raw path with IDs in it.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Latency buckets in seconds: from a cached `/_ping` to a large load.
/// Streaming endpoints (events, stats, logs, attach) count the time to
/// their response head, not the life of the stream.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    code: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

/// The request counters of one API service.
#[derive(Debug, Clone)]
pub struct ApiMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        ApiMetrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(|| Histogram::new(BUCKETS)),
        }
    }
}

impl ApiMetrics {
    /// Adds the families to `registry` (they share their storage with
    /// this value, so the service keeps counting into what is scraped).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "berth_api_requests",
            "Engine API requests by method, route pattern and status code",
            self.requests.clone(),
        );
        registry.register(
            "berth_api_request_duration_seconds",
            "Engine API time to response head by method and route pattern",
            self.latency.clone(),
        );
    }

    /// Records one request.
    pub fn observe(&self, method: &str, route: &str, code: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                route: route.to_string(),
                code,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                method: method.to_string(),
                route: route.to_string(),
            })
            .observe(seconds);
    }
}

/// The route-level middleware: times the handler and records it under the
/// matched route.
pub async fn track(State(metrics): State<Arc<ApiMetrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let resp = next.run(req).await;
    metrics.observe(
        &method,
        &route,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn counts_by_route_pattern() {
        let metrics = Arc::new(ApiMetrics::default());
        let app = axum::Router::new()
            .route("/containers/{id}/json", get(|| async { "x" }))
            .route_layer(axum::middleware::from_fn_with_state(
                Arc::clone(&metrics),
                track,
            ));
        for id in ["a", "b"] {
            let req = Request::builder()
                .uri(format!("/containers/{id}/json"))
                .body(Body::empty())
                .unwrap();
            app.clone().oneshot(req).await.unwrap();
        }
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                r#"berth_api_requests_total{method="GET",route="/containers/{id}/json",code="200"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"berth_api_request_duration_seconds_count{method="GET",route="/containers/{id}/json"} 2"#),
            "{text}"
        );
    }
}

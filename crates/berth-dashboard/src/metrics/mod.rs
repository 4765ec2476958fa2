//! `GET /metrics`: one `prometheus-client` registry holding the API
//! request families (shared with the Engine API service), the cAdvisor
//! container collector and the engine collector, encoded per scrape in
//! OpenMetrics or Prometheus text 0.0.4, as the scraper's `Accept` asks.

mod containers;
mod engine;

use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_api::ApiMetrics;
use berth_engine::Engine;
use prometheus_client::registry::Registry;

pub use containers::label_name;

/// The OpenMetrics content type prometheus-client writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Everything `/metrics` serves.
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// The registry for `engine`, with the API's request families.
    /// Blocking (reads the daemon's identity once).
    pub fn new(engine: Arc<Engine>, api: &ApiMetrics) -> Metrics {
        let mut registry = Registry::default();
        api.register(&mut registry);
        registry.register_collector(Box::new(containers::ContainerCollector::new(Arc::clone(
            &engine,
        ))));
        registry.register_collector(Box::new(engine::EngineCollector::new(engine)));
        Metrics { registry }
    }

    /// One scrape's body in the chosen format. Reads only memory.
    pub fn encode(&self, openmetrics: bool) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(256 * 1024);
        if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        }
        Ok(out)
    }
}

/// Whether the `Accept` header asks for OpenMetrics (Prometheus sends it
/// first, with text 0.0.4 as a fallback; curl and browsers get text).
pub fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            let mut fields = part.split(';').map(str::trim);
            let media = fields.next().unwrap_or("");
            let refused = fields.any(|f| f.replace(' ', "") == "q=0");
            media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        })
}

/// The `/metrics` response: encoded on a blocking thread (a scrape of a
/// hundred containers is CPU work, however short).
pub async fn scrape(metrics: Arc<Metrics>, headers: HeaderMap) -> Response {
    let openmetrics = wants_openmetrics(&headers);
    let body = tokio::task::spawn_blocking(move || metrics.encode(openmetrics)).await;
    match body {
        Ok(Ok(text)) => {
            let ctype = if openmetrics {
                OPENMETRICS
            } else {
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE
            };
            let mut resp = text.into_response();
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
            resp
        }
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding metrics failed\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn negotiates_like_prometheus_expects() {
        assert!(wants_openmetrics(&accept(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(!wants_openmetrics(&accept("text/plain;version=0.0.4")));
        assert!(!wants_openmetrics(&accept("*/*")));
        assert!(!wants_openmetrics(&accept(
            "application/openmetrics-text;q=0"
        )));
        assert!(!wants_openmetrics(&HeaderMap::new()));
    }
}

//! The route table: which path and method reach which handler, and the
//! few pieces every handler shares (state, blocking engine calls, JSON
//! responses). Handlers live in one module per endpoint family.

mod containers;
mod df;
mod events;
mod exec;
mod images;
mod networks;
mod registry;
mod stats;
mod system;
mod volumes;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use berth_engine::{Engine, ErrorKind};
use serde::Serialize;

use crate::error::ApiError;
use crate::version;

/// What handlers share: the engine.
#[derive(Clone)]
pub struct AppState {
    /// The engine every handler calls into.
    pub engine: Arc<Engine>,
    /// Request counts and latencies by route, for `/metrics`.
    pub api_metrics: Arc<crate::ApiMetrics>,
}

/// Every route, with version checking on the matched ones and dockerd's
/// 404 for everything else.
pub fn router(state: AppState) -> Router {
    let api_metrics = Arc::clone(&state.api_metrics);
    Router::new()
        .merge(system::routes())
        .merge(images::routes())
        .merge(containers::routes())
        .merge(exec::routes())
        .merge(volumes::routes())
        .merge(networks::routes())
        .merge(registry::routes())
        .merge(events::routes())
        .merge(stats::routes())
        .merge(df::routes())
        .route_layer(axum::middleware::from_fn(version::check_version))
        // Outermost of the route layers: requests refused for their API
        // version are counted too.
        .route_layer(axum::middleware::from_fn_with_state(
            api_metrics,
            crate::api_metrics::track,
        ))
        .fallback(unmatched)
        .method_not_allowed_fallback(unmatched)
        .with_state(state)
}

/// dockerd answers OPTIONS on any path with an empty 200 (CORS preflight)
/// and everything else it has no route for with `page not found`.
async fn unmatched(method: Method) -> Response {
    if method == Method::OPTIONS {
        return StatusCode::OK.into_response();
    }
    ApiError::page_not_found().into_response()
}

/// A JSON response the way dockerd writes one (trailing newline included).
pub(crate) fn json_response<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            let mut resp = Response::new(Body::from(body));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => {
            tracing::error!("encode response: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "encode response").into_response()
        }
    }
}

/// A 200 JSON response.
pub(crate) fn json_ok<T: Serialize + ?Sized>(value: &T) -> Response {
    json_response(StatusCode::OK, value)
}

/// An engine value as JSON, for handlers that reshape it per version.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(value)
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("encode response: {e}")))
}

/// Runs a blocking engine call (disk, metadata) off the async workers.
pub(crate) async fn blocking<T, F>(state: &AppState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Engine) -> berth_engine::Result<T> + Send + 'static,
{
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || f(&engine))
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("engine task failed: {e}")))?
        .map_err(ApiError::from)
}

//! `GET /containers/{id}/stats` (dockerd's parameters and framing: one
//! JSON object per line, `stream` defaulting to true, `one-shot` from API
//! 1.41) and berth's all-containers stream `GET /containers/stats`: one
//! JSON array per sampler interval with every running container's stats.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use berth_engine::stats::StatsOptions;
use bytes::Bytes;
use serde::Serialize;

use super::AppState;
use crate::error::ApiError;
use crate::query::Query;
use crate::version::ApiVersion;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/{id}/stats", get(container_stats))
        // A container may be called "stats": DELETE keeps reaching it.
        .route(
            "/containers/stats",
            get(all_stats).merge(super::containers::remove_literal("stats")),
        )
}

/// One value and dockerd's newline.
fn line<T: Serialize>(value: &T) -> Bytes {
    let mut out = serde_json::to_vec(value).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

fn json_stream(body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

async fn container_stats(
    State(state): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, ApiError> {
    let opts = StatsOptions {
        stream: q.bool_or("stream", true),
        one_shot: !v.lt("1.41") && q.bool_or("one-shot", false),
    };
    let stream = state.engine.container_stats(&id, opts)?;
    let body = futures_util::stream::unfold(stream, |mut s| async move {
        let stats = s.next().await?;
        Some((Ok::<_, Infallible>(line(&stats)), s))
    });
    Ok(json_stream(Body::from_stream(body)))
}

/// `GET /containers/stats?stream=`: a berth extension for dashboards —
/// every running container on one connection. Each line is a JSON array
/// of the same objects `/containers/{id}/stats` sends (with `precpu_stats`
/// filled), ordered by name; `stream=false` sends one line.
async fn all_stats(State(state): State<AppState>, q: Query) -> Response {
    let stream = state.engine.all_container_stats(q.bool_or("stream", true));
    let body = futures_util::stream::unfold(stream, |mut s| async move {
        let batch = s.next().await?;
        Some((Ok::<_, Infallible>(line(&batch)), s))
    });
    json_stream(Body::from_stream(body))
}

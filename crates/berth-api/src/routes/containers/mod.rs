//! Container endpoints: the route table for `/containers/...` and
//! `/commit`, and the lifecycle handlers (create, start, stop, kill, pause,
//! remove, list, inspect, resize, top, rename, update, prune). Streams and
//! files have their own modules; this family's per-version request
//! rewrites live in `create`, its response shapes in `shape`.

mod create;
mod files;
mod shape;
mod streams;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::{Extension, Router};
use berth_engine::containers::ListContainersOptions;
use berth_engine::ErrorKind;
use bollard_stubs::models::ContainerUpdateBody;

use super::{json_ok, json_response, to_json, AppState};
use crate::error::ApiError;
use crate::filters::parse_filters;
use crate::json_body::{self, JsonBody};
use crate::query::Query;
use crate::version::ApiVersion;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/json", get(list).merge(remove_literal("json")))
        .route(
            "/containers/create",
            post(create_container).merge(remove_literal("create")),
        )
        .route(
            "/containers/prune",
            post(prune).merge(remove_literal("prune")),
        )
        .route("/containers/{id}", delete(remove))
        .route("/containers/{id}/json", get(inspect))
        .route("/containers/{id}/start", post(start))
        .route("/containers/{id}/stop", post(stop))
        .route("/containers/{id}/restart", post(restart))
        .route("/containers/{id}/kill", post(kill))
        .route("/containers/{id}/pause", post(pause))
        .route("/containers/{id}/unpause", post(unpause))
        .route("/containers/{id}/wait", post(streams::wait))
        .route("/containers/{id}/resize", post(resize))
        .route("/containers/{id}/top", get(top))
        .route("/containers/{id}/rename", post(rename))
        .route("/containers/{id}/update", post(update))
        .route("/containers/{id}/logs", get(streams::logs))
        .route("/containers/{id}/attach", post(streams::attach))
        .route("/containers/{id}/changes", get(files::changes))
        .route("/containers/{id}/export", get(files::export))
        .route(
            "/containers/{id}/archive",
            get(files::archive_get)
                .head(files::archive_stat)
                .put(files::archive_put),
        )
        .route("/commit", post(files::commit))
}

/// `DELETE /containers/json` removes a container called "json" in
/// dockerd; the fixed routes would otherwise shadow such names.
pub(super) fn remove_literal(name: &'static str) -> MethodRouter<AppState> {
    delete(move |state: State<AppState>, q: Query| async move {
        remove_container(state, name.to_string(), q).await
    })
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /containers/create?name=&platform=`.
async fn create_container(
    State(state): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    q: Query,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = json_body::read(&parts.headers, body).await?;
    let create::CreateRequest { body, warnings } = create::decode(&bytes, &v)?;
    // `platform` arrived in 1.41.
    if let Some(platform) = q.non_empty("platform").filter(|_| v.ge("1.41")) {
        create::check_platform(platform)?;
    }
    let name = q.non_empty("name").map(str::to_string);
    let mut created = state.engine.create_container(name, body).await?;
    created.warnings.extend(warnings);
    Ok(json_response(StatusCode::CREATED, &created))
}

/// Whether a start request carries a body: a host config at start was
/// removed in API 1.24, and `{}`-sized bodies are all dockerd tolerates.
fn start_has_body(headers: &HeaderMap) -> bool {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return true;
    }
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 7)
}

/// `POST /containers/{id}/start`.
async fn start(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: Query,
) -> Result<Response, ApiError> {
    if start_has_body(&headers) {
        return Err(ApiError::invalid("starting container with non-empty request body was deprecated since API v1.22 and removed in v1.24"));
    }
    if q.non_empty("checkpoint").is_some() {
        return Err(ApiError::new(
            ErrorKind::NotImplemented,
            "checkpoint and restore are not supported by berth",
        ));
    }
    state.engine.start_container(&id).await?;
    Ok(no_content())
}

/// `signal` and `t` of stop and restart. `signal` arrived in 1.42; an
/// older client's value is ignored, as dockerd ignores it.
fn stop_options(q: &Query, v: &ApiVersion) -> Result<(Option<String>, Option<i64>), ApiError> {
    let signal = q
        .non_empty("signal")
        .filter(|_| v.ge("1.42"))
        .map(str::to_string);
    Ok((signal, q.int("t")?))
}

/// `POST /containers/{id}/stop?signal=&t=`.
async fn stop(
    State(state): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, ApiError> {
    let (signal, timeout) = stop_options(&q, &v)?;
    state.engine.stop_container(&id, signal, timeout).await?;
    Ok(no_content())
}

/// `POST /containers/{id}/restart?signal=&t=`.
async fn restart(
    State(state): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, ApiError> {
    let (signal, timeout) = stop_options(&q, &v)?;
    state.engine.restart_container(&id, signal, timeout).await?;
    Ok(no_content())
}

/// `POST /containers/{id}/kill?signal=`.
async fn kill(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, ApiError> {
    let signal = q.non_empty("signal").map(str::to_string);
    state
        .engine
        .kill_container(&id, signal)
        .await
        // dockerd's router names the container in every kill failure.
        .map_err(|e| ApiError::from(e).context(format!("cannot kill container: {id}")))?;
    Ok(no_content())
}

/// `POST /containers/{id}/pause`.
async fn pause(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.engine.pause_container(&id).await?;
    Ok(no_content())
}

/// `POST /containers/{id}/unpause`.
async fn unpause(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.engine.unpause_container(&id).await?;
    Ok(no_content())
}

/// `DELETE /containers/{id}?force=&v=&link=`.
async fn remove(
    state: State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, ApiError> {
    remove_container(state, id, q).await
}

async fn remove_container(
    State(state): State<AppState>,
    id: String,
    q: Query,
) -> Result<Response, ApiError> {
    if q.bool("link") {
        // `link` removes a legacy link `/parent/alias`; berth has no links,
        // so every name is a container's own, which dockerd refuses thus
        // (unclassified: a 500).
        return Err(ApiError::new(
            ErrorKind::Internal,
            "Conflict, cannot remove the default link name of the container",
        ));
    }
    state
        .engine
        .remove_container(&id, q.bool("force"), q.bool("v"))
        .await?;
    Ok(no_content())
}

/// `GET /containers/json?all=&limit=&size=&filters=`.
async fn list(
    State(state): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    q: Query,
) -> Result<Response, ApiError> {
    let filters = parse_filters(q.str("filters"))?;
    // dockerd treats zero and negative limits as no limit.
    let limit = q
        .int("limit")?
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n > 0);
    let opts = ListContainersOptions {
        all: q.bool("all"),
        limit,
        size: q.bool("size"),
        filters,
    };
    let containers = state.engine.list_containers(&opts).await?;
    let mut value = to_json(&containers)?;
    shape::container_list(&mut value, &v);
    Ok(json_ok(&value))
}

/// `GET /containers/{id}/json?size=`.
async fn inspect(
    State(state): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, ApiError> {
    let container = state.engine.inspect_container(&id, q.bool("size")).await?;
    let mut value = to_json(&container)?;
    shape::container_inspect(&mut value, &v);
    Ok(json_ok(&value))
}

/// `POST /containers/{id}/resize?h=&w=`.
async fn resize(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, ApiError> {
    let (height, width) = q.terminal_size()?;
    state.engine.resize_container(&id, height, width).await?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /containers/{id}/top?ps_args=`.
async fn top(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, ApiError> {
    let ps_args = q.non_empty("ps_args").map(str::to_string);
    let top = state.engine.top_container(&id, ps_args).await?;
    Ok(json_ok(&top))
}

/// `POST /containers/{id}/rename?name=`.
async fn rename(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, ApiError> {
    state.engine.rename_container(&id, q.str("name")).await?;
    Ok(no_content())
}

/// `POST /containers/{id}/update`.
async fn update(
    State(state): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ContainerUpdateBody>,
) -> Result<Response, ApiError> {
    let mut body = body.unwrap_or_default();
    if v.lt("1.40") {
        // Updating the pids limit arrived in 1.40.
        body.pids_limit = None;
    }
    if body.pids_limit.is_some_and(|n| n <= 0) {
        // On update, 0 and any negative value mean "remove the limit".
        body.pids_limit = Some(0);
    }
    let updated = state.engine.update_container(&id, body).await?;
    let mut value = to_json(&updated)?;
    shape::update_response(&mut value);
    Ok(json_ok(&value))
}

/// `POST /containers/prune?filters=`.
async fn prune(State(state): State<AppState>, q: Query) -> Result<Response, ApiError> {
    let filters = parse_filters(q.str("filters"))?;
    let report = state.engine.prune_containers(&filters).await?;
    let mut value = to_json(&report)?;
    shape::prune_report(&mut value);
    Ok(json_ok(&value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn stop_signal_only_from_1_42() {
        let q = Query::parse("signal=SIGUSR1&t=3").unwrap();
        assert_eq!(
            stop_options(&q, &ApiVersion::new("1.42")).unwrap(),
            (Some("SIGUSR1".to_string()), Some(3))
        );
        assert_eq!(
            stop_options(&q, &ApiVersion::new("1.41")).unwrap(),
            (None, Some(3))
        );
        let q = Query::parse("signal=&t=").unwrap();
        assert_eq!(
            stop_options(&q, &ApiVersion::newest()).unwrap(),
            (None, None)
        );
        let q = Query::parse("t=soon").unwrap();
        assert_eq!(
            stop_options(&q, &ApiVersion::newest())
                .unwrap_err()
                .message(),
            r#"strconv.Atoi: parsing "soon": invalid syntax"#
        );
    }

    #[test]
    fn start_refuses_host_config_bodies_only() {
        let mut h = HeaderMap::new();
        assert!(!start_has_body(&h));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
        assert!(!start_has_body(&h));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("8"));
        assert!(start_has_body(&h));
        let mut chunked = HeaderMap::new();
        chunked.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert!(start_has_body(&chunked));
    }
}

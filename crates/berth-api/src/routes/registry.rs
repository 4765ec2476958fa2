//! Registry endpoints: pull (`POST /images/create?fromImage=`), push
//! (`POST /images/{name}/push`), `POST /auth` (`docker login`) and
//! `GET /distribution/{name}/json`. Credentials come in the
//! `X-Registry-Auth` header (or the `/auth` body); an unreadable header
//! counts as none, as with dockerd.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use berth_engine::distribution::{AuthConfig, PullOptions, PushOptions};
use serde_json::json;

use super::{json_ok, AppState};
use crate::error::ApiError;
use crate::json_body::JsonBody;
use crate::json_stream;
use crate::query::Query;
use crate::version::ApiVersion;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth", post(login))
        .route("/distribution/{*rest}", get(distribution_inspect))
}

fn registry_auth(headers: &HeaderMap) -> AuthConfig {
    AuthConfig::from_header(headers.get("X-Registry-Auth").and_then(|v| v.to_str().ok()))
}

/// `POST /images/create?fromImage=&tag=&platform=`.
pub(super) async fn pull(
    state: &AppState,
    v: &ApiVersion,
    q: &Query,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let opts = PullOptions {
        from_image: q.str("fromImage").to_string(),
        tag: q.non_empty("tag").map(str::to_string),
        // platform arrived in 1.32.
        platform: q
            .non_empty("platform")
            .filter(|_| v.ge("1.32"))
            .map(str::to_string),
        auth: registry_auth(headers),
    };
    let rx = state.engine.pull_image(opts).await?;
    Ok(json_stream::response(rx, async {}))
}

/// `POST /images/{name}/push?tag=`.
pub(super) async fn push(
    state: &AppState,
    name: String,
    q: &Query,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let opts = PushOptions {
        name,
        tag: q.non_empty("tag").map(str::to_string),
        auth: registry_auth(headers),
    };
    let rx = state.engine.push_image(opts).await?;
    Ok(json_stream::response(rx, async {}))
}

/// `POST /auth`: checks the credentials with the registry.
async fn login(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<AuthConfig>,
) -> Result<Response, ApiError> {
    let auth = body.unwrap_or_default();
    let token = state.engine.registry_login(&auth).await?;
    Ok(json_ok(&json!({
        "Status": "Login Succeeded",
        "IdentityToken": token,
    })))
}

/// `GET /distribution/{name}/json`.
async fn distribution_inspect(
    State(state): State<AppState>,
    Extension(_v): Extension<ApiVersion>,
    Path(rest): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(name) = rest.strip_suffix("/json") else {
        return Err(ApiError::page_not_found());
    };
    let value = state
        .engine
        .distribution_inspect(name, &registry_auth(&headers))
        .await?;
    Ok(json_ok(&value))
}

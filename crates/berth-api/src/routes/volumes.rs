//! Volume endpoints: create, list, inspect, remove, prune; cluster volume
//! requests are answered as dockerd answers them outside a swarm, and the
//! per-version quirks (old clients' prune removes named volumes too) and
//! response shapes of this family are at the bottom.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::{Extension, Router};
use bollard_stubs::models::VolumeCreateRequest;
use serde_json::{json, Value};

use super::{json_ok, json_response, to_json, AppState};
use crate::error::ApiError;
use crate::filters::parse_filters;
use crate::json_body::JsonBody;
use crate::query::Query;
use crate::version::ApiVersion;

/// What dockerd says when a swarm-only feature is used outside a swarm.
const NOT_A_SWARM_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/volumes", get(list))
        .route("/volumes/create", post(create).merge(literal("create")))
        .route("/volumes/prune", post(prune).merge(literal("prune")))
        .route("/volumes/{name}", get(inspect).delete(remove).put(update))
}

/// Volumes called "create" or "prune" are still inspected and removed by
/// name, as with dockerd's `{name:.*}` routes.
fn literal(name: &'static str) -> MethodRouter<AppState> {
    get(move |state: State<AppState>| async move { inspect(state, Path(name.to_string())).await })
        .merge(delete(move |state: State<AppState>, q: Query| async move {
            remove(state, Path(name.to_string()), q).await
        }))
        .merge(put(|| async { update().await }))
}

/// `POST /volumes/create`.
async fn create(
    State(state): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    JsonBody(req): JsonBody<VolumeCreateRequest>,
) -> Result<Response, ApiError> {
    let req = req.unwrap_or_default();
    // A cluster spec (1.42+) asks the swarm for the volume.
    if req.cluster_volume_spec.is_some() && v.ge("1.42") {
        return Err(ApiError::unavailable(NOT_A_SWARM_MANAGER));
    }
    let volume = state.engine.create_volume(req).await?;
    let mut value = to_json(&volume)?;
    shape_volume(&mut value);
    Ok(json_response(StatusCode::CREATED, &value))
}

/// `GET /volumes?filters=`.
async fn list(State(state): State<AppState>, q: Query) -> Result<Response, ApiError> {
    let filters =
        parse_filters(q.str("filters")).map_err(|e| e.context("error reading volume filters"))?;
    let listed = state.engine.list_volumes(&filters).await?;
    let mut value = to_json(&listed)?;
    shape_list(&mut value);
    Ok(json_ok(&value))
}

/// `GET /volumes/{name}`.
async fn inspect(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let volume = state.engine.inspect_volume(&name).await?;
    let mut value = to_json(&volume)?;
    shape_volume(&mut value);
    Ok(json_ok(&value))
}

/// `DELETE /volumes/{name}?force=`.
async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
    q: Query,
) -> Result<Response, ApiError> {
    state.engine.remove_volume(&name, q.bool("force")).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /volumes/{name}`: only cluster volumes can be updated.
async fn update() -> Result<Response, ApiError> {
    Err(ApiError::unavailable(
        "volume update only valid for cluster volumes, but swarm is unavailable",
    ))
}

/// `POST /volumes/prune?filters=`.
async fn prune(
    State(state): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    q: Query,
) -> Result<Response, ApiError> {
    let mut filters = parse_filters(q.str("filters"))?;
    if v.lt("1.42") {
        // Since 1.42 prune takes only anonymous volumes unless `all` says
        // otherwise; older clients expect every unused volume to go.
        filters
            .0
            .entry("all".to_string())
            .or_default()
            .push("true".to_string());
    }
    let report = state.engine.prune_volumes(&filters).await?;
    let mut value = to_json(&report)?;
    if let Some(obj) = value.as_object_mut() {
        // dockerd always sends both, `null` when nothing was deleted.
        obj.entry("VolumesDeleted").or_insert(Value::Null);
        obj.entry("SpaceReclaimed").or_insert(json!(0));
    }
    Ok(json_ok(&value))
}

/// A volume as Go writes it: `Scope` always present.
fn shape_volume(volume: &mut Value) {
    if let Some(obj) = volume.as_object_mut() {
        obj.entry("Scope").or_insert(json!("local"));
    }
}

/// The list: `Volumes` an array even when empty, `Warnings` always there.
fn shape_list(list: &mut Value) {
    let Some(obj) = list.as_object_mut() else {
        return;
    };
    let volumes = obj.entry("Volumes").or_insert(json!([]));
    if volumes.is_null() {
        *volumes = json!([]);
    }
    if let Some(items) = volumes.as_array_mut() {
        items.iter_mut().for_each(shape_volume);
    }
    obj.entry("Warnings").or_insert(Value::Null);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_list_has_both_fields() {
        let mut list = json!({});
        shape_list(&mut list);
        assert_eq!(list, json!({"Volumes": [], "Warnings": null}));
        let mut list = json!({"Volumes": [{"Name": "v", "Driver": "local"}]});
        shape_list(&mut list);
        assert_eq!(list["Volumes"][0]["Scope"], "local");
    }
}

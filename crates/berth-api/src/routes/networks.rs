//! Network endpoints: list, inspect, create, remove, connect, disconnect,
//! prune (pre-defined and user-defined bridge networks); this family's
//! per-version quirks and response shapes are at the bottom.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;
use bollard_stubs::models::{
    NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest,
};
use serde_json::{json, Value};

use super::{json_ok, json_response, to_json, AppState};
use crate::error::ApiError;
use crate::filters::parse_filters;
use crate::json_body::JsonBody;
use crate::query::Query;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/networks", get(list))
        .route("/networks/", get(list))
        .route("/networks/create", post(create).merge(literal("create")))
        .route("/networks/prune", post(prune).merge(literal("prune")))
        .route("/networks/{id}", get(inspect).delete(remove))
        .route("/networks/{id}/connect", post(connect))
        .route("/networks/{id}/disconnect", post(disconnect))
}

/// Networks called "create" or "prune" are still inspected and removed by
/// name, as with dockerd's `{id:.*}` routes.
fn literal(name: &'static str) -> MethodRouter<AppState> {
    get(move |state: State<AppState>, q: Query| async move {
        inspect(state, Path(name.to_string()), q).await
    })
    .merge(delete(move |state: State<AppState>| async move {
        remove(state, Path(name.to_string())).await
    }))
}

/// `GET /networks?filters=`.
async fn list(State(state): State<AppState>, q: Query) -> Result<Response, ApiError> {
    let filters = parse_filters(q.str("filters"))?;
    let networks = state.engine.list_networks(&filters).await?;
    let mut value = to_json(&networks)?;
    if let Some(items) = value.as_array_mut() {
        for n in items.iter_mut() {
            shape_network(n);
        }
    }
    Ok(json_ok(&value))
}

/// `GET /networks/{id}?verbose=&scope=`.
async fn inspect(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, ApiError> {
    if let Some(raw) = q.non_empty("verbose") {
        // Go's strconv.ParseBool, stricter than the other booleans.
        if !matches!(
            raw,
            "1" | "t"
                | "T"
                | "TRUE"
                | "true"
                | "True"
                | "0"
                | "f"
                | "F"
                | "FALSE"
                | "false"
                | "False"
        ) {
            return Err(ApiError::invalid(format!(
                "invalid value for verbose: {raw}: strconv.ParseBool: parsing {raw:?}: invalid syntax"
            )));
        }
    }
    let network = state.engine.inspect_network(&id).await?;
    let mut value = to_json(&network)?;
    shape_network(&mut value);
    Ok(json_ok(&value))
}

/// `POST /networks/create`.
async fn create(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<NetworkCreateRequest>,
) -> Result<Response, ApiError> {
    let mut req = req.unwrap_or_default();
    // EnableIPv4 arrived in 1.48, after every version berth speaks.
    req.enable_ipv4 = None;
    let created = state.engine.create_network(req).await?;
    let mut value = to_json(&created)?;
    if let Some(obj) = value.as_object_mut() {
        obj.entry("Warning").or_insert(json!(""));
    }
    Ok(json_response(StatusCode::CREATED, &value))
}

/// `DELETE /networks/{id}`.
async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.engine.remove_network(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /networks/{id}/connect`.
async fn connect(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<NetworkConnectRequest>,
) -> Result<Response, ApiError> {
    let req = req.unwrap_or_default();
    state
        .engine
        .connect_network(&id, &req.container, req.endpoint_config)
        .await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /networks/{id}/disconnect`.
async fn disconnect(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<NetworkDisconnectRequest>,
) -> Result<Response, ApiError> {
    let req = req.unwrap_or_default();
    state
        .engine
        .disconnect_network(&id, &req.container, req.force.unwrap_or(false))
        .await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /networks/prune?filters=`.
async fn prune(State(state): State<AppState>, q: Query) -> Result<Response, ApiError> {
    let filters = parse_filters(q.str("filters"))?;
    let report = state.engine.prune_networks(&filters).await?;
    let mut value = to_json(&report)?;
    if let Some(obj) = value.as_object_mut() {
        obj.entry("NetworksDeleted").or_insert(Value::Null);
    }
    Ok(json_ok(&value))
}

/// A network as dockerd writes it for berth's API versions: `EnableIPv4`
/// is 1.48, newer than any of them; the rest is always present.
fn shape_network(network: &mut Value) {
    let Some(obj) = network.as_object_mut() else {
        return;
    };
    obj.remove("EnableIPv4");
    for (key, zero) in [
        ("Name", json!("")),
        ("Id", json!("")),
        ("Created", json!("0001-01-01T00:00:00Z")),
        ("Scope", json!("local")),
        ("Driver", json!("")),
        ("EnableIPv6", json!(false)),
        (
            "IPAM",
            json!({"Driver": "default", "Options": null, "Config": null}),
        ),
        ("Internal", json!(false)),
        ("Attachable", json!(false)),
        ("Ingress", json!(false)),
        ("ConfigFrom", json!({"Network": ""})),
        ("ConfigOnly", json!(false)),
        ("Containers", json!({})),
        ("Options", json!({})),
        ("Labels", json!({})),
    ] {
        obj.entry(key).or_insert(zero);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_lose_newer_fields_and_keep_go_zero_values() {
        let mut n = json!({"Name": "bridge", "Id": "abc", "Driver": "bridge", "EnableIPv4": true});
        shape_network(&mut n);
        assert!(n.get("EnableIPv4").is_none());
        assert_eq!(n["Containers"], json!({}));
        assert_eq!(n["Scope"], "local");
        assert_eq!(n["Driver"], "bridge");
    }
}

//! System endpoints: `/_ping`, `/version`, `/info`, and the per-version
//! reshaping dockerd applies to `/info` for older clients.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::{json, Value};

use super::{blocking, json_ok, AppState};
use crate::error::ApiError;
use crate::version::ApiVersion;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/_ping", get(ping).head(ping_head))
        .route("/version", get(version))
        .route("/info", get(info))
}

/// Clients negotiate their API version from this response's headers, so
/// it must never be cached by a proxy in between.
fn ping_response(body: Body, length: &'static str) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert("Swarm", HeaderValue::from_static("inactive"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static(length));
    resp
}

async fn ping() -> Response {
    ping_response(Body::from("OK"), "2")
}

async fn ping_head() -> Response {
    ping_response(Body::empty(), "0")
}

async fn version(State(state): State<AppState>) -> Result<Response, ApiError> {
    // Asks the runtime binary for its version: a child process.
    let version = blocking(&state, |engine| Ok(engine.version())).await?;
    Ok(json_ok(&version))
}

async fn info(
    State(state): State<AppState>,
    Extension(v): Extension<ApiVersion>,
) -> Result<Response, ApiError> {
    // info reads /proc, /sys and runs `runc --version`: keep it off the
    // async workers.
    let info = blocking(&state, |engine| Ok(engine.info())).await?;
    let mut value = serde_json::to_value(&info)
        .map_err(|e| ApiError::new(berth_engine::ErrorKind::Internal, e.to_string()))?;
    shape_info(&mut value, &v);
    if let Some(obj) = value.as_object_mut() {
        // berth's own field: events `/events` readers missed because their
        // queues were full (each reader got a gap notice for them).
        let dropped = state.engine.events().stats().dropped;
        obj.insert("EventsDropped".into(), json!(dropped));
    }
    Ok(json_ok(&value))
}

/// The fields dockerd adds or drops in `/info` for a client at `v`.
fn shape_info(info: &mut Value, v: &ApiVersion) {
    let Some(obj) = info.as_object_mut() else {
        return;
    };
    if v.lt("1.44") {
        // Runtime status arrived in 1.44.
        if let Some(Value::Object(runtimes)) = obj.get_mut("Runtimes") {
            for rt in runtimes.values_mut() {
                if let Some(rt) = rt.as_object_mut() {
                    rt.remove("status");
                }
            }
        }
    }
    if v.lt("1.46") {
        obj.remove("Containerd");
    }
    if v.lt("1.47") {
        if let Some(Value::Object(reg)) = obj.get_mut("RegistryConfig") {
            reg.insert("AllowNondistributableArtifactsCIDRs".into(), Value::Null);
            reg.insert(
                "AllowNondistributableArtifactsHostnames".into(),
                Value::Null,
            );
        }
    }
    // Every version berth speaks predates 1.49 and 1.50: the commits carry
    // "Expected" and the bridge-nf booleans are still present.
    for key in ["ContainerdCommit", "RuncCommit", "InitCommit"] {
        if let Some(Value::Object(commit)) = obj.get_mut(key) {
            let id = commit.get("ID").cloned().unwrap_or(json!(""));
            commit.insert("Expected".into(), id);
        }
    }
    obj.insert("BridgeNfIptables".into(), Value::Bool(false));
    obj.insert("BridgeNfIp6tables".into(), Value::Bool(false));
    obj.remove("FirewallBackend");
    obj.remove("DiscoveredDevices");
    obj.remove("NRI");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_clients_get_legacy_info_fields() {
        let mut info = json!({
            "RegistryConfig": {"Mirrors": []},
            "RuncCommit": {"ID": "abc"},
            "Containerd": {"Address": "x"},
            "Runtimes": {"runc": {"path": "runc", "status": {"a": "b"}}},
        });
        shape_info(&mut info, &ApiVersion::new("1.43"));
        assert_eq!(info["RuncCommit"]["Expected"], "abc");
        assert_eq!(info["BridgeNfIptables"], false);
        assert!(info["RegistryConfig"]
            .as_object()
            .unwrap()
            .contains_key("AllowNondistributableArtifactsCIDRs"));
        assert!(info.get("Containerd").is_none());
        assert!(info["Runtimes"]["runc"].get("status").is_none());
    }

    #[test]
    fn newest_clients_keep_current_fields() {
        let mut info = json!({
            "RegistryConfig": {"Mirrors": []},
            "Containerd": {"Address": "x"},
            "Runtimes": {"runc": {"path": "runc", "status": {"a": "b"}}},
        });
        shape_info(&mut info, &ApiVersion::newest());
        assert!(!info["RegistryConfig"]
            .as_object()
            .unwrap()
            .contains_key("AllowNondistributableArtifactsCIDRs"));
        assert_eq!(info["Containerd"]["Address"], "x");
        assert_eq!(info["Runtimes"]["runc"]["status"]["a"], "b");
    }
}

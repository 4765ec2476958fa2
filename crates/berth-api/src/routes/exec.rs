//! Exec endpoints: create, start (detached, or with the connection
//! hijacked as for attach), inspect and resize, with dockerd's per-version
//! trimming of the console size and the shape of its inspect response.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use berth_engine::containers::AttachSession;
use bollard_stubs::models::{ExecConfig, ExecStartConfig};
use serde_json::{json, Value};

use super::{json_ok, json_response, to_json, AppState};
use crate::error::ApiError;
use crate::hijack::Hijack;
use crate::json_body::JsonBody;
use crate::query::Query;
use crate::version::ApiVersion;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/{id}/exec", post(create))
        .route("/exec/{id}/start", post(start))
        .route("/exec/{id}/json", get(inspect))
        .route("/exec/{id}/resize", post(resize))
}

/// `POST /containers/{id}/exec`.
async fn create(
    State(state): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
    JsonBody(config): JsonBody<ExecConfig>,
) -> Result<Response, ApiError> {
    let mut config = config.unwrap_or_default();
    if config.cmd.as_ref().is_none_or(Vec::is_empty) {
        return Err(ApiError::invalid("No exec command specified"));
    }
    if v.lt("1.42") {
        // The console size arrived in 1.42.
        config.console_size = None;
    }
    let exec_id = state.engine.create_exec(&id, config).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({ "Id": exec_id }),
    ))
}

/// `POST /exec/{id}/start`: detached, an empty 200; attached, the
/// connection is hijacked like attach's. As in dockerd, an unknown exec
/// is refused before the hijack and the process starts only after it;
/// the start request's `Tty` decides the framing.
async fn start(
    State(state): State<AppState>,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
    hijack: Hijack,
    JsonBody(config): JsonBody<ExecStartConfig>,
) -> Result<Response, ApiError> {
    let mut config = config.unwrap_or_default();
    let tty = config.tty.unwrap_or(false);
    // No console without a TTY, and none before 1.42.
    if v.lt("1.42") || !tty {
        config.console_size = None;
    }
    if config.detach.unwrap_or(false) {
        return match state.engine.start_exec(&id, config).await? {
            Some(session) => Ok(hijack.respond(session, &v)),
            None => Ok(StatusCode::OK.into_response()),
        };
    }
    state.engine.inspect_exec(&id).await?;
    let engine = state.engine.clone();
    let session = async move {
        match engine.start_exec(&id, config).await {
            Ok(Some(session)) => Ok(session),
            Ok(None) => Ok(AttachSession {
                tty,
                output: None,
                stdin: None,
            }),
            Err(e) => Err(ApiError::from(e)),
        }
    };
    Ok(hijack.respond_with(!tty, &v, session))
}

/// `GET /exec/{id}/json`.
async fn inspect(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let exec = state.engine.inspect_exec(&id).await?;
    let mut value = to_json(&exec)?;
    shape_exec_inspect(&mut value);
    Ok(json_ok(&value))
}

/// `POST /exec/{id}/resize?h=&w=`.
async fn resize(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Query,
) -> Result<Response, ApiError> {
    let (height, width) = q.terminal_size()?;
    state.engine.resize_exec(&id, height, width).await?;
    Ok(StatusCode::OK.into_response())
}

/// Go's `ExecInspect` writes every field; `ExitCode` is `null` while the
/// process runs, and docker-py's `exec_run` indexes it directly.
fn shape_exec_inspect(exec: &mut Value) {
    let Some(obj) = exec.as_object_mut() else {
        return;
    };
    for (key, zero) in [
        ("ID", json!("")),
        ("Running", json!(false)),
        ("ExitCode", Value::Null),
        ("ProcessConfig", json!({})),
        ("OpenStdin", json!(false)),
        ("OpenStderr", json!(false)),
        ("OpenStdout", json!(false)),
        ("CanRemove", json!(false)),
        ("ContainerID", json!("")),
        ("DetachKeys", json!("")),
        ("Pid", json!(0)),
    ] {
        obj.entry(key).or_insert(zero);
    }
    if let Some(Value::Object(pc)) = obj.get_mut("ProcessConfig") {
        for (key, zero) in [
            ("tty", json!(false)),
            ("entrypoint", json!("")),
            ("arguments", json!([])),
        ] {
            pc.entry(key).or_insert(zero);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_exec_reports_a_null_exit_code() {
        let mut exec = json!({"ID": "e1", "Running": true, "ProcessConfig": {"entrypoint": "sh"}});
        shape_exec_inspect(&mut exec);
        assert_eq!(exec["ExitCode"], Value::Null);
        assert!(exec.as_object().unwrap().contains_key("ExitCode"));
        assert_eq!(exec["ProcessConfig"]["arguments"], json!([]));
        assert_eq!(exec["ProcessConfig"]["entrypoint"], "sh");
        assert_eq!(exec["Pid"], 0);
    }
}

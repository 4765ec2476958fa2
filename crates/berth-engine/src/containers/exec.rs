//! `docker exec`: extra processes in a running container, created then
//! started (attached or detached), inspected and resized.

use std::sync::Arc;

use bollard_stubs::models::{ExecConfig, ExecInspectResponse, ExecStartConfig};

use super::streams::AttachSession;
use crate::engine::Engine;
use crate::error::{EngineError, Result};

impl Engine {
    /// `POST /containers/{id}/exec`: returns the exec ID.
    pub async fn create_exec(
        self: &Arc<Self>,
        container: &str,
        config: ExecConfig,
    ) -> Result<String> {
        let _ = (container, config);
        Err(EngineError::NotImplemented(
            "exec is not implemented yet".into(),
        ))
    }

    /// `POST /exec/{id}/start`: `None` when detached.
    pub async fn start_exec(
        self: &Arc<Self>,
        exec_id: &str,
        config: ExecStartConfig,
    ) -> Result<Option<AttachSession>> {
        let _ = (exec_id, config);
        Err(EngineError::NotImplemented(
            "exec is not implemented yet".into(),
        ))
    }

    /// `GET /exec/{id}/json`.
    pub async fn inspect_exec(self: &Arc<Self>, exec_id: &str) -> Result<ExecInspectResponse> {
        Err(EngineError::NotFound(format!(
            "No such exec instance: {exec_id}"
        )))
    }

    /// `POST /exec/{id}/resize?h=&w=`.
    pub async fn resize_exec(
        self: &Arc<Self>,
        exec_id: &str,
        height: u16,
        width: u16,
    ) -> Result<()> {
        let _ = (height, width);
        Err(EngineError::NotFound(format!(
            "No such exec instance: {exec_id}"
        )))
    }
}

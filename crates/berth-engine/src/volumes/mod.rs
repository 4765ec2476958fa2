//! Local named volumes (`<data-root>/volumes/<name>/_data`): create, list,
//! inspect, remove, prune, and the reference counts containers hold.

use std::sync::Arc;

use bollard_stubs::models::{Volume, VolumeCreateRequest, VolumeListResponse, VolumePruneResponse};

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::filters::Filters;

impl Engine {
    /// `POST /volumes/create`.
    pub async fn create_volume(self: &Arc<Self>, req: VolumeCreateRequest) -> Result<Volume> {
        let _ = req;
        Err(EngineError::NotImplemented(
            "volumes are not implemented yet".into(),
        ))
    }

    /// `GET /volumes?filters=`.
    pub async fn list_volumes(self: &Arc<Self>, filters: &Filters) -> Result<VolumeListResponse> {
        let _ = filters;
        Ok(VolumeListResponse::default())
    }

    /// `GET /volumes/{name}`.
    pub async fn inspect_volume(self: &Arc<Self>, name: &str) -> Result<Volume> {
        Err(EngineError::NotFound(format!("get {name}: no such volume")))
    }

    /// `DELETE /volumes/{name}?force=`.
    pub async fn remove_volume(self: &Arc<Self>, name: &str, force: bool) -> Result<()> {
        let _ = force;
        Err(EngineError::NotFound(format!("get {name}: no such volume")))
    }

    /// `POST /volumes/prune?filters=`.
    pub async fn prune_volumes(self: &Arc<Self>, filters: &Filters) -> Result<VolumePruneResponse> {
        let _ = filters;
        Ok(VolumePruneResponse::default())
    }
}

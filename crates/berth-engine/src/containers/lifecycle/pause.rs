//! Pausing and unpausing a running container (the runtime freezes its
//! cgroup).

use std::sync::Arc;

use super::blocking_err;
use crate::containers::record::Status;
use crate::containers::store::ContainerHandle;
use crate::engine::Engine;
use crate::error::{EngineError, Result};

impl Engine {
    /// The body of `pause_container`.
    pub(crate) async fn pause_handle(
        self: &Arc<Self>,
        handle: &Arc<ContainerHandle>,
    ) -> Result<()> {
        let _op = handle.op.lock().await;
        let c = handle.snapshot();
        match c.state.status {
            Status::Running => {}
            Status::Paused => {
                return Err(EngineError::Conflict(format!(
                    "Container {} is already paused",
                    c.id
                )))
            }
            _ => {
                return Err(EngineError::Conflict(format!(
                    "Container {} is not running",
                    c.id
                )))
            }
        }
        let engine = Arc::clone(self);
        let id = c.id.clone();
        tokio::task::spawn_blocking(move || engine.runtime.pause(&id))
            .await
            .map_err(blocking_err)??;
        let record = {
            let mut r = handle.lock();
            r.state.status = Status::Paused;
            r.clone()
        };
        handle.persist(&self.config.data_root)?;
        handle.notify(false);
        self.publish_container(&record, "pause", &[]);
        Ok(())
    }

    /// The body of `unpause_container`; the caller holds the op lock.
    pub(crate) async fn unpause_locked(
        self: &Arc<Self>,
        handle: &Arc<ContainerHandle>,
        event: bool,
    ) -> Result<()> {
        let c = handle.snapshot();
        if c.state.status != Status::Paused {
            return Err(EngineError::Conflict(format!(
                "Container {} is not paused",
                c.id
            )));
        }
        let engine = Arc::clone(self);
        let id = c.id.clone();
        tokio::task::spawn_blocking(move || engine.runtime.resume(&id))
            .await
            .map_err(blocking_err)??;
        let record = {
            let mut r = handle.lock();
            r.state.status = Status::Running;
            r.clone()
        };
        handle.persist(&self.config.data_root)?;
        handle.notify(false);
        if event {
            self.publish_container(&record, "unpause", &[]);
        }
        Ok(())
    }
}

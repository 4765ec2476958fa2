//! Running containers: start, stop, kill, restart, pause, wait and remove,
//! the exit monitor that records how a process ended (and restarts it when
//! its policy says so), and re-adoption of running containers when the
//! daemon starts again.
//!
//! `start` makes a run, `exit` records its end (and waits for it), `stop`
//! signals it, `pause` freezes it, `remove` deletes the container and
//! `restore` takes containers back after a daemon restart. This file keeps
//! what they all use: the init process's runtime handle and container
//! events.

mod exit;
mod pause;
mod remove;
mod restore;
mod start;
mod stop;

pub use stop::parse_signal;

use std::collections::HashMap;

use bollard_stubs::models::EventMessageTypeEnum;

use super::record::{Container, ContainerPaths};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::runtime::ProcessRef;

/// A `spawn_blocking` task that panicked or was cancelled.
pub(super) fn blocking_err(e: tokio::task::JoinError) -> EngineError {
    EngineError::Internal(format!("background task failed: {e}"))
}

impl Engine {
    /// Where a container's init process is tracked by the runtime.
    pub(crate) fn init_process(&self, id: &str) -> ProcessRef {
        ProcessRef {
            container_id: id.to_string(),
            exec_id: None,
            state_dir: ContainerPaths::new(&self.config.data_root, id).init_state(),
        }
    }

    fn container_attrs(c: &Container) -> HashMap<String, String> {
        let mut attrs = c.config.labels.clone().unwrap_or_default();
        attrs.insert("image".into(), c.config.image.clone().unwrap_or_default());
        attrs.insert("name".into(), c.short_name().to_string());
        attrs
    }

    /// Publishes a container event with dockerd's attributes plus `extra`.
    pub(crate) fn publish_container(&self, c: &Container, action: &str, extra: &[(&str, String)]) {
        let mut attrs = Self::container_attrs(c);
        for (k, v) in extra {
            attrs.insert((*k).to_string(), v.clone());
        }
        self.events
            .publish(EventMessageTypeEnum::CONTAINER, action, &c.id, attrs);
    }
}

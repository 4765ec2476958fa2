//! After a daemon start: container records loaded, running containers
//! whose shim lives re-adopted, exits missed while the daemon was down
//! recorded, half-made removals finished, and containers whose restart
//! policy wants them running started.

use std::sync::Arc;

use bollard_stubs::models::RestartPolicyNameEnum;
use chrono::Utc;

use super::start::closes_stdin_once;
use crate::containers::hub::StreamHub;
use crate::containers::record::{Container, Status};
use crate::containers::store::ContainerHandle;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::runtime::ExitStatus;

impl Engine {
    /// Loads container records (before layers are reconciled); returns
    /// their IDs, which hold their writable layers.
    pub(crate) fn load_containers(&self) -> Result<std::collections::HashSet<String>> {
        let dir = self.config.data_root.join("containers");
        std::fs::create_dir_all(&dir)
            .map_err(|e| EngineError::io(format!("create {}", dir.display()), e))?;
        let mut ids = std::collections::HashSet::new();
        for entry in std::fs::read_dir(&dir)
            .map_err(|e| EngineError::io(format!("read {}", dir.display()), e))?
        {
            let Ok(entry) = entry else { continue };
            let path = entry.path().join("container.json");
            match Container::load(&path) {
                Ok(c) => {
                    ids.insert(c.id.clone());
                    if let Err(e) = self.containers.insert(ContainerHandle::new(c)) {
                        tracing::warn!("{}: {e}", path.display());
                    }
                }
                Err(e) => {
                    tracing::warn!("skipping container {}: {e}", entry.path().display());
                }
            }
        }
        Ok(ids)
    }

    /// Re-adopts containers after a daemon start: running ones whose shim
    /// lives get their monitor back, ones that exited meanwhile get their
    /// real exit status, half-removed ones are finished, and containers
    /// whose restart policy wants them running are started.
    pub async fn restore(self: &Arc<Self>) {
        let _restoring = self.restoring.write().await;
        let mut to_start = Vec::new();
        for handle in self.containers.all() {
            let c = handle.snapshot();
            match c.state.status {
                Status::Removing => {
                    if let Err(e) = self.finish_removal(&c, false).await {
                        tracing::warn!("finishing removal of {}: {e}", c.id);
                    }
                    self.containers.remove(&c.id);
                }
                Status::Running | Status::Paused | Status::Restarting => {
                    let process = self.init_process(&c.id);
                    if c.state.status != Status::Restarting && self.runtime.alive(&process) {
                        let stdin_open = c.config.open_stdin.unwrap_or(false);
                        let once = closes_stdin_once(&c);
                        let out = handle.output.clone();
                        match StreamHub::connect(&self.runtime, &process, stdin_open, once, out)
                            .await
                        {
                            Ok(hub) => handle.set_hub(Some(hub)),
                            Err(e) => tracing::warn!("re-attaching to {}: {e}", c.id),
                        }
                        tracing::info!("re-adopted running container {}", c.id);
                        self.spawn_monitor(Arc::clone(&handle), process);
                    } else {
                        let status = match self.runtime.exit_status(&process) {
                            Some(s) => Ok(s),
                            None if c.state.status == Status::Restarting => Ok(ExitStatus {
                                code: c.state.exit_code as i32,
                                finished_at: c.state.finished_at.unwrap_or_else(Utc::now),
                                oom_killed: c.state.oom_killed,
                            }),
                            None => Err(EngineError::Internal(
                                "the container's shim vanished while the daemon was down; exit status unknown".into(),
                            )),
                        };
                        self.handle_exit(&handle, status).await;
                    }
                }
                _ => {
                    if wants_running_at_start(&c) {
                        to_start.push(handle);
                    }
                }
            }
        }
        self.restore_networking().await;
        for handle in to_start {
            if let Err(e) = self.start_handle(&handle).await {
                tracing::warn!("starting {} for its restart policy: {e}", handle.id);
            }
        }
    }
}

/// Whether a stopped container should be started when the daemon starts.
fn wants_running_at_start(c: &Container) -> bool {
    let Some(policy) = c.host_config.restart_policy.as_ref().and_then(|p| p.name) else {
        return false;
    };
    match policy {
        RestartPolicyNameEnum::ALWAYS => c.has_been_started,
        RestartPolicyNameEnum::UNLESS_STOPPED => c.has_been_started && !c.manually_stopped,
        _ => false,
    }
}

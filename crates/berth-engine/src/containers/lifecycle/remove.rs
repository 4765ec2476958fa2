//! Removing a container: a running one killed first when forced, then
//! what it owns on disk (runtime state, writable layer, volume references
//! and anonymous volumes, its directory) and its networks.

use std::sync::Arc;
use std::time::Duration;

use super::blocking_err;
use super::stop::ended_since;
use crate::containers::record::{Container, ContainerPaths, Status};
use crate::containers::store::ContainerHandle;
use crate::engine::Engine;
use crate::error::{EngineError, Result};

impl Engine {
    /// The body of `remove_container`.
    pub(crate) async fn remove_handle(
        self: &Arc<Self>,
        handle: &Arc<ContainerHandle>,
        force: bool,
        volumes: bool,
    ) -> Result<()> {
        let _op = handle.op.lock().await;
        if handle.watch.borrow().removed {
            // Removed while we waited for the lock: `docker rm -f` of an
            // AutoRemove container, whose exit then asks for removal too.
            return Ok(());
        }
        let c = handle.snapshot();
        if c.state.status.is_alive() {
            if !force {
                let why = if c.state.status == Status::Paused {
                    "container is paused and must be unpaused first".to_string()
                } else {
                    "container is running: stop the container before removing or force remove"
                        .to_string()
                };
                return Err(EngineError::Conflict(format!(
                    "cannot remove container \"{}\": {why}",
                    c.name
                )));
            }
            if c.state.status == Status::Paused {
                self.unpause_locked(handle, false).await?;
            }
            let mut rx = handle.watch.subscribe();
            let exits = rx.borrow().exits;
            self.signal(&c, libc::SIGKILL).await?;
            let _ = tokio::time::timeout(
                Duration::from_secs(30),
                rx.wait_for(|w| ended_since(w, exits)),
            )
            .await;
        }
        let record = {
            let mut r = handle.lock();
            r.manually_stopped = true;
            r.state.status = Status::Removing;
            r.clone()
        };
        handle.persist(&self.config.data_root)?;
        handle.notify(false);
        self.finish_removal(&record, volumes).await?;
        self.containers.remove(&c.id);
        self.publish_container(&record, "destroy", &[]);
        handle.watch.send_modify(|w| w.removed = true);
        Ok(())
    }

    /// Removes what a container owns on disk: runtime state, writable
    /// layer, its volumes' references, its directory (last, so a crash
    /// mid-way is finished at the next start).
    pub(crate) async fn finish_removal(
        self: &Arc<Self>,
        c: &Container,
        volumes: bool,
    ) -> Result<()> {
        self.forget_networks(&c.id).await;
        let engine = Arc::clone(self);
        let id = c.id.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let _ = engine.runtime.delete(&id);
            match engine.layers.remove_rw(&id) {
                Ok(()) => Ok(()),
                Err(e) if e.is_not_found() => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
        .await
        .map_err(blocking_err)??;
        for m in &c.mounts {
            if let (Some(name), "volume") = (&m.name, m.kind.as_str()) {
                if let Err(e) = self.volume_release(name, &c.id) {
                    tracing::warn!("releasing volume {name}: {e}");
                }
                if volumes && m.anonymous {
                    if let Err(e) = self.remove_volume(name, false).await {
                        tracing::warn!("removing volume {name}: {e}");
                    }
                }
            }
        }
        let dir = ContainerPaths::new(&self.config.data_root, &c.id).dir;
        let _ = std::fs::remove_dir_all(self.config.exec_root.join("bundles").join(&c.id));
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(EngineError::io(format!("remove {}", dir.display()), e)),
        }
    }
}

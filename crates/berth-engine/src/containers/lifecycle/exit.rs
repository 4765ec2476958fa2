//! The end of a run: the monitor that waits for the init process, the
//! exit recorded (runtime, mounts and sandbox cleaned, `oom`/`die` events,
//! waiters told), `wait`, and the restart policy with dockerd's back-off.

use std::sync::Arc;
use std::time::Duration;

use bollard_stubs::models::{ContainerWaitExitError, ContainerWaitResponse, RestartPolicyNameEnum};
use chrono::Utc;

use crate::containers::record::{Container, Status};
use crate::containers::store::{ContainerHandle, Watched};
use crate::containers::{WaitCondition, WaitFuture};
use crate::engine::Engine;
use crate::error::Result;
use crate::runtime::{ExitStatus, ProcessRef};

impl Engine {
    /// Releases the volume mounts a run of `c` took.
    fn unmount_volumes(&self, c: &Container) {
        for m in &c.mounts {
            if let ("volume", Some(name)) = (m.kind.as_str(), &m.name) {
                if let Err(e) = self.volume_unmount(name, &c.id) {
                    tracing::warn!("unmounting volume {name}: {e}");
                }
            }
        }
    }

    /// Watches a process until it exits, then records the exit.
    pub(crate) fn spawn_monitor(
        self: &Arc<Self>,
        handle: Arc<ContainerHandle>,
        process: ProcessRef,
    ) {
        self.spawn_health(&handle);
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            let status = engine.runtime.wait(&process).await;
            engine.handle_exit(&handle, status).await;
        });
    }

    /// Records an exit: runtime and mounts cleaned, state saved, events
    /// published, waiters told; then auto-remove or restart by policy.
    pub(crate) async fn handle_exit(
        self: &Arc<Self>,
        handle: &Arc<ContainerHandle>,
        status: Result<ExitStatus>,
    ) {
        let (code, oom, finished, error) = match status {
            Ok(s) => (s.code as i64, s.oom_killed, s.finished_at, String::new()),
            Err(e) => (255, false, Utc::now(), e.to_string()),
        };
        // Attach sessions must see the last output before they see the exit.
        if let Some(hub) = handle.hub() {
            hub.drained(Duration::from_secs(2)).await;
        }
        let engine = Arc::clone(self);
        let ran = handle.snapshot();
        let _ = tokio::task::spawn_blocking(move || {
            let id = &ran.id;
            if let Err(e) = engine.runtime.delete(id) {
                tracing::warn!("runtime delete of {id}: {e}");
            }
            engine.unmount_volumes(&ran);
            if let Err(e) = engine.layers.unmount_rw(id) {
                tracing::warn!("unmounting {id}: {e}");
            }
        })
        .await;
        self.sandbox_down(&handle.id).await;
        handle.set_hub(None);
        let (record, restart) = {
            let mut r = handle.lock();
            let ran_for = r
                .state
                .started_at
                .map(|s| finished - s)
                .unwrap_or_else(chrono::Duration::zero);
            let restart = should_restart(&r, code, self.is_shutting_down());
            r.state.status = if restart.is_some() {
                Status::Restarting
            } else {
                Status::Exited
            };
            r.state.pid = 0;
            r.state.exit_code = code;
            r.state.oom_killed = oom;
            r.state.finished_at = Some(finished);
            r.state.error = error;
            let delay = restart.map(|_| restart_delay(r.restart_count, ran_for));
            (r.clone(), delay)
        };
        if let Err(e) = handle.persist(&self.config.data_root) {
            tracing::warn!("saving {}: {e}", record.id);
        }
        if oom {
            self.publish_container(&record, "oom", &[]);
        }
        let duration = record
            .state
            .started_at
            .map(|s| (finished - s).num_milliseconds().max(0) / 1000)
            .unwrap_or(0);
        self.publish_container(
            &record,
            "die",
            &[
                ("exitCode", code.to_string()),
                ("execDuration", duration.to_string()),
            ],
        );
        handle.notify(true);
        if let Some(delay) = restart {
            let engine = Arc::clone(self);
            let handle = Arc::clone(handle);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                engine.restart_by_policy(&handle).await;
            });
        } else if record.host_config.auto_remove.unwrap_or(false) && !self.is_shutting_down() {
            if let Err(e) = self.remove_handle(handle, true, true).await {
                tracing::warn!("auto-removing {}: {e}", record.id);
            }
        }
    }

    async fn restart_by_policy(self: &Arc<Self>, handle: &Arc<ContainerHandle>) {
        // A container that exited while the daemon was down is restarted
        // only once `restore` is done: its network sweep would otherwise
        // take the new sandbox for one left by a dead container.
        drop(self.restoring.read().await);
        let _op = handle.op.lock().await;
        let c = handle.snapshot();
        if c.state.status != Status::Restarting || c.manually_stopped {
            return;
        }
        handle.lock().restart_count += 1;
        if let Err(e) = self.start_locked(handle).await {
            tracing::warn!("restarting {} by its policy: {e}", c.id);
            handle.lock().state.status = Status::Exited;
            let _ = handle.persist(&self.config.data_root);
            handle.notify(false);
        } else {
            let record = handle.snapshot();
            self.publish_container(&record, "restart", &[]);
        }
    }

    /// The body of `wait_container`.
    pub(crate) fn wait_handle(
        &self,
        handle: &Arc<ContainerHandle>,
        condition: WaitCondition,
    ) -> WaitFuture {
        let mut rx = handle.watch.subscribe();
        let start = *rx.borrow();
        Box::pin(async move {
            let done = |w: &Watched| match condition {
                WaitCondition::NotRunning => {
                    !(w.status.is_alive() || w.status == Status::Restarting) || w.removed
                }
                WaitCondition::NextExit => w.exits > start.exits || w.removed,
                WaitCondition::Removed => w.removed,
            };
            let waited = rx.wait_for(done).await.map(|w| *w);
            let result = waited.unwrap_or_else(|_| *rx.borrow());
            ContainerWaitResponse {
                status_code: result.exit_code,
                error: None::<ContainerWaitExitError>,
            }
        })
    }
}

/// Whether the restart policy brings a container back after this exit.
fn should_restart(c: &Container, code: i64, shutting_down: bool) -> Option<()> {
    if shutting_down || c.manually_stopped {
        return None;
    }
    let policy = c.host_config.restart_policy.as_ref()?;
    match policy.name? {
        RestartPolicyNameEnum::ALWAYS | RestartPolicyNameEnum::UNLESS_STOPPED => Some(()),
        RestartPolicyNameEnum::ON_FAILURE => {
            let max = policy.maximum_retry_count.unwrap_or(0);
            (code != 0 && (max == 0 || c.restart_count < max)).then_some(())
        }
        _ => None,
    }
}

/// dockerd's back-off: 100 ms doubling per restart, at most a minute,
/// starting over when the container had run for 10 s.
fn restart_delay(restarts: i64, ran_for: chrono::Duration) -> Duration {
    if ran_for >= chrono::Duration::seconds(10) {
        return Duration::from_millis(100);
    }
    let ms = 100u64.saturating_mul(1 << restarts.clamp(0, 10));
    Duration::from_millis(ms.min(60_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_restarts() {
        assert_eq!(
            restart_delay(0, chrono::Duration::zero()),
            Duration::from_millis(100)
        );
        assert_eq!(
            restart_delay(3, chrono::Duration::zero()),
            Duration::from_millis(800)
        );
        assert_eq!(
            restart_delay(20, chrono::Duration::zero()),
            Duration::from_millis(60_000)
        );
        assert_eq!(
            restart_delay(20, chrono::Duration::seconds(30)),
            Duration::from_millis(100)
        );
    }
}

//! Running containers: start, stop, kill, restart, pause, wait and remove,
//! the exit monitor that records how a process ended (and restarts it when
//! its policy says so), and re-adoption of running containers when the
//! daemon starts again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bollard_stubs::models::{
    ContainerWaitExitError, ContainerWaitResponse, EventMessageTypeEnum, RestartPolicyNameEnum,
};
use chrono::Utc;

use super::hub::StreamHub;
use super::record::{Container, ContainerPaths, MountRecord, Status};
use super::store::ContainerHandle;
use super::{WaitCondition, WaitFuture};
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::runtime::spec::{self, MountKind, MountSpec, NetworkMode, SpecInputs};
use crate::runtime::{ExitStatus, ProcessRef, StdioConfig, TaskCreate};

/// Parses a signal as dockerd does: `9`, `KILL`, `SIGKILL`, `sigkill`.
pub fn parse_signal(s: &str) -> Result<i32> {
    let bad = || EngineError::InvalidParameter(format!("Invalid signal: {s}"));
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    nix::sys::signal::Signal::from_str(&name)
        .map(|sig| sig as i32)
        .map_err(|_| bad())
}

fn blocking_err(e: tokio::task::JoinError) -> EngineError {
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

    /// The body of `start_container`.
    pub(crate) async fn start_handle(
        self: &Arc<Self>,
        handle: &Arc<ContainerHandle>,
    ) -> Result<()> {
        let _op = handle.op.lock().await;
        self.start_locked(handle).await
    }

    /// Starts a container whose op lock the caller holds.
    pub(crate) async fn start_locked(
        self: &Arc<Self>,
        handle: &Arc<ContainerHandle>,
    ) -> Result<()> {
        let c = handle.snapshot();
        match c.state.status {
            Status::Paused => {
                return Err(EngineError::Conflict(
                    "cannot start a paused container, try unpause instead".into(),
                ))
            }
            Status::Running => {
                return Err(EngineError::NotModified("container already started".into()))
            }
            Status::Removing | Status::Dead => {
                return Err(EngineError::Conflict(
                    "container is marked for removal and cannot be started".into(),
                ))
            }
            _ => {}
        }
        let network = self.network_for(&c)?;
        // A remapped container's network namespace is made by runc, inside
        // its user namespace, and plumbed once the task exists (security.md).
        let adopt = crate::runtime::spec::is_remapped(&c.host_config, &self.security)
            && self.wants_sandbox(&c, &network);
        let network = match adopt {
            true => network,
            false => match self.sandbox_up(&c, network).await {
                Ok(n) => n,
                Err(e) => return Err(self.start_failed(handle, e).await),
            },
        };
        let engine = Arc::clone(self);
        let task_c = c.clone();
        let created = tokio::task::spawn_blocking(move || engine.create_task(&task_c, network))
            .await
            .map_err(blocking_err)?;
        let pid = match created {
            Ok(pid) => pid,
            Err(e) => return Err(self.start_failed(handle, e).await),
        };
        if adopt {
            if let Err(e) = self.sandbox_adopt(&c, pid).await {
                return Err(self.start_failed(handle, e).await);
            }
        }
        let process = self.init_process(&c.id);
        let stdin_open = c.config.open_stdin.unwrap_or(false);
        let stdin_once = closes_stdin_once(&c);
        let hub = StreamHub::connect(
            &self.runtime,
            &process,
            stdin_open,
            stdin_once,
            handle.output.clone(),
        )
        .await;
        let engine = Arc::clone(self);
        let id = c.id.clone();
        let started = match hub {
            Ok(hub) => {
                handle.set_hub(Some(hub));
                tokio::task::spawn_blocking(move || engine.runtime.start(&id))
                    .await
                    .map_err(blocking_err)
                    .and_then(|r| r)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = started {
            handle.set_hub(None);
            return Err(self.start_failed(handle, e).await);
        }
        let pid = self
            .runtime
            .status(&c.id)
            .ok()
            .flatten()
            .map(|(_, pid)| pid)
            .unwrap_or(0);
        let record = {
            let mut r = handle.lock();
            r.state.status = Status::Running;
            r.state.pid = pid;
            r.state.exit_code = 0;
            r.state.error.clear();
            r.state.oom_killed = false;
            r.state.started_at = Some(Utc::now());
            r.has_been_started = true;
            r.manually_stopped = false;
            r.clone()
        };
        record.save(&self.config.data_root)?;
        handle.notify(false);
        self.publish_container(&record, "start", &[]);
        self.spawn_monitor(Arc::clone(handle), process);
        Ok(())
    }

    /// Cleans up after a failed start and shapes the error as dockerd
    /// does (exit code 127/126 for a missing or unusable program).
    async fn start_failed(
        self: &Arc<Self>,
        handle: &Arc<ContainerHandle>,
        err: EngineError,
    ) -> EngineError {
        let id = handle.id.clone();
        let engine = Arc::clone(self);
        let _ = tokio::task::spawn_blocking(move || {
            let _ = engine.runtime.delete(&id);
            let _ = engine.layers.unmount_rw(&id);
        })
        .await;
        self.sandbox_down(&handle.id).await;
        let msg = err.to_string();
        let code = if msg.contains("executable file not found")
            || msg.contains("no such file or directory")
        {
            127
        } else if msg.contains("permission denied") || msg.contains("is a directory") {
            126
        } else {
            128
        };
        let record = {
            let mut r = handle.lock();
            r.state.exit_code = code;
            r.state.error = msg.clone();
            r.clone()
        };
        let _ = record.save(&self.config.data_root);
        handle.notify(false);
        if record.host_config.auto_remove.unwrap_or(false) {
            // dockerd removes an AutoRemove container whose start failed;
            // `docker run --rm` waits for that. The caller holds the op
            // lock, so the removal runs once it is released.
            let engine = Arc::clone(self);
            let handle = Arc::clone(handle);
            tokio::spawn(async move {
                if let Err(e) = engine.remove_handle(&handle, true, true).await {
                    tracing::warn!("auto-removing {} after a failed start: {e}", handle.id);
                }
            });
        }
        match err {
            EngineError::Internal(m) if code != 128 => EngineError::InvalidParameter(m),
            other => other,
        }
    }

    /// The network namespace a container joins.
    fn network_for(&self, c: &Container) -> Result<NetworkMode> {
        let mode = c.host_config.network_mode.as_deref().unwrap_or("");
        if mode == "host" {
            return Ok(NetworkMode::Host);
        }
        if let Some(other) = mode.strip_prefix("container:") {
            let target = self.containers.resolve(other)?;
            let t = target.snapshot();
            if !t.state.status.is_alive() || t.state.pid == 0 {
                return Err(EngineError::Conflict(format!(
                    "cannot join network of a non running container: {}",
                    t.id
                )));
            }
            return Ok(NetworkMode::Path(PathBuf::from(format!(
                "/proc/{}/ns/net",
                t.state.pid
            ))));
        }
        Ok(NetworkMode::Private)
    }

    /// Mounts the rootfs, builds the spec and has the runtime create the
    /// init process (blocking). On failure the rootfs is unmounted again.
    fn create_task(&self, c: &Container, network: NetworkMode) -> Result<u32> {
        let rootfs = self.layers.mount_rw(&c.id)?;
        let mut mounted_volumes = Vec::new();
        let result = (|| {
            let paths = ContainerPaths::new(&self.config.data_root, &c.id);
            let mut mounts = Vec::new();
            for m in &c.mounts {
                let mut spec = mount_spec(m);
                if let ("volume", Some(name)) = (m.kind.as_str(), &m.name) {
                    spec.source = self.volume_mount(
                        name,
                        &c.id,
                        &m.destination,
                        !m.read_only,
                        &m.propagation,
                    )?;
                    mounted_volumes.push(name.clone());
                }
                mounts.push(spec);
            }
            let init = c
                .host_config
                .init
                .unwrap_or(false)
                .then(|| self.config.init_binary.clone())
                .flatten();
            if c.host_config.init.unwrap_or(false) && init.is_none() {
                return Err(EngineError::InvalidParameter(
                    "--init requested but no init binary is available (install tini or set --init-path)".into(),
                ));
            }
            let spec = spec::build(&SpecInputs {
                id: &c.id,
                rootfs: &rootfs,
                config: &c.config,
                host_config: &c.host_config,
                mounts: &mounts,
                hosts_path: &paths.hosts(),
                resolv_conf_path: &paths.resolv_conf(),
                hostname_path: &paths.hostname(),
                network,
                init_binary: init.as_deref(),
                security: &self.security,
            })?;
            let bundle = self.config.exec_root.join("bundles").join(&c.id);
            std::fs::create_dir_all(&bundle)
                .map_err(|e| EngineError::io(format!("create {}", bundle.display()), e))?;
            let state_dir = paths.init_state();
            std::fs::create_dir_all(&state_dir)
                .map_err(|e| EngineError::io(format!("create {}", state_dir.display()), e))?;
            // A fresh run: the previous exit record must not answer for it.
            let _ = std::fs::remove_file(state_dir.join("exit.json"));
            self.runtime.create(&TaskCreate {
                id: c.id.clone(),
                bundle,
                spec,
                stdio: StdioConfig {
                    tty: c.config.tty.unwrap_or(false),
                    stdin: c.config.open_stdin.unwrap_or(false),
                    stdin_once: c.config.stdin_once.unwrap_or(false),
                },
                log_path: paths.log(&c.id),
                state_dir,
                runtime: c.runtime.clone(),
            })
        })();
        if result.is_err() {
            for name in &mounted_volumes {
                let _ = self.volume_unmount(name, &c.id);
            }
            let _ = self.layers.unmount_rw(&c.id);
        }
        result
    }

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
        if let Err(e) = record.save(&self.config.data_root) {
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
            let record = {
                let mut r = handle.lock();
                r.state.status = Status::Exited;
                r.clone()
            };
            let _ = record.save(&self.config.data_root);
            handle.notify(false);
        } else {
            let record = handle.snapshot();
            self.publish_container(&record, "restart", &[]);
        }
    }

    /// The body of `stop_container`; the caller holds the op lock.
    pub(crate) async fn stop_locked(
        self: &Arc<Self>,
        handle: &Arc<ContainerHandle>,
        signal: Option<String>,
        timeout: Option<i64>,
    ) -> Result<()> {
        let c = handle.snapshot();
        if c.state.status == Status::Restarting {
            let record = {
                let mut r = handle.lock();
                r.manually_stopped = true;
                r.state.status = Status::Exited;
                r.clone()
            };
            record.save(&self.config.data_root)?;
            handle.notify(false);
            self.publish_container(&record, "stop", &[]);
            return Ok(());
        }
        if !c.state.status.is_alive() {
            return Err(EngineError::NotModified("container already stopped".into()));
        }
        {
            let mut r = handle.lock();
            r.manually_stopped = true;
            r.clone()
        }
        .save(&self.config.data_root)?;
        let signal = match signal.filter(|s| !s.is_empty()) {
            Some(s) => parse_signal(&s)?,
            None => match c.config.stop_signal.as_deref().filter(|s| !s.is_empty()) {
                Some(s) => parse_signal(s)?,
                None => libc::SIGTERM,
            },
        };
        let timeout = timeout.or(c.config.stop_timeout).unwrap_or(10);
        if c.state.status == Status::Paused {
            self.unpause_locked(handle, false).await?;
        }
        let mut rx = handle.watch.subscribe();
        let exits = rx.borrow().exits;
        self.signal(&c, signal).await?;
        let exited = async {
            let _ = rx.wait_for(|w| ended_since(w, exits)).await;
        };
        let in_time = if timeout < 0 {
            exited.await;
            true
        } else {
            tokio::time::timeout(Duration::from_secs(timeout as u64), exited)
                .await
                .is_ok()
        };
        if !in_time {
            let mut rx = handle.watch.subscribe();
            self.signal(&c, libc::SIGKILL).await?;
            let _ = tokio::time::timeout(
                Duration::from_secs(30),
                rx.wait_for(|w| ended_since(w, exits)),
            )
            .await;
        }
        self.publish_container(&handle.snapshot(), "stop", &[]);
        Ok(())
    }

    /// Sends a signal and publishes the `kill` event.
    async fn signal(self: &Arc<Self>, c: &Container, signal: i32) -> Result<()> {
        let engine = Arc::clone(self);
        let id = c.id.clone();
        let sent = tokio::task::spawn_blocking(move || engine.runtime.kill(&id, signal, false))
            .await
            .map_err(blocking_err)?;
        match sent {
            Ok(()) => {}
            // The process ended after the caller saw it running: the
            // runtime has deleted it (NotFound) or calls it stopped. Its
            // exit monitor records the exit; as in dockerd, signalling a
            // process that just finished is no error (it was a 404 for a
            // container that exists).
            Err(EngineError::NotFound(_)) | Err(EngineError::Conflict(_)) => {
                tracing::debug!("signal {signal} to {}: the process had already ended", c.id);
            }
            Err(e) => return Err(e),
        }
        self.publish_container(c, "kill", &[("signal", signal.to_string())]);
        Ok(())
    }

    /// The body of `kill_container`.
    pub(crate) async fn kill_handle(
        self: &Arc<Self>,
        handle: &Arc<ContainerHandle>,
        signal: Option<String>,
    ) -> Result<()> {
        let signal = match signal.filter(|s| !s.is_empty()) {
            Some(s) => parse_signal(&s)?,
            None => libc::SIGKILL,
        };
        let _op = handle.op.lock().await;
        let c = handle.snapshot();
        if !c.state.status.is_alive() {
            return Err(EngineError::Conflict(format!(
                "container {} is not running",
                c.id
            )));
        }
        {
            let mut r = handle.lock();
            r.manually_stopped = true;
            r.clone()
        }
        .save(&self.config.data_root)?;
        self.signal(&c, signal).await
    }

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
        record.save(&self.config.data_root)?;
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
        record.save(&self.config.data_root)?;
        handle.notify(false);
        if event {
            self.publish_container(&record, "unpause", &[]);
        }
        Ok(())
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
            let done = |w: &super::store::Watched| match condition {
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
        record.save(&self.config.data_root)?;
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

fn mount_spec(m: &MountRecord) -> MountSpec {
    MountSpec {
        kind: m.mount_kind(),
        source: if m.mount_kind() == MountKind::Tmpfs {
            PathBuf::new()
        } else {
            m.source.clone()
        },
        destination: m.destination.clone(),
        read_only: m.read_only,
        options: m.options.clone(),
        propagation: (!m.propagation.is_empty()).then(|| m.propagation.clone()),
    }
}

/// Whether the end of an attached stdin closes the program's stdin: with
/// StdinOnce, and (as in dockerd) only without a TTY. A TTY client's
/// stdin "ends" whenever it detaches (the CLI eats ctrl-p ctrl-q and drops
/// the connection), and the next `docker attach` must still reach the shell.
fn closes_stdin_once(c: &Container) -> bool {
    c.config.stdin_once.unwrap_or(false) && !c.config.tty.unwrap_or(false)
}

/// Whether the process a stop or forced removal signalled has ended: an
/// exit after `exits`, or (when it ended before the caller read `exits`) a
/// record that is no longer running.
fn ended_since(w: &super::store::Watched, exits: u64) -> bool {
    w.exits > exits || w.removed || !w.status.is_alive()
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
    fn parses_signals_like_dockerd() {
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert_eq!(parse_signal("SIGUSR1").unwrap(), libc::SIGUSR1);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
    }

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

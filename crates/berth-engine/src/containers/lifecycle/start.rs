//! Starting a container: the network namespace it joins (its bridge
//! sandbox made, or adopted from runc when remapped), the rootfs and
//! volumes mounted, the OCI spec built and the init process created and
//! started with its stream hub; and the clean-up and dockerd's exit codes
//! when a start fails.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;

use super::blocking_err;
use crate::containers::hub::StreamHub;
use crate::containers::record::{Container, ContainerPaths, MountRecord, Status};
use crate::containers::store::ContainerHandle;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::runtime::spec::{self, MountKind, MountSpec, NetworkMode, SpecInputs};
use crate::runtime::{StdioConfig, TaskCreate};

impl Engine {
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
        handle.persist(&self.config.data_root)?;
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
        let _ = handle.persist(&self.config.data_root);
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
pub(super) fn closes_stdin_once(c: &Container) -> bool {
    c.config.stdin_once.unwrap_or(false) && !c.config.tty.unwrap_or(false)
}

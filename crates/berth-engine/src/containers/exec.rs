//! `docker exec`: extra processes in a running container, created then
//! started (attached or detached), inspected and resized. Each runs under
//! its own shim; its output reaches attach sessions through the same hub
//! machinery as a container's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard_stubs::models::{ExecConfig, ExecInspectResponse, ExecStartConfig, ProcessConfig};
use futures_util::StreamExt;
use tokio::sync::{broadcast, watch};

use super::hub::{detach_keys, parse_detach_keys, session_stdin, subscribe, StreamHub};
use super::record::{ContainerPaths, Status};
use super::store::Watched;
use super::streams::{AttachSession, OutputChunk};
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::runtime::{ExecCreate, ProcessRef, StdioConfig};

/// One exec instance.
pub struct ExecHandle {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    state: Mutex<ExecState>,
    output: broadcast::Sender<OutputChunk>,
    watch: watch::Sender<Watched>,
    hub: Mutex<Option<Arc<StreamHub>>>,
}

#[derive(Default, Clone)]
struct ExecState {
    started: bool,
    running: bool,
    exit_code: Option<i64>,
    pid: u32,
    /// When the process's exit was recorded: the handle is forgotten
    /// [`EXEC_RETENTION`] later.
    exited_at: Option<Instant>,
}

/// How long a finished exec stays inspectable (dockerd forgets them after
/// two GC ticks of 5 minutes). Without a bound, every `docker exec` into a
/// long-running container kept its output channel and state forever.
const EXEC_RETENTION: Duration = Duration::from_secs(5 * 60);

/// The exec instances of every container.
#[derive(Default)]
pub struct ExecStore {
    execs: Mutex<HashMap<String, Arc<ExecHandle>>>,
}

impl ExecStore {
    fn get(&self, id: &str) -> Result<Arc<ExecHandle>> {
        self.execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(format!("No such exec instance: {id}")))
    }

    /// IDs of the execs of container `id` that have not exited (inspect's
    /// `ExecIDs`, which in dockerd drops an exec when its process ends).
    pub fn ids_of(&self, container: &str) -> Vec<String> {
        self.execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|e| e.container_id == container)
            .filter(|e| {
                e.state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .exit_code
                    .is_none()
            })
            .map(|e| e.id.clone())
            .collect()
    }

    /// Forgets execs that exited more than [`EXEC_RETENTION`] ago.
    fn prune(&self) {
        self.execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, e| {
                let st = e.state.lock().unwrap_or_else(|p| p.into_inner());
                st.exited_at.is_none_or(|at| at.elapsed() < EXEC_RETENTION)
            });
    }

    /// Forgets one exec (a health probe's, once its result is read).
    pub(crate) fn forget(&self, id: &str) {
        self.execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// SIGKILLs an exec's process if it still runs (a health probe past
    /// its timeout).
    pub(crate) fn kill(&self, id: &str) {
        let Ok(exec) = self.get(id) else { return };
        let st = exec.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.running && st.pid > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(st.pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    /// Forgets the execs of a removed container.
    pub fn forget_container(&self, container: &str) {
        self.execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, e| e.container_id != container);
    }
}

fn command_line(cfg: &ExecConfig) -> String {
    cfg.cmd.clone().unwrap_or_default().join(" ")
}

impl Engine {
    /// Exec IDs of a container (inspect's `ExecIDs`).
    pub(crate) fn exec_ids_of(&self, container: &str) -> Vec<String> {
        self.execs.ids_of(container)
    }

    /// `POST /containers/{id}/exec`: returns the exec ID.
    pub async fn create_exec(
        self: &Arc<Self>,
        container: &str,
        config: ExecConfig,
    ) -> Result<String> {
        let handle = self.containers.resolve(container)?;
        let c = handle.snapshot();
        match c.state.status {
            Status::Running => {}
            Status::Paused => {
                return Err(EngineError::Conflict(format!(
                    "Container {} is paused, unpause the container before exec",
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
        if config.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            return Err(EngineError::InvalidParameter(
                "No exec command specified".into(),
            ));
        }
        parse_detach_keys(config.detach_keys.as_deref())?;
        self.execs.prune();
        let id = berth_storage::random_id();
        let exec = Arc::new(ExecHandle {
            id: id.clone(),
            container_id: c.id.clone(),
            config: config.clone(),
            state: Mutex::new(ExecState::default()),
            output: broadcast::channel(1024).0,
            watch: watch::channel(Watched {
                status: Status::Created,
                exit_code: 0,
                exits: 0,
                removed: false,
            })
            .0,
            hub: Mutex::new(None),
        });
        self.execs
            .execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), exec);
        self.publish_container(
            &c,
            &format!("exec_create: {}", command_line(&config)),
            &[("execID", id.clone())],
        );
        Ok(id)
    }

    /// `POST /exec/{id}/start`: `None` when detached.
    pub async fn start_exec(
        self: &Arc<Self>,
        exec_id: &str,
        start: ExecStartConfig,
    ) -> Result<Option<AttachSession>> {
        let exec = self.execs.get(exec_id)?;
        {
            let mut st = exec.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.running {
                return Err(EngineError::Conflict(format!(
                    "Error: Exec command {exec_id} is already running"
                )));
            }
            if st.started {
                return Err(EngineError::Conflict(format!(
                    "Error: Exec command {exec_id} has already run"
                )));
            }
            st.started = true;
        }
        let handle = self.containers.resolve(&exec.container_id)?;
        let c = handle.snapshot();
        if c.state.status != Status::Running {
            return Err(EngineError::Conflict(format!(
                "Container {} is not running",
                c.id
            )));
        }
        let cfg = &exec.config;
        let tty = start.tty.or(cfg.tty).unwrap_or(false);
        let stdin = cfg.attach_stdin.unwrap_or(false) && !start.detach.unwrap_or(false);
        let process = ProcessRef {
            container_id: c.id.clone(),
            exec_id: Some(exec.id.clone()),
            state_dir: ContainerPaths::new(&self.config.data_root, &c.id).exec_state(&exec.id),
        };
        let engine = Arc::clone(self);
        let mut cfg_tty = cfg.clone();
        cfg_tty.tty = Some(tty);
        let runtime_name = c.runtime.clone();
        let exec_for_task = Arc::clone(&exec);
        let state_dir = process.state_dir.clone();
        let pid = tokio::task::spawn_blocking(move || -> Result<u32> {
            let bundle = engine
                .config
                .exec_root
                .join("bundles")
                .join(&exec_for_task.container_id);
            let spec_path = bundle.join("config.json");
            let raw = std::fs::read(&spec_path)
                .map_err(|e| EngineError::io(format!("read {}", spec_path.display()), e))?;
            let spec: oci_spec::runtime::Spec = serde_json::from_slice(&raw)
                .map_err(|e| EngineError::Internal(format!("container spec: {e}")))?;
            let rootfs = std::path::PathBuf::from(format!("/proc/{}/root", c.state.pid));
            let process = crate::runtime::spec::exec_process(&spec, &rootfs, &cfg_tty)?;
            std::fs::create_dir_all(&state_dir)
                .map_err(|e| EngineError::io(format!("create {}", state_dir.display()), e))?;
            engine.runtime.exec(&ExecCreate {
                container_id: exec_for_task.container_id.clone(),
                exec_id: exec_for_task.id.clone(),
                process,
                stdio: StdioConfig {
                    tty,
                    stdin,
                    stdin_once: true,
                },
                state_dir,
                runtime: runtime_name,
            })
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?;
        let pid = match pid {
            Ok(pid) => pid,
            Err(e) => {
                {
                    let mut st = exec.state.lock().unwrap_or_else(|e| e.into_inner());
                    st.exit_code = Some(126);
                    st.exited_at = Some(Instant::now());
                }
                let state_dir = process.state_dir.clone();
                let _ =
                    tokio::task::spawn_blocking(move || std::fs::remove_dir_all(state_dir)).await;
                return Err(e);
            }
        };
        // The end of the client's stdin is the program's EOF, except on a
        // TTY, whose client only "ends" by detaching (as in dockerd).
        let hub =
            StreamHub::connect(&self.runtime, &process, stdin, !tty, exec.output.clone()).await?;
        *exec.hub.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&hub));
        {
            let mut st = exec.state.lock().unwrap_or_else(|e| e.into_inner());
            st.running = true;
            st.pid = pid;
        }
        exec.watch.send_modify(|w| w.status = Status::Running);
        self.publish_container(
            &c,
            &format!("exec_start: {}", command_line(cfg)),
            &[("execID", exec.id.clone())],
        );
        let session = if start.detach.unwrap_or(false) {
            None
        } else {
            let keys = detach_keys(cfg.detach_keys.as_deref(), tty)?;
            let (detach_tx, detach_rx) = watch::channel(false);
            let state = exec.watch.subscribe();
            let until = move || state.borrow().exits > 0;
            let (want_out, want_err) = (
                cfg.attach_stdout.unwrap_or(true),
                cfg.attach_stderr.unwrap_or(true),
            );
            let output = subscribe(
                exec.output.subscribe(),
                until,
                exec.watch.subscribe(),
                Some(detach_rx),
            )
            .filter(move |c| {
                std::future::ready(match c.stream {
                    super::streams::StdStream::Stderr => want_err,
                    _ => want_out,
                })
            })
            .boxed();
            let stdin_writer = stdin.then(|| {
                let hub = Arc::clone(&hub);
                session_stdin(
                    move || Some(Arc::clone(&hub)),
                    exec.watch.subscribe(),
                    keys,
                    detach_tx,
                )
            });
            Some(AttachSession {
                tty,
                output: Some(output),
                stdin: stdin_writer,
            })
        };
        let engine = Arc::clone(self);
        let exec_m = Arc::clone(&exec);
        tokio::spawn(async move {
            let status = engine.runtime.wait(&process).await;
            hub.drained(std::time::Duration::from_secs(2)).await;
            let code = status.map(|s| s.code as i64).unwrap_or(126);
            {
                let mut st = exec_m.state.lock().unwrap_or_else(|e| e.into_inner());
                st.running = false;
                st.exit_code = Some(code);
                st.exited_at = Some(Instant::now());
            }
            // The exit is recorded here; the shim's state has served its
            // purpose and would otherwise pile up for the container's life.
            let state_dir = process.state_dir.clone();
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(state_dir)).await;
            exec_m.watch.send_modify(|w| {
                w.status = Status::Exited;
                w.exit_code = code;
                w.exits += 1;
            });
            if let Ok(h) = engine.containers.resolve(&exec_m.container_id) {
                engine.publish_container(
                    &h.snapshot(),
                    "exec_die",
                    &[
                        ("execID", exec_m.id.clone()),
                        ("exitCode", code.to_string()),
                    ],
                );
            }
        });
        Ok(session)
    }

    /// `GET /exec/{id}/json`.
    pub async fn inspect_exec(self: &Arc<Self>, exec_id: &str) -> Result<ExecInspectResponse> {
        let exec = self.execs.get(exec_id)?;
        let st = exec.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let cmd = exec.config.cmd.clone().unwrap_or_default();
        Ok(ExecInspectResponse {
            can_remove: Some(false),
            detach_keys: Some(exec.config.detach_keys.clone().unwrap_or_default()),
            id: Some(exec.id.clone()),
            running: Some(st.running),
            exit_code: st.exit_code,
            process_config: Some(ProcessConfig {
                privileged: Some(exec.config.privileged.unwrap_or(false)),
                user: Some(exec.config.user.clone().unwrap_or_default()),
                tty: Some(exec.config.tty.unwrap_or(false)),
                entrypoint: cmd.first().cloned(),
                arguments: Some(cmd.iter().skip(1).cloned().collect()),
            }),
            open_stdin: Some(exec.config.attach_stdin.unwrap_or(false)),
            open_stderr: Some(exec.config.attach_stderr.unwrap_or(false)),
            open_stdout: Some(exec.config.attach_stdout.unwrap_or(false)),
            container_id: Some(exec.container_id.clone()),
            pid: Some(st.pid as i64),
        })
    }

    /// `POST /exec/{id}/resize?h=&w=`.
    pub async fn resize_exec(
        self: &Arc<Self>,
        exec_id: &str,
        height: u16,
        width: u16,
    ) -> Result<()> {
        let exec = self.execs.get(exec_id)?;
        let process = ProcessRef {
            container_id: exec.container_id.clone(),
            exec_id: Some(exec.id.clone()),
            state_dir: ContainerPaths::new(&self.config.data_root, &exec.container_id)
                .exec_state(&exec.id),
        };
        self.runtime.resize(&process, height, width).await
    }
}

//! The runtime seam: running processes for containers through an OCI
//! runtime binary (runc or crun) and one `berth-shim` per process. The
//! containers module decides *what* runs; this module knows *how*: the
//! bundle, the runtime's command line, the shim that owns stdio, logs and
//! the exit status, and the cgroup facts (OOM) read after an exit.
//!
//! Nothing here forks from the daemon: runtime and shim are exec'd.

mod oci_cli;
mod shim;
pub mod spec;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use berth_shim::client::{self, FrameCodec, ShimError};
use berth_shim::protocol::{ExitRecord, STREAM_STDERR};
use chrono::{DateTime, Utc};
use futures_core::Stream;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWrite;
use tokio::net::unix::OwnedReadHalf;
use tokio_util::codec::FramedRead;

use crate::containers::{OutputChunk, OutputStream, StdStream};
use crate::error::{EngineError, Result};
use oci_cli::OciCli;
use shim::{Launch, ShimMode};

/// How a process's standard streams are set up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StdioConfig {
    /// A PTY instead of pipes.
    pub tty: bool,
    /// Keep stdin open for attach (`OpenStdin`).
    pub stdin: bool,
    /// Close stdin after the first attach ends (`StdinOnce`).
    pub stdin_once: bool,
}

/// Everything needed to create a container's init process.
#[derive(Debug, Clone)]
pub struct TaskCreate {
    /// The container ID; also the runtime's container id.
    pub id: String,
    /// Bundle directory; `create` writes `config.json` there.
    pub bundle: PathBuf,
    pub spec: oci_spec::runtime::Spec,
    pub stdio: StdioConfig,
    /// The json-file log the shim appends the process's output to.
    pub log_path: PathBuf,
    /// Persistent directory for the shim's records (exit status), so they
    /// survive a daemon restart: `<data-root>/containers/<id>`.
    pub state_dir: PathBuf,
    /// Runtime name (`runc`, `crun`, or an `--add-runtime` name).
    pub runtime: String,
}

/// Everything needed to start an exec process in a running container.
#[derive(Debug, Clone)]
pub struct ExecCreate {
    pub container_id: String,
    pub exec_id: String,
    pub process: oci_spec::runtime::Process,
    pub stdio: StdioConfig,
    /// Where the shim keeps this exec's records.
    pub state_dir: PathBuf,
    pub runtime: String,
}

/// Names one process the runtime runs: a container's init or an exec.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProcessRef {
    pub container_id: String,
    pub exec_id: Option<String>,
    /// The `state_dir` it was created with.
    pub state_dir: PathBuf,
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Exit code; 128+N for death by signal N, as dockerd reports.
    pub code: i32,
    pub finished_at: DateTime<Utc>,
    /// The kernel OOM killer ended it (read from the cgroup).
    pub oom_killed: bool,
}

/// What the runtime says about a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Created,
    Running,
    Paused,
    Stopped,
}

/// Runtime configuration: the binaries by name and which is default.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Name → binary (`runc` → `/usr/sbin/runc`).
    pub runtimes: BTreeMap<String, PathBuf>,
    pub default_runtime: String,
    /// The `berth-shim` binary.
    pub shim: PathBuf,
    /// `--exec-root`, for sockets and runtime state (`--root` of runc).
    pub exec_root: PathBuf,
}

/// Runs container processes.
pub struct Runtime {
    config: RuntimeConfig,
    /// Which runtime runs each container, learned at create; after a
    /// daemon restart it is found again in the runtimes' state dirs.
    owners: Mutex<HashMap<String, String>>,
}

impl From<ExitRecord> for ExitStatus {
    fn from(r: ExitRecord) -> ExitStatus {
        ExitStatus {
            code: r.code,
            finished_at: r.finished_at,
            oom_killed: r.oom_killed,
        }
    }
}

/// A shim's output frames as the API's output chunks; the stream ends
/// with the process's output (or the connection).
struct ShimOutput(FramedRead<OwnedReadHalf, FrameCodec>);

impl Stream for ShimOutput {
    type Item = OutputChunk;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<OutputChunk>> {
        match Pin::new(&mut self.0).poll_next(cx) {
            Poll::Ready(Some(Ok((stream, data)))) => Poll::Ready(Some(OutputChunk {
                stream: if stream == STREAM_STDERR {
                    StdStream::Stderr
                } else {
                    StdStream::Stdout
                },
                data,
            })),
            Poll::Ready(Some(Err(e))) => {
                tracing::warn!("shim output stream: {e}");
                Poll::Ready(None)
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn mkdir_private(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| EngineError::io(format!("create {}", dir.display()), e))
}

fn shim_error(process: &ProcessRef, e: ShimError) -> EngineError {
    match e {
        ShimError::Gone { .. } => {
            EngineError::Conflict(format!("Container {} is not running", process.container_id))
        }
        ShimError::Refused(m) => EngineError::InvalidParameter(m),
        e => EngineError::Internal(format!("shim of {}: {e}", process.container_id)),
    }
}

impl Runtime {
    /// A runtime over the configured binaries. The default runtime must
    /// exist; state directories under the exec root are made here.
    pub fn new(config: RuntimeConfig) -> Result<Runtime> {
        let default = config
            .runtimes
            .get(&config.default_runtime)
            .ok_or_else(|| {
                EngineError::InvalidParameter(format!(
                    "default runtime {:?} is not a configured runtime",
                    config.default_runtime
                ))
            })?;
        if !default.is_file() {
            return Err(EngineError::InvalidParameter(format!(
                "default runtime {}: {} does not exist",
                config.default_runtime,
                default.display()
            )));
        }
        mkdir_private(&config.exec_root.join("s"))?;
        for name in config.runtimes.keys() {
            mkdir_private(&config.exec_root.join("runtimes").join(name))?;
        }
        Ok(Runtime {
            config,
            owners: Mutex::new(HashMap::new()),
        })
    }

    /// The binary and `--root` of the named runtime.
    fn cli(&self, name: &str) -> Result<OciCli<'_>> {
        let binary = self.config.runtimes.get(name).ok_or_else(|| {
            EngineError::InvalidParameter(format!("unknown or invalid runtime name: {name}"))
        })?;
        Ok(OciCli {
            binary,
            root: self.config.exec_root.join("runtimes").join(name),
        })
    }

    /// The runtime that runs container `id`.
    fn cli_for(&self, id: &str) -> Result<OciCli<'_>> {
        let known = self
            .owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned();
        if let Some(name) = known {
            return self.cli(&name);
        }
        for name in self.config.runtimes.keys() {
            let cli = self.cli(name)?;
            if cli.exists(id) {
                self.owners
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id.to_string(), name.clone());
                return Ok(cli);
            }
        }
        self.cli(&self.config.default_runtime)
    }

    fn socket(&self, process: &ProcessRef) -> Result<PathBuf> {
        shim::socket_path(
            &self.config.exec_root,
            &process.container_id,
            process.exec_id.as_deref(),
        )
    }

    fn check_shim(&self) -> Result<()> {
        if self.config.shim.is_file() {
            Ok(())
        } else {
            Err(EngineError::Internal(format!(
                "the berth-shim binary {} does not exist",
                self.config.shim.display()
            )))
        }
    }

    /// Creates the init process (stopped before the user's program) with a
    /// shim owning its stdio; returns its pid. Blocking.
    ///
    /// Writes `<bundle>/config.json`; the shim keeps `exit.json`,
    /// `shim.pid`, `shim.log`, `process.pid` and `runtime.log` in
    /// `state_dir`, and appends output to `log_path`.
    pub fn create(&self, task: &TaskCreate) -> Result<u32> {
        let cli = self.cli(&task.runtime)?;
        self.check_shim()?;
        mkdir_private(&task.bundle)?;
        berth_storage::atomic::write_json(&task.bundle.join("config.json"), &task.spec)?;
        std::fs::create_dir_all(&task.state_dir)
            .map_err(|e| EngineError::io(format!("create {}", task.state_dir.display()), e))?;
        let socket = shim::socket_path(&self.config.exec_root, &task.id, None)?;
        // A container created again (restart) must not report the last
        // run's exit before this one has one.
        let _ = std::fs::remove_file(task.state_dir.join(berth_shim::protocol::EXIT_FILE));
        let pid = shim::launch(&Launch {
            shim: &self.config.shim,
            mode: ShimMode::Create {
                bundle: &task.bundle,
                log: &task.log_path,
            },
            container_id: &task.id,
            runtime_binary: cli.binary,
            runtime_root: &cli.root,
            state_dir: &task.state_dir,
            socket: &socket,
            stdio: task.stdio,
        })?;
        self.owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(task.id.clone(), task.runtime.clone());
        Ok(pid)
    }

    /// Lets a created container run its program. Blocking.
    pub fn start(&self, id: &str) -> Result<()> {
        self.cli_for(id)?.start(id)
    }

    /// Sends `signal` to the init process (`all`: to every process).
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        self.cli_for(id)?.kill(id, signal, all)
    }

    /// Freezes every process of the container.
    pub fn pause(&self, id: &str) -> Result<()> {
        self.cli_for(id)?.pause(id)
    }

    /// Thaws a paused container.
    pub fn resume(&self, id: &str) -> Result<()> {
        self.cli_for(id)?.resume(id)
    }

    /// Removes the runtime's container (and its cgroup); idempotent.
    pub fn delete(&self, id: &str) -> Result<()> {
        self.cli_for(id)?.delete(id)?;
        self.owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        Ok(())
    }

    /// The runtime's view of the container, `None` if it has none.
    pub fn status(&self, id: &str) -> Result<Option<(TaskStatus, u32)>> {
        self.cli_for(id)?.state(id)
    }

    /// Changes cgroup limits of a running container.
    pub fn update(&self, id: &str, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
        let json = serde_json::to_vec(resources)
            .map_err(|e| EngineError::Internal(format!("resources: {e}")))?;
        self.cli_for(id)?.update(id, &json)
    }

    /// The pids (host namespace) of every process in the container.
    pub fn pids(&self, id: &str) -> Result<Vec<u32>> {
        self.cli_for(id)?.pids(id)
    }

    /// Starts an exec process with its own shim; returns its pid.
    ///
    /// The process runs at once; the shim holds its output (up to 1 MiB)
    /// until the first attach, so attach right after this returns.
    /// `process.json`, `exit.json` and the shim's files go to `state_dir`.
    pub fn exec(&self, exec: &ExecCreate) -> Result<u32> {
        let cli = self.cli(&exec.runtime)?;
        self.check_shim()?;
        std::fs::create_dir_all(&exec.state_dir)
            .map_err(|e| EngineError::io(format!("create {}", exec.state_dir.display()), e))?;
        let process_json = exec.state_dir.join("process.json");
        berth_storage::atomic::write_json(&process_json, &exec.process)?;
        let socket = shim::socket_path(
            &self.config.exec_root,
            &exec.container_id,
            Some(&exec.exec_id),
        )?;
        shim::launch(&Launch {
            shim: &self.config.shim,
            mode: ShimMode::Exec {
                exec_id: &exec.exec_id,
                process: &process_json,
            },
            container_id: &exec.container_id,
            runtime_binary: cli.binary,
            runtime_root: &cli.root,
            state_dir: &exec.state_dir,
            socket: &socket,
            stdio: exec.stdio,
        })
    }

    /// Resolves when the process has exited, with its status — also for a
    /// process that exited while the daemon was down.
    pub async fn wait(&self, process: &ProcessRef) -> Result<ExitStatus> {
        let socket = self.socket(process)?;
        let answer = client::wait(&socket).await;
        if let Ok(rec) = answer {
            return Ok(rec.into());
        }
        // The shim is gone (or went away while we waited): its record on
        // disk is the answer.
        let dir = process.state_dir.clone();
        let recorded = tokio::task::spawn_blocking(move || ExitRecord::load(&dir))
            .await
            .map_err(|e| EngineError::Internal(format!("reading the exit status: {e}")))?
            .map_err(|e| EngineError::io("reading the exit status", e))?;
        match (recorded, answer) {
            (Some(rec), _) => Ok(rec.into()),
            (None, Err(e)) => Err(EngineError::Internal(format!(
                "the shim of {} ended without recording an exit status: {e}",
                process.container_id
            ))),
            (None, Ok(_)) => unreachable!("an answered wait returned above"),
        }
    }

    /// The recorded exit status, if the process has exited.
    pub fn exit_status(&self, process: &ProcessRef) -> Option<ExitStatus> {
        match ExitRecord::load(&process.state_dir) {
            Ok(rec) => rec.map(Into::into),
            Err(e) => {
                tracing::warn!(
                    "exit status of {} in {}: {e}",
                    process.container_id,
                    process.state_dir.display()
                );
                None
            }
        }
    }

    /// Whether the process's shim is alive (re-adoption after a restart).
    pub fn alive(&self, process: &ProcessRef) -> bool {
        self.socket(process)
            .is_ok_and(|s| std::os::unix::net::UnixStream::connect(s).is_ok())
    }

    /// Live output and stdin of a process.
    pub async fn attach(
        &self,
        process: &ProcessRef,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<(
        Option<OutputStream>,
        Option<Box<dyn AsyncWrite + Send + Unpin>>,
    )> {
        let socket = self.socket(process)?;
        let a = client::attach(&socket, stdin, stdout, stderr)
            .await
            .map_err(|e| shim_error(process, e))?;
        let output: Option<OutputStream> =
            (stdout || stderr).then(|| Box::pin(ShimOutput(a.output)) as OutputStream);
        let input: Option<Box<dyn AsyncWrite + Send + Unpin>> =
            stdin.then(|| Box::new(a.input) as Box<dyn AsyncWrite + Send + Unpin>);
        Ok((output, input))
    }

    /// Resizes the process's PTY.
    pub async fn resize(&self, process: &ProcessRef, height: u16, width: u16) -> Result<()> {
        let socket = self.socket(process)?;
        client::resize(&socket, height, width)
            .await
            .map_err(|e| shim_error(process, e))
    }
}

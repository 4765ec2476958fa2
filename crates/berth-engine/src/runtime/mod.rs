//! The runtime seam: running processes for containers through an OCI
//! runtime binary (runc or crun) and one `berth-shim` per process. The
//! containers module decides *what* runs; this module knows *how*: the
//! bundle, the runtime's command line, the shim that owns stdio, logs and
//! the exit status, and the cgroup facts (OOM) read after an exit.
//!
//! Nothing here forks from the daemon: runtime and shim are exec'd.

pub mod spec;

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWrite;

use crate::containers::OutputStream;
use crate::error::{EngineError, Result};

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
    #[allow(dead_code)]
    config: RuntimeConfig,
}

fn todo<T>(what: &str) -> Result<T> {
    Err(EngineError::NotImplemented(format!(
        "runtime: {what} is not implemented yet"
    )))
}

impl Runtime {
    /// A runtime over the configured binaries.
    pub fn new(config: RuntimeConfig) -> Result<Runtime> {
        Ok(Runtime { config })
    }

    /// Creates the init process (stopped before the user's program) with a
    /// shim owning its stdio; returns its pid. Blocking.
    pub fn create(&self, task: &TaskCreate) -> Result<u32> {
        let _ = task;
        todo("create")
    }

    /// Lets a created container run its program. Blocking.
    pub fn start(&self, id: &str) -> Result<()> {
        let _ = id;
        todo("start")
    }

    /// Sends `signal` to the init process (`all`: to every process).
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let _ = (id, signal, all);
        todo("kill")
    }

    /// Freezes every process of the container.
    pub fn pause(&self, id: &str) -> Result<()> {
        let _ = id;
        todo("pause")
    }

    /// Thaws a paused container.
    pub fn resume(&self, id: &str) -> Result<()> {
        let _ = id;
        todo("resume")
    }

    /// Removes the runtime's container (and its cgroup); idempotent.
    pub fn delete(&self, id: &str) -> Result<()> {
        let _ = id;
        todo("delete")
    }

    /// The runtime's view of the container, `None` if it has none.
    pub fn status(&self, id: &str) -> Result<Option<(TaskStatus, u32)>> {
        let _ = id;
        todo("status")
    }

    /// Changes cgroup limits of a running container.
    pub fn update(&self, id: &str, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
        let _ = (id, resources);
        todo("update")
    }

    /// The pids (host namespace) of every process in the container.
    pub fn pids(&self, id: &str) -> Result<Vec<u32>> {
        let _ = id;
        todo("pids")
    }

    /// Starts an exec process with its own shim; returns its pid.
    pub fn exec(&self, exec: &ExecCreate) -> Result<u32> {
        let _ = exec;
        todo("exec")
    }

    /// Resolves when the process has exited, with its status — also for a
    /// process that exited while the daemon was down.
    pub async fn wait(&self, process: &ProcessRef) -> Result<ExitStatus> {
        let _ = process;
        todo("wait")
    }

    /// The recorded exit status, if the process has exited.
    pub fn exit_status(&self, process: &ProcessRef) -> Option<ExitStatus> {
        let _ = process;
        None
    }

    /// Whether the process's shim is alive (re-adoption after a restart).
    pub fn alive(&self, process: &ProcessRef) -> bool {
        let _ = process;
        false
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
        let _ = (process, stdin, stdout, stderr);
        todo("attach")
    }

    /// Resizes the process's PTY.
    pub async fn resize(&self, process: &ProcessRef, height: u16, width: u16) -> Result<()> {
        let _ = (process, height, width);
        todo("resize")
    }
}

//! Containers: their state on disk and in memory, and the lifecycle the
//! Engine API drives (create, start, stop, kill, wait, remove, logs,
//! attach, ...). Process work goes through the `runtime` seam; filesystem
//! work through the layer store.

pub mod archive;
pub mod exec;
pub mod streams;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bollard_stubs::models::{
    ContainerCreateBody, ContainerCreateResponse, ContainerInspectResponse, ContainerPruneResponse,
    ContainerSummary, ContainerTopResponse, ContainerUpdateBody, ContainerUpdateResponse,
    ContainerWaitResponse, FilesystemChange,
};

pub use streams::{AttachOptions, AttachSession, OutputChunk, OutputStream, StdStream};

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::filters::Filters;
use crate::images::BodyReader;
use crate::progress::ByteStream;

/// `GET /containers/json` parameters.
#[derive(Debug, Clone, Default)]
pub struct ListContainersOptions {
    pub all: bool,
    /// `limit`: the newest N containers (implies all).
    pub limit: Option<usize>,
    /// `size`: fill SizeRw and SizeRootFs.
    pub size: bool,
    pub filters: Filters,
}

/// `GET /containers/{id}/logs` parameters.
#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    pub follow: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Only entries at or after this time (Unix seconds, nanoseconds).
    pub since: Option<(i64, u32)>,
    /// Only entries before this time.
    pub until: Option<(i64, u32)>,
    /// Prefix each line with its RFC 3339 nano timestamp and a space.
    pub timestamps: bool,
    /// Only the last N lines (`None` = all).
    pub tail: Option<usize>,
}

/// `POST /containers/{id}/wait?condition=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaitCondition {
    #[default]
    NotRunning,
    NextExit,
    Removed,
}

/// A wait that has been accepted; resolves when the condition is met.
pub type WaitFuture = Pin<Box<dyn Future<Output = ContainerWaitResponse> + Send>>;

/// `POST /commit` parameters.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    pub container: String,
    pub repo: Option<String>,
    pub tag: Option<String>,
    pub comment: Option<String>,
    pub author: Option<String>,
    pub pause: bool,
    /// `changes`: Dockerfile instructions applied to the new config.
    pub changes: Vec<String>,
    /// A body config overriding the container's.
    pub config: Option<bollard_stubs::models::ContainerConfig>,
}

fn todo<T>(what: &str) -> Result<T> {
    Err(EngineError::NotImplemented(format!(
        "{what} is not implemented yet"
    )))
}

impl Engine {
    /// `POST /containers/create?name=`.
    pub async fn create_container(
        self: &Arc<Self>,
        name: Option<String>,
        body: ContainerCreateBody,
    ) -> Result<ContainerCreateResponse> {
        let _ = (name, body);
        todo("create")
    }

    /// `POST /containers/{id}/start`; `EngineError::NotModified` when it
    /// already runs.
    pub async fn start_container(self: &Arc<Self>, id: &str) -> Result<()> {
        let _ = id;
        todo("start")
    }

    /// `POST /containers/{id}/stop?signal=&t=`; `NotModified` when stopped.
    pub async fn stop_container(
        self: &Arc<Self>,
        id: &str,
        signal: Option<String>,
        timeout: Option<i64>,
    ) -> Result<()> {
        let _ = (id, signal, timeout);
        todo("stop")
    }

    /// `POST /containers/{id}/restart?signal=&t=`.
    pub async fn restart_container(
        self: &Arc<Self>,
        id: &str,
        signal: Option<String>,
        timeout: Option<i64>,
    ) -> Result<()> {
        let _ = (id, signal, timeout);
        todo("restart")
    }

    /// `POST /containers/{id}/kill?signal=`; 409 when not running.
    pub async fn kill_container(self: &Arc<Self>, id: &str, signal: Option<String>) -> Result<()> {
        let _ = (id, signal);
        todo("kill")
    }

    /// `POST /containers/{id}/pause`.
    pub async fn pause_container(self: &Arc<Self>, id: &str) -> Result<()> {
        let _ = id;
        todo("pause")
    }

    /// `POST /containers/{id}/unpause`.
    pub async fn unpause_container(self: &Arc<Self>, id: &str) -> Result<()> {
        let _ = id;
        todo("unpause")
    }

    /// `POST /containers/{id}/wait?condition=`: validates now (404, 400),
    /// then the future resolves when the condition holds.
    pub async fn wait_container(
        self: &Arc<Self>,
        id: &str,
        condition: WaitCondition,
    ) -> Result<WaitFuture> {
        let _ = (id, condition);
        todo("wait")
    }

    /// `DELETE /containers/{id}?force=&v=`.
    pub async fn remove_container(
        self: &Arc<Self>,
        id: &str,
        force: bool,
        volumes: bool,
    ) -> Result<()> {
        let _ = (id, force, volumes);
        todo("remove")
    }

    /// `GET /containers/json`.
    pub async fn list_containers(
        self: &Arc<Self>,
        opts: &ListContainersOptions,
    ) -> Result<Vec<ContainerSummary>> {
        let _ = opts;
        Ok(Vec::new())
    }

    /// `GET /containers/{id}/json?size=`.
    pub async fn inspect_container(
        self: &Arc<Self>,
        id: &str,
        size: bool,
    ) -> Result<ContainerInspectResponse> {
        let _ = size;
        Err(EngineError::NotFound(format!("No such container: {id}")))
    }

    /// `GET /containers/{id}/logs`: whether the container has a TTY (raw
    /// stream) and the log entries, ending unless `follow`.
    pub async fn container_logs(
        self: &Arc<Self>,
        id: &str,
        opts: LogsOptions,
    ) -> Result<(bool, OutputStream)> {
        let _ = (id, opts);
        todo("logs")
    }

    /// `POST /containers/{id}/attach` (after the API has hijacked the
    /// connection).
    pub async fn attach_container(
        self: &Arc<Self>,
        id: &str,
        opts: AttachOptions,
    ) -> Result<AttachSession> {
        let _ = (id, opts);
        todo("attach")
    }

    /// `POST /containers/{id}/resize?h=&w=`.
    pub async fn resize_container(
        self: &Arc<Self>,
        id: &str,
        height: u16,
        width: u16,
    ) -> Result<()> {
        let _ = (id, height, width);
        todo("resize")
    }

    /// `GET /containers/{id}/top?ps_args=`.
    pub async fn top_container(
        self: &Arc<Self>,
        id: &str,
        ps_args: Option<String>,
    ) -> Result<ContainerTopResponse> {
        let _ = (id, ps_args);
        todo("top")
    }

    /// `GET /containers/{id}/changes`.
    pub async fn container_changes(self: &Arc<Self>, id: &str) -> Result<Vec<FilesystemChange>> {
        let _ = id;
        todo("changes")
    }

    /// `GET /containers/{id}/export`: the container's whole filesystem.
    pub async fn export_container(self: &Arc<Self>, id: &str) -> Result<ByteStream> {
        let _ = id;
        todo("export")
    }

    /// `POST /commit`: the container's changes become a new image layer;
    /// returns the new image ID.
    pub async fn commit_container(self: &Arc<Self>, opts: CommitOptions) -> Result<String> {
        let _ = opts;
        todo("commit")
    }

    /// `POST /containers/{id}/rename?name=`.
    pub async fn rename_container(self: &Arc<Self>, id: &str, name: &str) -> Result<()> {
        let _ = (id, name);
        todo("rename")
    }

    /// `POST /containers/{id}/update`.
    pub async fn update_container(
        self: &Arc<Self>,
        id: &str,
        body: ContainerUpdateBody,
    ) -> Result<ContainerUpdateResponse> {
        let _ = (id, body);
        todo("update")
    }

    /// `POST /containers/prune?filters=`.
    pub async fn prune_containers(
        self: &Arc<Self>,
        filters: &Filters,
    ) -> Result<ContainerPruneResponse> {
        let _ = filters;
        todo("prune")
    }

    /// Reads a request body into a container path (used by archive PUT).
    #[doc(hidden)]
    pub fn _body_reader_type(_: BodyReader) {}
}

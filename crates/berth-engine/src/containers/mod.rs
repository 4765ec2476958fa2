//! Containers: their state on disk and in memory, and the lifecycle the
//! Engine API drives (create, start, stop, kill, wait, remove, logs,
//! attach, ...). Process work goes through the `runtime` seam; filesystem
//! work through the layer store.

pub mod archive;
mod create;
pub mod exec;
mod health;
mod hub;
mod inspect;
mod lifecycle;
mod logs;
mod ops;
pub mod record;
pub mod store;
pub mod streams;

pub use create::merge_image_config;
pub use lifecycle::parse_signal;

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

impl Engine {
    /// `POST /containers/create?name=`.
    pub async fn create_container(
        self: &Arc<Self>,
        name: Option<String>,
        body: ContainerCreateBody,
    ) -> Result<ContainerCreateResponse> {
        self.create_container_impl(name, body).await
    }

    /// `POST /containers/{id}/start`; `EngineError::NotModified` when it
    /// already runs.
    pub async fn start_container(self: &Arc<Self>, id: &str) -> Result<()> {
        let handle = self.containers.resolve(id)?;
        self.start_handle(&handle).await
    }

    /// `POST /containers/{id}/stop?signal=&t=`; `NotModified` when stopped.
    pub async fn stop_container(
        self: &Arc<Self>,
        id: &str,
        signal: Option<String>,
        timeout: Option<i64>,
    ) -> Result<()> {
        let handle = self.containers.resolve(id)?;
        let _op = handle.op.lock().await;
        self.stop_locked(&handle, signal, timeout).await
    }

    /// `POST /containers/{id}/restart?signal=&t=`.
    pub async fn restart_container(
        self: &Arc<Self>,
        id: &str,
        signal: Option<String>,
        timeout: Option<i64>,
    ) -> Result<()> {
        let handle = self.containers.resolve(id)?;
        let _op = handle.op.lock().await;
        match self.stop_locked(&handle, signal, timeout).await {
            Ok(()) | Err(EngineError::NotModified(_)) => {}
            Err(e) => return Err(e),
        }
        self.start_locked(&handle).await?;
        let c = handle.snapshot();
        self.publish_container(&c, "restart", &[]);
        Ok(())
    }

    /// `POST /containers/{id}/kill?signal=`; 409 when not running.
    pub async fn kill_container(self: &Arc<Self>, id: &str, signal: Option<String>) -> Result<()> {
        let handle = self.containers.resolve(id)?;
        self.kill_handle(&handle, signal).await
    }

    /// `POST /containers/{id}/pause`.
    pub async fn pause_container(self: &Arc<Self>, id: &str) -> Result<()> {
        let handle = self.containers.resolve(id)?;
        self.pause_handle(&handle).await
    }

    /// `POST /containers/{id}/unpause`.
    pub async fn unpause_container(self: &Arc<Self>, id: &str) -> Result<()> {
        let handle = self.containers.resolve(id)?;
        let _op = handle.op.lock().await;
        self.unpause_locked(&handle, true).await
    }

    /// `POST /containers/{id}/wait?condition=`: validates now (404, 400),
    /// then the future resolves when the condition holds.
    pub async fn wait_container(
        self: &Arc<Self>,
        id: &str,
        condition: WaitCondition,
    ) -> Result<WaitFuture> {
        let handle = self.containers.resolve(id)?;
        Ok(self.wait_handle(&handle, condition))
    }

    /// `DELETE /containers/{id}?force=&v=`.
    pub async fn remove_container(
        self: &Arc<Self>,
        id: &str,
        force: bool,
        volumes: bool,
    ) -> Result<()> {
        let handle = self.containers.resolve(id)?;
        self.remove_handle(&handle, force, volumes).await?;
        self.execs.forget_container(&handle.id);
        Ok(())
    }

    /// `GET /containers/json`.
    pub async fn list_containers(
        self: &Arc<Self>,
        opts: &ListContainersOptions,
    ) -> Result<Vec<ContainerSummary>> {
        self.list_handles(opts).await
    }

    /// `GET /containers/{id}/json?size=`.
    pub async fn inspect_container(
        self: &Arc<Self>,
        id: &str,
        size: bool,
    ) -> Result<ContainerInspectResponse> {
        let handle = self.containers.resolve(id)?;
        self.inspect_handle(&handle, size).await
    }

    /// `GET /containers/{id}/logs`: whether the container has a TTY (raw
    /// stream) and the log entries, ending unless `follow`.
    pub async fn container_logs(
        self: &Arc<Self>,
        id: &str,
        opts: LogsOptions,
    ) -> Result<(bool, OutputStream)> {
        let handle = self.containers.resolve(id)?;
        self.logs_handle(&handle, opts).await
    }

    /// `POST /containers/{id}/attach` (after the API has hijacked the
    /// connection).
    pub async fn attach_container(
        self: &Arc<Self>,
        id: &str,
        opts: AttachOptions,
    ) -> Result<AttachSession> {
        let handle = self.containers.resolve(id)?;
        self.attach_handle(&handle, opts).await
    }

    /// `POST /containers/{id}/resize?h=&w=`.
    pub async fn resize_container(
        self: &Arc<Self>,
        id: &str,
        height: u16,
        width: u16,
    ) -> Result<()> {
        let handle = self.containers.resolve(id)?;
        self.resize_handle(&handle, height, width).await
    }

    /// `GET /containers/{id}/top?ps_args=`.
    pub async fn top_container(
        self: &Arc<Self>,
        id: &str,
        ps_args: Option<String>,
    ) -> Result<ContainerTopResponse> {
        let handle = self.containers.resolve(id)?;
        self.top_handle(&handle, ps_args).await
    }

    /// `GET /containers/{id}/changes`.
    pub async fn container_changes(self: &Arc<Self>, id: &str) -> Result<Vec<FilesystemChange>> {
        let handle = self.containers.resolve(id)?;
        self.changes_handle(&handle).await
    }

    /// `GET /containers/{id}/export`: the container's whole filesystem.
    pub async fn export_container(self: &Arc<Self>, id: &str) -> Result<ByteStream> {
        let handle = self.containers.resolve(id)?;
        self.export_handle(&handle).await
    }

    /// `POST /commit`: the container's changes become a new image layer;
    /// returns the new image ID.
    pub async fn commit_container(self: &Arc<Self>, opts: CommitOptions) -> Result<String> {
        let handle = self.containers.resolve(&opts.container)?;
        self.commit_handle(&handle, opts).await
    }

    /// `POST /containers/{id}/rename?name=`.
    pub async fn rename_container(self: &Arc<Self>, id: &str, name: &str) -> Result<()> {
        let handle = self.containers.resolve(id)?;
        self.rename_handle(&handle, name).await
    }

    /// `POST /containers/{id}/update`.
    pub async fn update_container(
        self: &Arc<Self>,
        id: &str,
        body: ContainerUpdateBody,
    ) -> Result<ContainerUpdateResponse> {
        let handle = self.containers.resolve(id)?;
        self.update_handle(&handle, body).await
    }

    /// `POST /containers/prune?filters=`.
    pub async fn prune_containers(
        self: &Arc<Self>,
        filters: &Filters,
    ) -> Result<ContainerPruneResponse> {
        self.prune_handles(filters).await
    }
}

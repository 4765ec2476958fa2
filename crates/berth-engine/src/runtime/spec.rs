//! Docker's container configuration turned into an OCI runtime spec: the
//! process (args, env, user resolved in the image's /etc/passwd, cwd,
//! capabilities, rlimits, TTY), mounts (the defaults dockerd gives every
//! container plus binds, volumes and tmpfs), namespaces, cgroup limits and
//! the masked/read-only paths.

use std::path::{Path, PathBuf};

use bollard_stubs::models::{ContainerConfig, ExecConfig, HostConfig};
use oci_spec::runtime::{Process, Spec};

use crate::error::{EngineError, Result};

/// What kind of mount a [`MountSpec`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    Bind,
    Volume,
    Tmpfs,
}

/// A mount the containers module resolved (binds checked, volumes
/// created, anonymous volumes made) for the spec to include.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub kind: MountKind,
    /// Host path (ignored for tmpfs).
    pub source: PathBuf,
    /// Absolute path in the container.
    pub destination: String,
    pub read_only: bool,
    /// Extra mount options (`size=64m`, `mode=1777` for tmpfs...).
    pub options: Vec<String>,
    /// `rprivate`, `rshared`, ... (binds only).
    pub propagation: Option<String>,
}

/// How the container is networked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// The host's network namespace (`--network host`).
    Host,
    /// A private namespace with loopback only (`none`, and for now `bridge`).
    Private,
    /// Join an existing namespace at this path (`container:<id>` and later
    /// bridge networking).
    Path(PathBuf),
}

/// Everything the spec is built from.
#[derive(Debug, Clone)]
pub struct SpecInputs<'a> {
    /// The 64-hex container ID (names the cgroup: `/berth/<id>`).
    pub id: &'a str,
    /// The mounted root filesystem.
    pub rootfs: &'a Path,
    /// The container config, already merged with the image's defaults.
    pub config: &'a ContainerConfig,
    pub host_config: &'a HostConfig,
    pub mounts: &'a [MountSpec],
    /// Host files bind-mounted over /etc/hosts, /etc/resolv.conf, /etc/hostname.
    pub hosts_path: &'a Path,
    pub resolv_conf_path: &'a Path,
    pub hostname_path: &'a Path,
    pub network: NetworkMode,
    /// The init binary for `--init` (mounted at /sbin/docker-init).
    pub init_binary: Option<&'a Path>,
}

/// Builds the OCI spec of a container's init process.
pub fn build(inputs: &SpecInputs<'_>) -> Result<Spec> {
    let _ = inputs;
    Err(EngineError::NotImplemented(
        "spec: not implemented yet".into(),
    ))
}

/// Builds the process of an exec in a container created from `container`
/// (user resolved against `rootfs`).
pub fn exec_process(container: &Spec, rootfs: &Path, exec: &ExecConfig) -> Result<Process> {
    let _ = (container, rootfs, exec);
    Err(EngineError::NotImplemented(
        "spec: not implemented yet".into(),
    ))
}

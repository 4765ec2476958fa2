//! The container's namespaces as dockerd sets them up: mount, network
//! (new, the host's, or joined by path), UTS, PID and IPC unless shared
//! with the host, and a cgroup namespace where dockerd makes one (private
//! by default only on cgroup v2).

use std::path::Path;

use bollard_stubs::models::{HostConfig, HostConfigCgroupnsModeEnum};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType};

use super::{spec_err, NetworkMode};
use crate::error::{EngineError, Result};

/// A `--pid`, `--ipc` or `--uts` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsMode {
    Private,
    Host,
    /// IPC only: a namespace of its own without /dev/shm.
    None,
}

/// The PID, IPC and UTS modes of a container.
pub struct Modes {
    pub pid: NsMode,
    pub ipc: NsMode,
    pub uts: NsMode,
}

pub fn modes(hc: &HostConfig) -> Result<Modes> {
    Ok(Modes {
        pid: ns_mode("PID", hc.pid_mode.as_deref(), false)?,
        ipc: ns_mode("IPC", hc.ipc_mode.as_deref(), true)?,
        uts: ns_mode("UTS", hc.uts_mode.as_deref(), false)?,
    })
}

/// cgroup v2 at the root (not the v1 + empty v2 hybrid).
pub fn cgroup_unified() -> bool {
    const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
    rustix::fs::statfs("/sys/fs/cgroup").is_ok_and(|s| s.f_type as u64 == CGROUP2_SUPER_MAGIC)
}

fn namespace(typ: LinuxNamespaceType, path: Option<&Path>) -> Result<LinuxNamespace> {
    let mut b = LinuxNamespaceBuilder::default().typ(typ);
    if let Some(p) = path {
        b = b.path(p);
    }
    b.build().map_err(spec_err)
}

/// Parses a mode; another container's namespace (`container:<id>`) is
/// not supported yet.
fn ns_mode(what: &str, mode: Option<&str>, allow_none: bool) -> Result<NsMode> {
    match mode.unwrap_or("") {
        "" | "private" | "shareable" => Ok(NsMode::Private),
        "host" => Ok(NsMode::Host),
        "none" if allow_none => Ok(NsMode::None),
        m if m.starts_with("container:") => Err(EngineError::NotImplemented(format!(
            "{what} mode {m:?} is not supported by berth yet"
        ))),
        m => Err(EngineError::InvalidParameter(format!(
            "invalid {what} mode: {m}"
        ))),
    }
}

/// The namespaces of the container, in dockerd's order.
pub fn list(
    modes: &Modes,
    network: &NetworkMode,
    cgroupns_mode: Option<HostConfigCgroupnsModeEnum>,
) -> Result<Vec<LinuxNamespace>> {
    let mut namespaces = vec![namespace(LinuxNamespaceType::Mount, None)?];
    match network {
        NetworkMode::Host => {}
        NetworkMode::Private => namespaces.push(namespace(LinuxNamespaceType::Network, None)?),
        NetworkMode::Path(p) => namespaces.push(namespace(LinuxNamespaceType::Network, Some(p))?),
    }
    if modes.uts == NsMode::Private {
        namespaces.push(namespace(LinuxNamespaceType::Uts, None)?);
    }
    if modes.pid == NsMode::Private {
        namespaces.push(namespace(LinuxNamespaceType::Pid, None)?);
    }
    if modes.ipc != NsMode::Host {
        namespaces.push(namespace(LinuxNamespaceType::Ipc, None)?);
    }
    let cgroupns = match cgroupns_mode {
        Some(HostConfigCgroupnsModeEnum::PRIVATE) => true,
        Some(HostConfigCgroupnsModeEnum::HOST) => false,
        _ => cgroup_unified(),
    };
    if cgroupns {
        namespaces.push(namespace(LinuxNamespaceType::Cgroup, None)?);
    }
    Ok(namespaces)
}

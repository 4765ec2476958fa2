//! The spec side of `--userns-remap`: the user namespace's uid and gid
//! mappings, the checks dockerd makes before remapping a container, and
//! the mount flags a bind source carries locked (nosuid, nodev, ...) that
//! runc, already inside the new namespace, could not clear on remount.

use std::path::Path;

use berth_storage::{IdMap, IdRange};
use bollard_stubs::models::HostConfig;
use oci_spec::runtime::{LinuxIdMapping, LinuxIdMappingBuilder};
use rustix::fs::StatVfsMountFlags;

use super::spec_err;
use crate::error::{EngineError, Result};

fn mapping(r: &IdRange) -> Result<LinuxIdMapping> {
    LinuxIdMappingBuilder::default()
        .container_id(r.container)
        .host_id(r.host)
        .size(r.size)
        .build()
        .map_err(spec_err)
}

/// The uid and gid mappings of a remapped container.
pub fn mappings(ids: &IdMap) -> Result<(Vec<LinuxIdMapping>, Vec<LinuxIdMapping>)> {
    Ok((
        ids.uids.iter().map(mapping).collect::<Result<_>>()?,
        ids.gids.iter().map(mapping).collect::<Result<_>>()?,
    ))
}

/// Whether the container asked to stay in the host's user namespace
/// (`--userns=host`), the only other mode dockerd knows.
pub fn wants_host(hc: &HostConfig) -> Result<bool> {
    match hc.userns_mode.as_deref().unwrap_or("") {
        "" => Ok(false),
        "host" => Ok(true),
        m => Err(EngineError::InvalidParameter(format!(
            "invalid USER mode: {m}"
        ))),
    }
}

/// dockerd's refusals for a container that would be remapped.
pub fn check(hc: &HostConfig) -> Result<()> {
    let refuse = |m: &str| Err(EngineError::InvalidParameter(m.to_string()));
    if hc.privileged.unwrap_or(false) {
        return refuse("privileged mode is incompatible with user namespaces.  You must run the container in the host namespace when running privileged mode");
    }
    if hc.network_mode.as_deref() == Some("host") {
        return refuse(
            "cannot share the host's network namespace when user namespaces are enabled",
        );
    }
    if hc.pid_mode.as_deref() == Some("host") {
        return refuse("cannot share the host PID namespace when user namespaces are enabled");
    }
    Ok(())
}

/// The flags of the mount `source` lives on that the kernel locks for a
/// less privileged namespace; they must be repeated on the bind mount.
pub fn locked_flags(source: &Path) -> Vec<String> {
    match rustix::fs::statvfs(source) {
        Ok(st) => flag_options(st.f_flag),
        Err(_) => Vec::new(),
    }
}

fn flag_options(f: StatVfsMountFlags) -> Vec<String> {
    [
        (StatVfsMountFlags::RDONLY, "ro"),
        (StatVfsMountFlags::NODEV, "nodev"),
        (StatVfsMountFlags::NOEXEC, "noexec"),
        (StatVfsMountFlags::NOSUID, "nosuid"),
        (StatVfsMountFlags::NOATIME, "noatime"),
        (StatVfsMountFlags::RELATIME, "relatime"),
        (StatVfsMountFlags::NODIRATIME, "nodiratime"),
    ]
    .into_iter()
    .filter(|(flag, _)| f.contains(*flag))
    .map(|(_, name)| name.to_string())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_follow_the_ranges() {
        let ids = IdMap::stacked(&[(100_000, 65_536), (300_000, 10)], &[(200_000, 65_536)]);
        let (u, g) = mappings(&ids).unwrap();
        assert_eq!(u.len(), 2);
        assert_eq!(
            (u[1].container_id(), u[1].host_id(), u[1].size()),
            (65_536, 300_000, 10)
        );
        assert_eq!((g[0].container_id(), g[0].host_id()), (0, 200_000));
    }

    #[test]
    fn refusals_and_modes() {
        let hc = HostConfig {
            privileged: Some(true),
            ..Default::default()
        };
        assert!(check(&hc)
            .unwrap_err()
            .to_string()
            .starts_with("privileged mode is incompatible"));
        let hc = HostConfig {
            network_mode: Some("host".into()),
            ..Default::default()
        };
        assert!(check(&hc).is_err());
        assert!(check(&HostConfig::default()).is_ok());
        let hc = HostConfig {
            userns_mode: Some("host".into()),
            ..Default::default()
        };
        assert!(wants_host(&hc).unwrap());
        let hc = HostConfig {
            userns_mode: Some("private".into()),
            ..Default::default()
        };
        assert!(wants_host(&hc).is_err());
    }

    #[test]
    fn locked_flags_become_options() {
        assert_eq!(
            flag_options(
                StatVfsMountFlags::NOSUID | StatVfsMountFlags::NODEV | StatVfsMountFlags::RELATIME
            ),
            ["nodev", "nosuid", "relatime"]
        );
        assert!(flag_options(StatVfsMountFlags::empty()).is_empty());
        assert!(locked_flags(Path::new("/nonexistent/berth")).is_empty());
    }
}

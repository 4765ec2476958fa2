//! What a new container finds in place before it first runs: dockerd's
//! init layer (mount points and placeholder files in its rootfs) and the
//! first /etc/hosts and resolv.conf written for it to be bind-mounted.

use std::path::Path;

/// dockerd's init layer: the mount points and placeholder files every
/// container gets, made where the image lacks them (never through a
/// symlink of the image: everything is resolved beneath the layer root),
/// owned by container root (`owner` on the host under `--userns-remap`).
pub(super) fn fill_init_layer(root: &Path, owner: (u32, u32)) -> berth_storage::Result<()> {
    use berth_storage::archive::beneath::{ensure_dir, open_dir, open_root, split_leaf};
    use rustix::fs::{AtFlags, Mode, OFlags};
    let rootfd = open_root(root)?;
    let exists = |rel: &str| -> berth_storage::Result<bool> {
        let (parent, name) = split_leaf(Path::new(rel));
        Ok(match open_dir(&rootfd, parent)? {
            Some(dir) => rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok(),
            None => false,
        })
    };
    let mut made: Vec<std::path::PathBuf> = Vec::new();
    for dir in ["dev/pts", "dev/shm", "proc", "sys", "etc"] {
        if !exists(dir)? {
            ensure_dir(&rootfd, Path::new(dir), |p| {
                made.push(p.to_path_buf());
                Ok(())
            })?;
        }
    }
    for file in [
        ".dockerenv",
        "etc/resolv.conf",
        "etc/hosts",
        "etc/hostname",
        "dev/console",
    ] {
        if exists(file)? {
            continue;
        }
        let (parent, name) = split_leaf(Path::new(file));
        let dir = ensure_dir(&rootfd, parent, |p| {
            made.push(p.to_path_buf());
            Ok(())
        })?;
        made.push(Path::new(file).to_path_buf());
        rustix::fs::openat(
            &dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o755),
        )
        .map_err(|e| berth_storage::StorageError::io(format!("init layer {file}"), e.into()))?;
    }
    if !exists("etc/mtab")? {
        let dir = ensure_dir(&rootfd, Path::new("etc"), |_| Ok(()))?;
        rustix::fs::symlinkat("/proc/mounts", &dir, "mtab")
            .map_err(|e| berth_storage::StorageError::io("init layer etc/mtab", e.into()))?;
        made.push("etc/mtab".into());
    }
    if owner != (0, 0) {
        for rel in &made {
            let (parent, name) = split_leaf(rel);
            if let Some(dir) = open_dir(&rootfd, parent)? {
                rustix::fs::chownat(
                    &dir,
                    name,
                    Some(rustix::fs::Uid::from_raw(owner.0)),
                    Some(rustix::fs::Gid::from_raw(owner.1)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| {
                    berth_storage::StorageError::io(format!("init layer {rel:?}"), e.into())
                })?;
            }
        }
    }
    Ok(())
}

/// The lines of the host's resolv.conf a private-network container gets:
/// loopback nameservers cannot be reached from its namespace.
pub(super) fn resolv_conf_for(host_network: bool) -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if host_network {
        return host;
    }
    host.lines()
        .filter(|l| {
            let mut words = l.split_whitespace();
            !(words.next() == Some("nameserver")
                && words
                    .next()
                    .is_some_and(|ip| ip.starts_with("127.") || ip == "::1"))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

pub(super) fn hosts_for(host_network: bool, hostname: &str) -> String {
    if host_network {
        return std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    }
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n"
    )
}

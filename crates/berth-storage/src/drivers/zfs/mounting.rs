//! How a layer dataset (kept at `mountpoint=legacy`) gets mounted, chosen
//! once when the driver opens: kernel ZFS mounts it with mount(2) as dockerd
//! does; zfs-fuse has no `mount -t zfs`, so there the dataset's `mountpoint`
//! property is pointed at the directory for the time it is in use, one
//! mount at a time host-wide ([`FUSE_MOUNT_LOCK`]).

use std::fs::File;
use std::path::Path;

use rustix::fs::FlockOperation;
use rustix::mount::{MountFlags, UnmountFlags};

use super::cli;
use crate::error::{Result, StorageError};

/// A host-wide lock every berth process (and berth's test fixtures) holds
/// while it makes zfs-fuse mount a dataset. zfs-fuse hands each new mount to
/// its FUSE threads with two writes to one pipe; two mounts at once
/// interleave them, and the thread reading the pipe then waits forever
/// holding the lock all others need, so every zfs-fuse mount hangs until
/// the daemon is killed (`fuse_listener.c`, `zfsfuse_newfs`/`new_fs`).
pub const FUSE_MOUNT_LOCK: &str = "/run/lock/berth-zfs-fuse-mount.lock";

/// Runs `mount` holding [`FUSE_MOUNT_LOCK`] (an exclusive `flock`).
pub fn with_fuse_mount_lock<T>(mount: impl FnOnce() -> T) -> std::io::Result<T> {
    let path = Path::new(FUSE_MOUNT_LOCK);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    rustix::fs::flock(&file, FlockOperation::LockExclusive)?;
    // The lock goes when `file` closes, after `mount` returns.
    Ok(mount())
}

/// Mounts and unmounts one dataset on one directory.
pub(super) trait DatasetMounter: Send + Sync {
    /// Which method this is, for `docker info`.
    fn describe(&self) -> &'static str;

    /// Mounts `dataset` on `target` (an existing, empty directory).
    fn mount(&self, dataset: &str, target: &Path) -> Result<()>;

    /// Unmounts `dataset` from `target`, lazily if it is busy, and leaves
    /// the dataset at `mountpoint=legacy`.
    fn unmount(&self, dataset: &str, target: &Path) -> Result<()>;
}

/// The method for this host: kernel ZFS has `/dev/zfs`, zfs-fuse does not.
pub(super) fn for_host() -> Box<dyn DatasetMounter> {
    if Path::new("/dev/zfs").exists() {
        Box::new(KernelMount)
    } else {
        Box::new(PropertyMount)
    }
}

/// mount(2) with filesystem type `zfs` and the dataset as the source.
pub(super) struct KernelMount;

impl DatasetMounter for KernelMount {
    fn describe(&self) -> &'static str {
        "mount(2)"
    }

    fn mount(&self, dataset: &str, target: &Path) -> Result<()> {
        rustix::mount::mount(dataset, target, "zfs", MountFlags::empty(), None)
            .map_err(|e| StorageError::at(target, &format!("mount {dataset} on"), e.into()))
    }

    fn unmount(&self, _dataset: &str, target: &Path) -> Result<()> {
        match rustix::mount::unmount(target, UnmountFlags::DETACH) {
            Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(StorageError::at(target, "unmount", e.into())),
        }
    }
}

/// `zfs set mountpoint=<dir>` to mount (the tool mounts a dataset whose
/// mountpoint it sets), `zfs set mountpoint=legacy` to unmount.
pub(super) struct PropertyMount;

impl DatasetMounter for PropertyMount {
    fn describe(&self) -> &'static str {
        "mountpoint property"
    }

    fn mount(&self, dataset: &str, target: &Path) -> Result<()> {
        let target_text = target.to_str().ok_or_else(|| {
            StorageError::InvalidOption(format!(
                "zfs: mount point {} is not UTF-8",
                target.display()
            ))
        })?;
        let set = format!("mountpoint={target_text}");
        let result = with_fuse_mount_lock(|| cli::zfs(&["set", &set, dataset]))
            .map_err(|e| StorageError::at(FUSE_MOUNT_LOCK, "lock", e))?;
        if let Err(e) = result {
            let _ = cli::zfs(&["set", "mountpoint=legacy", dataset]);
            return Err(e.into());
        }
        // `set` mounts only datasets whose canmount allows it; say so
        // rather than hand out an empty directory.
        if cli::get_one(dataset, "mounted")? != "yes" {
            let _ = cli::zfs(&["set", "mountpoint=legacy", dataset]);
            return Err(StorageError::io(
                format!("zfs: mount {dataset} on {}", target.display()),
                std::io::Error::other("the dataset did not mount (is canmount=off?)"),
            ));
        }
        Ok(())
    }

    fn unmount(&self, dataset: &str, target: &Path) -> Result<()> {
        if cli::zfs(&["set", "mountpoint=legacy", dataset]).is_ok() {
            return Ok(());
        }
        // Busy (a process still has a file open): detach it from the tree
        // now, as dockerd does on kernel ZFS, and let the property follow.
        match rustix::mount::unmount(target, UnmountFlags::DETACH) {
            Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(StorageError::at(target, "unmount", e.into())),
        }
        if let Err(e) = cli::zfs(&["set", "mountpoint=legacy", dataset]) {
            // The mount is gone from the tree; zfs-fuse finishes it when the
            // last file closes, and removal retries while it is busy.
            tracing::warn!("{e}");
        }
        Ok(())
    }
}

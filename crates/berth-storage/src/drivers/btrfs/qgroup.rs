//! Quota groups of the btrfs filesystem under the driver home, through
//! ioctls: whether quota is on, turning it on once, the limit and the
//! exclusive bytes of one subvolume's level-0 qgroup, and dropping it when
//! the subvolume goes — never a blocking rescan on the removal path.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use btrfs_uapi::quota::{QgroupLimitFlags, QgroupStatusFlags};
use btrfs_uapi::raw::{BTRFS_QGROUP_INFO_KEY, BTRFS_QGROUP_STATUS_KEY, BTRFS_QUOTA_TREE_OBJECTID};
use btrfs_uapi::tree_search::{tree_search, Key, SearchFilter};
use nix::errno::Errno;

use crate::error::{Result, StorageError};

fn errno(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

/// The quota tree's status item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum QuotaState {
    Off,
    On { inconsistent: bool },
}

/// A search for the single quota-tree item `(0, item_type, offset)`.
fn one_item(item_type: u32, offset: u64) -> SearchFilter {
    let key = Key {
        objectid: 0,
        item_type,
        offset,
    };
    SearchFilter {
        tree_id: u64::from(BTRFS_QUOTA_TREE_OBJECTID),
        start: key,
        end: key,
        min_transid: 0,
        max_transid: u64::MAX,
    }
}

/// The first little-endian u64 fields of an item.
fn le_u64(data: &[u8], index: usize) -> Option<u64> {
    let bytes = data.get(index * 8..index * 8 + 8)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// Reads the quota status item (`btrfs_qgroup_status_item`: version,
/// generation, flags, rescan).
pub(super) fn state(fs: BorrowedFd) -> Result<QuotaState> {
    let mut flags = None;
    let found = tree_search(fs, one_item(BTRFS_QGROUP_STATUS_KEY, 0), |hdr, data| {
        if hdr.item_type == BTRFS_QGROUP_STATUS_KEY {
            flags = le_u64(data, 2);
        }
        Ok(())
    });
    match (found, flags) {
        // No quota tree at all: quota was never enabled.
        (Err(Errno::ENOENT), _) | (Ok(()), None) => Ok(QuotaState::Off),
        (Ok(()), Some(raw)) => {
            let flags = QgroupStatusFlags::from_bits_truncate(raw);
            Ok(if flags.contains(QgroupStatusFlags::ON) {
                QuotaState::On {
                    inconsistent: flags.contains(QgroupStatusFlags::INCONSISTENT),
                }
            } else {
                QuotaState::Off
            })
        }
        (Err(e), _) => Err(StorageError::io("btrfs: read quota status", errno(e))),
    }
}

/// Turns quota on and waits for the initial accounting scan the kernel
/// starts, so limits set next are measured against true numbers. Done once
/// per filesystem, not per container.
pub(super) fn enable(fs: BorrowedFd) -> Result<()> {
    btrfs_uapi::quota::quota_enable(fs, false)
        .map_err(|e| StorageError::io("btrfs: enable quota", errno(e)))?;
    match btrfs_uapi::quota::quota_rescan_wait(fs) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(StorageError::io("btrfs: wait for the quota scan", errno(e))),
    }
}

/// The level-0 qgroup id of the subvolume at `path` (its subvolume id).
pub(super) fn qgroup_of(path: &Path) -> Result<u64> {
    let dir = File::open(path).map_err(|e| StorageError::at(path, "open", e))?;
    btrfs_uapi::inode::lookup_path_rootid(dir.as_fd())
        .map_err(|e| StorageError::at(path, "look up the subvolume id of", errno(e)))
}

/// Limits what the qgroup may reference (dockerd's `size`: the container's
/// whole filesystem, image content included).
pub(super) fn limit(fs: BorrowedFd, qgroup: u64, bytes: u64) -> Result<()> {
    btrfs_uapi::quota::qgroup_limit(fs, qgroup, QgroupLimitFlags::MAX_RFER, bytes, 0)
        .map_err(|e| StorageError::io(format!("btrfs: limit qgroup 0/{qgroup}"), errno(e)))
}

/// The limit on what the qgroup may reference, if one is set.
pub(super) fn referenced_limit(fs: BorrowedFd, qgroup: u64) -> Result<Option<u64>> {
    let mut limit = None;
    tree_search(
        fs,
        one_item(btrfs_uapi::raw::BTRFS_QGROUP_LIMIT_KEY, qgroup),
        |hdr, data| {
            if hdr.item_type == btrfs_uapi::raw::BTRFS_QGROUP_LIMIT_KEY {
                // btrfs_qgroup_limit_item: flags, max_rfer, max_excl, ...
                let flags = le_u64(data, 0).unwrap_or(0);
                if flags & u64::from(btrfs_uapi::raw::BTRFS_QGROUP_LIMIT_MAX_RFER) != 0 {
                    limit = le_u64(data, 1);
                }
            }
            Ok(())
        },
    )
    .map_err(|e| StorageError::io(format!("btrfs: read qgroup 0/{qgroup}"), errno(e)))?;
    Ok(limit)
}

/// Bytes only this qgroup's subvolume holds (`btrfs_qgroup_info_item`:
/// generation, rfer, rfer_cmpr, excl, excl_cmpr). Counted at each
/// transaction commit.
pub(super) fn exclusive_bytes(fs: BorrowedFd, qgroup: u64) -> Result<Option<u64>> {
    let mut excl = None;
    tree_search(fs, one_item(BTRFS_QGROUP_INFO_KEY, qgroup), |hdr, data| {
        if hdr.item_type == BTRFS_QGROUP_INFO_KEY {
            excl = le_u64(data, 3);
        }
        Ok(())
    })
    .map_err(|e| StorageError::io(format!("btrfs: read qgroup 0/{qgroup}"), errno(e)))?;
    Ok(excl)
}

/// Drops the qgroup of a deleted subvolume. The kernel may still be
/// freeing the subvolume's extents (EBUSY) or may have dropped the qgroup
/// itself (ENOENT, kernels from 6.10 on); either way nothing waits here,
/// and [`clear_stale`] at the next start collects what remained.
pub(super) fn destroy(fs: BorrowedFd, qgroup: u64) {
    match btrfs_uapi::quota::qgroup_destroy(fs, qgroup) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => tracing::debug!("btrfs: qgroup 0/{qgroup} left for later: {e}"),
    }
}

/// Destroys qgroups whose subvolume is gone.
pub(super) fn clear_stale(fs: BorrowedFd) {
    match btrfs_uapi::quota::qgroup_clear_stale(fs) {
        Ok(0) => {}
        Ok(n) => tracing::info!("btrfs: removed {n} qgroups of deleted subvolumes"),
        Err(e) => tracing::debug!("btrfs: clearing stale qgroups: {e}"),
    }
}

//! The `Driver` seam: what every storage driver (vfs, overlay2, btrfs, zfs,
//! devicemapper) implements, and the life of a layer from a tar stream to a
//! container's root filesystem.
//!
//! # The life of a layer
//!
//! A driver stores *layers* under opaque ids that the [`crate::LayerStore`]
//! chooses (random "cache ids"); it never sees image JSON or digests.
//!
//! ```text
//!   docker load / import / commit
//!        │ tar stream of layer 1 (the base)
//!        ▼
//!   create("a1", None)        base layer: an empty directory / subvolume / dataset
//!   apply_diff("a1", None, tar) unpack, whiteouts turned into the driver's form
//!        │ tar stream of layer 2
//!        ▼
//!   create("b2", Some("a1"))  child layer: starts as its parent's content
//!   apply_diff("b2", Some("a1"), tar)
//!        │ docker create
//!        ▼
//!   create_rw("c3", Some("b2"), {size: 10G})  the container's writable layer,
//!                                             with its storage limit
//!   mount("c3") -> /path/merged              ref counted; the OCI bundle's rootfs
//!   ... container runs, writes go to c3 only ...
//!   changes("c3", Some("b2")) / diff(...)     docker diff / commit / export
//!   unmount("c3"); remove("c3")               docker rm
//! ```
//!
//! Image layers are never written after `apply_diff`. Drivers whose layers
//! are full copies or snapshots (vfs, btrfs, zfs, devicemapper) rely on the
//! provided "naive" `apply_diff`/`changes`/`diff`, which mount the layer and
//! compare it with its parent; overlay2 overrides them because its `diff`
//! directory already *is* the change set.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::archive::{self, ApplyStats, Change, SplitRecorder, WhiteoutFormat};
use crate::error::Result;
use crate::idmap::IdMap;

/// Options for a container's writable layer (from `--storage-opt`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RwLayerOpts {
    /// Upper bound on the layer's size in bytes (`size=`), if any.
    pub size: Option<u64>,
}

/// Space used by one layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes the layer adds on top of its parent.
    pub size: u64,
    /// Inodes, where the filesystem tells.
    pub inodes: Option<u64>,
}

/// One pool or filesystem the driver's layers live in, and how full it is
/// (metrics and the dashboard; `docker info` shows the same in words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceUsage {
    /// What this is: `data`/`metadata` of a thin pool, a zpool's name,
    /// `filesystem` for the filesystem under the driver's home.
    pub pool: String,
    pub used: u64,
    pub total: u64,
}

/// A storage driver. Implementations are one module each under `drivers/`.
///
/// All methods are blocking: callers in async code run them on a blocking
/// thread. Ids are `[0-9a-f-]` strings chosen by the layer store.
pub trait Driver: Send + Sync {
    /// The driver's name as `docker info` prints it (`overlay2`, `btrfs`...).
    fn name(&self) -> &'static str;

    /// The driver's home directory, `<data-root>/<name>`.
    fn home(&self) -> &Path;

    /// Creates an image layer `id`, empty or starting as `parent`'s content.
    fn create(&self, id: &str, parent: Option<&str>) -> Result<()>;

    /// Creates a container's writable layer on top of `parent`, honouring
    /// `opts.size`. Drivers that cannot limit size refuse a size with
    /// [`crate::StorageError::InvalidOption`].
    fn create_rw(&self, id: &str, parent: Option<&str>, opts: &RwLayerOpts) -> Result<()>;

    /// Removes a layer and everything the driver keeps for it. Removing an
    /// id that does not exist succeeds (removal is idempotent, so crash
    /// recovery can simply retry it).
    fn remove(&self, id: &str) -> Result<()>;

    /// Whether the driver has a layer `id`.
    fn exists(&self, id: &str) -> bool;

    /// All layer ids the driver holds, for reconciliation at start-up.
    fn list(&self) -> Result<Vec<String>>;

    /// Makes the layer's full filesystem (with its parents) available and
    /// returns the path. Ref counted: each `mount` needs one `unmount`.
    fn mount(&self, id: &str) -> Result<PathBuf>;

    /// Releases one `mount` of `id`; the last release unmounts.
    fn unmount(&self, id: &str) -> Result<()>;

    /// Unpacks a layer tar into the freshly created layer `id`, its owners
    /// translated to the host by `ids` (`--userns-remap`).
    fn apply_diff(
        &self,
        id: &str,
        parent: Option<&str>,
        tar: &mut dyn Read,
        split: Option<&mut SplitRecorder>,
        ids: &IdMap,
    ) -> Result<ApplyStats> {
        let _ = parent;
        let root = self.mount(id)?;
        let result = archive::apply_layer(&root, &[], tar, WhiteoutFormat::Delete, split, ids);
        let unmounted = self.unmount(id);
        let stats = result?;
        unmounted?;
        Ok(stats)
    }

    /// The directory whose paths a layer's tar-split file refers to: the
    /// layer's own content for overlay2, its full root otherwise. Must be
    /// balanced with [`Driver::release_content_root`].
    fn content_root(&self, id: &str) -> Result<PathBuf> {
        self.mount(id)
    }

    /// Releases what [`Driver::content_root`] took.
    fn release_content_root(&self, id: &str) -> Result<()> {
        self.unmount(id)
    }

    /// What changed in `id` relative to `parent` (`docker diff`).
    fn changes(&self, id: &str, parent: Option<&str>) -> Result<Vec<Change>> {
        let upper = self.mount(id)?;
        let lower = match parent.map(|p| self.mount(p)).transpose() {
            Ok(l) => l,
            Err(e) => {
                let _ = self.unmount(id);
                return Err(e);
            }
        };
        let result = archive::changes_between(lower.as_deref(), &upper);
        if let Some(p) = parent {
            let _ = self.unmount(p);
        }
        let _ = self.unmount(id);
        result
    }

    /// Writes the tar of `id`'s changes relative to `parent` (commit, export
    /// of a layer). The tar uses the standard `.wh.` whiteout form; owners
    /// are written as the container sees them (`ids` translated back).
    fn diff(&self, id: &str, parent: Option<&str>, out: &mut dyn Write, ids: &IdMap) -> Result<()> {
        let changes = self.changes(id, parent)?;
        let upper = self.mount(id)?;
        let result = archive::write_changes(&upper, &changes, out, ids);
        let _ = self.unmount(id);
        result
    }

    /// Space `id` uses on top of its parent.
    fn usage(&self, id: &str, parent: Option<&str>) -> Result<Usage> {
        let changes = self.changes(id, parent)?;
        let upper = self.mount(id)?;
        let size = archive::changes_size(&upper, &changes);
        let _ = self.unmount(id);
        Ok(Usage {
            size,
            inodes: Some(changes.len() as u64),
        })
    }

    /// The `DriverStatus` pairs of `docker info`.
    fn status(&self) -> Vec<(String, String)>;

    /// Space in the pools the driver stores into. By default the
    /// filesystem under the driver's home (btrfs, overlay2, vfs); thin
    /// pools and zpools report their own. May run a command: callers
    /// cache it.
    fn space(&self) -> Vec<SpaceUsage> {
        match rustix::fs::statvfs(self.home()) {
            Ok(st) => {
                let block = st.f_frsize.max(1);
                let total = st.f_blocks.saturating_mul(block);
                vec![SpaceUsage {
                    pool: "filesystem".into(),
                    used: total.saturating_sub(st.f_bfree.saturating_mul(block)),
                    total,
                }]
            }
            Err(_) => Vec::new(),
        }
    }

    /// Lines for the `Warnings` of `docker info` (devicemapper on a
    /// loopback pool, for one). None by default.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// The `GraphDriver.Data` map of `docker inspect` for layer `id`.
    fn metadata(&self, id: &str) -> Result<BTreeMap<String, String>>;

    /// Unmounts everything this driver mounted (daemon shutdown).
    fn cleanup(&self) -> Result<()>;
}

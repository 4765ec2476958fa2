//! Tar machinery shared by the drivers: unpacking a layer with whiteouts,
//! finding changes between two trees, writing changes as a tar, and the
//! tar-split record that lets a layer's original tar be rebuilt exactly.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};

/// How whiteouts (deletions) are represented in the target directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutFormat {
    /// Apply deletions to a full copy of the parent (vfs, btrfs, zfs, dm).
    Delete,
    /// Keep overlayfs whiteouts (char 0:0 devices, opaque xattrs).
    Overlay,
}

/// What unpacking a layer found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Sum of the regular file sizes in the tar.
    pub size: u64,
}

/// Kind of a change in `docker diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    Modify = 0,
    Add = 1,
    Delete = 2,
}

/// One changed path, absolute within the layer (`/etc/passwd`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    pub path: PathBuf,
    pub kind: ChangeKind,
}

/// Records the raw tar framing while a layer is applied.
pub struct SplitRecorder {}

/// Unpacks a layer tar into `root`.
pub fn apply_layer(
    _root: &Path,
    _tar: &mut dyn Read,
    _whiteouts: WhiteoutFormat,
    _split: Option<&mut SplitRecorder>,
) -> Result<ApplyStats> {
    Err(StorageError::Unsupported("not yet".into()))
}

/// Changes from `lower` (or nothing) to `upper`.
pub fn changes_between(_lower: Option<&Path>, _upper: &Path) -> Result<Vec<Change>> {
    Err(StorageError::Unsupported("not yet".into()))
}

/// Writes `changes` of `upper` as a layer tar.
pub fn write_changes(_upper: &Path, _changes: &[Change], _out: &mut dyn Write) -> Result<()> {
    Err(StorageError::Unsupported("not yet".into()))
}

/// Bytes of the regular files among `changes`.
pub fn changes_size(_upper: &Path, _changes: &[Change]) -> u64 {
    0
}

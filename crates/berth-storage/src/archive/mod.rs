//! Tar machinery shared by the drivers: unpacking a layer with whiteouts,
//! finding changes between two trees, writing changes as a tar, and the
//! tar-split record that lets a layer's original tar be rebuilt exactly.

mod apply;
pub mod beneath;
mod changes;
pub mod in_root;
mod pack;
mod split;
mod unpack;
mod write;

use std::fs::Metadata;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

pub use apply::apply_layer;
pub use changes::{changes_between, changes_size, overlay_changes};
pub use pack::pack_tree;
pub use split::{reassemble, SplitRecorder};
pub use unpack::{unpack_tree, UnpackOptions};
pub use write::{write_changes, write_overlay_diff};

use crate::error::{Result, StorageError};

/// Prefix of a whiteout entry: `.wh.name` deletes `name`.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Marks its directory opaque: lower layers' content is hidden.
pub const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
/// overlayfs' opaque directory attribute.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

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

/// Kind of a change in `docker diff` (numbered as the API numbers them).
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

/// Whether `meta` is an overlayfs whiteout (a 0:0 character device).
pub fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether the directory at `path` carries overlayfs' opaque mark.
pub fn is_opaque_dir(path: &Path) -> bool {
    let mut buf = [0u8; 2];
    matches!(rustix::fs::lgetxattr(path, OPAQUE_XATTR, &mut buf), Ok(1) if buf[0] == b'y')
}

/// Compression of a layer stream, told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Wraps `input` in the decompressor its magic bytes call for (plain,
/// gzip or zstd); bzip2 and xz are refused with a clear error.
pub fn decompress<'a>(input: impl Read + 'a) -> Result<(Compression, Box<dyn Read + 'a>)> {
    let mut buffered = BufReader::with_capacity(256 * 1024, input);
    let head = buffered
        .fill_buf()
        .map_err(|e| StorageError::io("read layer", e))?;
    let kind = if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if head.starts_with(b"BZh") {
        return Err(StorageError::InvalidArchive(
            "unsupported layer compression: bzip2".into(),
        ));
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Err(StorageError::InvalidArchive(
            "unsupported layer compression: xz".into(),
        ));
    } else {
        Compression::None
    };
    let reader: Box<dyn Read + 'a> = match kind {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => {
            Box::new(zstd::Decoder::with_buffer(buffered).map_err(|e| StorageError::io("zstd", e))?)
        }
    };
    Ok((kind, reader))
}

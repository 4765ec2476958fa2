//! Which filesystem a path lives on (statfs magic), for driver selection,
//! driver prerequisites and the `Backing Filesystem` line of `docker info`.

use std::path::Path;

/// Filesystems berth cares to tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsMagic {
    Btrfs,
    Ext4,
    Xfs,
    Tmpfs,
    Overlay,
    Zfs,
    Fuse,
    Other(i64),
}

/// The filesystem of the nearest existing ancestor of `path`.
pub fn magic(path: &Path) -> Option<FsMagic> {
    let mut p = Some(path);
    while let Some(cur) = p {
        if let Ok(st) = rustix::fs::statfs(cur) {
            return Some(match st.f_type {
                0x9123_683e => FsMagic::Btrfs,
                0xef53 => FsMagic::Ext4,
                0x5846_5342 => FsMagic::Xfs,
                0x0102_1994 => FsMagic::Tmpfs,
                0x794c_7630 => FsMagic::Overlay,
                0x2fc1_2fc1 => FsMagic::Zfs,
                0x6573_5546 => FsMagic::Fuse,
                other => FsMagic::Other(other),
            });
        }
        p = cur.parent();
    }
    None
}

/// The name dockerd prints for the filesystem under `path`.
pub fn backing_fs_name(path: &Path) -> String {
    match magic(path) {
        Some(FsMagic::Btrfs) => "btrfs".into(),
        Some(FsMagic::Ext4) => "extfs".into(),
        Some(FsMagic::Xfs) => "xfs".into(),
        Some(FsMagic::Tmpfs) => "tmpfs".into(),
        Some(FsMagic::Overlay) => "overlayfs".into(),
        Some(FsMagic::Zfs) => "zfs".into(),
        Some(FsMagic::Fuse) => "fuse".into(),
        Some(FsMagic::Other(m)) => format!("<unknown> ({m:#x})"),
        None => "<unknown>".into(),
    }
}

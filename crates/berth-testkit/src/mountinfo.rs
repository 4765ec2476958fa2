//! Read-only view of the mount table (`/proc/self/mountinfo`) and of which
//! filesystem a path is on, for the checks tests make after a daemon stops:
//! "nothing is left mounted under the data root", "the data root is btrfs".
//! Also the one place that unmounts leftovers, deepest first.

use std::io;
use std::path::{Path, PathBuf};

use nix::sys::statfs::{FsType, BTRFS_SUPER_MAGIC, XFS_SUPER_MAGIC};

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_id: u32,
    pub parent_id: u32,
    /// `major:minor` of the device.
    pub device: String,
    /// The path inside the filesystem that is mounted (`/` for whole fs,
    /// a subdirectory for bind mounts and btrfs subvolumes).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    pub super_options: String,
}

/// Every mount visible to this process, in mount order.
pub fn mounts() -> io::Result<Vec<Mount>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(parse(&text))
}

/// Mounts whose mount point is `path` itself or lies below it, deepest first
/// (the order they must be unmounted in).
pub fn mounts_under(path: &Path) -> io::Result<Vec<Mount>> {
    let mut found: Vec<Mount> = mounts()?
        .into_iter()
        .filter(|m| m.mount_point.starts_with(path))
        .collect();
    // Later mounts may sit on top of earlier ones at the same point; reverse
    // mount order, then depth, gives a safe unmount order.
    found.reverse();
    found.sort_by_key(|m| std::cmp::Reverse(m.mount_point.components().count()));
    Ok(found)
}

/// Mounts strictly below `path` (not `path` itself), deepest first.
pub fn mounts_below(path: &Path) -> io::Result<Vec<Mount>> {
    Ok(mounts_under(path)?
        .into_iter()
        .filter(|m| m.mount_point != path)
        .collect())
}

/// Unmounts everything strictly below `path`, lazily, and returns what was
/// mounted there.
pub fn unmount_all_below(path: &Path) -> io::Result<Vec<Mount>> {
    let found = mounts_below(path)?;
    for m in &found {
        let _ = nix::mount::umount2(&m.mount_point, nix::mount::MntFlags::MNT_DETACH);
    }
    Ok(found)
}

/// Unmounts everything at or below `path` (lazily, so a busy mount cannot
/// wedge a test's teardown) and returns what was mounted there.
pub fn unmount_all_under(path: &Path) -> io::Result<Vec<Mount>> {
    let found = mounts_under(path)?;
    for m in &found {
        // A mount may already have gone with its parent; ignore EINVAL/ENOENT.
        let _ = nix::mount::umount2(&m.mount_point, nix::mount::MntFlags::MNT_DETACH);
    }
    Ok(found)
}

/// Parses mountinfo text; lines that do not parse are skipped.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    // id parent maj:min root mountpoint options [optional fields...] - fstype source superopts
    let (left, right) = line.split_once(" - ")?;
    let mut l = left.split(' ');
    let mount_id = l.next()?.parse().ok()?;
    let parent_id = l.next()?.parse().ok()?;
    let device = l.next()?.to_string();
    let root = PathBuf::from(unescape(l.next()?));
    let mount_point = PathBuf::from(unescape(l.next()?));
    let mut r = right.split(' ');
    let fs_type = r.next()?.to_string();
    let source = unescape(r.next()?);
    let super_options = r.next().unwrap_or("").to_string();
    Some(Mount {
        mount_id,
        parent_id,
        device,
        root,
        mount_point,
        fs_type,
        source,
        super_options,
    })
}

/// The kernel escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(v) = u8::try_from(value) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The filesystem type of the filesystem holding `path` (statfs).
pub fn fs_type(path: &Path) -> io::Result<FsType> {
    let st = nix::sys::statfs::statfs(path).map_err(io::Error::from)?;
    Ok(st.filesystem_type())
}

/// Whether `path` is on btrfs.
pub fn is_btrfs(path: &Path) -> io::Result<bool> {
    Ok(fs_type(path)? == BTRFS_SUPER_MAGIC)
}

/// Whether `path` is on xfs.
pub fn is_xfs(path: &Path) -> io::Result<bool> {
    Ok(fs_type(path)? == XFS_SUPER_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
36 22 7:3 / /var/tmp/berth\\040tests/mnt rw,relatime shared:5 - btrfs /dev/loop3 rw,space_cache=v2
37 36 7:3 /sub /var/tmp/berth\\040tests/mnt/data/x rw - btrfs /dev/loop3 rw
";

    #[test]
    fn parses_fields_and_unescapes_spaces() {
        let m = parse(SAMPLE);
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].mount_point, Path::new("/var/tmp/berth tests/mnt"));
        assert_eq!(m[1].fs_type, "btrfs");
        assert_eq!(m[1].source, "/dev/loop3");
        assert_eq!(m[2].root, Path::new("/sub"));
        assert_eq!(m[2].parent_id, 36);
    }

    #[test]
    fn real_mount_table_has_root() {
        let all = mounts().unwrap();
        assert!(all.iter().any(|m| m.mount_point == Path::new("/")));
    }
}

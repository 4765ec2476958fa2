//! What is already on a device or in a directory, read without changing
//! anything: filesystem and partition-table signatures (`blkid -p`, and
//! berth's own check of the common magic numbers where blkid is missing or
//! silent), what the mount table says, and existing fstab entries.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The signature found on a device, e.g. `btrfs`, `zfs_member`, `dos`.
pub(super) fn signature(device: &Path) -> Option<String> {
    blkid(device).or_else(|| magic(device))
}

/// `blkid -p -o export`: a low-level probe that ignores blkid's cache.
fn blkid(device: &Path) -> Option<String> {
    let out = Command::new("blkid")
        .args(["-p", "-o", "export"])
        .arg(device)
        .output()
        .ok()?;
    // Exit status 2: nothing was found.
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_string)
    };
    field("TYPE")
        .or_else(|| field("PTTYPE").map(|t| format!("{t} partition table")))
        .or_else(|| field("USAGE"))
}

/// Magic numbers of the filesystems and tables an operator most likely
/// has on a disk they point berth at by mistake.
fn magic(device: &Path) -> Option<String> {
    let mut file = File::open(device).ok()?;
    let mut at = |offset: u64, len: usize| -> Option<Vec<u8>> {
        let mut buf = vec![0u8; len];
        file.seek(SeekFrom::Start(offset)).ok()?;
        file.read_exact(&mut buf).ok()?;
        Some(buf)
    };
    let checks: [(u64, &[u8], &str); 6] = [
        (1080, &[0x53, 0xef], "ext2/3/4"),
        (0, b"XFSB", "xfs"),
        (65536 + 64, b"_BHRfS_M", "btrfs"),
        (4086, b"SWAPSPACE2", "swap"),
        (512, b"EFI PART", "gpt partition table"),
        (510, &[0x55, 0xaa], "dos partition table"),
    ];
    checks
        .iter()
        .find(|(offset, magic, _)| at(*offset, magic.len()).as_deref() == Some(*magic))
        .map(|(_, _, name)| name.to_string())
}

/// The size of a device in bytes (0 when it cannot be read).
pub(super) fn capacity(device: &Path) -> u64 {
    File::open(device)
        .and_then(|mut f| f.seek(SeekFrom::End(0)))
        .unwrap_or(0)
}

/// One line of `/proc/self/mountinfo`: (source, mount point).
fn mounts() -> Vec<(String, PathBuf)> {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    table
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = unescape(left.split(' ').nth(4)?);
            let source = unescape(right.split(' ').nth(1)?);
            Some((source, PathBuf::from(point)))
        })
        .collect()
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let (b'\\', Some(digits)) = (bytes[i], octal) {
            out.push(digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0')) as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where `device` is mounted, if anywhere.
pub(super) fn mounted_at(device: &Path) -> Option<PathBuf> {
    let device = std::fs::canonicalize(device).ok()?;
    mounts()
        .into_iter()
        .find(|(source, _)| std::fs::canonicalize(source).ok().as_deref() == Some(&device))
        .map(|(_, point)| point)
}

/// Whether something is mounted on `dir` itself.
pub(super) fn is_mount_point(dir: &Path) -> bool {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    mounts().iter().any(|(_, point)| *point == dir)
}

/// Whether `fstab` already mounts something on `dir`.
pub(super) fn fstab_mounts(fstab: &Path, dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(fstab) else {
        return false;
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().nth(1))
        .any(|point| Path::new(&unescape(point)) == dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("img");
        let blank = vec![0u8; 128 * 1024];
        std::fs::write(&image, &blank).unwrap();
        assert_eq!(magic(&image), None);
        let mut xfs = blank.clone();
        xfs[..4].copy_from_slice(b"XFSB");
        std::fs::write(&image, &xfs).unwrap();
        assert_eq!(magic(&image).as_deref(), Some("xfs"));
        let mut btrfs = blank.clone();
        btrfs[65536 + 64..65536 + 72].copy_from_slice(b"_BHRfS_M");
        std::fs::write(&image, &btrfs).unwrap();
        assert_eq!(magic(&image).as_deref(), Some("btrfs"));
    }

    #[test]
    fn fstab_entries() {
        let dir = tempfile::tempdir().unwrap();
        let fstab = dir.path().join("fstab");
        std::fs::write(
            &fstab,
            "# comment /var/lib/berth\nUUID=1 /var/lib/berth btrfs defaults 0 0\n",
        )
        .unwrap();
        assert!(fstab_mounts(&fstab, Path::new("/var/lib/berth")));
        assert!(!fstab_mounts(&fstab, Path::new("/var/lib/other")));
    }
}

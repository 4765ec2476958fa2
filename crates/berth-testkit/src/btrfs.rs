//! What btrfs itself says about subvolumes, read with `btrfs-progs` so a test
//! can check berth's btrfs driver from outside: one subvolume per layer, and
//! every child layer a snapshot of its parent (`parent_uuid`). The driver
//! uses ioctls; the tests deliberately use the independent CLI.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One line of `btrfs subvolume list -u -q`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subvolume {
    pub id: u64,
    /// `None` when the subvolume is not a snapshot (printed as `-`).
    pub parent_uuid: Option<String>,
    pub uuid: String,
    /// Path relative to the filesystem's top-level subvolume.
    pub path: PathBuf,
}

/// Every subvolume of the btrfs filesystem that holds `path`.
pub fn subvolumes(path: &Path) -> io::Result<Vec<Subvolume>> {
    let out = Command::new("btrfs")
        .args(["subvolume", "list", "-u", "-q"])
        .arg(path)
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "btrfs subvolume list {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(parse_list(&String::from_utf8_lossy(&out.stdout)))
}

/// Parses `btrfs subvolume list -u -q` output:
/// `ID 257 gen 9 top level 5 parent_uuid - uuid 3c1e... path a/b`.
pub fn parse_list(text: &str) -> Vec<Subvolume> {
    text.lines().filter_map(parse_list_line).collect()
}

fn parse_list_line(line: &str) -> Option<Subvolume> {
    // The path is everything after " path " and may contain spaces.
    let (head, path) = line.split_once(" path ")?;
    let tokens: Vec<&str> = head.split_whitespace().collect();
    let after = |key: &str| {
        tokens
            .iter()
            .position(|t| *t == key)
            .and_then(|i| tokens.get(i + 1))
            .copied()
    };
    let id = after("ID")?.parse().ok()?;
    let uuid = after("uuid")?.to_string();
    let parent_uuid = after("parent_uuid")
        .filter(|p| *p != "-")
        .map(str::to_string);
    Some(Subvolume {
        id,
        parent_uuid,
        uuid,
        path: PathBuf::from(path.trim()),
    })
}

/// The fields of `btrfs subvolume show` tests care about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubvolumeShow {
    pub uuid: String,
    pub parent_uuid: Option<String>,
    /// Paths of the subvolume's snapshots, as listed under `Snapshot(s):`.
    pub snapshots: Vec<String>,
}

/// `btrfs subvolume show PATH`.
pub fn subvolume_show(path: &Path) -> io::Result<SubvolumeShow> {
    let out = Command::new("btrfs")
        .args(["subvolume", "show"])
        .arg(path)
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "btrfs subvolume show {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(parse_show(&String::from_utf8_lossy(&out.stdout)))
}

/// Parses `btrfs subvolume show` output.
pub fn parse_show(text: &str) -> SubvolumeShow {
    let mut show = SubvolumeShow::default();
    let mut in_snapshots = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if in_snapshots {
            // Snapshot paths are indented further than the field names; the
            // next "Key:" line ends the list.
            if line.starts_with("\t\t") || (line.starts_with("  ") && !trimmed.contains(':')) {
                if !trimmed.is_empty() {
                    show.snapshots.push(trimmed.to_string());
                }
                continue;
            }
            in_snapshots = false;
        }
        let Some((key, value)) = trimmed.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "UUID" => show.uuid = value.to_string(),
            "Parent UUID" => {
                show.parent_uuid = (value != "-" && !value.is_empty()).then(|| value.to_string())
            }
            "Snapshot(s)" => {
                in_snapshots = true;
                if !value.is_empty() {
                    show.snapshots.push(value.to_string());
                }
            }
            _ => {}
        }
    }
    show
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_list_with_snapshots() {
        let text = "\
ID 256 gen 9 top level 5 parent_uuid -                                    uuid 0b2f7b1e-1d2e-a54c-a6e9-3c1e0c43b1a1 path data-root/btrfs/subvolumes/aaa
ID 257 gen 10 top level 5 parent_uuid 0b2f7b1e-1d2e-a54c-a6e9-3c1e0c43b1a1 uuid 5d0e4c6c-7a8b-2f4a-9b2e-1f0d3e4c5b6a path data-root/btrfs/subvolumes/b b
";
        let s = parse_list(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].id, 256);
        assert_eq!(s[0].parent_uuid, None);
        assert_eq!(s[1].parent_uuid.as_deref(), Some(s[0].uuid.as_str()));
        assert_eq!(s[1].path, Path::new("data-root/btrfs/subvolumes/b b"));
    }

    #[test]
    fn parses_show() {
        let text = "\
data-root/btrfs/subvolumes/aaa
\tName: \t\t\taaa
\tUUID: \t\t\t0b2f7b1e-1d2e-a54c-a6e9-3c1e0c43b1a1
\tParent UUID: \t\t-
\tReceived UUID: \t\t-
\tSnapshot(s):
\t\t\t\tdata-root/btrfs/subvolumes/bbb
\t\t\t\tdata-root/btrfs/subvolumes/ccc
\tQuota group:\t\t0/256
";
        let s = parse_show(text);
        assert_eq!(s.uuid, "0b2f7b1e-1d2e-a54c-a6e9-3c1e0c43b1a1");
        assert_eq!(s.parent_uuid, None);
        assert_eq!(
            s.snapshots,
            vec![
                "data-root/btrfs/subvolumes/bbb".to_string(),
                "data-root/btrfs/subvolumes/ccc".to_string()
            ]
        );
    }

    #[test]
    fn reads_real_snapshots() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let fs = crate::LoopFs::btrfs().unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("btrfs").args(args).output().unwrap();
            assert!(out.status.success(), "{out:?}");
        };
        let base = fs.path().join("base");
        let child = fs.path().join("child");
        run(&["subvolume", "create", base.to_str().unwrap()]);
        run(&[
            "subvolume",
            "snapshot",
            base.to_str().unwrap(),
            child.to_str().unwrap(),
        ]);
        let list = subvolumes(fs.path()).unwrap();
        assert_eq!(list.len(), 2, "{list:?}");
        let b = list.iter().find(|s| s.path == Path::new("base")).unwrap();
        let c = list.iter().find(|s| s.path == Path::new("child")).unwrap();
        assert_eq!(b.parent_uuid, None);
        assert_eq!(c.parent_uuid.as_deref(), Some(b.uuid.as_str()));
        let show = subvolume_show(&base).unwrap();
        assert_eq!(show.uuid, b.uuid);
        assert_eq!(show.parent_uuid, None);
        assert_eq!(show.snapshots, vec!["child".to_string()]);
        let show = subvolume_show(&child).unwrap();
        assert_eq!(show.parent_uuid.as_deref(), Some(b.uuid.as_str()));
        assert!(show.snapshots.is_empty(), "{show:?}");
        run(&["subvolume", "delete", child.to_str().unwrap()]);
        run(&["subvolume", "delete", base.to_str().unwrap()]);
    }
}

//! `LayerTar`: one image layer as a deterministic tar stream — directories,
//! files, symlinks, hardlinks, AUFS-style whiteouts (`.wh.NAME`) and opaque
//! directories (`.wh..wh..opq`) — plus raw entries whose names the `tar`
//! crate would refuse (`../x`, `/x`), for the hostile-archive tests.

use tar::{EntryType, Header};

/// Every entry's mtime: 2024-01-01T00:00:00Z. Fixed so a layer's bytes, its
/// diff ID and so the image ID are the same on every run.
pub const MTIME: u64 = 1_704_067_200;

/// The AUFS whiteout prefix docker-save layers use.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Marks a directory whose lower content is hidden.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

#[derive(Debug, Clone)]
enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    Hardlink(String),
}

#[derive(Debug, Clone)]
struct Entry {
    path: String,
    mode: u32,
    kind: Kind,
    /// Written byte for byte into the header, bypassing path validation.
    raw_name: bool,
}

/// A layer under construction. Entries are written in the order added.
#[derive(Debug, Clone, Default)]
pub struct LayerTar {
    entries: Vec<Entry>,
}

impl LayerTar {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(mut self, path: &str, mode: u32, kind: Kind, raw_name: bool) -> Self {
        self.entries.push(Entry {
            path: path.to_string(),
            mode,
            kind,
            raw_name,
        });
        self
    }

    /// A directory (written as `path/`, as docker does).
    pub fn dir(self, path: &str, mode: u32) -> Self {
        let path = format!("{}/", path.trim_end_matches('/'));
        self.push(&path, mode, Kind::Dir, false)
    }

    /// A regular file.
    pub fn file(self, path: &str, mode: u32, contents: impl Into<Vec<u8>>) -> Self {
        self.push(path, mode, Kind::File(contents.into()), false)
    }

    /// A symbolic link `path -> target` (target kept verbatim: absolute and
    /// `..` targets are legitimate in images).
    pub fn symlink(self, path: &str, target: &str) -> Self {
        self.push(path, 0o777, Kind::Symlink(target.to_string()), false)
    }

    /// A hard link `path` to the earlier entry `target` (a path in the layer).
    pub fn hardlink(self, path: &str, target: &str) -> Self {
        self.push(path, 0o644, Kind::Hardlink(target.to_string()), false)
    }

    /// Deletes `path` from the layers below (`dir/.wh.name`).
    pub fn whiteout(self, path: &str) -> Self {
        let (dir, name) = match path.rsplit_once('/') {
            Some((dir, name)) => (format!("{dir}/"), name),
            None => (String::new(), path),
        };
        let marker = format!("{dir}{WHITEOUT_PREFIX}{name}");
        self.push(&marker, 0o600, Kind::File(Vec::new()), false)
    }

    /// Hides everything the layers below have in directory `dir`.
    pub fn opaque(self, dir: &str) -> Self {
        let marker = format!("{}/{OPAQUE_MARKER}", dir.trim_end_matches('/'));
        self.push(&marker, 0o600, Kind::File(Vec::new()), false)
    }

    /// A regular file whose header name is exactly `name`, even `../x` or
    /// `/x`, which well-behaved tar writers refuse to produce.
    pub fn raw_file(self, name: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.push(name, 0o644, Kind::File(contents.into()), true)
    }

    /// Paths of the entries, as written.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.path.as_str())
    }

    /// The layer's size as berth reports it (`docker images`, inspect `Size`,
    /// history): the bytes of its regular files as the tar headers give them
    /// — hardlinks, symlinks, directories and whiteouts count 0. That is what
    /// dockerd's vfs, btrfs, zfs and devicemapper drivers report (the sum of
    /// `hdr.Size` in UnpackLayer); dockerd's overlay2 alone walks its diff
    /// directory with lstat and so adds symlink target lengths. berth keeps
    /// one driver-independent number, so an image has the same size on every
    /// driver and after save/load between daemons.
    pub fn content_size(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match &e.kind {
                Kind::File(data) => data.len() as u64,
                Kind::Symlink(_) | Kind::Dir | Kind::Hardlink(_) => 0,
            })
            .sum()
    }

    /// The uncompressed tar stream.
    pub fn to_tar(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for entry in &self.entries {
            append_entry(&mut builder, entry).unwrap_or_else(|e| {
                panic!("building layer entry {:?}: {e}", entry.path);
            });
        }
        builder.into_inner().expect("finishing an in-memory tar")
    }
}

fn base_header(entry_type: EntryType, mode: u32, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(entry_type);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(MTIME);
    header.set_size(size);
    header
}

fn append_entry(builder: &mut tar::Builder<Vec<u8>>, entry: &Entry) -> std::io::Result<()> {
    match &entry.kind {
        Kind::Dir => {
            let mut h = base_header(EntryType::Directory, entry.mode, 0);
            builder.append_data(&mut h, &entry.path, std::io::empty())
        }
        Kind::File(data) if entry.raw_name => {
            let mut h = base_header(EntryType::Regular, entry.mode, data.len() as u64);
            let name = entry.path.as_bytes();
            let slot = &mut h.as_old_mut().name;
            if name.len() > slot.len() {
                return Err(std::io::Error::other(
                    "raw entry name longer than 100 bytes",
                ));
            }
            slot[..name.len()].copy_from_slice(name);
            h.set_cksum();
            builder.append(&h, data.as_slice())
        }
        Kind::File(data) => {
            let mut h = base_header(EntryType::Regular, entry.mode, data.len() as u64);
            builder.append_data(&mut h, &entry.path, data.as_slice())
        }
        Kind::Symlink(target) => {
            let mut h = base_header(EntryType::Symlink, entry.mode, 0);
            builder.append_link(&mut h, &entry.path, target)
        }
        Kind::Hardlink(target) => {
            let mut h = base_header(EntryType::Link, entry.mode, 0);
            builder.append_link(&mut h, &entry.path, target)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tar_bytes: &[u8]) -> Vec<(String, EntryType)> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
                (name, e.header().entry_type())
            })
            .collect()
    }

    #[test]
    fn whiteouts_opaque_and_links_are_spelled_as_docker_does() {
        let layer = LayerTar::new()
            .dir("data", 0o755)
            .whiteout("data/gone.txt")
            .whiteout("top")
            .opaque("data/dir/")
            .symlink("bin/sh", "/bin/busybox")
            .hardlink("data/b", "data/a");
        let n = names(&layer.to_tar());
        assert_eq!(n[0], ("data/".into(), EntryType::Directory));
        assert_eq!(n[1].0, "data/.wh.gone.txt");
        assert_eq!(n[2].0, ".wh.top");
        assert_eq!(n[3].0, "data/dir/.wh..wh..opq");
        assert_eq!(n[4], ("bin/sh".into(), EntryType::Symlink));
        assert_eq!(n[5], ("data/b".into(), EntryType::Link));
    }

    #[test]
    fn raw_names_survive_verbatim() {
        let layer = LayerTar::new()
            .raw_file("../escape", "x")
            .raw_file("/abs/file", "y");
        let n = names(&layer.to_tar());
        assert_eq!(n[0].0, "../escape");
        assert_eq!(n[1].0, "/abs/file");
    }

    #[test]
    fn output_is_deterministic_and_sized_by_tar_headers() {
        let build = || {
            LayerTar::new()
                .file("a", 0o644, vec![1u8; 1000])
                .hardlink("b", "a")
                .symlink("c", "a")
                .whiteout("d")
        };
        assert_eq!(build().to_tar(), build().to_tar());
        assert_eq!(build().content_size(), 1000);
    }
}

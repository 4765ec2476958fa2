//! Writing a layer tar from a tree: from a list of changes (naive drivers)
//! or straight from an overlayfs upper directory (overlay2's native diff).
//! Deletions become `.wh.` entries, opaque directories `.wh..wh..opq`;
//! hardlinks inside the layer stay hardlinks; xattrs travel as PAX records.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tar::{EntryType, Header, HeaderMode};

use super::{is_opaque_dir, is_whiteout, Change, ChangeKind, WHITEOUT_OPAQUE, WHITEOUT_PREFIX};
use crate::error::{Result, StorageError};
use crate::idmap::IdMap;

/// Writes the tar of `changes` (paths rooted at `/`) taken from `upper`,
/// owners translated back to the container's ids by `ids`.
pub fn write_changes(
    upper: &Path,
    changes: &[Change],
    out: &mut dyn Write,
    ids: &IdMap,
) -> Result<()> {
    let mut writer = LayerWriter::new(upper, out, ids);
    let mut sorted: Vec<&Change> = changes.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    for change in sorted {
        let rel = change.path.strip_prefix("/").unwrap_or(&change.path);
        match change.kind {
            ChangeKind::Delete => writer.whiteout(rel)?,
            ChangeKind::Add | ChangeKind::Modify => writer.path(rel)?,
        }
    }
    writer.finish()
}

/// Writes the tar of an overlayfs upper directory, converting overlay
/// whiteouts and opaque markers to their tar form.
pub fn write_overlay_diff(upper: &Path, out: &mut dyn Write, ids: &IdMap) -> Result<()> {
    let mut writer = LayerWriter::new(upper, out, ids);
    walk_overlay(&mut writer, upper, Path::new(""))?;
    writer.finish()
}

fn walk_overlay(writer: &mut LayerWriter<'_>, upper: &Path, rel: &Path) -> Result<()> {
    let dir = upper.join(rel);
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| StorageError::at(&dir, "read", e))? {
        names.push(
            entry
                .map_err(|e| StorageError::at(&dir, "read", e))?
                .file_name(),
        );
    }
    names.sort();
    for name in names {
        let child = rel.join(&name);
        let path = upper.join(&child);
        let meta =
            std::fs::symlink_metadata(&path).map_err(|e| StorageError::at(&path, "stat", e))?;
        if is_whiteout(&meta) {
            writer.whiteout(&child)?;
            continue;
        }
        writer.path(&child)?;
        if meta.is_dir() {
            if is_opaque_dir(&path) {
                writer.marker(&child.join(WHITEOUT_OPAQUE), &meta)?;
            }
            walk_overlay(writer, upper, &child)?;
        }
    }
    Ok(())
}

struct LayerWriter<'a> {
    root: &'a Path,
    builder: tar::Builder<&'a mut dyn Write>,
    links: HashMap<(u64, u64), PathBuf>,
    ids: &'a IdMap,
}

impl<'a> LayerWriter<'a> {
    fn new(root: &'a Path, out: &'a mut dyn Write, ids: &'a IdMap) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.mode(HeaderMode::Complete);
        LayerWriter {
            root,
            builder,
            links: HashMap::new(),
            ids,
        }
    }

    fn write_err(e: std::io::Error) -> StorageError {
        StorageError::io("write layer tar", e)
    }

    /// A `.wh.<name>` entry deleting `rel`.
    fn whiteout(&mut self, rel: &Path) -> Result<()> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        let mut name = WHITEOUT_PREFIX.as_bytes().to_vec();
        name.extend_from_slice(rel.file_name().unwrap_or_default().as_bytes());
        let parent_meta = std::fs::symlink_metadata(self.root.join(parent)).ok();
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Regular);
        header.set_size(0);
        header.set_mode(0o644);
        header.set_mtime(parent_meta.map(|m| m.mtime().max(0) as u64).unwrap_or(0));
        self.builder
            .append_data(
                &mut header,
                parent.join(OsStr::from_bytes(&name)),
                std::io::empty(),
            )
            .map_err(Self::write_err)
    }

    /// An empty marker entry such as `.wh..wh..opq`.
    fn marker(&mut self, rel: &Path, dir_meta: &Metadata) -> Result<()> {
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Regular);
        header.set_size(0);
        header.set_mode(0o644);
        header.set_mtime(dir_meta.mtime().max(0) as u64);
        self.builder
            .append_data(&mut header, rel, std::io::empty())
            .map_err(Self::write_err)
    }

    /// The entry for `rel` as it is on disk.
    fn path(&mut self, rel: &Path) -> Result<()> {
        let path = self.root.join(rel);
        let meta =
            std::fs::symlink_metadata(&path).map_err(|e| StorageError::at(&path, "stat", e))?;
        self.pax_xattrs(rel, &path, &meta)?;
        let mut header = Header::new_gnu();
        header.set_metadata_in_mode(&meta, HeaderMode::Complete);
        if !self.ids.is_identity() {
            let (uid, gid) = self.ids.to_container(meta.uid(), meta.gid())?;
            header.set_uid(uid as u64);
            header.set_gid(gid as u64);
        }
        let ft = meta.file_type();
        if ft.is_file() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                header.set_entry_type(EntryType::Link);
                header.set_size(0);
                let first = first.clone();
                return self
                    .builder
                    .append_link(&mut header, rel, first)
                    .map_err(Self::write_err);
            }
            self.links.insert(key, rel.to_path_buf());
        }
        if ft.is_symlink() {
            let target =
                std::fs::read_link(&path).map_err(|e| StorageError::at(&path, "readlink", e))?;
            header.set_size(0);
            return self
                .builder
                .append_link(&mut header, rel, target)
                .map_err(Self::write_err);
        }
        if ft.is_file() {
            let file = File::open(&path).map_err(|e| StorageError::at(&path, "open", e))?;
            return self
                .builder
                .append_data(&mut header, rel, file)
                .map_err(Self::write_err);
        }
        header.set_size(0);
        let name = if ft.is_dir() {
            let mut n = rel.as_os_str().to_os_string();
            n.push("/");
            PathBuf::from(n)
        } else {
            rel.to_path_buf()
        };
        self.builder
            .append_data(&mut header, name, std::io::empty())
            .map_err(Self::write_err)
    }

    /// Extended attributes (other than overlayfs' own) as a PAX header.
    fn pax_xattrs(&mut self, rel: &Path, path: &Path, meta: &Metadata) -> Result<()> {
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        let mut names = vec![0u8; 4096];
        let n = match rustix::fs::llistxattr(path, &mut names) {
            Ok(n) => n,
            Err(_) => return Ok(()),
        };
        let mut records = Vec::new();
        for key in names[..n].split(|b| *b == 0).filter(|k| !k.is_empty()) {
            if key.starts_with(b"trusted.overlay.") || key.starts_with(b"user.overlay.") {
                continue;
            }
            let mut value = vec![0u8; 64 * 1024];
            let Ok(len) = rustix::fs::lgetxattr(path, OsStr::from_bytes(key), &mut value) else {
                continue;
            };
            let mut record_key = b"SCHILY.xattr.".to_vec();
            record_key.extend_from_slice(key);
            records.extend(pax_record(&record_key, &value[..len]));
        }
        if records.is_empty() {
            return Ok(());
        }
        let mut header = Header::new_ustar();
        header.set_entry_type(EntryType::XHeader);
        header.set_size(records.len() as u64);
        header.set_mode(0o644);
        let mut name = b"PaxHeaders.0/".to_vec();
        let base = rel.file_name().unwrap_or_default().as_bytes();
        name.extend_from_slice(&base[..base.len().min(80)]);
        self.builder
            .append_data(&mut header, OsStr::from_bytes(&name), records.as_slice())
            .map_err(Self::write_err)
    }

    fn finish(mut self) -> Result<()> {
        self.builder.finish().map_err(Self::write_err)
    }
}

/// One PAX record: `"<len> <key>=<value>\n"` where len counts itself.
pub(super) fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut out = format!("{len} ").into_bytes();
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::pax_record;

    #[test]
    fn pax_record_length_counts_itself() {
        let r = pax_record(b"a", b"b");
        assert_eq!(r, b"6 a=b\n");
        let r = pax_record(&[b'k'; 5], &[b'v'; 90]);
        let len: usize = std::str::from_utf8(&r[..r.iter().position(|b| *b == b' ').unwrap()])
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, r.len());
    }
}

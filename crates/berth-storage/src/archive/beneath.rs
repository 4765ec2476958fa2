//! Path handling that cannot leave a root directory: cleaning archive entry
//! names, and opening or creating directories below a root with
//! `openat2(RESOLVE_BENEATH)`, so that neither `..` nor a symlink — absolute
//! or relative — can carry a write outside the layer.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{Result, StorageError};

/// Cleans an archive entry name into a relative path inside the root.
/// `..` that climbs above the root and absolute names are refused;
/// `./a/../b/` becomes `b`. The root itself is the empty path.
pub fn clean_entry_path(raw: &Path) -> Result<PathBuf> {
    if raw.is_absolute() {
        return Err(StorageError::InvalidArchive(format!(
            "invalid archive entry {:?}: absolute paths are not allowed in a layer",
            raw
        )));
    }
    let mut out = PathBuf::new();
    for comp in raw.components() {
        match comp {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err(StorageError::InvalidArchive(format!(
                        "invalid archive entry {:?}: it points outside of the layer",
                        raw
                    )));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(StorageError::InvalidArchive(format!(
                    "invalid archive entry {:?}: absolute paths are not allowed in a layer",
                    raw
                )))
            }
        }
    }
    Ok(out)
}

/// Opens the regular file `rel` below `root` for reading; symlinks are
/// followed only while they stay below `root`.
pub fn open_file(root: impl AsFd, rel: &Path) -> Result<std::fs::File> {
    match rustix::fs::openat2(
        root,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        BENEATH,
    ) {
        Ok(fd) => Ok(std::fs::File::from(fd)),
        Err(Errno::NOENT) => Err(StorageError::NotFound(format!(
            "{} does not exist in the archive",
            rel.display()
        ))),
        Err(e) => Err(escape_error(rel, e)),
    }
}

/// Opens `root` as a directory handle for the `*at` calls below.
pub fn open_root(root: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StorageError::at(root, "open", e.into()))
}

const BENEATH: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

fn escape_error(rel: &Path, errno: Errno) -> StorageError {
    match errno {
        Errno::XDEV => StorageError::InvalidArchive(format!(
            "invalid archive entry {:?}: it would be written through a symlink that leaves the layer",
            rel
        )),
        Errno::LOOP => StorageError::InvalidArchive(format!(
            "invalid archive entry {:?}: too many levels of symbolic links",
            rel
        )),
        Errno::NOTDIR => StorageError::InvalidArchive(format!(
            "invalid archive entry {:?}: a parent is not a directory",
            rel
        )),
        e => StorageError::io(format!("open {:?} in layer", rel), e.into()),
    }
}

/// Opens the existing directory `rel` below `root`; `Ok(None)` when it (or
/// a parent) does not exist.
pub fn open_dir(root: impl AsFd, rel: &Path) -> Result<Option<OwnedFd>> {
    let path: &Path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    match rustix::fs::openat2(
        root,
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        BENEATH,
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(escape_error(rel, e)),
    }
}

/// Opens directory `rel` below `root`, creating missing components with
/// mode 0755 (as dockerd does for implicit parents). Calls `creating` for
/// every directory it is about to make; an error from it stops the walk.
pub fn ensure_dir(
    root: impl AsFd,
    rel: &Path,
    mut creating: impl FnMut(&Path) -> Result<()>,
) -> Result<OwnedFd> {
    let root = root.as_fd();
    if let Some(fd) = open_dir(root, rel)? {
        return Ok(fd);
    }
    let mut prefix = PathBuf::new();
    let mut current = open_dir(root, &prefix)?
        .ok_or_else(|| StorageError::NotFound("layer root vanished".into()))?;
    for comp in rel.components() {
        let name: &OsStr = comp.as_os_str();
        prefix.push(name);
        match open_dir(root, &prefix)? {
            Some(fd) => current = fd,
            None => {
                creating(&prefix)?;
                match rustix::fs::mkdirat(&current, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {}
                    Err(e) => return Err(escape_error(&prefix, e)),
                }
                current = open_dir(root, &prefix)?.ok_or_else(|| {
                    StorageError::InvalidArchive(format!(
                        "invalid archive entry {:?}: a parent is not a directory",
                        prefix
                    ))
                })?;
            }
        }
    }
    Ok(current)
}

/// Splits a cleaned, non-empty relative path into its parent and leaf name.
pub fn split_leaf(rel: &Path) -> (&Path, &OsStr) {
    let parent = rel.parent().unwrap_or(Path::new(""));
    let name = rel.file_name().unwrap_or(OsStr::new("."));
    (parent, name)
}

/// Removes `name` inside `dir` whatever it is, recursing into directories
/// without following symlinks. Missing is fine.
pub fn remove_all_at(dir: impl AsFd, name: &OsStr) -> Result<()> {
    let dir = dir.as_fd();
    match rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(StorageError::io(format!("remove {:?}", name), e.into())),
    }
    let sub = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(StorageError::io(format!("open {:?}", name), e.into())),
    };
    clear_dir(&sub, |_| true)?;
    drop(sub);
    match rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(StorageError::io(format!("remove {:?}", name), e.into())),
    }
}

/// Removes the children of the open directory `dir` for which `remove`
/// returns true.
pub fn clear_dir(dir: impl AsFd, mut remove: impl FnMut(&OsStr) -> bool) -> Result<()> {
    let dir = dir.as_fd();
    let mut names = Vec::new();
    // `dir` may be an O_PATH handle, which cannot be read: reopen it.
    let readable = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StorageError::io("open directory", e.into()))?;
    let mut it =
        rustix::fs::Dir::new(readable).map_err(|e| StorageError::io("read directory", e.into()))?;
    while let Some(entry) = it.read() {
        let entry = entry.map_err(|e| StorageError::io("read directory", e.into()))?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        names.push(OsStr::from_bytes(name).to_os_string());
    }
    for name in names {
        if remove(&name) {
            remove_all_at(dir, &name)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_entry_names() {
        assert_eq!(
            clean_entry_path(Path::new("./a/b/")).unwrap(),
            Path::new("a/b")
        );
        assert_eq!(
            clean_entry_path(Path::new("a/../b")).unwrap(),
            Path::new("b")
        );
        assert_eq!(clean_entry_path(Path::new("./")).unwrap(), Path::new(""));
        assert!(clean_entry_path(Path::new("../x")).is_err());
        assert!(clean_entry_path(Path::new("a/../../x")).is_err());
        assert!(clean_entry_path(Path::new("/etc/passwd")).is_err());
    }

    #[test]
    fn refuses_symlink_escape() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/", dir.path().join("evil")).unwrap();
        std::os::unix::fs::symlink("../../..", dir.path().join("up")).unwrap();
        let root = open_root(dir.path()).unwrap();
        assert!(matches!(
            ensure_dir(&root, Path::new("evil/tmp"), |_| Ok(())),
            Err(StorageError::InvalidArchive(_))
        ));
        assert!(matches!(
            open_dir(&root, Path::new("up")),
            Err(StorageError::InvalidArchive(_))
        ));
        let made = ensure_dir(&root, Path::new("a/b/c"), |_| Ok(()));
        assert!(made.is_ok());
        assert!(dir.path().join("a/b/c").is_dir());
    }
}

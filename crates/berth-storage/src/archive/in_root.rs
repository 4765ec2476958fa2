//! Paths inside a root directory with chroot semantics, as `docker cp`
//! means them: `..` stops at the root and symlinks — absolute or relative
//! — resolve inside it (`openat2(RESOLVE_IN_ROOT)`), so nothing a tree
//! holds can lead a lookup onto the host. Where `beneath` refuses a
//! symlink that leaves the root, this re-roots it.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{Result, StorageError};

/// Lookups relative to a root handle that treat it as `/`. Magic links
/// (`/proc/<pid>/root` and friends inside the tree) are refused: they
/// would lead out of the root however it is resolved.
pub const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// How many symlinks one resolution follows before giving up (`ELOOP`),
/// as Linux counts them.
const MAX_LINKS: usize = 40;

/// `openat2(root, path, flags, RESOLVE_IN_ROOT)`. `path` may be absolute:
/// it is taken relative to `root` either way.
pub fn open(root: impl AsFd, path: &Path, flags: OFlags) -> std::result::Result<OwnedFd, Errno> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel: &Path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    rustix::fs::openat2(root, rel, flags | OFlags::CLOEXEC, Mode::empty(), IN_ROOT)
}

/// Opens the directory `path` inside `root` (an `O_PATH` handle), following
/// symlinks inside the root; `Ok(None)` when it does not exist or is not a
/// directory.
pub fn open_dir(root: impl AsFd, path: &Path) -> Result<Option<OwnedFd>> {
    match open(root, path, OFlags::PATH | OFlags::DIRECTORY) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) | Err(Errno::NOTDIR) => Ok(None),
        Err(e) => Err(StorageError::io(
            format!("open {} in root", path.display()),
            e.into(),
        )),
    }
}

/// A path that names the directory `fd` refers to, for APIs that only take
/// paths. The trailing `/.` makes even `lstat` and `llistxattr` act on the
/// directory rather than on the `/proc/self/fd` link.
pub fn fd_path(fd: &impl AsFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/.", fd.as_fd().as_raw_fd()))
}

/// Resolves every symlink in `path` (the last component included) inside
/// `root`, returning the absolute path it leads to there — what
/// `docker cp` reports as a link target and extracts into. Components
/// that do not exist are kept as written, so a dangling link resolves as
/// far as it can. Each step is a `RESOLVE_IN_ROOT` lookup of a path that
/// has no symlinks left, so even a tree changing underneath cannot make
/// the answer point outside the root.
pub fn resolve(root: impl AsFd, path: &Path) -> std::result::Result<PathBuf, Errno> {
    let root = root.as_fd();
    let mut done: Vec<OsString> = Vec::new();
    let mut todo: VecDeque<OsString> = components(path).collect();
    let mut links = 0;
    let mut missing = false;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            done.pop();
            continue;
        }
        if missing {
            done.push(name);
            continue;
        }
        let candidate = join_abs(&done, Some(&name));
        let fd = match open(root, &candidate, OFlags::PATH | OFlags::NOFOLLOW) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                missing = true;
                done.push(name);
                continue;
            }
            Err(e) => return Err(e),
        };
        let st = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
            done.push(name);
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(Errno::LOOP);
        }
        let target = rustix::fs::readlinkat(&fd, "", Vec::new())?;
        let target = Path::new(OsStr::from_bytes(target.as_bytes()));
        if target.is_absolute() {
            done.clear();
        }
        for (i, c) in components(target).enumerate() {
            todo.insert(i, c);
        }
    }
    Ok(join_abs(&done, None))
}

/// The normal and `..` components of `path`; `.` and the root vanish.
fn components(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        _ => None,
    })
}

fn join_abs(parts: &[OsString], last: Option<&OsString>) -> PathBuf {
    let mut p = PathBuf::from("/");
    for part in parts.iter().chain(last) {
        p.push(part);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("real/sub")).unwrap();
        symlink("/real", r.join("abs")).unwrap();
        symlink("../../../../real/sub", r.join("up")).unwrap();
        symlink("/etc", r.join("hostetc")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();
        let root = crate::archive::beneath::open_root(r).unwrap();
        assert_eq!(
            resolve(&root, Path::new("/abs/sub")).unwrap(),
            Path::new("/real/sub")
        );
        assert_eq!(
            resolve(&root, Path::new("up")).unwrap(),
            Path::new("/real/sub")
        );
        assert_eq!(
            resolve(&root, Path::new("/../../abs")).unwrap(),
            Path::new("/real")
        );
        // A dangling link resolves as far as it goes.
        assert_eq!(
            resolve(&root, Path::new("/hostetc/passwd")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(resolve(&root, Path::new("/loop1")), Err(Errno::LOOP));
        // Opening follows the same rules: /etc is not the host's.
        assert_eq!(
            open(&root, Path::new("/hostetc/passwd"), OFlags::RDONLY).unwrap_err(),
            Errno::NOENT
        );
        assert!(open_dir(&root, Path::new("up")).unwrap().is_some());
    }
}

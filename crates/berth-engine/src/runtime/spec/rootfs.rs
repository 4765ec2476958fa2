//! The spec's few touches of the container's root filesystem — reading
//! /etc/passwd and /etc/group, creating the working directory — done with
//! chroot semantics (`openat2(RESOLVE_IN_ROOT)`): a symlink in the image,
//! absolute or full of `..`, resolves inside the rootfs, never onto the
//! host.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use berth_storage::archive::in_root;
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

fn open_root(rootfs: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The contents of a regular file in the rootfs, `None` if it is missing
/// or not a regular file (a FIFO or device there must not be opened for
/// reading by the daemon). At most `limit` bytes are read.
pub fn read_file(rootfs: &Path, path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let root = open_root(rootfs)?;
    let handle = match in_root::open(&root, path, OFlags::PATH) {
        Ok(fd) => fd,
        Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let st = rustix::fs::fstat(&handle)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Ok(None);
    }
    // Reopening the checked handle through /proc reads that very inode,
    // whatever happens to the path meanwhile.
    let file = File::open(format!("/proc/self/fd/{}", handle.as_raw_fd()))?;
    let mut data = Vec::new();
    file.take(limit).read_to_end(&mut data)?;
    Ok(Some(data))
}

/// `mkdir -p` of an absolute path inside the rootfs (owned by container
/// root — `owner` on the host — mode 0755), as dockerd does for a missing
/// WorkingDir: symlinks on the way are followed inside the rootfs, and
/// what is missing is created there.
pub fn create_dir_all(rootfs: &Path, path: &str, owner: (u32, u32)) -> io::Result<()> {
    let root = open_root(rootfs)?;
    let target = in_root::resolve(&root, &lexical_clean(path))?;
    let mut done = PathBuf::from("/");
    for c in target.components() {
        let Component::Normal(name) = c else { continue };
        let next = done.join(name);
        match in_root::open(&root, &next, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(_) => {}
            Err(Errno::NOENT) => {
                let parent = in_root::open(&root, &done, OFlags::PATH | OFlags::DIRECTORY)?;
                match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) if owner != (0, 0) => rustix::fs::chownat(
                        &parent,
                        name,
                        Some(rustix::fs::Uid::from_raw(owner.0)),
                        Some(rustix::fs::Gid::from_raw(owner.1)),
                        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                    )?,
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                // Whatever is there now must be a directory inside the root.
                in_root::open(&root, &next, OFlags::PATH | OFlags::DIRECTORY)?;
            }
            Err(e) => {
                return Err(io::Error::new(
                    io::Error::from(e).kind(),
                    format!("{}: {e}", next.display()),
                ))
            }
        }
        done = next;
    }
    Ok(())
}

/// Go's `filepath.Clean` of an absolute path: `.` dropped, `..` applied
/// lexically and stopping at `/`.
pub fn lexical_clean(path: &str) -> PathBuf {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    let mut p = PathBuf::from("/");
    p.extend(parts);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_symlinked_passwd_is_read_inside_the_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::create_dir_all(r.join("real")).unwrap();
        std::fs::write(r.join("real/passwd"), "inside:x:7:7::/:/bin/sh\n").unwrap();
        symlink("/real/passwd", r.join("etc/passwd")).unwrap();
        symlink("../../../../../etc/hostname", r.join("etc/group")).unwrap();
        assert_eq!(
            read_file(r, Path::new("/etc/passwd"), 1 << 20)
                .unwrap()
                .unwrap(),
            b"inside:x:7:7::/:/bin/sh\n"
        );
        // `..` stops at the rootfs: the host's /etc/hostname is not read.
        assert_eq!(
            read_file(r, Path::new("/etc/group"), 1 << 20).unwrap(),
            None
        );
        assert_eq!(
            read_file(r, Path::new("/etc/shadow"), 1 << 20).unwrap(),
            None
        );
    }

    #[test]
    fn working_dir_is_created_inside_the_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), r.join("escape")).unwrap();
        create_dir_all(r, "/escape/a/../b/c", (0, 0)).unwrap();
        assert!(r
            .join(outside.path().strip_prefix("/").unwrap())
            .join("b/c")
            .is_dir());
        assert!(!outside.path().join("b").exists());
        create_dir_all(r, "/", (0, 0)).unwrap();
        create_dir_all(r, "/owned/by/remapped", (100_000, 100_001)).unwrap();
        let st = rustix::fs::stat(r.join("owned/by")).unwrap();
        assert_eq!((st.st_uid, st.st_gid), (100_000, 100_001));
        assert_eq!(lexical_clean("/../x/./y/.."), PathBuf::from("/x"));
    }
}

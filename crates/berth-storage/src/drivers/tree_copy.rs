//! Copying a layer tree with everything a layer carries: ownership, modes,
//! times, xattrs, hardlinks, symlinks and device nodes. File data is
//! reflinked (FICLONE) where the filesystem can share extents, copied
//! otherwise. The vfs driver makes every child layer this way.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, CWD};

use crate::error::{Result, StorageError};

/// Copies the contents of directory `src` into the existing directory
/// `dst`, and `src`'s own metadata onto `dst`.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let mut links = HashMap::new();
    let mut reflink = true;
    copy_dir_contents(src, dst, &mut links, &mut reflink)?;
    let meta = std::fs::symlink_metadata(src).map_err(|e| StorageError::at(src, "stat", e))?;
    copy_meta(src, dst, &meta)
}

fn copy_dir_contents(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), std::path::PathBuf>,
    reflink: &mut bool,
) -> Result<()> {
    let rd = std::fs::read_dir(src).map_err(|e| StorageError::at(src, "read", e))?;
    for entry in rd {
        let entry = entry.map_err(|e| StorageError::at(src, "read", e))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta =
            std::fs::symlink_metadata(&from).map_err(|e| StorageError::at(&from, "stat", e))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&to).map_err(|e| StorageError::at(&to, "mkdir", e))?;
            copy_dir_contents(&from, &to, links, reflink)?;
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = links.get(&key) {
                    std::fs::hard_link(first, &to).map_err(|e| StorageError::at(&to, "link", e))?;
                    continue;
                }
                links.insert(key, to.clone());
            }
            copy_file(&from, &to, reflink)?;
        } else if ft.is_symlink() {
            let target =
                std::fs::read_link(&from).map_err(|e| StorageError::at(&from, "readlink", e))?;
            std::os::unix::fs::symlink(&target, &to)
                .map_err(|e| StorageError::at(&to, "symlink", e))?;
        } else {
            let kind = if ft.is_char_device() {
                FileType::CharacterDevice
            } else if ft.is_block_device() {
                FileType::BlockDevice
            } else if ft.is_fifo() {
                FileType::Fifo
            } else {
                FileType::Socket
            };
            rustix::fs::mknodat(CWD, &to, kind, Mode::from_raw_mode(0o600), meta.rdev())
                .map_err(|e| StorageError::at(&to, "mknod", e.into()))?;
        }
        copy_meta(&from, &to, &meta)?;
    }
    Ok(())
}

fn copy_file(from: &Path, to: &Path, reflink: &mut bool) -> Result<()> {
    let src = File::open(from).map_err(|e| StorageError::at(from, "open", e))?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(|e| StorageError::at(to, "create", e))?;
    if *reflink {
        match rustix::fs::ioctl_ficlone(&dst, &src) {
            Ok(()) => return Ok(()),
            // Not a CoW filesystem: stop trying for the rest of the tree.
            Err(_) => *reflink = false,
        }
    }
    let mut src = src;
    std::io::copy(&mut src, &mut dst).map_err(|e| StorageError::at(to, "copy into", e))?;
    Ok(())
}

fn copy_meta(from: &Path, to: &Path, meta: &Metadata) -> Result<()> {
    rustix::fs::chownat(
        CWD,
        to,
        Some(rustix::fs::Uid::from_raw(meta.uid())),
        Some(rustix::fs::Gid::from_raw(meta.gid())),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| StorageError::at(to, "chown", e.into()))?;
    let is_link = meta.file_type().is_symlink();
    if !is_link {
        rustix::fs::chmodat(
            CWD,
            to,
            Mode::from_raw_mode(meta.mode() & 0o7777),
            AtFlags::empty(),
        )
        .map_err(|e| StorageError::at(to, "chmod", e.into()))?;
        copy_xattrs(from, to)?;
    }
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec(),
        },
        last_modification: Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec(),
        },
    };
    rustix::fs::utimensat(CWD, to, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| StorageError::at(to, "set times of", e.into()))
}

fn copy_xattrs(from: &Path, to: &Path) -> Result<()> {
    let mut names = vec![0u8; 4096];
    let Ok(n) = rustix::fs::llistxattr(from, &mut names) else {
        return Ok(());
    };
    for key in names[..n].split(|b| *b == 0).filter(|k| !k.is_empty()) {
        let key = OsStr::from_bytes(key);
        let mut value = vec![0u8; 64 * 1024];
        let Ok(len) = rustix::fs::lgetxattr(from, key, &mut value) else {
            continue;
        };
        match rustix::fs::lsetxattr(to, key, &value[..len], rustix::fs::XattrFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::OPNOTSUPP) | Err(rustix::io::Errno::PERM) => {}
            Err(e) => return Err(StorageError::at(to, "setxattr", e.into())),
        }
    }
    Ok(())
}

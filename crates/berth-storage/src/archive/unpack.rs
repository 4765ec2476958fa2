//! Extracting a plain tar (no whiteouts) into a directory with chroot
//! semantics at that directory: every entry's parent is looked up with
//! `RESOLVE_IN_ROOT` below the destination handle, the entry itself is
//! made with `*at` calls that never follow it, so neither `..`, nor an
//! absolute or relative symlink in the archive or already in the tree,
//! can put a byte outside the destination. This is `docker cp`'s upload.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timestamps};
use rustix::io::Errno;
use tar::EntryType;

use super::apply::{archive_error, copy_exact, set_times, Meta};
use super::beneath::{remove_all_at, split_leaf};
use super::in_root;
use crate::error::{Result, StorageError};
use crate::idmap::IdMap;

/// Mode of the directories an entry implies but the archive does not hold.
const IMPLIED_DIR_MODE: u32 = 0o755;

/// How [`unpack_tree`] treats what is already there and whose files the
/// new ones become.
#[derive(Debug, Clone, Default)]
pub struct UnpackOptions {
    /// Refuse to replace a directory with a non-directory or the reverse
    /// (`noOverwriteDirNonDir`).
    pub no_overwrite_dir_non_dir: bool,
    /// Own every entry by this uid/gid instead of the archive's (both are
    /// container ids).
    pub chown: Option<(u32, u32)>,
    /// Container ids to host ids (`--userns-remap`; identity otherwise).
    pub ids: IdMap,
    /// How the destination is named in error messages.
    pub dest_name: String,
}

/// Extracts the tar `input` into the directory `dest`.
pub fn unpack_tree(dest: BorrowedFd<'_>, input: &mut dyn Read, opts: &UnpackOptions) -> Result<()> {
    let mut dirs: Vec<(PathBuf, Timestamps)> = Vec::new();
    let mut archive = tar::Archive::new(input);
    for entry in archive.entries().map_err(archive_error)? {
        let mut entry = entry.map_err(archive_error)?;
        if let Some(dir_times) = unpack_entry(dest, &mut entry, opts)? {
            dirs.push(dir_times);
        }
    }
    // Directory times last: making their children changed them.
    for (rel, times) in dirs.iter().rev() {
        let (parent, name) = split_leaf(rel);
        if let Ok(dir) = in_root::open(dest, parent, OFlags::PATH | OFlags::DIRECTORY) {
            set_times(&dir, name, times, rel)?;
        }
    }
    Ok(())
}

/// A tar name made relative to the destination: leading `/` dropped, `.`
/// and `..` folded; `None` for the destination itself; an error when it
/// climbs out.
fn local_name(raw: &[u8]) -> Result<Option<PathBuf>> {
    let path = Path::new(OsStr::from_bytes(raw));
    let mut out = PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::Normal(c) => out.push(c),
            Component::ParentDir => {
                if out.pop() {
                    continue;
                }
                return Err(StorageError::InvalidArchive(format!(
                    "invalid entry name {:?}",
                    String::from_utf8_lossy(raw)
                )));
            }
            _ => {}
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

fn io_err(what: &str, rel: &Path, e: Errno) -> StorageError {
    StorageError::io(format!("{what} {}", rel.display()), e.into())
}

/// Opens directory `rel` below `dest`, making the missing components with
/// mode 0755 as dockerd makes implied directories.
fn ensure_parent(dest: BorrowedFd<'_>, rel: &Path, owner: (u32, u32)) -> Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY;
    match in_root::open(dest, rel, flags) {
        Ok(fd) => return Ok(fd),
        Err(Errno::NOENT) => {}
        Err(e) => return Err(io_err("open", rel, e)),
    }
    // Symlinks on the way (re-rooted at `dest`) are followed first, so
    // the directories are made where the lookup will find them.
    let resolved = in_root::resolve(dest, rel).map_err(|e| io_err("resolve", rel, e))?;
    let mut current =
        in_root::open(dest, Path::new(""), flags).map_err(|e| io_err("open", rel, e))?;
    let mut prefix = PathBuf::from("/");
    for comp in resolved.components().skip(1) {
        prefix.push(comp);
        current = match in_root::open(dest, &prefix, flags) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                let name = comp.as_os_str();
                match rustix::fs::mkdirat(&current, name, Mode::from_raw_mode(IMPLIED_DIR_MODE)) {
                    // The umask narrowed it.
                    Ok(()) => {
                        chmod_no_follow(&current, name, IMPLIED_DIR_MODE, &prefix)?;
                        // Made for container root (the remapped one, if any).
                        if owner != (0, 0) {
                            rustix::fs::chownat(
                                &current,
                                name,
                                Some(rustix::fs::Uid::from_raw(owner.0)),
                                Some(rustix::fs::Gid::from_raw(owner.1)),
                                AtFlags::SYMLINK_NOFOLLOW,
                            )
                            .map_err(|e| io_err("chown", &prefix, e))?;
                        }
                    }
                    Err(Errno::EXIST) => {}
                    Err(e) => return Err(io_err("mkdir", &prefix, e)),
                }
                in_root::open(dest, &prefix, flags).map_err(|e| io_err("mkdir", &prefix, e))?
            }
            Err(e) => return Err(io_err("mkdir", &prefix, e)),
        };
    }
    Ok(current)
}

fn unpack_entry<R: Read>(
    dest: BorrowedFd<'_>,
    entry: &mut tar::Entry<'_, R>,
    opts: &UnpackOptions,
) -> Result<Option<(PathBuf, Timestamps)>> {
    let kind = entry.header().entry_type();
    if matches!(kind, EntryType::XGlobalHeader) {
        return Ok(None);
    }
    let raw = entry.path_bytes().into_owned();
    let Some(rel) = local_name(&raw)? else {
        return Ok(None);
    };
    let (parent, name) = split_leaf(&rel);
    let dir = ensure_parent(dest, parent, opts.ids.root())?;
    match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => {
            let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
            let shown = || {
                String::from_utf8_lossy(&raw)
                    .trim_start_matches('/')
                    .to_string()
            };
            if opts.no_overwrite_dir_non_dir && is_dir && !kind.is_dir() {
                return Err(StorageError::InvalidArchive(format!(
                    "cannot overwrite directory {:?} with non-directory {:?}",
                    shown(),
                    opts.dest_name
                )));
            }
            if opts.no_overwrite_dir_non_dir && !is_dir && kind.is_dir() {
                return Err(StorageError::InvalidArchive(format!(
                    "cannot overwrite non-directory {:?} with directory {:?}",
                    shown(),
                    opts.dest_name
                )));
            }
            if !(is_dir && kind.is_dir()) {
                remove_all_at(&dir, name)?;
            }
        }
        Err(Errno::NOENT) => {}
        Err(e) => return Err(io_err("stat", &rel, e)),
    }
    let mut meta = Meta::of(entry)?;
    if let Some((uid, gid)) = opts.chown {
        meta.uid = uid;
        meta.gid = gid;
    }
    let meta = meta.mapped(&opts.ids)?;
    let perm = Mode::from_raw_mode(0o600);
    match kind {
        EntryType::Directory => match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(io_err("mkdir", &rel, e)),
        },
        EntryType::Regular | EntryType::Continuous => {
            let fd = rustix::fs::openat(
                &dir,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                perm,
            )
            .map_err(|e| io_err("create", &rel, e))?;
            let size = entry.size();
            copy_exact(entry, &mut File::from(fd), size, &rel)?;
        }
        EntryType::Symlink => {
            // The target is stored as written; it is only ever followed
            // inside a root, so an absolute one stays in the container.
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| {
                    StorageError::InvalidArchive(format!("symlink {rel:?} has no target"))
                })?
                .into_owned();
            rustix::fs::symlinkat(OsStr::from_bytes(&target), &dir, name)
                .map_err(|e| io_err("symlink", &rel, e))?;
        }
        EntryType::Link => {
            link(dest, entry, &dir, name, &rel)?;
            return Ok(None);
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            let ft = match kind {
                EntryType::Char => FileType::CharacterDevice,
                EntryType::Block => FileType::BlockDevice,
                _ => FileType::Fifo,
            };
            let major = entry.header().device_major().ok().flatten().unwrap_or(0);
            let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
            rustix::fs::mknodat(&dir, name, ft, perm, rustix::fs::makedev(major, minor))
                .map_err(|e| io_err("mknod", &rel, e))?;
        }
        other => {
            return Err(StorageError::InvalidArchive(format!(
                "unhandled tar header type {other:?} for {rel:?}"
            )))
        }
    }
    // Ownership and xattrs never follow a link; the mode is set on the
    // inode just made, through a handle, so a running container swapping
    // it for a symlink meanwhile cannot turn the chmod onto the host.
    meta.apply(&dir, name, false)?;
    if kind != EntryType::Symlink {
        chmod_no_follow(&dir, name, meta.mode, &rel)?;
    }
    if kind.is_dir() {
        return Ok(Some((rel, meta.times())));
    }
    set_times(&dir, name, &meta.times(), &rel)?;
    Ok(None)
}

/// `chmod` of `name` in `dir` itself, never of what a symlink there names.
fn chmod_no_follow(dir: &OwnedFd, name: &OsStr, mode: u32, rel: &Path) -> Result<()> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err("open", rel, e))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| io_err("stat", rel, e))?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
        // Swapped since it was made: links have no mode of their own.
        return Ok(());
    }
    // The /proc/self/fd link of an O_PATH handle leads to exactly its inode.
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    rustix::fs::chmod(path.as_str(), Mode::from_raw_mode(mode)).map_err(|e| io_err("chmod", rel, e))
}

/// A hardlink entry: its target must name a file already inside the
/// destination (an absolute target is taken from the destination's root).
fn link<R: Read>(
    dest: BorrowedFd<'_>,
    entry: &mut tar::Entry<'_, R>,
    dir: &OwnedFd,
    name: &OsStr,
    rel: &Path,
) -> Result<()> {
    let raw = entry
        .link_name_bytes()
        .ok_or_else(|| StorageError::InvalidArchive(format!("hardlink {rel:?} has no target")))?
        .into_owned();
    let invalid = || {
        StorageError::InvalidArchive(format!(
            "invalid hardlink target {:?}",
            String::from_utf8_lossy(&raw)
        ))
    };
    let target = local_name(&raw)
        .map_err(|_| invalid())?
        .ok_or_else(invalid)?;
    let (tparent, tname) = split_leaf(&target);
    let tdir =
        in_root::open(dest, tparent, OFlags::PATH | OFlags::DIRECTORY).map_err(|_| invalid())?;
    rustix::fs::linkat(&tdir, tname, dir, name, AtFlags::empty()).map_err(|e| match e {
        Errno::NOENT => invalid(),
        e => io_err("link", rel, e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn tar_of(entries: &[(&str, EntryType, &str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, link, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            if !link.is_empty() {
                h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn hostile_entries_stay_inside() {
        let outside = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::os::unix::fs::symlink(outside.path(), dest.path().join("out")).unwrap();
        let root = crate::archive::beneath::open_root(dest.path()).unwrap();
        let opts = UnpackOptions::default();
        // Through a symlink already in the tree: re-rooted, not followed out.
        let t = tar_of(&[("out/victim", EntryType::Regular, "", b"x")]);
        unpack_tree(root.as_fd(), &mut t.as_slice(), &opts).unwrap();
        assert!(!victim.exists());
        let rerooted = dest
            .path()
            .join(outside.path().strip_prefix("/").unwrap())
            .join("victim");
        assert!(rerooted.exists());
        // A symlink made by the archive, then written through.
        let t = tar_of(&[
            ("l", EntryType::Symlink, "../../../../", b""),
            ("l/victim2", EntryType::Regular, "", b"x"),
        ]);
        unpack_tree(root.as_fd(), &mut t.as_slice(), &opts).unwrap();
        assert!(dest.path().join("victim2").exists());
        // `..` names are refused.
        let t = tar_of(&[("../victim3", EntryType::Regular, "", b"x")]);
        assert!(unpack_tree(root.as_fd(), &mut t.as_slice(), &opts).is_err());
        // Hardlinks to files outside cannot be made.
        let t = tar_of(&[("h", EntryType::Link, "../../etc/passwd", b"")]);
        assert!(unpack_tree(root.as_fd(), &mut t.as_slice(), &opts).is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn refuses_dir_non_dir_swaps_when_asked() {
        let dest = tempfile::tempdir().unwrap();
        std::fs::create_dir(dest.path().join("d")).unwrap();
        let root = crate::archive::beneath::open_root(dest.path()).unwrap();
        let opts = UnpackOptions {
            no_overwrite_dir_non_dir: true,
            dest_name: "/x".into(),
            ..Default::default()
        };
        let t = tar_of(&[("d", EntryType::Regular, "", b"x")]);
        let err = unpack_tree(root.as_fd(), &mut t.as_slice(), &opts).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot overwrite directory \"d\" with non-directory \"/x\""
        );
        let t = tar_of(&[("d", EntryType::Regular, "", b"x")]);
        unpack_tree(root.as_fd(), &mut t.as_slice(), &UnpackOptions::default()).unwrap();
        assert!(dest.path().join("d").is_file());
    }
}

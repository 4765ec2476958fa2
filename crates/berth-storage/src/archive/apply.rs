//! Unpacking a layer tar into a directory: every entry is created with
//! `*at` calls below a root handle (see `beneath`), whiteouts become
//! deletions or overlayfs whiteouts, and the tar framing is recorded for
//! tar-split as the stream goes by.

use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use tar::EntryType;

use super::beneath::{
    clean_entry_path, ensure_dir, open_dir, open_root, remove_all_at, split_leaf,
};
use super::split::SplitRecorder;
use super::{ApplyStats, WhiteoutFormat, OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX};
use crate::error::{Result, StorageError};
use crate::idmap::IdMap;

/// Where the bytes read from the tar stream go besides the parser: the
/// framing is captured for tar-split, file content is not.
#[derive(Default)]
struct TapState {
    offset: u64,
    captured: Vec<u8>,
    skip: Option<(u64, u64)>,
}

struct Tap<'a> {
    inner: &'a mut dyn Read,
    state: Rc<RefCell<TapState>>,
    capture: bool,
}

impl Read for Tap<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut st = self.state.borrow_mut();
        let start = st.offset;
        st.offset += n as u64;
        if self.capture {
            match st.skip {
                Some((from, to)) => {
                    for (i, b) in buf[..n].iter().enumerate() {
                        let at = start + i as u64;
                        if at < from || at >= to {
                            st.captured.push(*b);
                        }
                    }
                }
                None => st.captured.extend_from_slice(&buf[..n]),
            }
        }
        Ok(n)
    }
}

pub(super) fn archive_error(e: io::Error) -> StorageError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => {
            StorageError::InvalidArchive("unexpected EOF: the archive is truncated".into())
        }
        _ => StorageError::InvalidArchive(format!("invalid tar archive: {e}")),
    }
}

/// Unpacks the tar `input` into `root`, handling whiteouts as `whiteouts`
/// says and recording the framing into `split`. The whole stream is read,
/// including anything after the end-of-archive marker, so a caller hashing
/// `input` sees every byte.
///
/// `lowers` (overlay2: the parent layers' directories, topmost first) make
/// the same symlink check the naive drivers get for free: a directory the
/// archive creates implicitly must not stand where the layers below have a
/// symlink, or the archive would be writing "through" it.
///
/// Owners are translated to the host by `ids` (`--userns-remap`), and
/// directories the archive implies are owned by the remapped root, as
/// dockerd unpacks for a remapped daemon; the tar-split record keeps the
/// archive's own bytes.
pub fn apply_layer(
    root: &Path,
    lowers: &[PathBuf],
    input: &mut dyn Read,
    whiteouts: WhiteoutFormat,
    mut split: Option<&mut SplitRecorder>,
    ids: &IdMap,
) -> Result<ApplyStats> {
    let state = Rc::new(RefCell::new(TapState::default()));
    let tap = Tap {
        inner: input,
        state: state.clone(),
        capture: split.is_some(),
    };
    let mut applier = Applier {
        root: open_root(root)?,
        lowers,
        whiteouts,
        ids,
        created: HashSet::new(),
        dir_times: Vec::new(),
        size: 0,
    };
    let mut archive = tar::Archive::new(tap);
    for entry in archive.entries().map_err(archive_error)? {
        let mut entry = entry.map_err(archive_error)?;
        applier.apply_entry(&mut entry, &state, split.as_deref_mut())?;
    }
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(archive_error)?;
    if let Some(split) = split {
        split.raw(&std::mem::take(&mut state.borrow_mut().captured));
    }
    applier.finish()
}

struct Applier<'l> {
    root: OwnedFd,
    lowers: &'l [PathBuf],
    whiteouts: WhiteoutFormat,
    ids: &'l IdMap,
    /// Paths this archive created; an opaque whiteout keeps them.
    created: HashSet<PathBuf>,
    dir_times: Vec<(PathBuf, Timestamps)>,
    size: u64,
}

impl Applier<'_> {
    fn apply_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        tap: &Rc<RefCell<TapState>>,
        split: Option<&mut SplitRecorder>,
    ) -> Result<()> {
        let raw_path = entry.path().map_err(archive_error)?.into_owned();
        let rel = clean_entry_path(&raw_path)?;
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader) {
            return Ok(());
        }
        if rel.as_os_str().is_empty() {
            // The root itself ("./"): only its metadata can change.
            if kind.is_dir() {
                let meta = Meta::of(entry)?.mapped(self.ids)?;
                let root = self
                    .root
                    .try_clone()
                    .map_err(|e| StorageError::io("dup", e))?;
                meta.apply(&root, OsStr::new("."), true)?;
            }
            return Ok(());
        }
        let (parent, name) = split_leaf(&rel);
        if name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(parent, name, entry);
        }
        let dir = self.ensure_parent(parent)?;
        let existing = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW);
        let keep_dir = match existing {
            Ok(st) => {
                let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
                if is_dir && kind.is_dir() {
                    true
                } else {
                    remove_all_at(&dir, name)?;
                    false
                }
            }
            Err(Errno::NOENT) => false,
            Err(e) => return Err(StorageError::io(format!("stat {:?}", rel), e.into())),
        };
        let meta = Meta::of(entry)?.mapped(self.ids)?;
        let io_err = |what: &str, e: Errno| StorageError::io(format!("{what} {:?}", rel), e.into());
        match kind {
            EntryType::Directory => {
                if !keep_dir {
                    rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700))
                        .map_err(|e| io_err("mkdir", e))?;
                }
            }
            EntryType::Regular | EntryType::Continuous => {
                let size = entry.size();
                let fd = rustix::fs::openat(
                    &dir,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| io_err("create", e))?;
                let start = entry.raw_file_position();
                let mut split = split;
                if let Some(split) = split.as_deref_mut() {
                    let mut st = tap.borrow_mut();
                    split.raw(&std::mem::take(&mut st.captured));
                    st.skip = Some((start, start + size));
                }
                let copied = copy_exact(entry, &mut File::from(fd), size, &rel);
                tap.borrow_mut().skip = None;
                copied?;
                if let Some(split) = split {
                    split.file(&rel, size)?;
                }
                self.size += size;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(archive_error)?
                    .ok_or_else(|| {
                        StorageError::InvalidArchive(format!("symlink {:?} has no target", rel))
                    })?
                    .into_owned();
                rustix::fs::symlinkat(target.as_os_str(), &dir, name)
                    .map_err(|e| io_err("symlink", e))?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(archive_error)?
                    .ok_or_else(|| {
                        StorageError::InvalidArchive(format!("hardlink {:?} has no target", rel))
                    })?
                    .into_owned();
                let target = clean_entry_path(&target)?;
                let (tparent, tname) = split_leaf(&target);
                let tdir = open_dir(&self.root, tparent)?.ok_or_else(|| {
                    StorageError::InvalidArchive(format!(
                        "invalid hardlink {:?} -> {:?}: target does not exist",
                        rel, target
                    ))
                })?;
                rustix::fs::linkat(&tdir, tname, &dir, name, AtFlags::empty()).map_err(|e| {
                    if e == Errno::NOENT {
                        StorageError::InvalidArchive(format!(
                            "invalid hardlink {:?} -> {:?}: target does not exist",
                            rel, target
                        ))
                    } else {
                        io_err("link", e)
                    }
                })?;
                self.created.insert(rel);
                return Ok(());
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let ft = match kind {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                rustix::fs::mknodat(
                    &dir,
                    name,
                    ft,
                    Mode::from_raw_mode(0o600),
                    rustix::fs::makedev(major, minor),
                )
                .map_err(|e| io_err("mknod", e))?;
            }
            other => {
                return Err(StorageError::InvalidArchive(format!(
                    "unsupported tar entry type {:?} for {:?}",
                    other, rel
                )))
            }
        }
        meta.apply(&dir, name, kind != EntryType::Symlink)?;
        if kind.is_dir() {
            self.dir_times.push((rel.clone(), meta.times()));
        } else {
            set_times(&dir, name, &meta.times(), &rel)?;
        }
        self.created.insert(rel);
        Ok(())
    }

    fn whiteout<R: Read>(
        &mut self,
        parent: &Path,
        name: &OsStr,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<()> {
        let bytes = name.as_bytes();
        let opaque = bytes == WHITEOUT_OPAQUE.as_bytes();
        if !opaque && bytes.starts_with(b".wh..wh.") {
            // aufs bookkeeping (.wh..wh.plnk and friends): nothing to apply.
            return Ok(());
        }
        let target = OsStr::from_bytes(&bytes[WHITEOUT_PREFIX.len()..]);
        match (self.whiteouts, opaque) {
            (WhiteoutFormat::Delete, true) => {
                let Some(dir) = open_dir(&self.root, parent)? else {
                    return Ok(());
                };
                let created = &self.created;
                super::beneath::clear_dir(&dir, |child| !created.contains(&parent.join(child)))
            }
            (WhiteoutFormat::Delete, false) => match open_dir(&self.root, parent)? {
                Some(dir) => remove_all_at(&dir, target),
                None => Ok(()),
            },
            (WhiteoutFormat::Overlay, true) => {
                let dir = self.ensure_parent(parent)?;
                set_xattr(&dir, None, OPAQUE_XATTR, b"y")
                    .map_err(|e| StorageError::io(format!("mark {:?} opaque", parent), e.into()))
            }
            (WhiteoutFormat::Overlay, false) => {
                let dir = self.ensure_parent(parent)?;
                remove_all_at(&dir, target)?;
                rustix::fs::mknodat(&dir, target, FileType::CharacterDevice, Mode::empty(), 0)
                    .map_err(|e| {
                        StorageError::io(format!("whiteout {:?}", parent.join(target)), e.into())
                    })?;
                let meta = Meta::of(entry)?.mapped(self.ids)?;
                rustix::fs::chownat(
                    &dir,
                    target,
                    Some(rustix::fs::Uid::from_raw(meta.uid)),
                    Some(rustix::fs::Gid::from_raw(meta.gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| StorageError::io("chown whiteout", e.into()))
            }
        }
    }

    /// Opens (making as needed) the parent directory of an entry.
    fn ensure_parent(&mut self, parent: &Path) -> Result<OwnedFd> {
        let created = &mut self.created;
        let lowers = self.lowers;
        let mut made = Vec::new();
        let dir = ensure_dir(&self.root, parent, |p| {
            if lower_is_symlink(lowers, p) {
                return Err(StorageError::InvalidArchive(format!(
                    "invalid archive entry under {:?}: it would be written through a symlink of a lower layer",
                    p
                )));
            }
            created.insert(p.to_path_buf());
            made.push(p.to_path_buf());
            Ok(())
        })?;
        if !self.ids.is_identity() {
            let (uid, gid) = self.ids.root();
            for p in made {
                let (up, name) = split_leaf(&p);
                if let Some(updir) = open_dir(&self.root, up)? {
                    rustix::fs::chownat(
                        &updir,
                        name,
                        Some(rustix::fs::Uid::from_raw(uid)),
                        Some(rustix::fs::Gid::from_raw(gid)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| StorageError::io(format!("chown {:?}", p), e.into()))?;
                }
            }
        }
        Ok(dir)
    }

    /// Sets directory times last: creating children changes them.
    fn finish(self) -> Result<ApplyStats> {
        for (rel, times) in self.dir_times.iter().rev() {
            let (parent, name) = split_leaf(rel);
            if let Some(dir) = open_dir(&self.root, parent)? {
                set_times(&dir, name, times, rel)?;
            }
        }
        Ok(ApplyStats { size: self.size })
    }
}

/// Whether `rel` is a symlink in the union of `lowers` (topmost first).
fn lower_is_symlink(lowers: &[PathBuf], rel: &Path) -> bool {
    for layer in lowers {
        match std::fs::symlink_metadata(layer.join(rel)) {
            Ok(m) => return m.file_type().is_symlink(),
            Err(_) => continue,
        }
    }
    false
}

/// Copies exactly `size` bytes of entry content; a short read is a
/// truncated archive, a failed write is the filesystem's fault.
pub(super) fn copy_exact(src: &mut dyn Read, dst: &mut File, size: u64, rel: &Path) -> Result<()> {
    let mut buf = vec![0u8; 128 * 1024];
    let mut left = size;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = src.read(&mut buf[..want]).map_err(archive_error)?;
        if n == 0 {
            return Err(archive_error(io::ErrorKind::UnexpectedEof.into()));
        }
        dst.write_all(&buf[..n])
            .map_err(|e| StorageError::io(format!("write {:?}", rel), e))?;
        left -= n as u64;
    }
    Ok(())
}

/// Ownership, permissions, extended attributes and times of an entry.
pub(super) struct Meta {
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mode: u32,
    mtime: Timespec,
    atime: Timespec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    pub(super) fn of<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta> {
        let header = entry.header();
        let old = header.as_old();
        let uid = lenient(header.uid(), &old.uid)? as u32;
        let gid = lenient(header.gid(), &old.gid)? as u32;
        let mode = lenient(header.mode().map(u64::from), &old.mode)? as u32 & 0o7777;
        let secs = lenient(header.mtime(), &old.mtime)? as i64;
        let mut mtime = Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        };
        let mut atime = None;
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(archive_error)? {
            for ext in pax {
                let ext = ext.map_err(archive_error)?;
                let key = ext.key_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                } else if key == b"mtime" {
                    if let Some(t) = parse_pax_time(ext.value_bytes()) {
                        mtime = t;
                    }
                } else if key == b"atime" {
                    atime = parse_pax_time(ext.value_bytes());
                }
            }
        }
        // As dockerd does: never leave atime before mtime.
        let atime = match atime {
            Some(a) if (a.tv_sec, a.tv_nsec) >= (mtime.tv_sec, mtime.tv_nsec) => a,
            _ => mtime,
        };
        Ok(Meta {
            uid,
            gid,
            mode,
            mtime,
            atime,
            xattrs,
        })
    }

    /// The same metadata with its owner translated to the host.
    pub(super) fn mapped(mut self, ids: &IdMap) -> Result<Meta> {
        (self.uid, self.gid) = ids.to_host(self.uid, self.gid)?;
        Ok(self)
    }

    pub(super) fn times(&self) -> Timestamps {
        Timestamps {
            last_access: self.atime,
            last_modification: self.mtime,
        }
    }

    pub(super) fn apply(&self, dir: &OwnedFd, name: &OsStr, chmod: bool) -> Result<()> {
        rustix::fs::chownat(
            dir,
            name,
            Some(rustix::fs::Uid::from_raw(self.uid)),
            Some(rustix::fs::Gid::from_raw(self.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| StorageError::io(format!("chown {:?}", name), e.into()))?;
        if chmod {
            // After chown, which clears set-id bits.
            rustix::fs::chmodat(dir, name, Mode::from_raw_mode(self.mode), AtFlags::empty())
                .map_err(|e| StorageError::io(format!("chmod {:?}", name), e.into()))?;
        }
        for (key, value) in &self.xattrs {
            match set_xattr(dir, Some(name), OsStr::from_bytes(key), value) {
                Ok(()) => {}
                // Not every filesystem takes every namespace; dockerd skips these too.
                Err(Errno::OPNOTSUPP) | Err(Errno::PERM) => {
                    tracing::debug!("skipping xattr {:?} on {:?}", OsStr::from_bytes(key), name)
                }
                Err(e) => return Err(StorageError::io(format!("setxattr {:?}", name), e.into())),
            }
        }
        Ok(())
    }
}

/// A numeric header field; blank (all NUL or space) reads as 0, as Go's
/// archive/tar — and so dockerd — reads it.
fn lenient(parsed: io::Result<u64>, raw: &[u8]) -> Result<u64> {
    match parsed {
        Ok(v) => Ok(v),
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        Err(e) => Err(archive_error(e)),
    }
}

fn parse_pax_time(value: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(value).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let tv_sec: i64 = secs.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let tv_nsec = digits.parse().ok()?;
    Some(Timespec { tv_sec, tv_nsec })
}

pub(super) fn set_times(dir: &OwnedFd, name: &OsStr, times: &Timestamps, rel: &Path) -> Result<()> {
    rustix::fs::utimensat(dir, name, times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| StorageError::io(format!("set times of {:?}", rel), e.into()))
}

/// Sets an xattr on `name` inside `dir` (or on `dir` itself) without
/// following a final symlink, through the `/proc/self/fd` handle of `dir`.
fn set_xattr(
    dir: &impl AsFd,
    name: Option<&OsStr>,
    key: impl AsRef<OsStr>,
    value: &[u8],
) -> std::result::Result<(), Errno> {
    let mut path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_fd().as_raw_fd()));
    match name {
        Some(name) => {
            path.push(name);
            rustix::fs::lsetxattr(&path, key.as_ref(), value, rustix::fs::XattrFlags::empty())
        }
        // The fd's magic link itself must be followed to reach the directory.
        None => rustix::fs::setxattr(&path, key.as_ref(), value, rustix::fs::XattrFlags::empty()),
    }
}

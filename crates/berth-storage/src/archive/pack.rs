//! Writing a tar of one file or directory tree, reading it only through
//! directory handles (`openat` with `O_NOFOLLOW` on every step), so a tree
//! that changes while it is read — a running container's — can never make
//! the walk read outside it. Entry names are given by the caller, exactly
//! as they go into the archive (`docker cp` names them `etc/...`, `./...`
//! or `/...`).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use tar::{EntryType, Header};

use crate::error::{Result, StorageError};
use crate::idmap::IdMap;

/// The only extended attribute dockerd carries in `docker cp` archives.
const CAPABILITY_XATTR: &str = "security.capability";

/// Writes `name` inside directory `dir` — and everything under it when it
/// is a directory — to `out` as a tar whose first entry is called `entry`
/// (`"."` selects `dir` itself). Symlinks are archived, never followed.
/// Entries that vanish or cannot be read while the walk runs are left
/// out, as dockerd leaves them out; a failing `out` stops the walk.
/// Owners are written as the container sees them (`ids` translated back);
/// one from outside the ranges (a bind-mounted host file) stays as it is.
pub fn pack_tree(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    entry: &str,
    out: &mut dyn Write,
    ids: &IdMap,
) -> Result<()> {
    let mut packer = Packer {
        builder: tar::Builder::new(out),
        links: HashMap::new(),
        ids,
    };
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| StorageError::io(format!("stat {:?}", name), e.into()))?;
    packer.entry(dir, name, &st, entry.as_bytes())?;
    packer
        .builder
        .finish()
        .map_err(|e| StorageError::io("write archive", e))
}

struct Packer<'a> {
    builder: tar::Builder<&'a mut dyn Write>,
    /// First archive name of each multiply-linked inode.
    links: HashMap<(u64, u64), Vec<u8>>,
    ids: &'a IdMap,
}

/// Why one entry was skipped rather than the whole walk failing.
enum Skip {
    /// The tree changed or refused this entry.
    Entry(Errno),
    /// The archive could not be written: stop.
    Out(io::Error),
}

impl From<Errno> for Skip {
    fn from(e: Errno) -> Self {
        Skip::Entry(e)
    }
}

impl Packer<'_> {
    /// Archives `name` in `dir` (already stat'ed) as `entry`, then its
    /// children when it is a directory.
    fn entry(&mut self, dir: BorrowedFd<'_>, name: &OsStr, st: &Stat, entry: &[u8]) -> Result<()> {
        match self.one(dir, name, st, entry) {
            Ok(Some(sub)) => self.children(&sub, entry),
            Ok(None) => Ok(()),
            Err(Skip::Entry(e)) => {
                tracing::debug!("archive: skipping {:?}: {e}", OsStr::from_bytes(entry));
                Ok(())
            }
            Err(Skip::Out(e)) => Err(StorageError::io("write archive", e)),
        }
    }

    fn children(&mut self, dir: &OwnedFd, prefix: &[u8]) -> Result<()> {
        let mut names: Vec<OsString> = Vec::new();
        let listing = rustix::fs::openat(
            dir,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .and_then(rustix::fs::Dir::new);
        let mut listing = match listing {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!("archive: cannot list {:?}: {e}", OsStr::from_bytes(prefix));
                return Ok(());
            }
        };
        while let Some(item) = listing.read() {
            let Ok(item) = item else { break };
            let n = item.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(OsStr::from_bytes(n).to_os_string());
            }
        }
        names.sort();
        for child in names {
            let st = match rustix::fs::statat(dir, &child, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(_) => continue,
            };
            let child_entry = child_name(prefix, child.as_bytes());
            self.entry(dir.as_fd(), &child, &st, &child_entry)?;
        }
        Ok(())
    }

    /// Writes one entry; returns a handle on it when it is a directory.
    fn one(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        st: &Stat,
        entry: &[u8],
    ) -> std::result::Result<Option<OwnedFd>, Skip> {
        let kind = FileType::from_raw_mode(st.st_mode);
        let mut header = Header::new_gnu();
        header.set_mode(st.st_mode & 0o7777);
        let (uid, gid) = self
            .ids
            .to_container(st.st_uid, st.st_gid)
            .unwrap_or((st.st_uid, st.st_gid));
        header.set_uid(uid as u64);
        header.set_gid(gid as u64);
        header.set_mtime(st.st_mtime.max(0) as u64);
        header.set_size(0);
        match kind {
            FileType::Directory => {
                let sub = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                header.set_entry_type(EntryType::Directory);
                let mut with_slash = entry.to_vec();
                if !with_slash.ends_with(b"/") {
                    with_slash.push(b'/');
                }
                self.append(&mut header, &with_slash, None, io::empty())?;
                return Ok(Some(sub));
            }
            FileType::RegularFile => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.links.get(&key).cloned() {
                        header.set_entry_type(EntryType::Link);
                        self.append(&mut header, entry, Some(&first), io::empty())?;
                        return Ok(None);
                    }
                    self.links.insert(key, entry.to_vec());
                }
                // O_NONBLOCK: should the file have been swapped for a FIFO
                // since the stat, opening it must not hang the walk.
                let fd = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let now = rustix::fs::fstat(&fd)?;
                if FileType::from_raw_mode(now.st_mode) != FileType::RegularFile {
                    return Err(Skip::Entry(Errno::AGAIN));
                }
                self.capability(&fd, entry)?;
                header.set_entry_type(EntryType::Regular);
                header.set_size(now.st_size as u64);
                let file = File::from(fd);
                // The file may shrink or grow while it is read; the entry
                // keeps the size its header announced.
                let data = file.take(now.st_size as u64).chain(io::repeat(0));
                self.append(&mut header, entry, None, data.take(now.st_size as u64))?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir, name, Vec::new())?;
                header.set_entry_type(EntryType::Symlink);
                self.append(&mut header, entry, Some(target.as_bytes()), io::empty())?;
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                header.set_entry_type(match kind {
                    FileType::CharacterDevice => EntryType::Char,
                    FileType::BlockDevice => EntryType::Block,
                    _ => EntryType::Fifo,
                });
                if kind != FileType::Fifo {
                    let _ = header.set_device_major(rustix::fs::major(st.st_rdev));
                    let _ = header.set_device_minor(rustix::fs::minor(st.st_rdev));
                }
                self.append(&mut header, entry, None, io::empty())?;
            }
            // Sockets and the unknown have no tar form (Go's tar refuses them too).
            _ => {}
        }
        Ok(None)
    }

    /// A file's capabilities as a PAX record before its header.
    fn capability(&mut self, fd: &OwnedFd, entry: &[u8]) -> std::result::Result<(), Skip> {
        let mut value = vec![0u8; 256];
        let Ok(len) = rustix::fs::fgetxattr(fd, CAPABILITY_XATTR, &mut value) else {
            return Ok(());
        };
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(CAPABILITY_XATTR.as_bytes());
        let record = super::write::pax_record(&key, &value[..len]);
        let mut header = Header::new_ustar();
        header.set_entry_type(EntryType::XHeader);
        header.set_mode(0o644);
        header.set_size(record.len() as u64);
        let mut name = b"PaxHeaders.0/".to_vec();
        let base = entry.rsplit(|b| *b == b'/').next().unwrap_or_default();
        name.extend_from_slice(&base[..base.len().min(80)]);
        self.append(&mut header, &name, None, record.as_slice())
    }

    /// Appends an entry with `name` (and link target) written byte for
    /// byte — `./x` and `/x` included, which the tar crate's own path
    /// setters would rewrite — using GNU long-name records when they do
    /// not fit the header.
    fn append(
        &mut self,
        header: &mut Header,
        name: &[u8],
        link: Option<&[u8]>,
        data: impl Read,
    ) -> std::result::Result<(), Skip> {
        set_raw(&mut self.builder, header, name, EntryType::GNULongName).map_err(Skip::Out)?;
        if let Some(link) = link {
            set_raw(&mut self.builder, header, link, EntryType::GNULongLink).map_err(Skip::Out)?;
        }
        header.set_cksum();
        self.builder.append(header, data).map_err(Skip::Out)
    }
}

/// Puts `value` in the header's name (or link name) field, preceded by a
/// GNU long-name (long-link) entry when it is longer than the field.
fn set_raw(
    builder: &mut tar::Builder<&mut dyn Write>,
    header: &mut Header,
    value: &[u8],
    long_kind: EntryType,
) -> io::Result<()> {
    let field: &mut [u8; 100] = if long_kind == EntryType::GNULongName {
        &mut header.as_old_mut().name
    } else {
        &mut header.as_old_mut().linkname
    };
    let n = value.len().min(field.len());
    field.fill(0);
    field[..n].copy_from_slice(&value[..n]);
    if value.len() < 100 {
        return Ok(());
    }
    let mut long = Header::new_gnu();
    long.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    long.set_entry_type(long_kind);
    long.set_mode(0o644);
    long.set_size(value.len() as u64 + 1);
    long.set_cksum();
    builder.append(&long, value.chain(&[0u8][..]))
}

fn child_name(prefix: &[u8], child: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    if !out.ends_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(child);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_written_as_given() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/f"), b"x").unwrap();
        let long = "n".repeat(150);
        std::fs::write(dir.path().join("d").join(&long), b"y").unwrap();
        let root = crate::archive::beneath::open_root(dir.path()).unwrap();
        for (entry, want) in [
            (
                "./",
                vec!["./".to_string(), "./f".into(), format!("./{long}")],
            ),
            ("/", vec!["/".to_string(), "/f".into(), format!("/{long}")]),
            (
                "d",
                vec!["d/".to_string(), "d/f".into(), format!("d/{long}")],
            ),
        ] {
            let mut out = Vec::new();
            pack_tree(
                root.as_fd(),
                OsStr::new("d"),
                entry,
                &mut out,
                &IdMap::identity(),
            )
            .unwrap();
            let mut names: Vec<String> = tar::Archive::new(out.as_slice())
                .entries()
                .unwrap()
                .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
                .collect();
            names.sort();
            let mut want = want;
            want.sort();
            assert_eq!(names, want, "entry {entry}");
        }
    }
}

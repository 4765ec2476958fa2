//! Finding what a layer changed: the naive way, comparing a layer's full
//! tree with its parent's (vfs, btrfs, zfs, devicemapper), and the overlay
//! way, reading overlayfs' upper directory against the lower layers.
//! Both yield `docker diff`'s list, parents of changes included.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{is_opaque_dir, is_whiteout, Change, ChangeKind};
use crate::error::{Result, StorageError};

fn lstat(path: &Path) -> Result<Option<Metadata>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::at(path, "stat", e)),
    }
}

fn sorted_names(dir: &Path) -> Result<Vec<std::ffi::OsString>> {
    let mut names = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| StorageError::at(dir, "read", e))?;
    for entry in rd {
        names.push(
            entry
                .map_err(|e| StorageError::at(dir, "read", e))?
                .file_name(),
        );
    }
    names.sort();
    Ok(names)
}

fn capability(path: &Path) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(path, "security.capability", &mut buf) {
        Ok(n) => {
            buf.truncate(n);
            Some(buf)
        }
        Err(_) => None,
    }
}

/// dockerd's rule: type, mode, owner and device always count; size and
/// mtime only for non-directories (directory mtimes change with content).
fn differs(old: &Metadata, new: &Metadata, old_path: &Path, new_path: &Path) -> bool {
    if old.mode() != new.mode()
        || old.uid() != new.uid()
        || old.gid() != new.gid()
        || old.rdev() != new.rdev()
    {
        return true;
    }
    if !new.is_dir()
        && (old.mtime() != new.mtime()
            || old.mtime_nsec() != new.mtime_nsec()
            || old.size() != new.size())
    {
        return true;
    }
    capability(old_path) != capability(new_path)
}

fn rooted(rel: &Path) -> PathBuf {
    Path::new("/").join(rel)
}

/// The changes that turn `lower` (nothing, for a base layer) into `upper`.
pub fn changes_between(lower: Option<&Path>, upper: &Path) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    naive_walk(lower, upper, Path::new(""), &mut out)?;
    Ok(with_parents(out))
}

fn naive_walk(lower: Option<&Path>, upper: &Path, rel: &Path, out: &mut Vec<Change>) -> Result<()> {
    let upper_dir = upper.join(rel);
    let lower_dir = lower.map(|l| l.join(rel));
    let lower_names: BTreeSet<_> = match &lower_dir {
        Some(d) if lstat(d)?.is_some_and(|m| m.is_dir()) => sorted_names(d)?.into_iter().collect(),
        _ => BTreeSet::new(),
    };
    let upper_names = sorted_names(&upper_dir)?;
    for name in &upper_names {
        let child = rel.join(name);
        let new_path = upper.join(&child);
        let Some(new) = lstat(&new_path)? else {
            continue;
        };
        let old_path = lower.map(|l| l.join(&child));
        let old = match (&old_path, lower_names.contains(name)) {
            (Some(p), true) => lstat(p)?,
            _ => None,
        };
        match &old {
            None => out.push(Change {
                path: rooted(&child),
                kind: ChangeKind::Add,
            }),
            Some(old) => {
                if differs(old, &new, old_path.as_deref().unwrap_or(upper), &new_path) {
                    out.push(Change {
                        path: rooted(&child),
                        kind: ChangeKind::Modify,
                    });
                }
            }
        }
        if new.is_dir() {
            let below = match &old {
                Some(old) if old.is_dir() => lower,
                _ => None,
            };
            naive_walk(below, upper, &child, out)?;
        }
    }
    let upper_set: HashSet<_> = upper_names.into_iter().collect();
    for name in lower_names {
        if !upper_set.contains(&name) {
            out.push(Change {
                path: rooted(&rel.join(&name)),
                kind: ChangeKind::Delete,
            });
        }
    }
    Ok(())
}

/// Adds a `Modify` for every directory holding changes that is not itself
/// listed, as dockerd does (it keeps permissions right on re-apply), and
/// sorts by path.
fn with_parents(changes: Vec<Change>) -> Vec<Change> {
    let mut by_path: BTreeMap<PathBuf, ChangeKind> =
        changes.into_iter().map(|c| (c.path, c.kind)).collect();
    let paths: Vec<PathBuf> = by_path.keys().cloned().collect();
    for path in paths {
        let mut parent = path.parent();
        while let Some(p) = parent {
            if p == Path::new("/") {
                break;
            }
            by_path.entry(p.to_path_buf()).or_insert(ChangeKind::Modify);
            parent = p.parent();
        }
    }
    by_path
        .into_iter()
        .map(|(path, kind)| Change { path, kind })
        .collect()
}

/// The changes recorded in overlayfs upper directory `upper`, given the
/// lower layers' directories (topmost first) to tell additions from
/// modifications.
pub fn overlay_changes(lowers: &[PathBuf], upper: &Path) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    overlay_walk(lowers, upper, Path::new(""), false, &mut out)?;
    Ok(with_parents(out))
}

fn overlay_walk(
    lowers: &[PathBuf],
    upper: &Path,
    rel: &Path,
    hidden_below: bool,
    out: &mut Vec<Change>,
) -> Result<()> {
    for name in sorted_names(&upper.join(rel))? {
        let child = rel.join(&name);
        let path = upper.join(&child);
        let Some(meta) = lstat(&path)? else { continue };
        if is_whiteout(&meta) {
            out.push(Change {
                path: rooted(&child),
                kind: ChangeKind::Delete,
            });
            continue;
        }
        let existed = !hidden_below && exists_in_lowers(lowers, &child)?;
        out.push(Change {
            path: rooted(&child),
            kind: if existed {
                ChangeKind::Modify
            } else {
                ChangeKind::Add
            },
        });
        if meta.is_dir() {
            let hidden = hidden_below || !existed || is_opaque_dir(&path);
            overlay_walk(lowers, upper, &child, hidden, out)?;
        }
    }
    Ok(())
}

/// Whether `rel` is visible in the union of `lowers` (topmost first).
fn exists_in_lowers(lowers: &[PathBuf], rel: &Path) -> Result<bool> {
    'layers: for layer in lowers {
        // A whiteout or opaque directory on the way down ends the search.
        let mut prefix = PathBuf::new();
        let comps: Vec<_> = rel.components().collect();
        for (i, comp) in comps.iter().enumerate() {
            prefix.push(comp);
            let path = layer.join(&prefix);
            match lstat(&path)? {
                None => continue 'layers,
                Some(m) if is_whiteout(&m) => return Ok(false),
                Some(m) => {
                    if i + 1 == comps.len() {
                        return Ok(true);
                    }
                    if !m.is_dir() {
                        return Ok(false);
                    }
                    if is_opaque_dir(&path) {
                        // Everything below is this layer's alone.
                        let rest = layer.join(rel);
                        return Ok(lstat(&rest)?.is_some_and(|m| !is_whiteout(&m)));
                    }
                }
            }
        }
    }
    Ok(false)
}

/// Bytes of the regular files among `changes`, each inode counted once.
pub fn changes_size(upper: &Path, changes: &[Change]) -> u64 {
    let mut seen = HashSet::new();
    let mut size = 0;
    for change in changes {
        if change.kind == ChangeKind::Delete {
            continue;
        }
        let rel = change.path.strip_prefix("/").unwrap_or(&change.path);
        if let Ok(meta) = std::fs::symlink_metadata(upper.join(rel)) {
            if meta.file_type().is_file() && seen.insert((meta.dev(), meta.ino())) {
                size += meta.size();
            }
        }
    }
    size
}

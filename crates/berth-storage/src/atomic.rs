//! Crash-safe metadata writes: temp file, fsync, rename, fsync the
//! directory. Every metadata file berth writes goes through here.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{Result, StorageError};

/// Atomically replaces `path` with `data`.
pub fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| StorageError::InvalidOption(format!("no parent: {}", path.display())))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".tmp-{name}-{}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| StorageError::at(&tmp, "create", e))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| StorageError::at(&tmp, "write", e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| StorageError::at(path, "rename onto", e))?;
    sync_dir(dir)
}

/// Writes `value` as JSON to `path`, atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let data = serde_json::to_vec(value)
        .map_err(|e| StorageError::io("encode json", std::io::Error::other(e)))?;
    write_file(path, &data)
}

/// fsyncs a directory so a rename or create inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::at(dir, "sync", e))
}

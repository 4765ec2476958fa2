//! Crash-safe metadata writes: temp file, fsync, rename, fsync the
//! directory. Every metadata file berth writes goes through here.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Result, StorageError};

/// Atomically replaces `path` with `data`.
pub fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| StorageError::InvalidOption(format!("no parent: {}", path.display())))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // One temp file per write, not per process: two threads saving the
    // same file at once (a container's exit and a `docker stop`) must not
    // truncate each other's temp file or rename it away from each other.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".tmp-{name}-{}-{n}", std::process::id()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_writers_of_one_file_each_replace_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.json");
        let writers: Vec<_> = (0..8u8)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let data = vec![b'a' + t; 64 * 1024];
                    for _ in 0..50 {
                        write_file(&path, &data).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let got = std::fs::read(&path).unwrap();
        assert_eq!(got.len(), 64 * 1024);
        assert!(got.iter().all(|b| *b == got[0]), "a torn file");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("record.json")]);
    }
}

//! The small persisted map between a layer's diff ID (its uncompressed
//! digest) and the compressed blobs registries know it by, so a push can
//! ask a registry for a blob it may already have (and mount it from the
//! repository it came from) instead of compressing and uploading again.
//! Layers themselves are stored only unpacked; blobs are never kept.
//!
//! On disk: `<data-root>/distribution/by-diffid/<hex>.json`, written
//! atomically; an unreadable entry is treated as absent.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_storage::atomic;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// At most this many blobs are remembered per layer.
const MAX_PER_LAYER: usize = 16;

/// One compressed blob of a layer in one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteBlob {
    /// `sha256:` digest of the compressed bytes.
    pub digest: String,
    pub media_type: String,
    /// Compressed size.
    pub size: u64,
    /// The normalized repository it was pulled from or pushed to
    /// (`127.0.0.1:5000/busybox`).
    pub repository: String,
}

/// The persisted diff ID → blobs map.
pub struct BlobDigests {
    dir: PathBuf,
    lock: Mutex<()>,
}

fn hex_of(digest: &str) -> Option<&str> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl BlobDigests {
    /// Opens (creating) `<data-root>/distribution/by-diffid`.
    pub fn open(data_root: &Path) -> Result<BlobDigests> {
        let dir = data_root.join("distribution").join("by-diffid");
        std::fs::create_dir_all(&dir)
            .map_err(|e| EngineError::io(format!("create {}", dir.display()), e))?;
        Ok(BlobDigests {
            dir,
            lock: Mutex::new(()),
        })
    }

    fn path(&self, diff_id: &str) -> Option<PathBuf> {
        hex_of(diff_id).map(|h| self.dir.join(format!("{h}.json")))
    }

    /// The blobs known for layer `diff_id`, most recently recorded first.
    pub fn get(&self, diff_id: &str) -> Vec<RemoteBlob> {
        self.path(diff_id)
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|raw| serde_json::from_slice(&raw).ok())
            .unwrap_or_default()
    }

    /// Remembers that `blob` holds layer `diff_id`.
    pub fn record(&self, diff_id: &str, blob: RemoteBlob) -> Result<()> {
        let Some(path) = self.path(diff_id) else {
            return Ok(());
        };
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = self.get(diff_id);
        all.retain(|b| !(b.digest == blob.digest && b.repository == blob.repository));
        all.insert(0, blob);
        all.truncate(MAX_PER_LAYER);
        atomic::write_json(&path, &all)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(d: char, repo: &str) -> RemoteBlob {
        RemoteBlob {
            digest: format!("sha256:{}", d.to_string().repeat(64)),
            media_type: "application/vnd.docker.image.rootfs.diff.tar.gzip".into(),
            size: 10,
            repository: repo.into(),
        }
    }

    #[test]
    fn records_newest_first_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobDigests::open(dir.path()).unwrap();
        let diff = format!("sha256:{}", "1".repeat(64));
        assert!(store.get(&diff).is_empty());
        store.record(&diff, blob('a', "r/x")).unwrap();
        store.record(&diff, blob('b', "r/y")).unwrap();
        store.record(&diff, blob('a', "r/x")).unwrap();
        let got = store.get(&diff);
        assert_eq!(got, vec![blob('a', "r/x"), blob('b', "r/y")]);
        let reopened = BlobDigests::open(dir.path()).unwrap();
        assert_eq!(reopened.get(&diff).len(), 2);
        // Not a digest: ignored, never a path.
        store.record("../x", blob('c', "r")).unwrap();
        assert!(store.get("../x").is_empty());
    }
}

//! Scratch space under `<data-root>/tmp/` for work that unpacks before it
//! commits (load, import). Removed when dropped, and wholesale at start-up
//! so a crash leaves nothing behind.

use std::path::{Path, PathBuf};

use crate::error::{EngineError, Result};

/// A scratch directory that removes itself.
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Makes `<data-root>/tmp/<what>-<random>`.
    pub fn new(data_root: &Path, what: &str) -> Result<ScratchDir> {
        let path = data_root
            .join("tmp")
            .join(format!("{what}-{}", &berth_storage::random_id()[..16]));
        std::fs::create_dir_all(&path)
            .map_err(|e| EngineError::io(format!("create {}", path.display()), e))?;
        Ok(ScratchDir { path })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!("removing {}: {e}", self.path.display());
        }
    }
}

/// Empties `<data-root>/tmp/` (start-up).
pub fn clear(data_root: &Path) -> Result<()> {
    let tmp = data_root.join("tmp");
    match std::fs::remove_dir_all(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(EngineError::io(format!("clear {}", tmp.display()), e)),
    }
    std::fs::create_dir_all(&tmp)
        .map_err(|e| EngineError::io(format!("create {}", tmp.display()), e))
}

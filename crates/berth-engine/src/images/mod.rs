//! Images: the store of image configs and tags, and the operations on them
//! (load, save, import, list, inspect, history, tag, remove, prune).

use std::path::Path;

use berth_storage::ChainId;

use crate::error::Result;

/// Image configs and repository tags on disk.
pub struct ImageStore {}

impl ImageStore {
    /// Opens `<data-root>/images`.
    pub fn open(_data_root: &Path) -> Result<ImageStore> {
        Ok(ImageStore {})
    }

    /// The top layer chain of every image, for layer reconciliation.
    pub fn all_top_layers(&self) -> Vec<ChainId> {
        Vec::new()
    }
}

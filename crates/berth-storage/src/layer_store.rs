//! The content-addressed layer store.

use std::path::Path;
use std::sync::Arc;

use crate::driver::Driver;
use crate::error::Result;

/// A layer's chain ID (`sha256:...`).
pub type ChainId = String;
/// A layer's diff ID (`sha256:...` of its uncompressed tar).
pub type DiffId = String;

/// Metadata of one layer.
#[derive(Debug, Clone)]
pub struct LayerInfo {}

/// The layer store.
pub struct LayerStore {
    _driver: Arc<dyn Driver>,
}

impl LayerStore {
    /// Opens `<data-root>/layers`.
    pub fn open(_data_root: &Path, driver: Arc<dyn Driver>) -> Result<LayerStore> {
        Ok(LayerStore { _driver: driver })
    }

    /// Holds the given chains and removes layers nothing holds.
    pub fn reconcile(&self, _held: &[ChainId]) -> Result<()> {
        Ok(())
    }
}

//! The storage drivers and how one is chosen at start-up.

use std::path::PathBuf;
use std::sync::Arc;

use crate::driver::Driver;
use crate::error::{Result, StorageError};

/// Daemon-wide driver configuration.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// `--data-root`.
    pub data_root: PathBuf,
    /// `-s`; `None` selects as dockerd does.
    pub name: Option<String>,
    /// `--storage-opt`, raw `key=value` strings.
    pub options: Vec<String>,
}

/// Opens the configured (or auto-selected) driver.
pub fn open_driver(_cfg: &DriverConfig) -> Result<Arc<dyn Driver>> {
    Err(StorageError::Unsupported("not yet".into()))
}

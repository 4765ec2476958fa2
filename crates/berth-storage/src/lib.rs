//! berth-storage: where layers live. The [`Driver`] seam and its drivers
//! (vfs, overlay2, btrfs), the content-addressed [`LayerStore`] above them,
//! and the tar machinery (apply with whiteouts, diff, tar-split) they share.
//!
//! This crate knows nothing of HTTP, image JSON or containers.

pub mod archive;
pub mod atomic;
pub mod driver;
pub mod drivers;
pub mod error;
pub mod idmap;
pub mod layer_store;

pub use driver::{Driver, RwLayerOpts, SpaceUsage, Usage};
pub use drivers::{open_driver, DriverConfig};
pub use error::{Result, StorageError};
pub use idmap::{IdMap, IdRange};
pub use layer_store::{
    chain_id, random_id, ChainId, DiffId, InitLayer, LayerInfo, LayerStore, RwLayer,
};

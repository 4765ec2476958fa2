//! berth-engine: the one [`Engine`] object behind the Engine API. It owns
//! images, containers, volumes and networks, publishes an event for every
//! state change, and reaches storage only through `berth_storage`.
//!
//! This crate knows nothing of HTTP.

pub mod containers;
pub mod disk_usage;
pub mod distribution;
pub mod engine;
pub mod error;
pub mod events;
pub mod filters;
pub mod images;
pub mod monitoring;
pub mod networks;
pub mod progress;
pub mod runtime;
mod scratch;
pub mod security;
pub mod stats;
pub mod system;
pub mod volumes;

pub use engine::{Engine, EngineConfig};
pub use error::{EngineError, ErrorKind, Result};
pub use filters::Filters;
pub use progress::{ByteStream, Progress};

/// The version berth reports as its own (`Server` header, `docker version`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The newest Engine API version berth speaks.
pub const API_VERSION: &str = "1.47";
/// The oldest Engine API version berth accepts.
pub const MIN_API_VERSION: &str = "1.24";

//! berth-shim's library half: the protocol berthd and a shim speak (launch
//! report, socket requests, output frames, the exit record on disk) and,
//! with the `client` feature, the async client berthd uses. The shim
//! process itself lives in `main.rs` and its modules.

#[cfg(feature = "client")]
pub mod client;
pub mod protocol;

//! berth: operator commands the docker CLI lacks. The library holds their
//! logic so tests can drive it directly; `main.rs` is only the command line.
//! [`setup`] turns a device or a new image file into a data root for one
//! storage driver (`berth storage setup`); [`tls`] makes the certificates
//! for the API over TCP (`berth tls generate`).

pub mod setup;
pub mod tls;

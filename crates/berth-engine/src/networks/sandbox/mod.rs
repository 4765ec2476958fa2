//! Containers on bridge networks: the endpoints a container asks for at
//! create, its sandbox at start (a pinned namespace, a veth pair per
//! network, addresses, default route, /etc files, published ports, the
//! embedded DNS server), tear-down at exit, live connect/disconnect, the
//! shapes inspect shows, and re-adoption or cleanup after a restart.
//!
//! One submodule per part of that life: `endpoints` (create and removal),
//! `start_stop` (one run's sandbox), `veth` (one endpoint in the kernel),
//! `name_resolution` (/etc files and the embedded DNS's view), `connect`
//! (live connect and disconnect), `inspect` (what inspect and `docker ps`
//! show) and `restore` (after a daemon restart).

mod connect;
mod endpoints;
mod inspect;
mod name_resolution;
mod restore;
mod start_stop;
mod veth;

use crate::error::EngineError;

fn internal(what: &str, e: std::io::Error) -> EngineError {
    EngineError::Internal(format!("{what}: {e}"))
}

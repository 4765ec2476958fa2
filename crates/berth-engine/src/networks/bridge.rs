//! The host side of a bridge network: the Linux bridge with its gateway
//! address, the sysctls it needs (forwarding, route_localnet for loopback
//! hairpin), and choosing a subnet no route on the host uses. Subnets are
//! chosen and configured under a host-wide lock, so daemons started side
//! by side never pick the same one.

use std::fs::File;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use nix::fcntl::{Flock, FlockArg};

use super::config::AddressPool;
use super::ipam;
use super::netlink::Netlink;
use crate::error::{EngineError, Result};

/// The lock every berthd on the host takes while it picks and configures
/// a subnet.
const HOST_LOCK: &str = "/run/berth-ipam.lock";

fn nl_err(what: &str) -> impl Fn(std::io::Error) -> EngineError + '_ {
    move |e| EngineError::Internal(format!("{what}: {e}"))
}

/// Holds the host-wide subnet lock while alive.
pub struct HostLock(#[allow(dead_code)] Flock<File>);

impl HostLock {
    pub fn take() -> Result<HostLock> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(HOST_LOCK)
            .map_err(|e| EngineError::io(format!("open {HOST_LOCK}"), e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| EngineError::io(format!("lock {HOST_LOCK}"), e.into()))?;
        Ok(HostLock(lock))
    }
}

/// A free subnet out of `pools`, overlapping neither the host's routes nor
/// `taken` (other networks of this daemon, which may be down right now).
pub fn choose_subnet(pools: &[AddressPool], taken: &[Ipv4Net]) -> Result<Ipv4Net> {
    let mut nl = Netlink::open().map_err(nl_err("netlink"))?;
    let mut used = nl.routed_subnets().map_err(nl_err("list routes"))?;
    used.extend_from_slice(taken);
    ipam::pick_subnet(pools, &used)
}

/// What an existing bridge looks like.
pub struct Existing {
    pub addresses: Vec<Ipv4Net>,
}

/// The bridge called `name`, if it exists.
pub fn existing(name: &str) -> Result<Option<Existing>> {
    let mut nl = Netlink::open().map_err(nl_err("netlink"))?;
    let Some(link) = nl.link(name).map_err(nl_err("look up the bridge"))? else {
        return Ok(None);
    };
    Ok(Some(Existing {
        addresses: nl
            .addresses(link.index)
            .map_err(nl_err("list bridge addresses"))?,
    }))
}

/// Makes sure the bridge exists, carries `gateway/prefix` and is up;
/// returns whether it had to be created.
pub fn ensure(name: &str, gateway: Ipv4Addr, subnet: Ipv4Net, mtu: u32) -> Result<bool> {
    let mut nl = Netlink::open().map_err(nl_err("netlink"))?;
    let mut created = false;
    let link = match nl.link(name).map_err(nl_err("look up the bridge"))? {
        Some(l) => l,
        None => {
            nl.add_bridge(name, mtu)
                .map_err(|e| EngineError::Internal(format!("create bridge {name}: {e}")))?;
            created = true;
            nl.link(name)
                .map_err(nl_err("look up the bridge"))?
                .ok_or_else(|| EngineError::Internal(format!("bridge {name} vanished")))?
        }
    };
    let addr = Ipv4Net::new(gateway, subnet.prefix_len())
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    let have = nl
        .addresses(link.index)
        .map_err(nl_err("list bridge addresses"))?;
    if !have.contains(&addr) {
        nl.add_address(link.index, addr)
            .map_err(|e| EngineError::Internal(format!("add {addr} to {name}: {e}")))?;
    }
    nl.set_up(link.index, None)
        .map_err(|e| EngineError::Internal(format!("set {name} up: {e}")))?;
    // 127.0.0.1:PORT from the host is DNATed onto the bridge; the kernel
    // routes loopback-sourced packets out of a non-loopback device only
    // with route_localnet.
    let _ = std::fs::write(
        format!("/proc/sys/net/ipv4/conf/{name}/route_localnet"),
        "1",
    );
    Ok(created)
}

/// Deletes a bridge berth made; a missing one is fine.
pub fn delete(name: &str) -> Result<()> {
    let mut nl = Netlink::open().map_err(nl_err("netlink"))?;
    if let Some(link) = nl.link(name).map_err(nl_err("look up the bridge"))? {
        nl.delete_link(link.index)
            .map_err(|e| EngineError::Internal(format!("delete bridge {name}: {e}")))?;
    }
    Ok(())
}

/// `--ip-forward`: containers reach beyond their bridge.
pub fn enable_ip_forward() {
    if std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|v| v.trim() == "1") {
        return;
    }
    if let Err(e) = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1") {
        tracing::warn!("enabling IPv4 forwarding: {e}");
    }
}

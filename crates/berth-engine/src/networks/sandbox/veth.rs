//! One endpoint in the kernel: the stable name of its host-side veth, its
//! MAC (dockerd's 02:42 + IPv4, or the one asked for), the subnet its
//! address is allocated from, and `plumb`, which makes the veth pair and
//! configures the container's end.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use ipnet::Ipv4Net;
use sha2::{Digest, Sha256};

use super::internal;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::networks::ipam::Subnet;
use crate::networks::netlink::Netlink;
use crate::networks::netns;
use crate::networks::store::{ActiveEndpoint, NetworkRecord};

/// The host end of a container's veth on one network: stable, so a
/// restarted daemon knows it.
pub(super) fn veth_name(container: &str, network: &str) -> String {
    let digest = Sha256::digest(format!("{container}/{network}").as_bytes());
    format!("vb{}", &hex::encode(digest)[..11])
}

/// Deletes host-side veths by name (their peers go with them); best
/// effort: one already gone is what the caller wanted.
pub(super) fn delete_veths<'a>(names: impl IntoIterator<Item = &'a str>) {
    if let Ok(mut nl) = Netlink::open() {
        for name in names {
            if let Ok(Some(link)) = nl.link(name) {
                let _ = nl.delete_link(link.index);
            }
        }
    }
}

/// dockerd's classic MAC: 02:42 and the IPv4 address.
pub(super) fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub(super) fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub(super) fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).ok())
        .collect::<Option<_>>()?;
    parts.try_into().ok()
}

pub(super) fn subnet_of(n: &NetworkRecord) -> Subnet {
    Subnet {
        subnet: n.subnet,
        range: n.ip_range.unwrap_or(n.subnet),
        gateway: n.gateway,
        reserved: n.aux_addresses.values().copied().collect(),
    }
}

impl Engine {
    /// One veth pair: host end on the network's bridge, container end
    /// named `act.ifname` in the namespace with its address (and the
    /// default route through this network's gateway when asked).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn plumb(
        &self,
        host: &mut Netlink,
        ns: &File,
        path: &std::path::Path,
        rec: &NetworkRecord,
        act: &ActiveEndpoint,
        default_route: bool,
        mtu: u32,
    ) -> Result<()> {
        let bridge = host
            .link(&rec.bridge)
            .map_err(|e| internal("look up the bridge", e))?
            .ok_or_else(|| EngineError::Internal(format!("bridge {} is missing", rec.bridge)))?;
        let mac = parse_mac(&act.mac).unwrap_or_else(|| mac_for(act.ip));
        host.add_veth(&act.host_veth, &act.ifname, ns.as_raw_fd(), mtu, mac)
            .map_err(|e| internal(&format!("create veth {}", act.host_veth), e))?;
        let veth = host
            .link(&act.host_veth)
            .map_err(|e| internal("look up the veth", e))?
            .ok_or_else(|| EngineError::Internal(format!("veth {} vanished", act.host_veth)))?;
        host.set_up(veth.index, Some(bridge.index))
            .map_err(|e| internal(&format!("attach {} to {}", act.host_veth, rec.bridge), e))?;
        let addr = Ipv4Net::new(act.ip, rec.subnet.prefix_len())
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        let (ifname, gateway) = (act.ifname.clone(), rec.gateway);
        netns::run_in(path, move || {
            let mut nl = Netlink::open()?;
            let link = nl
                .link(&ifname)?
                .ok_or_else(|| std::io::Error::other(format!("{ifname} is missing")))?;
            nl.add_address(link.index, addr)?;
            nl.set_up(link.index, None)?;
            if default_route {
                nl.add_default_route(gateway, link.index)?;
            }
            Ok(())
        })
        .map_err(|e| internal(&format!("configure {} in the container", act.ifname), e))
    }
}

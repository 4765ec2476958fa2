//! IP address management for bridge networks: choosing a subnet out of the
//! default address pools (skipping what other networks and the host's
//! routes already use) and handing out container addresses inside one.
//! Pure logic; what is allocated is derived from the endpoint records.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::config::AddressPool;
use crate::error::{EngineError, Result};

/// Whether two subnets share any address.
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first `/size` of the pools that overlaps nothing in `used`.
pub fn pick_subnet(pools: &[AddressPool], used: &[Ipv4Net]) -> Result<Ipv4Net> {
    for pool in pools {
        let Ok(candidates) = pool.base.subnets(pool.size) else {
            continue;
        };
        for candidate in candidates {
            if !used.iter().any(|u| overlaps(u, &candidate)) {
                return Ok(candidate);
            }
        }
    }
    Err(EngineError::InvalidParameter(
        "all predefined address pools have been fully subnetted".into(),
    ))
}

/// The address layout of one network's IPv4 subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    pub subnet: Ipv4Net,
    /// Where automatic addresses come from (`--ip-range`, `--fixed-cidr`).
    pub range: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// `--aux-address`es, never handed out.
    pub reserved: Vec<Ipv4Addr>,
}

impl Subnet {
    /// Whether `ip` may be given to a container at all.
    fn usable(&self, ip: Ipv4Addr) -> bool {
        let net = self.subnet;
        let edge = net.prefix_len() < 31 && (ip == net.network() || ip == net.broadcast());
        net.contains(&ip) && !edge && ip != self.gateway && !self.reserved.contains(&ip)
    }

    /// An address for a container: `wanted` (a static `--ip`) when it is
    /// free, else the first free one of the range.
    pub fn allocate(
        &self,
        taken: &BTreeSet<Ipv4Addr>,
        wanted: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr> {
        if let Some(ip) = wanted {
            if !self.subnet.contains(&ip) {
                return Err(EngineError::InvalidParameter(format!(
                    "no configured subnet contains IP address {ip}"
                )));
            }
            if !self.usable(ip) || taken.contains(&ip) {
                return Err(EngineError::Forbidden("Address already in use".into()));
            }
            return Ok(ip);
        }
        self.range
            .hosts()
            .find(|ip| self.usable(*ip) && !taken.contains(ip))
            .ok_or_else(|| EngineError::Internal("no available addresses on this pool".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::networks::config::default_pools;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn pools_skip_used_subnets() {
        let pools = default_pools();
        assert_eq!(pick_subnet(&pools, &[]).unwrap(), net("172.17.0.0/16"));
        let used = [net("172.17.5.0/24"), net("172.18.0.0/16")];
        assert_eq!(pick_subnet(&pools, &used).unwrap(), net("172.19.0.0/16"));
        let everything = [net("0.0.0.0/0")];
        assert!(pick_subnet(&pools, &everything)
            .unwrap_err()
            .to_string()
            .contains("fully subnetted"));
    }

    #[test]
    fn addresses_skip_gateway_and_reserved() {
        let s = Subnet {
            subnet: net("10.5.0.0/24"),
            range: net("10.5.0.0/24"),
            gateway: "10.5.0.1".parse().unwrap(),
            reserved: vec!["10.5.0.2".parse().unwrap()],
        };
        let mut taken = BTreeSet::new();
        let a = s.allocate(&taken, None).unwrap();
        assert_eq!(a, "10.5.0.3".parse::<Ipv4Addr>().unwrap());
        taken.insert(a);
        assert_eq!(
            s.allocate(&taken, None).unwrap(),
            "10.5.0.4".parse::<Ipv4Addr>().unwrap()
        );
        assert_eq!(
            s.allocate(&taken, Some("10.5.0.3".parse().unwrap()))
                .unwrap_err()
                .to_string(),
            "Address already in use"
        );
        assert_eq!(
            s.allocate(&taken, Some("10.6.0.3".parse().unwrap()))
                .unwrap_err()
                .to_string(),
            "no configured subnet contains IP address 10.6.0.3"
        );
        let ranged = Subnet {
            range: net("10.5.0.128/25"),
            ..s
        };
        assert_eq!(
            ranged.allocate(&taken, None).unwrap(),
            "10.5.0.129".parse::<Ipv4Addr>().unwrap()
        );
    }
}

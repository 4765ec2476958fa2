//! The daemon-wide bridge networking settings (`--bridge`, `--bip`,
//! `--fixed-cidr`, `--default-address-pool`, `--mtu`, `--iptables`,
//! `--ip-forward`, `--ip-masq`, `--ip`), with dockerd's defaults and the
//! checks berthd makes before the engine starts.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// The Linux bridge of the default `bridge` network unless `--bridge` says.
pub const DEFAULT_BRIDGE: &str = "berth0";

/// One `--default-address-pool`: networks without a configured subnet get
/// a `/size` out of `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressPool {
    pub base: Ipv4Net,
    pub size: u8,
}

impl AddressPool {
    /// Parses the flag form, `base=172.80.0.0/16,size=24`.
    pub fn parse(s: &str) -> Result<AddressPool, String> {
        let mut base = None;
        let mut size = None;
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("invalid field '{part}' must be a key=value pair"))?;
            match k.trim().to_ascii_lowercase().as_str() {
                "base" => {
                    base = Some(
                        v.parse::<Ipv4Net>()
                            .map_err(|_| format!("invalid base pool: {v}"))?,
                    )
                }
                "size" => {
                    size = Some(
                        v.parse::<u8>()
                            .map_err(|_| format!("invalid size value: {v}"))?,
                    )
                }
                other => return Err(format!("unexpected key '{other}' in '{part}'")),
            }
        }
        let pool = AddressPool {
            base: base.ok_or("address pool requires a base")?,
            size: size.ok_or("address pool requires a size")?,
        };
        pool.check()?;
        Ok(pool)
    }

    /// dockerd refuses pools whose size is smaller than their base or
    /// whose base has host bits set.
    pub fn check(&self) -> Result<(), String> {
        if self.size < self.base.prefix_len() || self.size > 30 {
            return Err(format!(
                "invalid pools size: {} (base {})",
                self.size, self.base
            ));
        }
        if self.base.trunc() != self.base {
            return Err(format!(
                "network at index 0 ({}) is not in canonical form",
                self.base
            ));
        }
        Ok(())
    }
}

/// dockerd's local-scope default address pools (`ipamutils`).
pub fn default_pools() -> Vec<AddressPool> {
    [
        ("172.17.0.0/16", 16),
        ("172.18.0.0/16", 16),
        ("172.19.0.0/16", 16),
        ("172.20.0.0/14", 16),
        ("172.24.0.0/14", 16),
        ("172.28.0.0/14", 16),
        ("192.168.0.0/16", 20),
    ]
    .into_iter()
    .map(|(base, size)| AddressPool {
        base: base.parse().expect("constant pool"),
        size,
    })
    .collect()
}

/// How the engine does bridge networking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// `--bridge`: the default network's Linux bridge; `none` turns the
    /// default bridge network off.
    pub bridge: String,
    /// `--bip`: the bridge's address and prefix (the default network's
    /// gateway and subnet).
    pub bip: Option<Ipv4Net>,
    /// `--fixed-cidr`: where the default network hands out addresses.
    pub fixed_cidr: Option<Ipv4Net>,
    /// `--default-address-pool`s, or dockerd's when none is given.
    pub default_address_pools: Vec<AddressPool>,
    /// `--mtu` of bridges and veths.
    pub mtu: u32,
    /// `--iptables`: berth programs NAT (in its own nftables table).
    pub iptables: bool,
    /// `--ip-forward`: berth turns on IPv4 forwarding.
    pub ip_forward: bool,
    /// `--ip-masq`: containers reach out with the host's address.
    pub ip_masq: bool,
    /// `--ip`: the host address published ports bind without one.
    pub default_bind_ip: Ipv4Addr,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            bridge: DEFAULT_BRIDGE.to_string(),
            bip: None,
            fixed_cidr: None,
            default_address_pools: Vec::new(),
            mtu: 1500,
            iptables: true,
            ip_forward: true,
            ip_masq: true,
            default_bind_ip: Ipv4Addr::UNSPECIFIED,
        }
    }
}

impl NetworkConfig {
    /// Whether `--bridge=none` turned the default bridge network off.
    pub fn bridge_disabled(&self) -> bool {
        self.bridge == "none"
    }

    /// The pools new networks' subnets come from.
    pub fn pools(&self) -> Vec<AddressPool> {
        if self.default_address_pools.is_empty() {
            default_pools()
        } else {
            self.default_address_pools.clone()
        }
    }

    /// The nftables table this daemon owns. One per default bridge, so
    /// daemons side by side (tests) never touch each other's rules.
    pub fn firewall_table(&self) -> String {
        if self.bridge == DEFAULT_BRIDGE {
            return "berth".to_string();
        }
        let name: String = self
            .bridge
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("berth_{name}")
    }

    /// The checks dockerd makes at start-up, in its words where it has them.
    pub fn check(&self) -> Result<(), String> {
        if self.bridge.is_empty() || self.bridge.len() > 15 || self.bridge.contains('/') {
            return Err(format!("invalid bridge name: {:?}", self.bridge));
        }
        if self.bridge == "docker0" {
            // docker0 belongs to dockerd; berth never adopts it.
            return Err("the bridge docker0 belongs to dockerd; choose another --bridge".into());
        }
        if !(68..=65535).contains(&self.mtu) {
            return Err(format!("invalid MTU: {}", self.mtu));
        }
        if let (Some(bip), Some(fixed)) = (self.bip, self.fixed_cidr) {
            if !bip.trunc().contains(&fixed.network()) {
                return Err(format!(
                    "fixed-cidr {fixed} is not within the bridge subnet {}",
                    bip.trunc()
                ));
            }
        }
        if let Some(bip) = self.bip {
            if bip.addr() == bip.network() && bip.prefix_len() < 31 {
                return Err(format!(
                    "bip {bip}: the address is the subnet's network address"
                ));
            }
        }
        for p in &self.default_address_pools {
            p.check()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_parse_like_dockerd() {
        let p = AddressPool::parse("base=10.10.0.0/16,size=24").unwrap();
        assert_eq!(p.base.to_string(), "10.10.0.0/16");
        assert_eq!(p.size, 24);
        assert!(AddressPool::parse("base=10.10.0.0/16").is_err());
        assert!(AddressPool::parse("base=10.10.0.0/16,size=8").is_err());
        assert!(AddressPool::parse("base=10.10.1.0/16,size=24").is_err());
        assert!(AddressPool::parse("colour=red").is_err());
    }

    #[test]
    fn tables_follow_the_bridge() {
        let mut c = NetworkConfig::default();
        assert_eq!(c.firewall_table(), "berth");
        c.bridge = "bt-1a2b".into();
        assert_eq!(c.firewall_table(), "berth_bt_1a2b");
        assert!(c.check().is_ok());
        c.bridge = "docker0".into();
        assert!(c.check().is_err());
    }

    #[test]
    fn fixed_cidr_must_sit_in_bip() {
        let c = NetworkConfig {
            bip: Some("10.1.0.1/16".parse().unwrap()),
            fixed_cidr: Some("10.2.0.0/24".parse().unwrap()),
            ..Default::default()
        };
        assert!(c.check().is_err());
        let c = NetworkConfig {
            bip: Some("10.1.0.1/16".parse().unwrap()),
            fixed_cidr: Some("10.1.5.0/24".parse().unwrap()),
            ..Default::default()
        };
        assert!(c.check().is_ok());
    }
}

//! berthd's bridge networking options: dockerd's flags (`--bridge`, `--bip`,
//! `--fixed-cidr`, `--default-address-pool`, `--mtu`, `--iptables`,
//! `--ip-forward`, `--ip-masq`, `--ip`) and daemon.json keys, merged like
//! the other options, and turned into the engine's `NetworkConfig`.

use anyhow::{anyhow, Context, Result};
use berth_engine::networks::{AddressPool, NetworkConfig};
use ipnet::Ipv4Net;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The daemon.json keys owned here (each is also a flag's clap id).
const KEYS: [&str; 9] = [
    "bridge",
    "bip",
    "fixed-cidr",
    "default-address-pools",
    "mtu",
    "iptables",
    "ip-forward",
    "ip-masq",
    "ip",
];

/// The command-line half.
#[derive(Debug, Default, clap::Args)]
pub struct NetworkFlags {
    /// Attach containers to a network bridge ("none" disables the default bridge network)
    #[arg(id = "bridge", short = 'b', long = "bridge", value_name = "NAME")]
    pub bridge: Option<String>,

    /// Network bridge IP
    #[arg(id = "bip", long = "bip", value_name = "CIDR")]
    pub bip: Option<String>,

    /// IPv4 subnet for fixed IPs
    #[arg(id = "fixed-cidr", long = "fixed-cidr", value_name = "CIDR")]
    pub fixed_cidr: Option<String>,

    /// Default address pools for node specific local networks
    #[arg(
        id = "default-address-pools",
        long = "default-address-pool",
        value_name = "base=CIDR,size=N",
        action = clap::ArgAction::Append
    )]
    pub default_address_pools: Vec<String>,

    /// Set the containers network MTU
    #[arg(id = "mtu", long = "mtu", value_name = "MTU")]
    pub mtu: Option<u32>,

    /// Enable addition of NAT rules (in berth's own nftables table)
    #[arg(
        id = "iptables",
        long = "iptables",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub iptables: Option<bool>,

    /// Enable IP forwarding
    #[arg(
        id = "ip-forward",
        long = "ip-forward",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub ip_forward: Option<bool>,

    /// Enable IP masquerading
    #[arg(
        id = "ip-masq",
        long = "ip-masq",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub ip_masq: Option<bool>,

    /// Default IP when binding container ports
    #[arg(id = "ip", long = "ip", value_name = "IP")]
    pub ip: Option<String>,
}

/// The merged settings (daemon.json, then flags over it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct NetworkSettings {
    pub bridge: Option<String>,
    pub bip: Option<String>,
    pub fixed_cidr: Option<String>,
    pub default_address_pools: Vec<AddressPool>,
    pub mtu: u32,
    pub iptables: bool,
    pub ip_forward: bool,
    pub ip_masq: bool,
    pub ip: Option<String>,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        let d = NetworkConfig::default();
        NetworkSettings {
            bridge: None,
            bip: None,
            fixed_cidr: None,
            default_address_pools: Vec::new(),
            mtu: d.mtu,
            iptables: d.iptables,
            ip_forward: d.ip_forward,
            ip_masq: d.ip_masq,
            ip: None,
        }
    }
}

/// Takes this module's keys out of daemon.json's object (so the rest can
/// be read strictly) and reads them.
pub fn take_from_file(file: &mut Map<String, Value>) -> Result<NetworkSettings> {
    let mut mine = Map::new();
    for key in KEYS {
        if let Some(v) = file.remove(key) {
            mine.insert(key.to_string(), v);
        }
    }
    serde_json::from_value(Value::Object(mine)).context("invalid JSON")
}

impl NetworkFlags {
    /// Puts the flags given over `s`.
    pub fn apply(&self, s: &mut NetworkSettings) -> Result<()> {
        if self.bridge.is_some() {
            s.bridge.clone_from(&self.bridge);
        }
        if self.bip.is_some() {
            s.bip.clone_from(&self.bip);
        }
        if self.fixed_cidr.is_some() {
            s.fixed_cidr.clone_from(&self.fixed_cidr);
        }
        if !self.default_address_pools.is_empty() {
            s.default_address_pools = self
                .default_address_pools
                .iter()
                .map(|p| {
                    AddressPool::parse(p)
                        .map_err(|e| anyhow!("invalid default-address-pool {p:?}: {e}"))
                })
                .collect::<Result<_>>()?;
        }
        if let Some(m) = self.mtu {
            s.mtu = m;
        }
        if let Some(b) = self.iptables {
            s.iptables = b;
        }
        if let Some(b) = self.ip_forward {
            s.ip_forward = b;
        }
        if let Some(b) = self.ip_masq {
            s.ip_masq = b;
        }
        if self.ip.is_some() {
            s.ip.clone_from(&self.ip);
        }
        Ok(())
    }
}

impl NetworkSettings {
    /// The engine's configuration, checked as dockerd checks it at start.
    pub fn engine_config(&self) -> Result<NetworkConfig> {
        let cidr = |what: &str, v: &Option<String>| -> Result<Option<Ipv4Net>> {
            v.as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<Ipv4Net>()
                        .map_err(|_| anyhow!("parse {what} failed: invalid CIDR address: {s}"))
                })
                .transpose()
        };
        let defaults = NetworkConfig::default();
        let config = NetworkConfig {
            bridge: self
                .bridge
                .clone()
                .filter(|b| !b.is_empty())
                .unwrap_or(defaults.bridge),
            bip: cidr("bip", &self.bip)?,
            fixed_cidr: cidr("fixed-cidr", &self.fixed_cidr)?,
            default_address_pools: self.default_address_pools.clone(),
            mtu: self.mtu,
            iptables: self.iptables,
            ip_forward: self.ip_forward,
            ip_masq: self.ip_masq,
            default_bind_ip: match self.ip.as_deref().filter(|s| !s.is_empty()) {
                Some(ip) => ip
                    .parse()
                    .map_err(|_| anyhow!("invalid IP address for --ip: {ip}"))?,
                None => defaults.default_bind_ip,
            },
        };
        config.check().map_err(|e| anyhow!(e))?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        net: NetworkFlags,
    }

    #[test]
    fn file_then_flags() {
        let mut file: Map<String, Value> = serde_json::from_str(
            r#"{"bip": "10.44.0.1/24", "default-address-pools": [{"base": "10.45.0.0/16", "size": 24}], "debug": true}"#,
        )
        .unwrap();
        let mut s = take_from_file(&mut file).unwrap();
        assert!(file.contains_key("debug") && !file.contains_key("bip"));
        let cli = Cli::parse_from(["x", "--bridge", "bt0", "--iptables=false", "--mtu", "1400"]);
        cli.net.apply(&mut s).unwrap();
        let c = s.engine_config().unwrap();
        assert_eq!(c.bridge, "bt0");
        assert_eq!(c.bip.unwrap().to_string(), "10.44.0.1/24");
        assert_eq!(c.default_address_pools[0].size, 24);
        assert!(!c.iptables);
        assert_eq!(c.mtu, 1400);
        let bad = NetworkSettings {
            bip: Some("10.1.1.1".into()),
            ..Default::default()
        };
        assert!(bad
            .engine_config()
            .unwrap_err()
            .to_string()
            .contains("parse bip failed"));
    }
}

//! berth's NAT and forwarding rules: one nftables table per daemon, always
//! rewritten whole from the engine's state in one `nft -f` transaction, so
//! stale rules cannot survive a crash and `nft list table ip <name>` shows
//! everything berth does (`nft delete table ip <name>` undoes it).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;

use crate::error::{EngineError, Result};

/// A bridge network as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeRules {
    pub bridge: String,
    pub subnet: Ipv4Net,
    /// Containers reach other networks with the host's address.
    pub masquerade: bool,
    /// `--internal`: no traffic in or out of the bridge.
    pub internal: bool,
}

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRule {
    /// `tcp` or `udp`.
    pub proto: String,
    /// `None` for 0.0.0.0: every local address.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
    /// The container, named in a rule comment for whoever lists the table.
    pub container: String,
}

/// Everything berth's table holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub bridges: Vec<BridgeRules>,
    pub ports: Vec<PortRule>,
}

/// The table and how to reach nftables.
#[derive(Debug, Clone)]
pub struct Firewall {
    table: String,
    nft: Option<PathBuf>,
}

impl Firewall {
    /// `enabled` is `--iptables`; without it berth programs nothing.
    pub fn new(table: String, enabled: bool) -> Result<Firewall> {
        let nft = if enabled {
            Some(find_nft().ok_or_else(|| {
                EngineError::Internal(
                    "nft not found: install nftables, or start with --iptables=false".into(),
                )
            })?)
        } else {
            None
        };
        Ok(Firewall { table, nft })
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Replaces the table's contents with `rules` (blocking).
    pub fn apply(&self, rules: &Ruleset) -> Result<()> {
        let Some(nft) = &self.nft else {
            return Ok(());
        };
        run_nft(nft, &render(&self.table, rules))
    }

    /// Deletes the table (blocking); a missing table is fine.
    pub fn remove(&self) -> Result<()> {
        let Some(nft) = &self.nft else {
            return Ok(());
        };
        run_nft(
            nft,
            &format!("table ip {t}\ndelete table ip {t}\n", t = self.table),
        )
    }
}

fn find_nft() -> Option<PathBuf> {
    ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn run_nft(nft: &PathBuf, script: &str) -> Result<()> {
    let mut child = Command::new(nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| EngineError::io(format!("run {}", nft.display()), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| EngineError::io("write the nftables script", e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| EngineError::io(format!("run {}", nft.display()), e))?;
    if !out.status.success() {
        return Err(EngineError::Internal(format!(
            "nft failed: {}\n--- script ---\n{script}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The whole table as one nft script: created if missing, then deleted and
/// defined again, all in one transaction.
pub fn render(table: &str, rules: &Ruleset) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "table ip {table}\ndelete table ip {table}\ntable ip {table} {{"
    );
    // Published ports: DNAT whatever is addressed to a local address, from
    // outside (prerouting) and from the host itself (output).
    s.push_str("\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tfib daddr type local jump published\n\t}\n");
    s.push_str("\tchain output {\n\t\ttype nat hook output priority -100; policy accept;\n\t\tfib daddr type local jump published\n\t}\n");
    s.push_str("\tchain published {\n");
    for p in &rules.ports {
        let daddr = p
            .host_ip
            .map(|ip| format!("ip daddr {ip} "))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "\t\t{daddr}{proto} dport {hp} dnat to {cip}:{cp} comment \"{c}\"",
            proto = p.proto,
            hp = p.host_port,
            cip = p.container_ip,
            cp = p.container_port,
            c = p.container,
        );
    }
    s.push_str("\t}\n");
    s.push_str(
        "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n",
    );
    for b in &rules.bridges {
        // Loopback hairpin: 127.0.0.1:PORT from the host, DNATed onto the
        // bridge (route_localnet lets it leave lo's range), answers come back
        // to the bridge address.
        let _ = writeln!(
            s,
            "\t\tip saddr 127.0.0.0/8 oifname \"{}\" masquerade",
            b.bridge
        );
        if b.masquerade && !b.internal {
            let _ = writeln!(
                s,
                "\t\tip saddr {} oifname != \"{}\" masquerade",
                b.subnet, b.bridge
            );
        }
    }
    s.push_str("\t}\n");
    s.push_str("\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n");
    for b in rules.bridges.iter().filter(|b| b.internal) {
        let _ = writeln!(
            s,
            "\t\tiifname \"{br}\" oifname != \"{br}\" drop\n\t\toifname \"{br}\" iifname != \"{br}\" drop",
            br = b.bridge
        );
    }
    s.push_str("\t}\n}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_table() {
        let rules = Ruleset {
            bridges: vec![BridgeRules {
                bridge: "berth0".into(),
                subnet: "172.17.0.0/16".parse().unwrap(),
                masquerade: true,
                internal: false,
            }],
            ports: vec![PortRule {
                proto: "tcp".into(),
                host_ip: Some("127.0.0.1".parse().unwrap()),
                host_port: 18080,
                container_ip: "172.17.0.2".parse().unwrap(),
                container_port: 80,
                container: "abc".into(),
            }],
        };
        let s = render("berth", &rules);
        assert!(s.starts_with("table ip berth\ndelete table ip berth\n"));
        assert!(
            s.contains("ip daddr 127.0.0.1 tcp dport 18080 dnat to 172.17.0.2:80 comment \"abc\"")
        );
        assert!(s.contains("ip saddr 172.17.0.0/16 oifname != \"berth0\" masquerade"));
    }
}

//! Published ports: what `-p`/`-P` ask for (HostConfig.PortBindings,
//! PublishAllPorts with ExposedPorts), host ports chosen and held (a bound
//! socket per mapping keeps other programs off the port, as dockerd does),
//! and the shapes `inspect`, `docker port` and `docker ps` show.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::OwnedFd;

use bollard_stubs::models::{
    ContainerConfig, HostConfig, PortBinding, PortSummary, PortSummaryTypeEnum,
};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// One requested mapping, before a host port is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequest {
    pub proto: String,
    pub container_port: u16,
    pub host_ip: Ipv4Addr,
    /// First and last acceptable host port; `(0, 0)` for any.
    pub host_ports: (u16, u16),
}

/// One mapping in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub proto: String,
    pub container_port: u16,
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
}

/// `80/tcp` → (80, "tcp").
pub fn parse_port_key(key: &str) -> Result<(u16, String)> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let proto = if proto.is_empty() { "tcp" } else { proto };
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(EngineError::InvalidParameter(format!(
            "invalid proto: {proto}"
        )));
    }
    let port = port
        .split_once('-')
        .map_or(port, |(a, _)| a)
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| EngineError::InvalidParameter(format!("invalid port: {key}")))?;
    Ok((port, proto.to_string()))
}

fn parse_host_ports(s: &str) -> Result<(u16, u16)> {
    if s.is_empty() {
        return Ok((0, 0));
    }
    let bad =
        || EngineError::InvalidParameter(format!("error parsing HostPort value({s}):invalid port"));
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if b < a {
        return Err(bad());
    }
    Ok((a, b))
}

/// The mappings a container asks for, in a stable order.
pub fn requests(
    config: &ContainerConfig,
    host: &HostConfig,
    default_ip: Ipv4Addr,
) -> Result<Vec<PortRequest>> {
    let mut out = Vec::new();
    let bindings: BTreeMap<&String, &Option<Vec<PortBinding>>> =
        host.port_bindings.iter().flatten().collect();
    for (key, list) in &bindings {
        let (port, proto) = parse_port_key(key)?;
        let list = list.as_deref().unwrap_or_default();
        let empty = [PortBinding::default()];
        for b in if list.is_empty() { &empty[..] } else { list } {
            let ip = b.host_ip.as_deref().unwrap_or("");
            let host_ip = if ip.is_empty() {
                default_ip
            } else {
                match ip.parse::<std::net::IpAddr>() {
                    Ok(std::net::IpAddr::V4(v4)) => v4,
                    // berth has no IPv6 networking: `[::]:8080:80` binds are skipped.
                    Ok(std::net::IpAddr::V6(_)) => continue,
                    Err(_) => {
                        return Err(EngineError::InvalidParameter(format!(
                            "invalid IP address: {ip}"
                        )))
                    }
                }
            };
            out.push(PortRequest {
                proto: proto.clone(),
                container_port: port,
                host_ip,
                host_ports: parse_host_ports(b.host_port.as_deref().unwrap_or(""))?,
            });
        }
    }
    if host.publish_all_ports.unwrap_or(false) {
        for key in config.exposed_ports.iter().flatten() {
            let (port, proto) = parse_port_key(key)?;
            if out
                .iter()
                .any(|r| r.container_port == port && r.proto == proto)
            {
                continue;
            }
            out.push(PortRequest {
                proto,
                container_port: port,
                host_ip: default_ip,
                host_ports: (0, 0),
            });
        }
    }
    Ok(out)
}

/// The kernel's ephemeral port range, where `-P` and `-p :80` ports come from.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// Holds host ports for the daemon: which mapping owns which port, and the
/// sockets that keep them.
#[derive(Default)]
pub struct PortTable {
    /// (proto, host ip, port) → container ID.
    owners: HashMap<(String, Ipv4Addr, u16), String>,
    sockets: HashMap<String, Vec<OwnedFd>>,
}

impl PortTable {
    fn clashes(&self, proto: &str, ip: Ipv4Addr, port: u16) -> bool {
        self.owners.keys().any(|(p, i, n)| {
            p == proto && *n == port && (*i == ip || i.is_unspecified() || ip.is_unspecified())
        })
    }

    /// Chooses, binds and records host ports for `container`'s requests;
    /// all or nothing. `endpoint` names the endpoint in dockerd's message.
    pub fn reserve(&mut self, container: &str, reqs: &[PortRequest]) -> Result<Vec<PortMapping>> {
        let mut done = Vec::new();
        let result = (|| {
            for r in reqs {
                let m = self.reserve_one(container, r)?;
                done.push(m);
            }
            Ok(())
        })();
        if let Err(e) = result {
            self.release(container);
            return Err(e);
        }
        Ok(done)
    }

    fn reserve_one(&mut self, container: &str, r: &PortRequest) -> Result<PortMapping> {
        let (first, last) = if r.host_ports == (0, 0) {
            ephemeral_range()
        } else {
            r.host_ports
        };
        let single = first == last;
        let span = u32::from(last - first) + 1;
        let offset = if single {
            0
        } else {
            let mut b = [0u8; 4];
            let _ = getrandom::fill(&mut b);
            u32::from_le_bytes(b) % span
        };
        let mut last_err = None;
        for i in 0..span {
            let port = first + ((offset + i) % span) as u16;
            if self.clashes(&r.proto, r.host_ip, port) {
                last_err = Some(EngineError::Conflict(format!(
                    "Bind for {}:{port} failed: port is already allocated",
                    r.host_ip
                )));
                continue;
            }
            match bind(&r.proto, r.host_ip, port) {
                Ok(fd) => {
                    self.owners
                        .insert((r.proto.clone(), r.host_ip, port), container.to_string());
                    self.sockets
                        .entry(container.to_string())
                        .or_default()
                        .push(fd);
                    return Ok(PortMapping {
                        proto: r.proto.clone(),
                        container_port: r.container_port,
                        host_ip: r.host_ip,
                        host_port: port,
                    });
                }
                Err(e) => {
                    last_err = Some(EngineError::Internal(format!(
                        "failed to bind host port {}:{port}/{}: {}",
                        r.host_ip,
                        r.proto,
                        errno_text(&e)
                    )))
                }
            }
            if single {
                break;
            }
        }
        Err(last_err
            .unwrap_or_else(|| EngineError::Internal("no host port left to allocate".into())))
    }

    /// Takes back ports a restarted daemon finds in use by a live container.
    pub fn readopt(&mut self, container: &str, mappings: &[PortMapping]) {
        for m in mappings {
            self.owners.insert(
                (m.proto.clone(), m.host_ip, m.host_port),
                container.to_string(),
            );
            match bind(&m.proto, m.host_ip, m.host_port) {
                Ok(fd) => self
                    .sockets
                    .entry(container.to_string())
                    .or_default()
                    .push(fd),
                Err(e) => tracing::warn!(
                    "re-binding {}:{}/{} for {container}: {e}",
                    m.host_ip,
                    m.host_port,
                    m.proto
                ),
            }
        }
    }

    /// Frees a container's ports.
    pub fn release(&mut self, container: &str) {
        self.owners.retain(|_, owner| owner != container);
        self.sockets.remove(container);
    }
}

/// Go's wording of the common errno values.
fn errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EADDRINUSE) => "address already in use".into(),
        Some(libc::EADDRNOTAVAIL) => "cannot assign requested address".into(),
        Some(libc::EACCES) => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// A socket bound to the host port (TCP: bound, never listening), so no
/// other program can take it while the mapping lives.
fn bind(proto: &str, ip: Ipv4Addr, port: u16) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{
        bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
    };
    let addr = SockaddrIn::from(SocketAddrV4::new(ip, port));
    match proto {
        "udp" => {
            let s = UdpSocket::bind(SocketAddrV4::new(ip, port))?;
            Ok(OwnedFd::from(s))
        }
        _ => {
            let fd = socket(
                AddressFamily::Inet,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC,
                None,
            )?;
            setsockopt(&fd, sockopt::ReuseAddr, &true)?;
            bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr)?;
            // A listener would race the DNAT rule for connections to the
            // port; a bound socket only reserves it.
            Ok(fd)
        }
    }
}

/// `NetworkSettings.Ports` of a running container: every exposed or
/// published port, with its bindings or null.
pub fn port_map(
    config: &ContainerConfig,
    host: &HostConfig,
    mappings: &[PortMapping],
) -> HashMap<String, Option<Vec<PortBinding>>> {
    let mut map: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for key in config.exposed_ports.iter().flatten() {
        if let Ok((port, proto)) = parse_port_key(key) {
            map.entry(format!("{port}/{proto}")).or_insert(None);
        }
    }
    for key in host.port_bindings.iter().flatten().map(|(k, _)| k) {
        if let Ok((port, proto)) = parse_port_key(key) {
            map.entry(format!("{port}/{proto}")).or_insert(None);
        }
    }
    for m in mappings {
        map.entry(format!("{}/{}", m.container_port, m.proto))
            .or_insert(None)
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(m.host_ip.to_string()),
                host_port: Some(m.host_port.to_string()),
            });
    }
    map
}

/// `Ports` of `docker ps`: published ports with their host side, exposed
/// ones without.
pub fn summaries(config: &ContainerConfig, mappings: &[PortMapping]) -> Vec<PortSummary> {
    let typ = |p: &str| match p {
        "udp" => PortSummaryTypeEnum::UDP,
        "sctp" => PortSummaryTypeEnum::SCTP,
        _ => PortSummaryTypeEnum::TCP,
    };
    let mut out: Vec<PortSummary> = mappings
        .iter()
        .map(|m| PortSummary {
            ip: Some(m.host_ip.to_string()),
            private_port: m.container_port,
            public_port: Some(m.host_port),
            typ: Some(typ(&m.proto)),
        })
        .collect();
    for key in config.exposed_ports.iter().flatten() {
        if let Ok((port, proto)) = parse_port_key(key) {
            if !mappings
                .iter()
                .any(|m| m.container_port == port && m.proto == proto)
            {
                out.push(PortSummary {
                    ip: None,
                    private_port: port,
                    public_port: None,
                    typ: Some(typ(&proto)),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        let host = HostConfig {
            port_bindings: Some(HashMap::from([(
                "80/tcp".to_string(),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some("18080".into()),
                }]),
            )])),
            publish_all_ports: Some(true),
            ..Default::default()
        };
        let config = ContainerConfig {
            exposed_ports: Some(vec!["80/tcp".into(), "53/udp".into()]),
            ..Default::default()
        };
        let reqs = requests(&config, &host, Ipv4Addr::UNSPECIFIED).unwrap();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].host_ports, (18080, 18080));
        assert_eq!(reqs[1].proto, "udp");
        assert_eq!(reqs[1].host_ports, (0, 0));
        assert!(parse_port_key("x/tcp").is_err());
        assert!(parse_port_key("80/icmp").is_err());
    }

    #[test]
    fn reservations_clash_like_dockerd() {
        let mut t = PortTable::default();
        let req = PortRequest {
            proto: "tcp".into(),
            container_port: 80,
            host_ip: "127.0.0.1".parse().unwrap(),
            host_ports: (0, 0),
        };
        let got = t.reserve("a", std::slice::from_ref(&req)).unwrap();
        let port = got[0].host_port;
        let again = PortRequest {
            host_ports: (port, port),
            ..req.clone()
        };
        let err = t
            .reserve("b", std::slice::from_ref(&again))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!("Bind for 127.0.0.1:{port} failed: port is already allocated")
        );
        t.release("a");
        assert!(t.reserve("b", &[again]).is_ok());
    }
}

//! What berth persists about networking, under `<data-root>/network/`:
//! `ids.json` (the pre-defined networks' identities), `networks/<id>.json`
//! (user-defined bridge networks) and `containers/<id>.json` (a container's
//! endpoints, and while it runs its sandbox: namespace, addresses, ports).
//! Allocated addresses are never stored apart: they are read off the
//! running containers' endpoints, so they cannot leak or double up.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::ports::PortMapping;
use crate::error::{EngineError, Result};

/// A bridge network (the default `bridge` one is rebuilt from the daemon's
/// flags at every start and never written).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    pub created: DateTime<Utc>,
    /// The Linux bridge.
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// Where automatic addresses come from (`--ip-range`).
    pub ip_range: Option<Ipv4Net>,
    #[serde(default)]
    pub aux_addresses: BTreeMap<String, Ipv4Addr>,
    /// Whether the subnet (and so static `--ip`s) was configured by the user.
    pub user_subnet: bool,
    #[serde(default)]
    pub user_gateway: bool,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default)]
    pub ingress: bool,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub ipam_options: BTreeMap<String, String>,
    /// berth made the Linux bridge (and so may delete it).
    pub owns_bridge: bool,
    /// The default `bridge` network (no embedded DNS, no aliases).
    #[serde(default)]
    pub default_bridge: bool,
}

/// A container's membership of one network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Endpoint {
    pub network_id: String,
    /// Order of joining: eth0 is the first.
    pub seq: u32,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub links: Vec<String>,
    /// `--ip`.
    pub static_ip: Option<Ipv4Addr>,
    /// `--mac-address`.
    pub static_mac: Option<String>,
    #[serde(default)]
    pub driver_opts: BTreeMap<String, String>,
    /// Set while the container runs.
    pub active: Option<ActiveEndpoint>,
}

/// An endpoint plumbed into a running container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ActiveEndpoint {
    pub endpoint_id: String,
    pub ip: Ipv4Addr,
    pub mac: String,
    /// The interface inside the container (`eth0`, ...).
    pub ifname: String,
    /// The veth end on the host's bridge.
    pub host_veth: String,
    /// What the embedded DNS answers with this address: the container's
    /// name, its aliases here, short ID and hostname.
    #[serde(default)]
    pub dns_names: Vec<String>,
}

/// The network namespace of a running container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sandbox {
    pub id: String,
    pub netns: PathBuf,
    #[serde(default)]
    pub ports: Vec<PortMapping>,
}

/// Everything networking keeps about one container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Attachments {
    pub endpoints: BTreeMap<String, Endpoint>,
    pub sandbox: Option<Sandbox>,
}

impl Attachments {
    /// Endpoints in joining order.
    pub fn ordered(&self) -> Vec<&Endpoint> {
        let mut v: Vec<&Endpoint> = self.endpoints.values().collect();
        v.sort_by_key(|e| e.seq);
        v
    }

    /// The next joining sequence number.
    pub fn next_seq(&self) -> u32 {
        self.endpoints
            .values()
            .map(|e| e.seq + 1)
            .max()
            .unwrap_or(0)
    }
}

/// The on-disk layout.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

fn read_dir_json<T: for<'de> Deserialize<'de>>(dir: &Path) -> Result<Vec<(String, T)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(EngineError::io(format!("read {}", dir.display()), e)),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        match std::fs::read(&path).map(|d| serde_json::from_slice::<T>(&d)) {
            Ok(Ok(v)) => out.push((stem.to_string(), v)),
            Ok(Err(e)) => tracing::warn!("skipping corrupt {}: {e}", path.display()),
            Err(e) => tracing::warn!("skipping {}: {e}", path.display()),
        }
    }
    Ok(out)
}

impl Store {
    /// `<data-root>/network`.
    pub fn new(data_root: &Path) -> Store {
        Store {
            dir: data_root.join("network"),
        }
    }

    /// `<data-root>/network`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn networks_dir(&self) -> PathBuf {
        self.dir.join("networks")
    }

    fn containers_dir(&self) -> PathBuf {
        self.dir.join("containers")
    }

    pub fn load_networks(&self) -> Result<Vec<NetworkRecord>> {
        Ok(read_dir_json(&self.networks_dir())?
            .into_iter()
            .map(|(_, n)| n)
            .collect())
    }

    pub fn load_attachments(&self) -> Result<Vec<(String, Attachments)>> {
        read_dir_json(&self.containers_dir())
    }

    pub fn save_network(&self, n: &NetworkRecord) -> Result<()> {
        let dir = self.networks_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| EngineError::io(format!("create {}", dir.display()), e))?;
        berth_storage::atomic::write_json(&dir.join(format!("{}.json", n.id)), n)?;
        Ok(())
    }

    pub fn remove_network(&self, id: &str) -> Result<()> {
        remove_file(&self.networks_dir().join(format!("{id}.json")))
    }

    pub fn save_attachments(&self, container: &str, a: &Attachments) -> Result<()> {
        let dir = self.containers_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| EngineError::io(format!("create {}", dir.display()), e))?;
        berth_storage::atomic::write_json(&dir.join(format!("{container}.json")), a)?;
        Ok(())
    }

    pub fn remove_attachments(&self, container: &str) -> Result<()> {
        remove_file(&self.containers_dir().join(format!("{container}.json")))
    }
}

fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EngineError::io(format!("remove {}", path.display()), e)),
    }
}

//! Networks: dockerd's pre-defined `bridge`, `host` and `none`, and
//! user-defined bridge networks. This module holds the engine's networking
//! state (networks, container endpoints, held ports, DNS servers) and the
//! host-side set-up; `api` serves the /networks endpoints, `sandbox` plumbs
//! containers in and out. Without a [`NetworkConfig`] (engine unit tests)
//! there is no bridge networking and containers get loopback only.

mod api;
mod bridge;
pub mod config;
mod dns;
mod etc_files;
mod firewall;
mod ipam;
mod netlink;
mod netns;
mod ports;
mod sandbox;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

pub use config::{AddressPool, NetworkConfig};

use crate::error::{EngineError, Result};
use firewall::{BridgeRules, Firewall, PortRule, Ruleset};
use store::{Attachments, NetworkRecord, Store};

/// The pre-defined networks, in the order `docker network ls` lists them
/// once sorted by the CLI: (name, driver).
const PREDEFINED: [(&str, &str); 3] = [("bridge", "bridge"), ("host", "host"), ("none", "null")];

fn is_predefined(name: &str) -> bool {
    PREDEFINED.iter().any(|(n, _)| *n == name)
}

/// What berth keeps about one pre-defined network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Identity {
    id: String,
    created: DateTime<Utc>,
}

/// The pre-defined networks' stable identities (`network/ids.json`).
fn open_identities(data_root: &Path) -> Result<BTreeMap<String, Identity>> {
    let dir = data_root.join("network");
    let path = dir.join("ids.json");
    let mut ids: BTreeMap<String, Identity> = match std::fs::read(&path) {
        Ok(data) => serde_json::from_slice(&data)
            .map_err(|e| EngineError::Internal(format!("corrupt {}: {e}", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(EngineError::io(format!("read {}", path.display()), e)),
    };
    let mut changed = false;
    for (name, _) in PREDEFINED {
        ids.entry(name.to_string()).or_insert_with(|| {
            changed = true;
            Identity {
                id: berth_storage::random_id(),
                created: Utc::now(),
            }
        });
    }
    if changed {
        std::fs::create_dir_all(&dir)
            .map_err(|e| EngineError::io(format!("create {}", dir.display()), e))?;
        berth_storage::atomic::write_json(&path, &ids)?;
    }
    Ok(ids)
}

/// Whether the default bridge was made by berth (and so is berth's to
/// delete), kept across restarts in `network/default-bridge.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct DefaultBridgeMark {
    name: String,
    owned: bool,
}

/// The mutable networking state, behind one lock that is never held
/// across an await or a kernel round trip longer than an allocation.
#[derive(Default)]
pub(crate) struct State {
    /// Bridge networks by ID, the default one included.
    networks: BTreeMap<String, NetworkRecord>,
    /// Containers' endpoints and sandboxes by container ID.
    containers: HashMap<String, Attachments>,
    ports: ports::PortTable,
    dns: HashMap<String, dns::DnsServer>,
}

impl State {
    /// Addresses in use on a network.
    fn taken(&self, network: &str) -> std::collections::BTreeSet<Ipv4Addr> {
        self.containers
            .values()
            .filter_map(|a| a.endpoints.get(network))
            .filter_map(|e| e.active.as_ref().map(|x| x.ip))
            .collect()
    }

    fn ruleset(&self) -> Ruleset {
        let bridges = self
            .networks
            .values()
            .map(|n| BridgeRules {
                bridge: n.bridge.clone(),
                subnet: n.subnet,
                masquerade: n
                    .options
                    .get("com.docker.network.bridge.enable_ip_masquerade")
                    .is_none_or(|v| v != "false"),
                internal: n.internal,
            })
            .collect();
        let mut ports = Vec::new();
        for (cid, a) in &self.containers {
            let Some(sb) = &a.sandbox else { continue };
            let Some(first) = a
                .ordered()
                .into_iter()
                .find_map(|e| e.active.as_ref().map(|x| x.ip))
            else {
                continue;
            };
            for m in &sb.ports {
                ports.push(PortRule {
                    proto: m.proto.clone(),
                    host_ip: (!m.host_ip.is_unspecified()).then_some(m.host_ip),
                    host_port: m.host_port,
                    container_ip: first,
                    container_port: m.container_port,
                    container: cid[..12.min(cid.len())].to_string(),
                });
            }
        }
        ports.sort_by(|a, b| (a.host_port, &a.proto).cmp(&(b.host_port, &b.proto)));
        Ruleset { bridges, ports }
    }
}

/// The engine's networking.
pub struct Networking {
    ids: BTreeMap<String, Identity>,
    /// `None`: no bridge networking at all.
    config: Option<NetworkConfig>,
    store: Store,
    /// `<exec-root>/netns`: where containers' namespaces are pinned.
    netns_dir: PathBuf,
    firewall: Option<Firewall>,
    state: Arc<Mutex<State>>,
    /// Serializes network create/remove/connect/disconnect.
    ops: tokio::sync::Mutex<()>,
}

impl Networking {
    /// Loads what was persisted and, with a configuration, sets the host up:
    /// the default bridge, user networks' bridges, forwarding, the firewall
    /// table (blocking). Containers' sandboxes are re-adopted or cleaned
    /// later, once containers are restored.
    pub fn open(
        data_root: &Path,
        exec_root: &Path,
        config: Option<NetworkConfig>,
    ) -> Result<Networking> {
        let ids = open_identities(data_root)?;
        let store = Store::new(data_root);
        let mut state = State::default();
        for (cid, a) in store.load_attachments()? {
            state.containers.insert(cid, a);
        }
        let firewall = match &config {
            Some(c) => Some(Firewall::new(c.firewall_table(), c.iptables)?),
            None => None,
        };
        let net = Networking {
            ids,
            config,
            store,
            netns_dir: exec_root.join("netns"),
            firewall,
            state: Arc::new(Mutex::new(State::default())),
            ops: tokio::sync::Mutex::new(()),
        };
        let Some(config) = net.config.clone() else {
            *net.lock() = state;
            return Ok(net);
        };
        if config.ip_forward {
            bridge::enable_ip_forward();
        }
        let user = net.store.load_networks()?;
        {
            let _host = bridge::HostLock::take()?;
            for n in &user {
                match bridge::ensure(&n.bridge, n.gateway, n.subnet, config.mtu) {
                    Ok(created) if created && !n.owns_bridge => {
                        tracing::info!("re-created bridge {} of network {}", n.bridge, n.name)
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("bridge of network {}: {e}", n.name),
                }
                state.networks.insert(n.id.clone(), n.clone());
            }
            if !config.bridge_disabled() {
                let taken: Vec<Ipv4Net> = user.iter().map(|n| n.subnet).collect();
                let default = net.default_bridge(&config, &taken)?;
                state.networks.insert(default.id.clone(), default);
            }
        }
        *net.lock() = state;
        net.sync_firewall()?;
        Ok(net)
    }

    /// The default `bridge` network from the flags and the bridge as found.
    fn default_bridge(&self, config: &NetworkConfig, taken: &[Ipv4Net]) -> Result<NetworkRecord> {
        let mark_path = self.store_dir().join("default-bridge.json");
        let mark: Option<DefaultBridgeMark> = std::fs::read(&mark_path)
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok());
        let existing = bridge::existing(&config.bridge)?;
        let found = existing.as_ref().and_then(|e| e.addresses.first().copied());
        let addr = match (config.bip, found) {
            (Some(bip), _) => bip,
            (None, Some(a)) => a,
            (None, None) => {
                let subnet = bridge::choose_subnet(&config.pools(), taken)?;
                let gw = subnet.hosts().next().unwrap_or(subnet.addr());
                Ipv4Net::new(gw, subnet.prefix_len())
                    .map_err(|e| EngineError::Internal(e.to_string()))?
            }
        };
        let subnet = addr.trunc();
        let created = bridge::ensure(&config.bridge, addr.addr(), subnet, config.mtu)?;
        let owned = created
            || mark
                .as_ref()
                .is_some_and(|m| m.name == config.bridge && m.owned);
        std::fs::create_dir_all(self.store_dir())
            .map_err(|e| EngineError::io("create the network directory", e))?;
        berth_storage::atomic::write_json(
            &mark_path,
            &DefaultBridgeMark {
                name: config.bridge.clone(),
                owned,
            },
        )?;
        let ident = &self.ids["bridge"];
        let options = BTreeMap::from([
            (
                "com.docker.network.bridge.default_bridge".into(),
                "true".into(),
            ),
            ("com.docker.network.bridge.enable_icc".into(), "true".into()),
            (
                "com.docker.network.bridge.enable_ip_masquerade".into(),
                config.ip_masq.to_string(),
            ),
            (
                "com.docker.network.bridge.host_binding_ipv4".into(),
                config.default_bind_ip.to_string(),
            ),
            (
                "com.docker.network.bridge.name".into(),
                config.bridge.clone(),
            ),
            (
                "com.docker.network.driver.mtu".into(),
                config.mtu.to_string(),
            ),
        ]);
        Ok(NetworkRecord {
            id: ident.id.clone(),
            name: "bridge".into(),
            created: ident.created,
            bridge: config.bridge.clone(),
            subnet,
            gateway: addr.addr(),
            ip_range: config.fixed_cidr,
            aux_addresses: BTreeMap::new(),
            user_subnet: config.bip.is_some(),
            user_gateway: false,
            internal: false,
            attachable: false,
            ingress: false,
            options,
            labels: BTreeMap::new(),
            ipam_options: BTreeMap::new(),
            owns_bridge: owned,
            default_bridge: true,
        })
    }

    fn store_dir(&self) -> PathBuf {
        self.store.dir().to_path_buf()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether bridge networking is on.
    pub(crate) fn enabled(&self) -> bool {
        self.config.is_some()
    }

    /// Rewrites berth's firewall table from the state (blocking).
    fn sync_firewall(&self) -> Result<()> {
        let Some(fw) = &self.firewall else {
            return Ok(());
        };
        let rules = self.lock().ruleset();
        fw.apply(&rules)
    }

    /// Daemon shutdown: with no container running on a bridge, berth's
    /// bridges and firewall table go (the next start makes them again);
    /// otherwise everything stays for live restore.
    pub fn shutdown(&self) {
        let (busy, bridges) = {
            let mut st = self.lock();
            st.dns.clear();
            // Pins are mounts; like the storage driver's, they go at shutdown.
            // The containers' processes keep their namespaces alive and the
            // next start pins them again.
            for a in st.containers.values() {
                if let Some(sb) = &a.sandbox {
                    netns::unpin(&sb.netns);
                }
            }
            let busy = st.containers.values().any(|a| a.sandbox.is_some());
            let bridges: Vec<String> = st
                .networks
                .values()
                .filter(|n| n.owns_bridge)
                .map(|n| n.bridge.clone())
                .collect();
            (busy, bridges)
        };
        if busy || self.config.is_none() {
            return;
        }
        for b in bridges {
            if let Err(e) = bridge::delete(&b) {
                tracing::warn!("removing bridge {b}: {e}");
            }
        }
        if let Some(fw) = &self.firewall {
            if let Err(e) = fw.remove() {
                tracing::warn!("removing nftables table {}: {e}", fw.table());
            }
        }
    }

    /// The pinned namespace of a container.
    fn netns_path(&self, container: &str) -> PathBuf {
        self.netns_dir.join(container)
    }
}

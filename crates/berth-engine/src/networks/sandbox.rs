//! Containers on bridge networks: the endpoints a container asks for at
//! create, its sandbox at start (a pinned namespace, a veth pair per
//! network, addresses, default route, /etc files, published ports, the
//! embedded DNS server), tear-down at exit, live connect/disconnect, the
//! shapes inspect shows, and re-adoption or cleanup after a restart.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use bollard_stubs::models::{
    EndpointIpamConfig, EndpointSettings, HostConfig, NetworkInspect, NetworkSettings,
    NetworkingConfig, PortSummary,
};
use ipnet::Ipv4Net;
use sha2::{Digest, Sha256};

use super::dns::{self, Lookup};
use super::etc_files::{self, DnsOverrides};
use super::ipam::Subnet;
use super::netlink::Netlink;
use super::store::{ActiveEndpoint, Attachments, Endpoint, NetworkRecord, Sandbox};
use super::{netns, ports, State};
use crate::containers::record::{Container, ContainerPaths, Status};
use crate::containers::store::ContainerHandle;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::runtime::spec::NetworkMode;

fn internal(what: &str, e: std::io::Error) -> EngineError {
    EngineError::Internal(format!("{what}: {e}"))
}

/// The network a container's mode names: `None` for host, none and
/// another container's namespace.
fn mode_network(host: &HostConfig) -> Option<String> {
    match host.network_mode.as_deref().unwrap_or("") {
        "" | "default" => Some("bridge".into()),
        "host" | "none" => None,
        m if m.starts_with("container:") => None,
        m => Some(m.to_string()),
    }
}

/// The host end of a container's veth on one network: stable, so a
/// restarted daemon knows it.
fn veth_name(container: &str, network: &str) -> String {
    let digest = Sha256::digest(format!("{container}/{network}").as_bytes());
    format!("vb{}", &hex::encode(digest)[..11])
}

/// dockerd's classic MAC: 02:42 and the IPv4 address.
fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).ok())
        .collect::<Option<_>>()?;
    parts.try_into().ok()
}

fn subnet_of(n: &NetworkRecord) -> Subnet {
    Subnet {
        subnet: n.subnet,
        range: n.ip_range.unwrap_or(n.subnet),
        gateway: n.gateway,
        reserved: n.aux_addresses.values().copied().collect(),
    }
}

/// dockerd's `buildEndpointDNSNames`.
fn dns_names(c: &Container, aliases: &[String]) -> Vec<String> {
    let mut names = vec![c.short_name().to_string()];
    names.extend(aliases.iter().cloned());
    names.push(c.id[..12.min(c.id.len())].to_string());
    if let Some(h) = c.config.hostname.as_deref().filter(|h| !h.is_empty()) {
        names.push(h.to_string());
    }
    let mut seen = HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// Stands in for a network that does not exist yet (no address checks).
fn placeholder_network() -> NetworkRecord {
    NetworkRecord {
        id: String::new(),
        name: String::new(),
        created: chrono::Utc::now(),
        bridge: String::new(),
        subnet: "0.0.0.0/0".parse().expect("constant"),
        gateway: std::net::Ipv4Addr::UNSPECIFIED,
        ip_range: None,
        aux_addresses: Default::default(),
        user_subnet: false,
        user_gateway: false,
        internal: false,
        attachable: false,
        ingress: false,
        options: Default::default(),
        labels: Default::default(),
        ipam_options: Default::default(),
        owns_bridge: false,
        default_bridge: false,
    }
}

/// An endpoint from the API's settings, checked as dockerd checks them.
fn endpoint_from(
    rec: &NetworkRecord,
    settings: Option<&EndpointSettings>,
    seq: u32,
) -> Result<Endpoint> {
    let mut errs = Vec::new();
    let mut ep = Endpoint {
        network_id: rec.id.clone(),
        seq,
        ..Default::default()
    };
    if let Some(s) = settings {
        ep.aliases = s.aliases.clone().unwrap_or_default();
        ep.links = s.links.clone().unwrap_or_default();
        ep.static_mac = s.mac_address.clone().filter(|m| !m.is_empty());
        ep.driver_opts = s
            .driver_opts
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let wanted = s
            .ipam_config
            .as_ref()
            .and_then(|c| c.ipv4_address.clone())
            .filter(|a| !a.is_empty());
        if let Some(text) = wanted {
            match text.parse::<Ipv4Addr>() {
                Ok(ip) if !ip.is_unspecified() => ep.static_ip = Some(ip),
                _ => errs.push(format!("invalid IPv4 address: {text}")),
            }
        }
        if let Some(mac) = &ep.static_mac {
            if parse_mac(mac).is_none() {
                errs.push(format!("invalid MAC address: {mac}"));
            }
        }
    }
    if rec.default_bridge {
        if ep.static_ip.is_some() {
            errs.push(
                "user-specified IP address is supported on user-defined networks only".into(),
            );
        }
        if !ep.aliases.is_empty() {
            errs.push("network-scoped aliases are only supported for user-defined networks".into());
        }
    }
    if let Some(ip) = ep.static_ip {
        if !rec.subnet.contains(&ip) {
            errs.push(format!("no configured subnet contains IP address {ip}"));
        }
    }
    if !errs.is_empty() {
        return Err(EngineError::InvalidParameter(format!(
            "invalid endpoint settings:\n{}",
            errs.join("\n")
        )));
    }
    Ok(ep)
}

/// The embedded DNS's view for one container: names of containers that
/// share a user-defined network with it.
fn dns_lookup(state: Weak<std::sync::Mutex<State>>, container: String) -> Lookup {
    Arc::new(move |name: &str| {
        let state = state.upgrade()?;
        let st = state.lock().unwrap_or_else(|p| p.into_inner());
        let mine = st.containers.get(&container)?;
        let nets: Vec<&String> = mine
            .endpoints
            .iter()
            .filter(|(id, e)| {
                e.active.is_some() && st.networks.get(*id).is_some_and(|n| !n.default_bridge)
            })
            .map(|(id, _)| id)
            .collect();
        let mut ips = Vec::new();
        for other in st.containers.values() {
            for nid in &nets {
                if let Some(act) = other.endpoints.get(*nid).and_then(|e| e.active.as_ref()) {
                    if act.dns_names.iter().any(|n| n.eq_ignore_ascii_case(name))
                        && !ips.contains(&act.ip)
                    {
                        ips.push(act.ip);
                    }
                }
            }
        }
        (!ips.is_empty()).then_some(ips)
    })
}

impl Engine {
    /// At create: the endpoints the container's network mode and
    /// NetworkingConfig ask for, validated (404 for an unknown network,
    /// dockerd's endpoint checks) before anything is made.
    pub(crate) fn plan_networks(
        &self,
        host: &HostConfig,
        networking: Option<&NetworkingConfig>,
    ) -> Result<Attachments> {
        let mut a = Attachments::default();
        let Some(config) = &self.networks.config else {
            return Ok(a);
        };
        let Some(mode_net) = mode_network(host) else {
            return Ok(a);
        };
        if mode_net == "bridge" && config.bridge_disabled() {
            return Ok(a);
        }
        let settings: HashMap<String, EndpointSettings> = networking
            .and_then(|n| n.endpoints_config.clone())
            .unwrap_or_default();
        // dockerd lets a container name a network that does not exist yet:
        // the start fails if it still does not.
        let known = |key: &str| match self.find_bridge_network(key) {
            Ok(r) => Ok(Some(r)),
            Err(EngineError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        };
        let checked =
            |key: &str, rec: &Option<NetworkRecord>, s: Option<&EndpointSettings>, seq| {
                let placeholder = NetworkRecord {
                    id: key.to_string(),
                    name: key.to_string(),
                    ..placeholder_network()
                };
                endpoint_from(rec.as_ref().unwrap_or(&placeholder), s, seq).map_err(|e| {
                    EngineError::InvalidParameter(format!("invalid config for network {key}: {e}"))
                })
            };
        let rec = known(&mode_net)?;
        let mode_id = rec.as_ref().map_or(mode_net.clone(), |r| r.id.clone());
        let is_mode = |k: &str| {
            k == mode_net
                || k == "default"
                || rec.as_ref().is_some_and(|r| k == r.name || k == r.id)
        };
        let own = settings.iter().find(|(k, _)| is_mode(k)).map(|(_, v)| v);
        a.endpoints
            .insert(mode_id, checked(&mode_net, &rec, own, 0)?);
        let mut others: Vec<(&String, &EndpointSettings)> =
            settings.iter().filter(|(k, _)| !is_mode(k)).collect();
        others.sort_by(|x, y| x.0.cmp(y.0));
        for (key, s) in others {
            let other = known(key)?;
            let seq = a.next_seq();
            let id = other.as_ref().map_or(key.clone(), |r| r.id.clone());
            a.endpoints.insert(id, checked(key, &other, Some(s), seq)?);
        }
        Ok(a)
    }

    /// At create, once the container exists: records its endpoints.
    pub(crate) fn adopt_networks(&self, container: &str, a: Attachments) -> Result<()> {
        if a.endpoints.is_empty() {
            return Ok(());
        }
        self.networks.store.save_attachments(container, &a)?;
        self.networks
            .lock()
            .containers
            .insert(container.to_string(), a);
        Ok(())
    }

    /// At removal: tears down what is left and forgets the container.
    pub(crate) async fn forget_networks(self: &Arc<Self>, container: &str) {
        let engine = Arc::clone(self);
        let id = container.to_string();
        let _ = tokio::task::spawn_blocking(move || {
            engine.sandbox_down_blocking(&id);
            engine.networks.lock().containers.remove(&id);
            if let Err(e) = engine.networks.store.remove_attachments(&id) {
                tracing::warn!("forgetting the networks of {id}: {e}");
            }
        })
        .await;
    }

    /// At start, before the task is created: the namespace the container
    /// joins. Bridge-networked containers get their sandbox made here;
    /// other modes pass through untouched.
    pub(crate) async fn sandbox_up(
        self: &Arc<Self>,
        c: &Container,
        mode: NetworkMode,
    ) -> Result<NetworkMode> {
        if !self.wants_sandbox(c, &mode) {
            return Ok(mode);
        }
        let path = self.sandbox_up_with(c, None).await?;
        Ok(NetworkMode::Path(path))
    }

    /// Whether a container started in `mode` is plumbed into a bridge.
    pub(crate) fn wants_sandbox(&self, c: &Container, mode: &NetworkMode) -> bool {
        *mode == NetworkMode::Private
            && self.networks.enabled()
            && self
                .networks
                .lock()
                .containers
                .get(&c.id)
                .is_some_and(|a| !a.endpoints.is_empty())
    }

    /// After the task is created, before it starts: plumbs the network
    /// namespace runc made for process `pid` (a `--userns-remap`
    /// container's, which its user namespace must own; see
    /// [`netns::adopt`]). Call only where [`Engine::wants_sandbox`] holds.
    pub(crate) async fn sandbox_adopt(self: &Arc<Self>, c: &Container, pid: u32) -> Result<()> {
        self.sandbox_up_with(c, Some(pid)).await.map(|_| ())
    }

    async fn sandbox_up_with(
        self: &Arc<Self>,
        c: &Container,
        adopt: Option<u32>,
    ) -> Result<PathBuf> {
        let engine = Arc::clone(self);
        let c2 = c.clone();
        let (path, joined) =
            tokio::task::spawn_blocking(move || engine.sandbox_up_blocking(&c2, adopt))
                .await
                .map_err(|e| EngineError::Internal(e.to_string()))??;
        for n in &joined {
            self.publish_bridge_event(n, "connect", &c.id);
        }
        Ok(path)
    }

    fn sandbox_up_blocking(
        &self,
        c: &Container,
        adopt: Option<u32>,
    ) -> Result<(PathBuf, Vec<NetworkRecord>)> {
        let net = &self.networks;
        let config = net.config.clone().expect("networking is on");
        // A sandbox left from an earlier run (a crash mid-start) goes first.
        self.sandbox_down_blocking(&c.id);
        let reqs = ports::requests(&c.config, &c.host_config, config.default_bind_ip)?;
        let path = net.netns_path(&c.id);
        let (plan, snapshot) = {
            let mut st = net.lock();
            // Endpoints made for a network that did not exist yet are keyed
            // by its name: find it now, or fail as dockerd does.
            let keys: Vec<String> = st
                .containers
                .get(&c.id)
                .map(|a| a.endpoints.keys().cloned().collect())
                .unwrap_or_default();
            for key in keys {
                if st.networks.contains_key(&key) {
                    continue;
                }
                let found = st
                    .networks
                    .values()
                    .find(|n| n.name == key)
                    .map(|n| n.id.clone());
                let Some(id) = found else {
                    return Err(EngineError::NotFound(format!("network {key} not found")));
                };
                if let Some(a) = st.containers.get_mut(&c.id) {
                    if let Some(mut ep) = a.endpoints.remove(&key) {
                        ep.network_id = id.clone();
                        a.endpoints.insert(id, ep);
                    }
                }
            }
            let Some(a) = st.containers.get(&c.id).cloned() else {
                return Err(EngineError::Internal("container has no endpoints".into()));
            };
            let mut plan: Vec<(NetworkRecord, ActiveEndpoint)> = Vec::new();
            for (i, e) in a.ordered().into_iter().enumerate() {
                let rec = st.networks.get(&e.network_id).cloned().ok_or_else(|| {
                    EngineError::NotFound(format!("network {} not found", e.network_id))
                })?;
                let ip = subnet_of(&rec).allocate(&st.taken(&rec.id), e.static_ip)?;
                let mac = e
                    .static_mac
                    .as_deref()
                    .and_then(parse_mac)
                    .unwrap_or_else(|| mac_for(ip));
                plan.push((
                    rec.clone(),
                    ActiveEndpoint {
                        endpoint_id: berth_storage::random_id(),
                        ip,
                        mac: mac_text(mac),
                        ifname: format!("eth{i}"),
                        host_veth: veth_name(&c.id, &rec.id),
                        dns_names: dns_names(c, &e.aliases),
                    },
                ));
                // Taken at once, so the next endpoint or container sees it.
                if let Some(ep) = st
                    .containers
                    .get_mut(&c.id)
                    .and_then(|a| a.endpoints.get_mut(&rec.id))
                {
                    ep.active = plan.last().map(|p| p.1.clone());
                }
            }
            let mappings = match st.ports.reserve(&c.id, &reqs) {
                Ok(m) => m,
                Err(e) => {
                    if let Some(a) = st.containers.get_mut(&c.id) {
                        for ep in a.endpoints.values_mut() {
                            ep.active = None;
                        }
                    }
                    let (rec, act) = &plan[0];
                    let _ = rec;
                    let msg = match &e {
                        EngineError::Conflict(m) | EngineError::Internal(m) => m.clone(),
                        other => other.to_string(),
                    };
                    return Err(EngineError::Internal(format!(
                        "failed to set up container networking: driver failed programming external connectivity on endpoint {} ({}): {msg}",
                        c.short_name(),
                        act.endpoint_id
                    )));
                }
            };
            let a = st.containers.get_mut(&c.id).expect("checked above");
            a.sandbox = Some(Sandbox {
                id: berth_storage::random_id(),
                netns: path.clone(),
                ports: mappings,
            });
            (plan, a.clone())
        };
        let result = (|| -> Result<()> {
            // Recorded before the kernel work, so a crash mid-way is undone
            // at the next start.
            net.store.save_attachments(&c.id, &snapshot)?;
            match adopt {
                Some(pid) => netns::adopt(&path, pid),
                None => netns::create(&path),
            }
            .map_err(|e| internal("create the network namespace", e))?;
            let ns = File::open(&path).map_err(|e| internal("open the network namespace", e))?;
            let mut host = Netlink::open().map_err(|e| internal("netlink", e))?;
            let mut default_route = true;
            for (rec, act) in &plan {
                self.plumb(
                    &mut host,
                    &ns,
                    &path,
                    rec,
                    act,
                    default_route && !rec.internal,
                    config.mtu,
                )?;
                default_route &= rec.internal;
            }
            self.write_etc_files(c, &plan)?;
            net.sync_firewall()?;
            if plan.iter().any(|(r, _)| !r.default_bridge) {
                let server =
                    dns::start(&path, dns_lookup(Arc::downgrade(&net.state), c.id.clone()))
                        .map_err(|e| internal("start the embedded DNS server", e))?;
                net.lock().dns.insert(c.id.clone(), server);
            }
            Ok(())
        })();
        if let Err(e) = result {
            self.sandbox_down_blocking(&c.id);
            let msg = e.to_string();
            return Err(EngineError::Internal(
                if msg.starts_with("failed to set up container networking") {
                    msg
                } else {
                    format!("failed to set up container networking: {msg}")
                },
            ));
        }
        Ok((path, plan.into_iter().map(|(r, _)| r).collect()))
    }

    /// One veth pair: host end on the network's bridge, container end
    /// named `act.ifname` in the namespace with its address (and the
    /// default route through this network's gateway when asked).
    #[allow(clippy::too_many_arguments)]
    fn plumb(
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

    /// /etc/hosts and /etc/resolv.conf for a bridge-networked container.
    fn write_etc_files(
        &self,
        c: &Container,
        plan: &[(NetworkRecord, ActiveEndpoint)],
    ) -> Result<()> {
        let paths = ContainerPaths::new(&self.config.data_root, &c.id);
        let (first_rec, first) = &plan[0];
        let mut extra = etc_files::extra_hosts(
            c.host_config.extra_hosts.as_deref().unwrap_or_default(),
            Some(first_rec.gateway),
        )?;
        // Legacy links on the default bridge: the linked container's address.
        for link in c.host_config.links.iter().flatten() {
            let (target, alias) = link.split_once(':').unwrap_or((link, link));
            let target = target.trim_start_matches('/');
            let alias = alias.rsplit('/').next().unwrap_or(alias);
            if let Ok(h) = self.containers.resolve(target) {
                let t = h.snapshot();
                let ip = self.networks.lock().containers.get(&t.id).and_then(|a| {
                    a.endpoints
                        .get(&first_rec.id)
                        .and_then(|e| e.active.as_ref())
                        .map(|x| x.ip)
                });
                if let Some(ip) = ip {
                    let names = if alias == t.short_name() {
                        alias.to_string()
                    } else {
                        format!("{alias} {}", t.short_name())
                    };
                    extra.push((format!("{names} {}", &t.id[..12]), ip.to_string()));
                }
            }
        }
        let hostname = c.config.hostname.clone().unwrap_or_default();
        let domain = c.config.domainname.clone().unwrap_or_default();
        let hosts = etc_files::hosts(&extra, Some((first.ip, &hostname, &domain)));
        let overrides = DnsOverrides {
            servers: c.host_config.dns.clone().unwrap_or_default(),
            search: c.host_config.dns_search.clone().unwrap_or_default(),
            options: c.host_config.dns_options.clone().unwrap_or_default(),
        };
        let internal_ns = plan
            .iter()
            .any(|(r, _)| !r.default_bridge)
            .then_some(dns::LISTEN);
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let resolv = etc_files::resolv_conf(&host_resolv, &overrides, internal_ns);
        for (p, text) in [(paths.hosts(), hosts), (paths.resolv_conf(), resolv)] {
            std::fs::write(&p, text)
                .map_err(|e| EngineError::io(format!("write {}", p.display()), e))?;
        }
        Ok(())
    }

    /// At exit: the sandbox goes (ports, DNS, veths, namespace, rules,
    /// addresses); `disconnect` events for each network it was on.
    pub(crate) async fn sandbox_down(self: &Arc<Self>, container: &str) {
        if !self.networks.enabled() {
            return;
        }
        let engine = Arc::clone(self);
        let id = container.to_string();
        let left = tokio::task::spawn_blocking(move || engine.sandbox_down_blocking(&id))
            .await
            .unwrap_or_default();
        for n in &left {
            self.publish_bridge_event(n, "disconnect", container);
        }
    }

    /// The blocking body of `sandbox_down`; returns the networks left.
    fn sandbox_down_blocking(&self, container: &str) -> Vec<NetworkRecord> {
        let net = &self.networks;
        let (sandbox, veths, left, snapshot) = {
            let mut st = net.lock();
            let Some(a) = st.containers.get(container).cloned() else {
                return Vec::new();
            };
            let Some(sandbox) = a.sandbox.clone() else {
                return Vec::new();
            };
            st.dns.remove(container);
            st.ports.release(container);
            let mut veths = Vec::new();
            let mut left = Vec::new();
            for (nid, e) in &a.endpoints {
                if let Some(act) = &e.active {
                    veths.push(act.host_veth.clone());
                    if let Some(rec) = st.networks.get(nid) {
                        left.push(rec.clone());
                    }
                }
            }
            let a = st.containers.get_mut(container).expect("present");
            a.sandbox = None;
            for e in a.endpoints.values_mut() {
                e.active = None;
            }
            (sandbox, veths, left, a.clone())
        };
        if let Ok(mut nl) = Netlink::open() {
            for v in &veths {
                if let Ok(Some(link)) = nl.link(v) {
                    let _ = nl.delete_link(link.index);
                }
            }
        }
        if let Err(e) = netns::remove(&sandbox.netns) {
            tracing::warn!("removing {}: {e}", sandbox.netns.display());
        }
        if let Err(e) = net.store.save_attachments(container, &snapshot) {
            tracing::warn!("saving the networks of {container}: {e}");
        }
        if let Err(e) = net.sync_firewall() {
            tracing::warn!("updating the firewall: {e}");
        }
        left
    }

    /// After containers are restored: live sandboxes are taken back (ports
    /// held again, DNS served again), dead ones and anything else berth
    /// left in the kernel (namespaces, veths, rules) are cleaned.
    pub(crate) async fn restore_networking(self: &Arc<Self>) {
        if !self.networks.enabled() {
            return;
        }
        let alive: HashMap<String, u32> = self
            .containers
            .all()
            .iter()
            .map(|h| h.snapshot())
            .filter(|c| matches!(c.state.status, Status::Running | Status::Paused))
            .map(|c| (c.id, c.state.pid))
            .collect();
        let engine = Arc::clone(self);
        let _ =
            tokio::task::spawn_blocking(move || engine.restore_networking_blocking(&alive)).await;
    }

    fn restore_networking_blocking(&self, alive: &HashMap<String, u32>) {
        let net = &self.networks;
        let known: HashSet<String> = self.containers.all().iter().map(|h| h.id.clone()).collect();
        let with_sandbox: Vec<(String, Sandbox, bool)> = {
            let st = net.lock();
            st.containers
                .iter()
                .filter_map(|(id, a)| {
                    let user = a.endpoints.iter().any(|(nid, e)| {
                        e.active.is_some()
                            && st.networks.get(nid).is_some_and(|n| !n.default_bridge)
                    });
                    a.sandbox.clone().map(|s| (id.clone(), s, user))
                })
                .collect()
        };
        for (id, sb, user) in with_sandbox {
            if let Some(pid) = alive.get(&id).filter(|p| **p > 0) {
                if !netns::is_pinned(&sb.netns) {
                    if let Err(e) = netns::pin_from(&sb.netns, *pid) {
                        tracing::warn!("pinning the namespace of {id} again: {e}");
                    }
                }
            }
            if alive.contains_key(&id) && netns::is_pinned(&sb.netns) {
                net.lock().ports.readopt(&id, &sb.ports);
                if user {
                    match dns::start(
                        &sb.netns,
                        dns_lookup(Arc::downgrade(&net.state), id.clone()),
                    ) {
                        Ok(server) => {
                            net.lock().dns.insert(id.clone(), server);
                        }
                        Err(e) => tracing::warn!("embedded DNS for {id}: {e}"),
                    }
                }
                tracing::info!("re-adopted the network sandbox of {id}");
            } else {
                tracing::info!(
                    "cleaning the network sandbox {id} left by a container that no longer runs"
                );
                self.sandbox_down_blocking(&id);
            }
        }
        let orphans: Vec<String> = net
            .lock()
            .containers
            .keys()
            .filter(|id| !known.contains(*id))
            .cloned()
            .collect();
        for id in orphans {
            self.sandbox_down_blocking(&id);
            net.lock().containers.remove(&id);
            let _ = net.store.remove_attachments(&id);
        }
        // Namespaces pinned for containers that have no sandbox any more.
        let pinned: HashSet<PathBuf> = net
            .lock()
            .containers
            .values()
            .filter_map(|a| a.sandbox.as_ref().map(|s| s.netns.clone()))
            .collect();
        if let Ok(entries) = std::fs::read_dir(&net.netns_dir) {
            for e in entries.flatten() {
                if !pinned.contains(&e.path()) {
                    tracing::info!("removing leftover namespace {}", e.path().display());
                    let _ = netns::remove(&e.path());
                }
            }
        }
        // veths on berth's bridges that no running endpoint owns.
        let (bridges, owned): (HashSet<String>, HashSet<String>) = {
            let st = net.lock();
            (
                st.networks.values().map(|n| n.bridge.clone()).collect(),
                st.containers
                    .values()
                    .flat_map(|a| a.endpoints.values())
                    .filter_map(|e| e.active.as_ref().map(|x| x.host_veth.clone()))
                    .collect(),
            )
        };
        if let Ok(mut nl) = Netlink::open() {
            if let Ok(links) = nl.links() {
                let bridge_ids: HashSet<u32> = links
                    .iter()
                    .filter(|l| bridges.contains(&l.name))
                    .map(|l| l.index)
                    .collect();
                for l in &links {
                    let ours = l.master.is_some_and(|m| bridge_ids.contains(&m));
                    if ours && l.name.starts_with("vb") && !owned.contains(&l.name) {
                        tracing::info!("removing leftover veth {}", l.name);
                        let _ = nl.delete_link(l.index);
                    }
                }
            }
        }
        if let Err(e) = net.sync_firewall() {
            tracing::warn!("restoring the firewall: {e}");
        }
    }

    /// `NetworkSettings` of a bridge-networked container; `None` for the
    /// modes networking does not handle (host, none, container:).
    pub(crate) fn network_settings(&self, c: &Container) -> Option<NetworkSettings> {
        let st = self.networks.lock();
        let a = st.containers.get(&c.id)?;
        if a.endpoints.is_empty() {
            return None;
        }
        let mut networks = HashMap::new();
        for e in a.ordered() {
            let rec = st.networks.get(&e.network_id);
            let name = rec.map_or_else(|| e.network_id.clone(), |r| r.name.clone());
            let user = rec.is_some_and(|r| !r.default_bridge);
            let mut s = EndpointSettings {
                ipam_config: e.static_ip.map(|ip| EndpointIpamConfig {
                    ipv4_address: Some(ip.to_string()),
                    ..Default::default()
                }),
                links: (!e.links.is_empty()).then(|| e.links.clone()),
                aliases: (!e.aliases.is_empty()).then(|| e.aliases.clone()),
                mac_address: Some(String::new()),
                driver_opts: (!e.driver_opts.is_empty())
                    .then(|| e.driver_opts.clone().into_iter().collect()),
                network_id: Some(e.network_id.clone()),
                dns_names: user.then(|| dns_names(c, &e.aliases)),
                ..Default::default()
            };
            if let (Some(act), Some(rec)) = (&e.active, rec) {
                s.endpoint_id = Some(act.endpoint_id.clone());
                s.gateway = Some(rec.gateway.to_string());
                s.ip_address = Some(act.ip.to_string());
                s.ip_prefix_len = Some(rec.subnet.prefix_len() as i64);
                s.mac_address = Some(act.mac.clone());
            }
            networks.insert(name, s);
        }
        let ports = match &a.sandbox {
            Some(sb) => ports::port_map(&c.config, &c.host_config, &sb.ports),
            None => HashMap::new(),
        };
        Some(NetworkSettings {
            sandbox_id: Some(a.sandbox.as_ref().map(|s| s.id.clone()).unwrap_or_default()),
            sandbox_key: Some(
                a.sandbox
                    .as_ref()
                    .map(|s| s.netns.display().to_string())
                    .unwrap_or_default(),
            ),
            ports: Some(ports),
            networks: Some(networks),
        })
    }

    /// `Ports` of `docker ps` for a container.
    pub(crate) fn port_summaries(&self, c: &Container) -> Vec<PortSummary> {
        let st = self.networks.lock();
        let mappings = st
            .containers
            .get(&c.id)
            .and_then(|a| a.sandbox.as_ref())
            .map(|s| s.ports.clone())
            .unwrap_or_default();
        ports::summaries(&c.config, &mappings)
    }

    /// Connects a container to a bridge network (live when it runs); the
    /// caller holds the container's op lock and the networks' ops lock.
    pub(super) async fn connect_locked(
        self: &Arc<Self>,
        n: &NetworkInspect,
        handle: &Arc<ContainerHandle>,
        settings: EndpointSettings,
    ) -> Result<()> {
        let c = handle.snapshot();
        let target = n.name.clone().unwrap_or_default();
        match target.as_str() {
            "host" => {
                return Err(EngineError::InvalidParameter(
                    "cannot connect container to host network - container must be created in host network mode".into(),
                ))
            }
            "none" => {
                return Err(EngineError::InvalidParameter(
                    "container cannot be connected to multiple networks with one of the networks in private (none) mode".into(),
                ))
            }
            _ => {}
        }
        let mode = c.host_config.network_mode.as_deref().unwrap_or("");
        if mode == "host" || mode.starts_with("container:") {
            return Err(EngineError::InvalidParameter(
                "container sharing network namespace with another container or host cannot be connected to any other network".into(),
            ));
        }
        if mode == "none" {
            return Err(EngineError::InvalidParameter(
                "container cannot be connected to multiple networks with one of the networks in private (none) mode".into(),
            ));
        }
        if c.state.status == Status::Removing || c.state.status == Status::Dead {
            return Err(EngineError::Conflict(format!(
                "Container {} is marked for removal and cannot be connected or disconnected to the network",
                c.id
            )));
        }
        let rec = self.find_bridge_network(n.id.as_deref().unwrap_or(&target))?;
        let (ep, live) = {
            let st = self.networks.lock();
            let a = st.containers.get(&c.id).cloned().unwrap_or_default();
            if a.endpoints.contains_key(&rec.id) {
                return Err(EngineError::Forbidden(format!(
                    "endpoint with name {} already exists in network {}",
                    c.short_name(),
                    rec.name
                )));
            }
            (
                endpoint_from(&rec, Some(&settings), a.next_seq())?,
                a.sandbox.is_some(),
            )
        };
        let engine = Arc::clone(self);
        let (c2, rec2) = (c.clone(), rec.clone());
        tokio::task::spawn_blocking(move || engine.connect_blocking(&c2, &rec2, ep, live))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))??;
        if live && c.state.status.is_alive() {
            self.publish_bridge_event(&rec, "connect", &c.id);
        }
        Ok(())
    }

    fn connect_blocking(
        &self,
        c: &Container,
        rec: &NetworkRecord,
        ep: Endpoint,
        live: bool,
    ) -> Result<()> {
        let net = &self.networks;
        let nid = rec.id.clone();
        let plumbing = {
            let mut st = net.lock();
            let taken = st.taken(&nid);
            let a = st.containers.entry(c.id.clone()).or_default();
            let mut ep = ep;
            let mut plan = None;
            if let (true, Some(sb)) = (live, &a.sandbox) {
                let ip = subnet_of(rec).allocate(&taken, ep.static_ip)?;
                let mac = ep
                    .static_mac
                    .as_deref()
                    .and_then(parse_mac)
                    .unwrap_or_else(|| mac_for(ip));
                let act = ActiveEndpoint {
                    endpoint_id: berth_storage::random_id(),
                    ip,
                    mac: mac_text(mac),
                    ifname: format!(
                        "eth{}",
                        a.endpoints.values().filter(|e| e.active.is_some()).count()
                    ),
                    host_veth: veth_name(&c.id, &nid),
                    dns_names: dns_names(c, &ep.aliases),
                };
                ep.active = Some(act.clone());
                plan = Some((sb.netns.clone(), act));
            }
            a.endpoints.insert(nid.clone(), ep);
            (plan, a.clone())
        };
        let (plan, snapshot) = plumbing;
        net.store.save_attachments(&c.id, &snapshot)?;
        let Some((path, act)) = plan else {
            return Ok(());
        };
        let config = net.config.clone().expect("networking is on");
        let done = (|| -> Result<()> {
            let ns = File::open(&path).map_err(|e| internal("open the network namespace", e))?;
            let mut host = Netlink::open().map_err(|e| internal("netlink", e))?;
            self.plumb(&mut host, &ns, &path, rec, &act, false, config.mtu)?;
            if !rec.default_bridge && !net.lock().dns.contains_key(&c.id) {
                let server =
                    dns::start(&path, dns_lookup(Arc::downgrade(&net.state), c.id.clone()))
                        .map_err(|e| internal("start the embedded DNS server", e))?;
                net.lock().dns.insert(c.id.clone(), server);
            }
            net.sync_firewall()
        })();
        if let Err(e) = done {
            let snapshot = {
                let mut st = net.lock();
                let a = st.containers.entry(c.id.clone()).or_default();
                a.endpoints.remove(&nid);
                a.clone()
            };
            if let Ok(mut nl) = Netlink::open() {
                if let Ok(Some(l)) = nl.link(&act.host_veth) {
                    let _ = nl.delete_link(l.index);
                }
            }
            let _ = net.store.save_attachments(&c.id, &snapshot);
            return Err(e);
        }
        Ok(())
    }

    /// Disconnects a container from a network (live when it runs).
    pub(super) async fn disconnect_locked(
        self: &Arc<Self>,
        n: &NetworkInspect,
        handle: &Arc<ContainerHandle>,
        force: bool,
    ) -> Result<()> {
        let c = handle.snapshot();
        let name = n.name.clone().unwrap_or_default();
        let mode = c.host_config.network_mode.as_deref().unwrap_or("");
        if name == "host" && mode == "host" {
            return Err(EngineError::InvalidParameter(
                "cannot disconnect container from host network - container was created in host network mode".into(),
            ));
        }
        let id = n.id.clone().unwrap_or_default();
        let connected = self
            .networks
            .lock()
            .containers
            .get(&c.id)
            .is_some_and(|a| a.endpoints.contains_key(&id));
        if !connected {
            if force {
                return Ok(());
            }
            return Err(EngineError::Forbidden(format!(
                "container {} is not connected to network {name}",
                c.id
            )));
        }
        let rec = self.networks.lock().networks.get(&id).cloned();
        let engine = Arc::clone(self);
        let cid = c.id.clone();
        let was_active = tokio::task::spawn_blocking(move || engine.disconnect_blocking(&cid, &id))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))??;
        if let (true, Some(rec)) = (was_active, rec) {
            self.publish_bridge_event(&rec, "disconnect", &c.id);
        }
        Ok(())
    }

    fn disconnect_blocking(&self, container: &str, network: &str) -> Result<bool> {
        let net = &self.networks;
        let (act, snapshot, keep_dns) = {
            let mut st = net.lock();
            let networks = st.networks.clone();
            let Some(a) = st.containers.get_mut(container) else {
                return Ok(false);
            };
            let act = a.endpoints.remove(network).and_then(|e| e.active);
            let keep_dns = a.endpoints.iter().any(|(nid, e)| {
                e.active.is_some() && networks.get(nid).is_some_and(|n| !n.default_bridge)
            });
            (act, a.clone(), keep_dns)
        };
        if !keep_dns {
            net.lock().dns.remove(container);
        }
        if let Some(act) = &act {
            if let Ok(mut nl) = Netlink::open() {
                if let Ok(Some(l)) = nl.link(&act.host_veth) {
                    let _ = nl.delete_link(l.index);
                }
            }
        }
        net.store.save_attachments(container, &snapshot)?;
        net.sync_firewall()?;
        Ok(act.is_some())
    }
}

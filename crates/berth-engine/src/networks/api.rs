//! The /networks endpoints on the engine: list (with dockerd's filters),
//! inspect, create (IPAM validation in dockerd's words), remove, prune,
//! connect and disconnect, each publishing dockerd's network events.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use bollard_stubs::models::{
    ConfigReference, EndpointResource, EndpointSettings, EventMessageTypeEnum, Ipam, IpamConfig,
    NetworkCreateRequest, NetworkCreateResponse, NetworkInspect, NetworkPruneResponse,
    NetworkSummary,
};
use chrono::{SecondsFormat, Utc};
use ipnet::Ipv4Net;

use super::store::NetworkRecord;
use super::{bridge, is_predefined, Identity, State, PREDEFINED};
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::filters::Filters;

/// The inspect shape of `host`, `none` (and `bridge` when there is no
/// bridge networking).
fn describe_builtin(name: &str, driver: &str, ident: &Identity) -> NetworkInspect {
    let mut options = HashMap::new();
    if name == "bridge" {
        options.insert(
            "com.docker.network.bridge.default_bridge".to_string(),
            "true".to_string(),
        );
    }
    NetworkInspect {
        name: Some(name.to_string()),
        id: Some(ident.id.clone()),
        created: Some(ident.created.to_rfc3339_opts(SecondsFormat::Nanos, true)),
        scope: Some("local".into()),
        driver: Some(driver.to_string()),
        enable_ipv4: Some(name == "bridge"),
        enable_ipv6: Some(false),
        ipam: Some(Ipam {
            driver: Some("default".into()),
            config: Some(Vec::new()),
            options: None,
        }),
        internal: Some(false),
        attachable: Some(false),
        ingress: Some(false),
        config_from: Some(ConfigReference {
            network: Some(String::new()),
        }),
        config_only: Some(false),
        options: Some(options),
        labels: Some(HashMap::new()),
        peers: None,
        containers: Some(HashMap::new()),
        services: None,
        status: None,
    }
}

/// The inspect shape of a bridge network, with its running containers.
fn describe_bridge(n: &NetworkRecord, st: &State) -> NetworkInspect {
    let mut containers = HashMap::new();
    for (cid, a) in &st.containers {
        let Some(active) = a.endpoints.get(&n.id).and_then(|e| e.active.as_ref()) else {
            continue;
        };
        containers.insert(
            cid.clone(),
            EndpointResource {
                name: active.dns_names.first().cloned(),
                endpoint_id: Some(active.endpoint_id.clone()),
                mac_address: Some(active.mac.clone()),
                ipv4_address: Some(format!("{}/{}", active.ip, n.subnet.prefix_len())),
                ipv6_address: Some(String::new()),
            },
        );
    }
    let mut cfg = IpamConfig {
        subnet: Some(n.subnet.to_string()),
        gateway: Some(n.gateway.to_string()),
        ip_range: n.ip_range.map(|r| r.to_string()),
        auxiliary_addresses: None,
    };
    if !n.aux_addresses.is_empty() {
        cfg.auxiliary_addresses = Some(
            n.aux_addresses
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect(),
        );
    }
    NetworkInspect {
        name: Some(n.name.clone()),
        id: Some(n.id.clone()),
        created: Some(n.created.to_rfc3339_opts(SecondsFormat::Nanos, true)),
        scope: Some("local".into()),
        driver: Some("bridge".into()),
        enable_ipv4: Some(true),
        enable_ipv6: Some(false),
        ipam: Some(Ipam {
            driver: Some("default".into()),
            config: Some(vec![cfg]),
            options: (!n.default_bridge).then(|| {
                n.ipam_options
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }),
        }),
        internal: Some(n.internal),
        attachable: Some(n.attachable),
        ingress: Some(n.ingress),
        config_from: Some(ConfigReference {
            network: Some(String::new()),
        }),
        config_only: Some(false),
        options: Some(n.options.clone().into_iter().collect()),
        labels: Some(n.labels.clone().into_iter().collect()),
        peers: None,
        containers: Some(containers),
        services: None,
        status: None,
    }
}

fn summary(n: NetworkInspect) -> NetworkSummary {
    NetworkSummary {
        name: n.name,
        id: n.id,
        created: n.created,
        scope: n.scope,
        driver: n.driver,
        enable_ipv4: n.enable_ipv4,
        enable_ipv6: n.enable_ipv6,
        ipam: n.ipam,
        internal: n.internal,
        attachable: n.attachable,
        ingress: n.ingress,
        config_from: n.config_from,
        config_only: n.config_only,
        options: n.options,
        labels: n.labels,
        peers: n.peers,
    }
}

/// dockerd's `Args.Match`: an exact value, or a regular expression that
/// matches somewhere in `value`.
fn matches_pattern(patterns: &[String], value: &str) -> bool {
    patterns.iter().any(|p| {
        p == value
            || regex::Regex::new(p)
                .map(|re| re.is_match(value))
                .unwrap_or(false)
    })
}

/// A parsed network list filter (`driver`, `id`, `name`, `type`, `label`,
/// `scope`, `dangling`), validated as dockerd validates it.
pub(super) struct NetworkFilter<'a> {
    filters: &'a Filters,
    /// `Some(true)`: only unused user networks; `Some(false)`: only used or
    /// pre-defined ones.
    dangling: Option<bool>,
}

impl<'a> NetworkFilter<'a> {
    pub(super) fn new(filters: &'a Filters) -> Result<NetworkFilter<'a>> {
        filters.validate(&["dangling", "driver", "id", "label", "name", "scope", "type"])?;
        let dangling = match filters.get("dangling") {
            [] => None,
            [one] => match one.as_str() {
                "1" | "true" => Some(true),
                "0" | "false" => Some(false),
                _ => {
                    return Err(EngineError::InvalidParameter(
                        r#"invalid value for filter 'dangling', must be "true" (or "1"), or "false" (or "0")"#
                            .into(),
                    ))
                }
            },
            _ => {
                return Err(EngineError::InvalidParameter(
                    r#"got more than one value for filter key "dangling""#.into(),
                ))
            }
        };
        for t in filters.get("type") {
            if t != "builtin" && t != "custom" {
                return Err(EngineError::InvalidParameter(format!(
                    "invalid filter: 'type'='{t}'"
                )));
            }
        }
        Ok(NetworkFilter { filters, dangling })
    }

    pub(super) fn matches(&self, n: &NetworkInspect) -> bool {
        let f = self.filters;
        let name = n.name.as_deref().unwrap_or_default();
        let id = n.id.as_deref().unwrap_or_default();
        let driver = n.driver.as_deref().unwrap_or_default();
        let scope = n.scope.as_deref().unwrap_or_default();
        let labels = n.labels.clone().unwrap_or_default();
        if f.contains("driver") && !f.get("driver").iter().any(|d| d == driver) {
            return false;
        }
        if f.contains("name") && !matches_pattern(f.get("name"), name) {
            return false;
        }
        if f.contains("id") && !matches_pattern(f.get("id"), id) {
            return false;
        }
        if !f.match_labels("label", |k| labels.get(k).map(String::as_str)) {
            return false;
        }
        if f.contains("scope") && !f.get("scope").iter().any(|s| s == scope) {
            return false;
        }
        let attached = n.containers.as_ref().is_some_and(|c| !c.is_empty());
        match self.dangling {
            Some(true) if is_predefined(name) || attached => return false,
            Some(false) if !(is_predefined(name) || attached) => return false,
            _ => {}
        }
        // dockerd decides on the first `type` value it understands.
        if let Some(t) = f.get("type").first() {
            let builtin = is_predefined(name);
            if (t == "builtin") != builtin {
                return false;
            }
        }
        true
    }
}

fn bad(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidParameter(msg.into())
}

/// A network's IPv4 layout from a create request, checked with dockerd's
/// messages; `None` subnet means "pick one".
#[derive(Debug)]
struct Layout {
    subnet: Option<Ipv4Net>,
    range: Option<Ipv4Net>,
    gateway: Option<Ipv4Addr>,
    aux: BTreeMap<String, Ipv4Addr>,
}

fn parse_net(s: &str) -> std::result::Result<Ipv4Net, String> {
    s.parse::<Ipv4Net>()
        .map_err(|_| format!("invalid CIDR address: {s}"))
}

fn layout(ipam: Option<&Ipam>) -> Result<Layout> {
    let mut out = Layout {
        subnet: None,
        range: None,
        gateway: None,
        aux: BTreeMap::new(),
    };
    let configs = ipam.and_then(|i| i.config.clone()).unwrap_or_default();
    let mut errs: Vec<String> = Vec::new();
    let mut v4 = 0;
    for c in &configs {
        let subnet_text = c.subnet.clone().unwrap_or_default();
        if subnet_text.contains(':') {
            return Err(EngineError::NotImplemented(
                "berth has no IPv6 networking: IPv6 subnets are not supported".into(),
            ));
        }
        v4 += 1;
        if v4 > 1 {
            return Err(bad("berth supports one IPv4 subnet per network"));
        }
        let subnet = if subnet_text.is_empty() {
            None
        } else {
            match parse_net(&subnet_text) {
                Ok(s) if s.trunc() != s => {
                    errs.push(format!("invalid subnet {s}: it should be {}", s.trunc()));
                    None
                }
                Ok(s) => Some(s),
                Err(e) => {
                    errs.push(e);
                    None
                }
            }
        };
        if let Some(r) = c.ip_range.as_deref().filter(|r| !r.is_empty()) {
            match (parse_net(r), subnet) {
                (Err(e), _) => errs.push(e),
                (Ok(r), Some(s)) => {
                    if r.prefix_len() < s.prefix_len() {
                        errs.push(format!(
                            "invalid ip-range {r}: CIDR block is bigger than its parent subnet {s}"
                        ));
                    } else if r.trunc() != r {
                        errs.push(format!("invalid ip-range {r}: it should be {}", r.trunc()));
                    } else if !s.contains(&r) {
                        errs.push(format!(
                            "invalid ip-range {r}: parent subnet {s} doesn't contain ip-range"
                        ));
                    } else {
                        out.range = Some(r);
                    }
                }
                (Ok(_), None) => errs.push("ip-range can only be used with a subnet".into()),
            }
        }
        if let Some(g) = c.gateway.as_deref().filter(|g| !g.is_empty()) {
            match (g.parse::<Ipv4Addr>(), subnet) {
                (Err(_), _) => errs.push(format!("invalid gateway {g}: invalid address")),
                (Ok(g), Some(s)) if !s.contains(&g) => errs.push(format!(
                    "invalid gateway {g}: parent subnet {s} doesn't contain this address"
                )),
                (Ok(g), _) => out.gateway = Some(g),
            }
        }
        for (name, a) in c.auxiliary_addresses.iter().flatten() {
            match (a.parse::<Ipv4Addr>(), subnet) {
                (Err(_), _) => errs.push(format!("invalid auxiliary address {name}: invalid address")),
                (Ok(ip), Some(s)) if !s.contains(&ip) => errs.push(format!(
                    "invalid auxiliary address {name}: parent subnet {s} doesn't contain this address"
                )),
                (Ok(ip), _) => {
                    out.aux.insert(name.clone(), ip);
                }
            }
        }
        out.subnet = subnet;
    }
    if !errs.is_empty() {
        return Err(bad(format!("invalid network config:\n{}", errs.join("\n"))));
    }
    Ok(out)
}

impl Engine {
    /// Every network as inspect shows it, pre-defined ones first.
    fn all_networks(&self) -> Vec<NetworkInspect> {
        let net = &self.networks;
        let st = net.lock();
        let mut out = Vec::new();
        for (name, driver) in PREDEFINED {
            let Some(ident) = net.ids.get(name) else {
                continue;
            };
            if name == "bridge" {
                match st.networks.get(&ident.id) {
                    Some(rec) => out.push(describe_bridge(rec, &st)),
                    // No bridge networking configured: the static shape.
                    None if !net.enabled() => out.push(describe_builtin(name, driver, ident)),
                    // --bridge=none: there is no bridge network.
                    None => {}
                }
                continue;
            }
            out.push(describe_builtin(name, driver, ident));
        }
        let mut user: Vec<&NetworkRecord> =
            st.networks.values().filter(|n| !n.default_bridge).collect();
        user.sort_by(|a, b| a.name.cmp(&b.name));
        for n in user {
            out.push(describe_bridge(n, &st));
        }
        out
    }

    /// Finds a network by full ID, exact name, then unique ID prefix, as
    /// dockerd looks networks up.
    pub(crate) fn find_network(&self, term: &str) -> Result<NetworkInspect> {
        let all = self.all_networks();
        if let Some(n) = all.iter().find(|n| n.id.as_deref() == Some(term)) {
            return Ok(n.clone());
        }
        let by_name: Vec<&NetworkInspect> = all
            .iter()
            .filter(|n| n.name.as_deref() == Some(term))
            .collect();
        if let [one] = by_name.as_slice() {
            return Ok((*one).clone());
        }
        let by_prefix: Vec<&NetworkInspect> = all
            .iter()
            .filter(|n| !term.is_empty() && n.id.as_deref().is_some_and(|id| id.starts_with(term)))
            .collect();
        match by_prefix.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(EngineError::NotFound(format!("network {term} not found"))),
            many => Err(EngineError::InvalidParameter(format!(
                "network {term} is ambiguous ({} matches found based on ID prefix)",
                many.len()
            ))),
        }
    }

    /// The bridge network record behind `term` (404 for unknown names;
    /// `host`/`none` are not bridge networks).
    pub(crate) fn find_bridge_network(&self, term: &str) -> Result<NetworkRecord> {
        let n = self.find_network(term)?;
        let id = n.id.unwrap_or_default();
        self.networks
            .lock()
            .networks
            .get(&id)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(format!("network {term} not found")))
    }

    fn publish_network(&self, n: &NetworkInspect, action: &str, extra: &[(&str, String)]) {
        let mut attrs = HashMap::from([
            ("name".to_string(), n.name.clone().unwrap_or_default()),
            ("type".to_string(), n.driver.clone().unwrap_or_default()),
        ]);
        for (k, v) in extra {
            attrs.insert((*k).to_string(), v.clone());
        }
        self.events.publish(
            EventMessageTypeEnum::NETWORK,
            action,
            n.id.as_deref().unwrap_or_default(),
            attrs,
        );
    }

    /// Publishes a network event for a bridge network record.
    pub(crate) fn publish_bridge_event(&self, n: &NetworkRecord, action: &str, container: &str) {
        self.events.publish(
            EventMessageTypeEnum::NETWORK,
            action,
            &n.id,
            HashMap::from([
                ("name".to_string(), n.name.clone()),
                ("type".to_string(), "bridge".to_string()),
                ("container".to_string(), container.to_string()),
            ]),
        );
    }

    /// `GET /networks?filters=`.
    pub async fn list_networks(self: &Arc<Self>, filters: &Filters) -> Result<Vec<NetworkSummary>> {
        let filter = NetworkFilter::new(filters)?;
        Ok(self
            .all_networks()
            .into_iter()
            .filter(|n| filter.matches(n))
            .map(summary)
            .collect())
    }

    /// `GET /networks/{id}`.
    pub async fn inspect_network(self: &Arc<Self>, term: &str) -> Result<NetworkInspect> {
        self.find_network(term)
    }

    /// `POST /networks/create`: a user-defined bridge network.
    pub async fn create_network(
        self: &Arc<Self>,
        req: NetworkCreateRequest,
    ) -> Result<NetworkCreateResponse> {
        if is_predefined(&req.name) {
            return Err(EngineError::Forbidden(format!(
                "operation is not permitted on predefined {} network ",
                req.name
            )));
        }
        if req.name.is_empty() {
            return Err(bad("network name must not be empty"));
        }
        let Some(config) = self.networks.config.clone() else {
            return Err(EngineError::NotImplemented(
                "bridge networking is not configured".into(),
            ));
        };
        let driver = req
            .driver
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "bridge".into());
        match driver.as_str() {
            "bridge" => {}
            "host" | "null" => {
                return Err(EngineError::Forbidden(format!(
                    "only one instance of \"{driver}\" network is allowed"
                )))
            }
            other => {
                return Err(EngineError::NotFound(format!(
                    "could not find plugin {other} in v1 plugin registry: plugin not found"
                )))
            }
        }
        if let Some(d) = req.ipam.as_ref().and_then(|i| i.driver.clone()) {
            if !d.is_empty() && d != "default" {
                return Err(EngineError::NotFound(format!(
                    "could not find plugin {d} in v1 plugin registry: plugin not found"
                )));
            }
        }
        if req.enable_ipv6.unwrap_or(false) {
            return Err(EngineError::NotImplemented(
                "berth has no IPv6 networking (EnableIPv6)".into(),
            ));
        }
        let wanted = layout(req.ipam.as_ref())?;
        let _ops = self.networks.ops.lock().await;
        {
            let st = self.networks.lock();
            if st.networks.values().any(|n| n.name == req.name) {
                return Err(EngineError::Conflict(format!(
                    "network with name {} already exists",
                    req.name
                )));
            }
            if let Some(s) = wanted.subnet {
                if st
                    .networks
                    .values()
                    .any(|n| super::ipam::overlaps(&n.subnet, &s))
                {
                    return Err(EngineError::Forbidden(
                        "Pool overlaps with other one on this address space".into(),
                    ));
                }
            }
        }
        let id = berth_storage::random_id();
        let options: BTreeMap<String, String> = req
            .options
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let bridge_name = options
            .get("com.docker.network.bridge.name")
            .cloned()
            .unwrap_or_else(|| format!("br-{}", &id[..12]));
        if bridge_name.len() > 15 {
            return Err(bad(format!("invalid bridge name: {bridge_name}")));
        }
        let engine = Arc::clone(self);
        let name = req.name.clone();
        let record = tokio::task::spawn_blocking(move || -> Result<NetworkRecord> {
            let net = &engine.networks;
            let _host = bridge::HostLock::take()?;
            let taken: Vec<Ipv4Net> = net.lock().networks.values().map(|n| n.subnet).collect();
            let subnet = match wanted.subnet {
                Some(s) => s,
                None => bridge::choose_subnet(&config.pools(), &taken)?,
            };
            let gateway = wanted
                .gateway
                .or_else(|| subnet.hosts().next())
                .ok_or_else(|| bad(format!("subnet {subnet} has no room for a gateway")))?;
            let record = NetworkRecord {
                id: id.clone(),
                name,
                created: Utc::now(),
                bridge: bridge_name.clone(),
                subnet,
                gateway,
                ip_range: wanted.range,
                aux_addresses: wanted.aux,
                user_subnet: wanted.subnet.is_some(),
                user_gateway: wanted.gateway.is_some(),
                internal: req.internal.unwrap_or(false),
                attachable: req.attachable.unwrap_or(false),
                ingress: req.ingress.unwrap_or(false),
                options,
                labels: req.labels.clone().unwrap_or_default().into_iter().collect(),
                ipam_options: req
                    .ipam
                    .as_ref()
                    .and_then(|i| i.options.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
                owns_bridge: false,
                default_bridge: false,
            };
            let existed = bridge::existing(&bridge_name)?.is_some();
            let mut record = record;
            record.owns_bridge = !existed;
            let undo = |e: EngineError| {
                if !existed {
                    let _ = bridge::delete(&bridge_name);
                }
                e
            };
            bridge::ensure(&bridge_name, gateway, subnet, config.mtu).map_err(undo)?;
            net.store.save_network(&record).map_err(undo)?;
            net.lock()
                .networks
                .insert(record.id.clone(), record.clone());
            if let Err(e) = net.sync_firewall() {
                net.lock().networks.remove(&record.id);
                let _ = net.store.remove_network(&record.id);
                return Err(undo(e));
            }
            Ok(record)
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))??;
        let shown = describe_bridge(&record, &self.networks.lock());
        self.publish_network(&shown, "create", &[]);
        Ok(NetworkCreateResponse {
            id: record.id,
            warning: String::new(),
        })
    }

    /// `DELETE /networks/{id}`.
    pub async fn remove_network(self: &Arc<Self>, term: &str) -> Result<()> {
        let n = self.find_network(term)?;
        let name = n.name.clone().unwrap_or_default();
        if is_predefined(&name) {
            return Err(EngineError::Forbidden(format!(
                "{name} is a pre-defined network and cannot be removed"
            )));
        }
        let _ops = self.networks.ops.lock().await;
        self.remove_network_locked(&n).await?;
        self.publish_network(&n, "destroy", &[]);
        Ok(())
    }

    /// Removes a user network whose ops lock the caller holds.
    async fn remove_network_locked(self: &Arc<Self>, n: &NetworkInspect) -> Result<()> {
        let id = n.id.clone().unwrap_or_default();
        let name = n.name.clone().unwrap_or_default();
        let active: Vec<String> = {
            let st = self.networks.lock();
            st.containers
                .iter()
                .filter_map(|(cid, a)| {
                    let e = a.endpoints.get(&id)?.active.as_ref()?;
                    Some(format!(
                        "name:{} id:{}",
                        e.dns_names.first().cloned().unwrap_or_default(),
                        &cid[..12.min(cid.len())]
                    ))
                })
                .collect()
        };
        if !active.is_empty() {
            return Err(EngineError::Forbidden(format!(
                "error while removing network: network {name} has active endpoints ({})",
                active.join(", ")
            )));
        }
        let engine = Arc::clone(self);
        tokio::task::spawn_blocking(move || -> Result<()> {
            let net = &engine.networks;
            let Some(record) = net.lock().networks.remove(&id) else {
                return Ok(());
            };
            net.store.remove_network(&id)?;
            if record.owns_bridge {
                if let Err(e) = bridge::delete(&record.bridge) {
                    tracing::warn!("removing bridge {}: {e}", record.bridge);
                }
            }
            net.sync_firewall()
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?
    }

    /// `POST /networks/prune`: unused user-defined networks go.
    pub async fn prune_networks(
        self: &Arc<Self>,
        filters: &Filters,
    ) -> Result<NetworkPruneResponse> {
        filters.validate(&["label", "label!", "until"])?;
        let mut until = None;
        for u in filters.get("until") {
            until = Some(crate::filters::parse_timestamp(u)?);
        }
        let _ops = self.networks.ops.lock().await;
        let mut deleted = Vec::new();
        for n in self.all_networks() {
            let name = n.name.clone().unwrap_or_default();
            if is_predefined(&name) || n.containers.as_ref().is_some_and(|c| !c.is_empty()) {
                continue;
            }
            let labels = n.labels.clone().unwrap_or_default();
            if !filters.match_labels("label", |k| labels.get(k).map(String::as_str)) {
                continue;
            }
            if filters.contains("label!")
                && filters
                    .get("label!")
                    .iter()
                    .any(|want| match want.split_once('=') {
                        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
                        None => labels.contains_key(want),
                    })
            {
                continue;
            }
            if let Some(t) = until {
                let created = n
                    .created
                    .as_deref()
                    .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                    .map(|c| c.timestamp())
                    .unwrap_or(0);
                if created >= t {
                    continue;
                }
            }
            match self.remove_network_locked(&n).await {
                Ok(()) => {
                    self.publish_network(&n, "destroy", &[]);
                    deleted.push(name);
                }
                Err(e) => tracing::warn!("could not remove local network {name}: {e}"),
            }
        }
        self.events.publish(
            EventMessageTypeEnum::NETWORK,
            "prune",
            "",
            HashMap::from([("reclaimed".to_string(), "0".to_string())]),
        );
        Ok(NetworkPruneResponse {
            networks_deleted: Some(deleted),
        })
    }

    /// `POST /networks/{id}/connect`.
    pub async fn connect_network(
        self: &Arc<Self>,
        term: &str,
        container: &str,
        config: Option<EndpointSettings>,
    ) -> Result<()> {
        let n = self.find_network(term)?;
        let handle = self.containers.resolve(container)?;
        let _op = handle.op.lock().await;
        let _ops = self.networks.ops.lock().await;
        self.connect_locked(&n, &handle, config.unwrap_or_default())
            .await
    }

    /// `POST /networks/{id}/disconnect`.
    pub async fn disconnect_network(
        self: &Arc<Self>,
        term: &str,
        container: &str,
        force: bool,
    ) -> Result<()> {
        let n = self.find_network(term)?;
        let handle = self.containers.resolve(container)?;
        let _op = handle.op.lock().await;
        let _ops = self.networks.ops.lock().await;
        self.disconnect_locked(&n, &handle, force).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipam(subnet: &str, range: &str, gw: &str) -> Ipam {
        Ipam {
            driver: None,
            config: Some(vec![IpamConfig {
                subnet: Some(subnet.into()),
                ip_range: (!range.is_empty()).then(|| range.into()),
                gateway: (!gw.is_empty()).then(|| gw.into()),
                auxiliary_addresses: None,
            }]),
            options: None,
        }
    }

    #[test]
    fn ipam_config_is_checked_like_dockerd() {
        let l = layout(Some(&ipam("10.7.0.0/16", "10.7.1.0/24", "10.7.0.254"))).unwrap();
        assert_eq!(l.subnet.unwrap().to_string(), "10.7.0.0/16");
        assert_eq!(l.gateway.unwrap().to_string(), "10.7.0.254");
        let e = layout(Some(&ipam("10.7.0.1/16", "", "")))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "invalid network config:\ninvalid subnet 10.7.0.1/16: it should be 10.7.0.0/16"
        );
        let e = layout(Some(&ipam("10.7.0.0/16", "", "10.8.0.1")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "invalid gateway 10.8.0.1: parent subnet 10.7.0.0/16 doesn't contain this address"
            ),
            "{e}"
        );
        let e = layout(Some(&ipam("10.7.0.0/16", "10.9.0.0/24", "")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("doesn't contain ip-range"), "{e}");
        assert!(layout(None).unwrap().subnet.is_none());
    }
}

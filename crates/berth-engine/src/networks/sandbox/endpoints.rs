//! A container's endpoint records: the endpoints its network mode and
//! NetworkingConfig ask for, checked at create as dockerd checks them,
//! recorded once the container exists, and forgotten at removal. Nothing
//! here touches the kernel.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use bollard_stubs::models::{EndpointSettings, HostConfig, NetworkingConfig};

use super::veth::parse_mac;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::networks::store::{Attachments, Endpoint, NetworkRecord};

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
pub(super) fn endpoint_from(
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
}

//! What inspect and `docker ps` show of a bridge-networked container:
//! `NetworkSettings` (endpoints, addresses, ports, sandbox) and `Ports`.

use std::collections::HashMap;

use bollard_stubs::models::{EndpointIpamConfig, EndpointSettings, NetworkSettings, PortSummary};

use super::name_resolution::dns_names;
use crate::containers::record::Container;
use crate::engine::Engine;
use crate::networks::ports;

impl Engine {
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
}

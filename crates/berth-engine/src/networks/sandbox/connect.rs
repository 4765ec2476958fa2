//! `docker network connect` and `disconnect`: endpoints added to or
//! removed from a container, plumbed in or out of its sandbox at once when
//! it runs.

use std::fs::File;
use std::sync::Arc;

use bollard_stubs::models::{EndpointSettings, NetworkInspect};

use super::endpoints::endpoint_from;
use super::internal;
use super::name_resolution::{dns_lookup, dns_names};
use super::veth::{delete_veths, mac_for, mac_text, parse_mac, subnet_of, veth_name};
use crate::containers::record::{Container, Status};
use crate::containers::store::ContainerHandle;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::networks::dns;
use crate::networks::netlink::Netlink;
use crate::networks::store::{ActiveEndpoint, Endpoint, NetworkRecord};

impl Engine {
    /// Connects a container to a bridge network (live when it runs); the
    /// caller holds the container's op lock and the networks' ops lock.
    pub(in crate::networks) async fn connect_locked(
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
            delete_veths([act.host_veth.as_str()]);
            let _ = net.store.save_attachments(&c.id, &snapshot);
            return Err(e);
        }
        Ok(())
    }

    /// Disconnects a container from a network (live when it runs).
    pub(in crate::networks) async fn disconnect_locked(
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
            delete_veths([act.host_veth.as_str()]);
        }
        net.store.save_attachments(container, &snapshot)?;
        net.sync_firewall()?;
        Ok(act.is_some())
    }
}

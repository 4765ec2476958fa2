//! One run's sandbox: made at start (namespace, an address and veth pair
//! per endpoint, /etc files, published ports, firewall rules, the embedded
//! DNS server), or adopted from runc for a `--userns-remap` container, and
//! taken down again at exit.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use super::internal;
use super::name_resolution::{dns_lookup, dns_names};
use super::veth::{delete_veths, mac_for, mac_text, parse_mac, subnet_of, veth_name};
use crate::containers::record::Container;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::networks::netlink::Netlink;
use crate::networks::store::{ActiveEndpoint, NetworkRecord, Sandbox};
use crate::networks::{dns, netns, ports};
use crate::runtime::spec::NetworkMode;

impl Engine {
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
                    let act = &plan[0].1;
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
    pub(super) fn sandbox_down_blocking(&self, container: &str) -> Vec<NetworkRecord> {
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
        delete_veths(veths.iter().map(String::as_str));
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
}

//! After a daemon restart: sandboxes of containers still running are taken
//! back (namespace pinned, ports held, DNS served again); those of
//! containers that stopped, and namespaces, veths and rules nothing owns,
//! are cleaned.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use super::name_resolution::dns_lookup;
use crate::containers::record::Status;
use crate::engine::Engine;
use crate::networks::dns;
use crate::networks::netlink::Netlink;
use crate::networks::netns;
use crate::networks::store::Sandbox;

impl Engine {
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
}

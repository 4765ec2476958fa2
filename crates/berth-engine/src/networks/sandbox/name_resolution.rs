//! How a bridge-networked container finds names: the DNS names each of
//! its endpoints answers to, the embedded DNS server's view of the
//! containers it shares user-defined networks with, and its /etc/hosts and
//! /etc/resolv.conf.

use std::collections::HashSet;
use std::sync::{Arc, Weak};

use crate::containers::record::{Container, ContainerPaths};
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::networks::dns::{self, Lookup};
use crate::networks::etc_files::{self, DnsOverrides};
use crate::networks::store::{ActiveEndpoint, NetworkRecord};
use crate::networks::State;

/// dockerd's `buildEndpointDNSNames`.
pub(super) fn dns_names(c: &Container, aliases: &[String]) -> Vec<String> {
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

/// The embedded DNS's view for one container: names of containers that
/// share a user-defined network with it.
pub(super) fn dns_lookup(state: Weak<std::sync::Mutex<State>>, container: String) -> Lookup {
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
    /// /etc/hosts and /etc/resolv.conf for a bridge-networked container.
    pub(super) fn write_etc_files(
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
}

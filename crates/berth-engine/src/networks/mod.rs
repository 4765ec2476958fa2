//! Networks as the Engine API shows them. For now only dockerd's three
//! pre-defined networks exist — `bridge`, `host` and `none` — with IDs made
//! once per data root and kept in `<data-root>/network/ids.json`. Creating,
//! connecting and removing networks waits for bridge networking.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use bollard_stubs::models::{
    ConfigReference, Ipam, NetworkCreateRequest, NetworkCreateResponse, NetworkInspect,
    NetworkPruneResponse, NetworkSummary,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::filters::Filters;

/// The pre-defined networks, in the order `docker network ls` lists them
/// once sorted by the CLI: (name, driver).
const PREDEFINED: [(&str, &str); 3] = [("bridge", "bridge"), ("host", "host"), ("none", "null")];

/// What berth keeps about one pre-defined network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Identity {
    id: String,
    created: DateTime<Utc>,
}

/// The pre-defined networks and their stable identities.
pub struct BuiltinNetworks {
    ids: BTreeMap<String, Identity>,
}

impl BuiltinNetworks {
    /// Loads the identities, making (and persisting) the missing ones.
    pub fn open(data_root: &Path) -> Result<BuiltinNetworks> {
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
        Ok(BuiltinNetworks { ids })
    }

    fn all(&self) -> Vec<NetworkInspect> {
        PREDEFINED
            .iter()
            .filter_map(|(name, driver)| {
                let ident = self.ids.get(*name)?;
                Some(describe(name, driver, ident))
            })
            .collect()
    }
}

/// The inspect shape of a pre-defined network, as dockerd fills it for a
/// host without user-defined networks.
fn describe(name: &str, driver: &str, ident: &Identity) -> NetworkInspect {
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

fn is_predefined(name: &str) -> bool {
    PREDEFINED.iter().any(|(n, _)| *n == name)
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
struct NetworkFilter<'a> {
    filters: &'a Filters,
    /// `Some(true)`: only unused user networks; `Some(false)`: only used or
    /// pre-defined ones.
    dangling: Option<bool>,
    /// `inspect` looks a term up by ID or name through the `id` filter.
    id_matches_name: bool,
}

impl<'a> NetworkFilter<'a> {
    fn new(filters: &'a Filters) -> Result<NetworkFilter<'a>> {
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
        Ok(NetworkFilter {
            filters,
            dangling,
            id_matches_name: false,
        })
    }

    fn matches(&self, n: &NetworkInspect) -> bool {
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
        if f.contains("id")
            && !matches_pattern(f.get("id"), id)
            && !(self.id_matches_name && matches_pattern(f.get("id"), name))
        {
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

impl Engine {
    /// `GET /networks?filters=`.
    pub async fn list_networks(self: &Arc<Self>, filters: &Filters) -> Result<Vec<NetworkSummary>> {
        let filter = NetworkFilter::new(filters)?;
        Ok(self
            .networks
            .all()
            .into_iter()
            .filter(|n| filter.matches(n))
            .map(summary)
            .collect())
    }

    /// `GET /networks/{id}`: by full ID, then exact name, then unique ID
    /// prefix, as dockerd looks networks up.
    pub async fn inspect_network(self: &Arc<Self>, term: &str) -> Result<NetworkInspect> {
        let all = self.networks.all();
        if let Some(n) = all.iter().find(|n| n.id.as_deref() == Some(term)) {
            return Ok(n.clone());
        }
        if let Some(n) = all.iter().find(|n| n.name.as_deref() == Some(term)) {
            return Ok(n.clone());
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

    /// `POST /networks/create`: pre-defined names are refused as dockerd
    /// refuses them; user-defined networks wait for bridge networking.
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
        Err(EngineError::NotImplemented(
            "creating networks is not implemented yet: berth has only the bridge, host and none networks"
                .into(),
        ))
    }

    /// `DELETE /networks/{id}`.
    pub async fn remove_network(self: &Arc<Self>, term: &str) -> Result<()> {
        let n = self.inspect_network(term).await?;
        Err(EngineError::Forbidden(format!(
            "{} is a pre-defined network and cannot be removed",
            n.name.unwrap_or_default()
        )))
    }

    /// `POST /networks/prune`: pre-defined networks are never pruned, and
    /// there are no others.
    pub async fn prune_networks(
        self: &Arc<Self>,
        filters: &Filters,
    ) -> Result<NetworkPruneResponse> {
        filters.validate(&["label", "label!", "until"])?;
        for until in filters.get("until") {
            crate::filters::parse_timestamp(until)?;
        }
        Ok(NetworkPruneResponse {
            networks_deleted: Some(Vec::new()),
        })
    }

    /// `POST /networks/{id}/connect` and `/disconnect`.
    pub async fn connect_network(self: &Arc<Self>, term: &str, container: &str) -> Result<()> {
        let _ = container;
        self.inspect_network(term).await?;
        Err(EngineError::NotImplemented(
            "connecting containers to networks is not implemented yet".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn filters(pairs: &[(&str, &str)]) -> Filters {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in pairs {
            map.entry(k.to_string()).or_default().push(v.to_string());
        }
        Filters(map)
    }

    #[test]
    fn identities_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let a = BuiltinNetworks::open(dir.path()).unwrap();
        let b = BuiltinNetworks::open(dir.path()).unwrap();
        assert_eq!(a.ids, b.ids);
        assert_eq!(a.ids.len(), 3);
        assert_eq!(a.ids["bridge"].id.len(), 64);
    }

    #[test]
    fn filters_select_like_dockerd() {
        let dir = tempfile::tempdir().unwrap();
        let nets = BuiltinNetworks::open(dir.path()).unwrap();
        let names = |f: Filters| -> Vec<String> {
            let filter = NetworkFilter::new(&f).unwrap();
            nets.all()
                .into_iter()
                .filter(|n| filter.matches(n))
                .map(|n| n.name.unwrap())
                .collect()
        };
        assert_eq!(names(filters(&[])), ["bridge", "host", "none"]);
        assert_eq!(names(filters(&[("driver", "null")])), ["none"]);
        assert_eq!(names(filters(&[("name", "o")])), ["host", "none"]);
        assert_eq!(names(filters(&[("type", "custom")])), Vec::<String>::new());
        assert_eq!(names(filters(&[("type", "builtin")])).len(), 3);
        assert_eq!(
            names(filters(&[("dangling", "true")])),
            Vec::<String>::new()
        );
        assert_eq!(names(filters(&[("scope", "swarm")])), Vec::<String>::new());
        let bridge_id = nets.ids["bridge"].id.clone();
        assert_eq!(names(filters(&[("id", &bridge_id[..10])])), ["bridge"]);
        assert!(NetworkFilter::new(&filters(&[("type", "odd")])).is_err());
        assert!(NetworkFilter::new(&filters(&[("colour", "red")])).is_err());
        assert!(NetworkFilter::new(&filters(&[("dangling", "maybe")])).is_err());
    }
}

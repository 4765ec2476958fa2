//! `docker inspect` and `docker ps` of containers: the records shaped as
//! the API returns them, `ps` filters with dockerd's semantics, and the
//! optional size fields.

use std::collections::HashMap;
use std::sync::Arc;

use bollard_stubs::models::{
    ContainerInspectResponse, ContainerState, ContainerSummary, ContainerSummaryHostConfig,
    ContainerSummaryNetworkSettings, ContainerSummaryStateEnum, DriverData, EndpointSettings,
    MountPoint, NetworkSettings,
};
use chrono::Utc;

use super::record::{Container, ContainerPaths, Status};
use super::store::ContainerHandle;
use super::ListContainersOptions;
use crate::engine::Engine;
use crate::error::{EngineError, Result};

fn summary_state(s: Status) -> ContainerSummaryStateEnum {
    match s {
        Status::Created => ContainerSummaryStateEnum::CREATED,
        Status::Running => ContainerSummaryStateEnum::RUNNING,
        Status::Paused => ContainerSummaryStateEnum::PAUSED,
        Status::Restarting => ContainerSummaryStateEnum::RESTARTING,
        Status::Removing => ContainerSummaryStateEnum::REMOVING,
        Status::Exited => ContainerSummaryStateEnum::EXITED,
        Status::Dead => ContainerSummaryStateEnum::DEAD,
    }
}

fn mount_points(c: &Container) -> Vec<MountPoint> {
    c.mounts
        .iter()
        .map(|m| MountPoint {
            typ: Some(m.kind.clone()),
            name: m.name.clone(),
            source: Some(m.source.display().to_string()),
            destination: Some(m.destination.clone()),
            driver: (m.kind == "volume").then(|| "local".to_string()),
            mode: Some(m.mode.clone()),
            rw: Some(!m.read_only),
            propagation: Some(m.propagation.clone()),
        })
        .collect()
}

/// The network a container is attached to, by its mode.
fn network_name(c: &Container) -> String {
    match c.host_config.network_mode.as_deref() {
        None | Some("") | Some("default") => "bridge".into(),
        Some(m) => m.to_string(),
    }
}

fn endpoints(c: &Container) -> HashMap<String, EndpointSettings> {
    let name = network_name(c);
    if name.starts_with("container:") {
        return HashMap::new();
    }
    HashMap::from([(name, EndpointSettings::default())])
}

impl Engine {
    /// SizeRw and SizeRootFs of a container (blocking).
    fn container_sizes(&self, c: &Container) -> (i64, i64) {
        let rw = self
            .layers
            .rw_usage(&c.id)
            .map(|u| u.size as i64)
            .unwrap_or(0);
        let image = self
            .images
            .get(&c.image_id)
            .map(|img| {
                img.chain()
                    .iter()
                    .filter_map(|ch| self.layers.get(ch))
                    .map(|l| l.size as i64)
                    .sum::<i64>()
            })
            .unwrap_or(0);
        (rw, image + rw)
    }

    /// The body of `inspect_container`.
    pub(crate) async fn inspect_handle(
        self: &Arc<Self>,
        handle: &Arc<ContainerHandle>,
        size: bool,
    ) -> Result<ContainerInspectResponse> {
        let c = handle.snapshot();
        let sizes = if size {
            let engine = Arc::clone(self);
            let c2 = c.clone();
            Some(
                tokio::task::spawn_blocking(move || engine.container_sizes(&c2))
                    .await
                    .map_err(|e| EngineError::Internal(e.to_string()))?,
            )
        } else {
            None
        };
        let paths = ContainerPaths::new(&self.config.data_root, &c.id);
        let graph = self
            .layers
            .get_rw(&c.id)
            .ok()
            .and_then(|l| self.driver.metadata(&l.mount_id).ok())
            .unwrap_or_default();
        let execs = self.exec_ids_of(&c.id);
        Ok(ContainerInspectResponse {
            id: Some(c.id.clone()),
            created: Some(crate::images::config::timestamp(c.created)),
            path: Some(c.path.clone()),
            args: Some(c.args.clone()),
            state: Some(ContainerState {
                status: Some(c.state.status.api()),
                running: Some(c.state.status.is_alive()),
                paused: Some(c.state.status == Status::Paused),
                restarting: Some(c.state.status == Status::Restarting),
                oom_killed: Some(c.state.oom_killed),
                dead: Some(c.state.status == Status::Dead),
                pid: Some(c.state.pid as i64),
                exit_code: Some(c.state.exit_code),
                error: Some(c.state.error.clone()),
                started_at: Some(Container::time_field(c.state.started_at)),
                finished_at: Some(Container::time_field(c.state.finished_at)),
                health: c.state.health.clone(),
            }),
            image: Some(c.image_id.clone()),
            resolv_conf_path: Some(paths.resolv_conf().display().to_string()),
            hostname_path: Some(paths.hostname().display().to_string()),
            hosts_path: Some(paths.hosts().display().to_string()),
            log_path: Some(paths.log(&c.id).display().to_string()),
            name: Some(c.name.clone()),
            restart_count: Some(c.restart_count),
            driver: Some(self.driver.name().to_string()),
            platform: Some("linux".into()),
            mount_label: Some(String::new()),
            process_label: Some(String::new()),
            app_armor_profile: Some(String::new()),
            exec_ids: (!execs.is_empty()).then_some(execs),
            host_config: Some(c.host_config.clone()),
            graph_driver: Some(DriverData {
                name: self.driver.name().to_string(),
                data: graph.into_iter().collect(),
            }),
            size_rw: sizes.map(|s| s.0),
            size_root_fs: sizes.map(|s| s.1),
            mounts: Some(mount_points(&c)),
            config: Some(c.config.clone()),
            network_settings: Some(
                self.network_settings(&c)
                    .unwrap_or_else(|| NetworkSettings {
                        sandbox_id: Some(String::new()),
                        sandbox_key: Some(String::new()),
                        ports: Some(HashMap::new()),
                        networks: Some(endpoints(&c)),
                    }),
            ),
            ..Default::default()
        })
    }

    /// The body of `list_containers`.
    pub(crate) async fn list_handles(
        self: &Arc<Self>,
        opts: &ListContainersOptions,
    ) -> Result<Vec<ContainerSummary>> {
        let f = &opts.filters;
        f.validate(&[
            "id", "name", "label", "status", "exited", "ancestor", "before", "since", "volume",
            "network", "health", "is-task", "publish", "expose",
        ])?;
        for s in f.get("status") {
            if ![
                "created",
                "restarting",
                "running",
                "removing",
                "paused",
                "exited",
                "dead",
            ]
            .contains(&s.as_str())
            {
                return Err(EngineError::InvalidParameter(format!(
                    "invalid filter 'status={s}'"
                )));
            }
        }
        for h in f.get("health") {
            if !["none", "starting", "healthy", "unhealthy"].contains(&h.as_str()) {
                return Err(EngineError::InvalidParameter(format!(
                    "invalid filter 'health={h}': invalid value for health ({h}): must be one of none, starting, healthy, unhealthy"
                )));
            }
        }
        let exited: Vec<i64> = f
            .get("exited")
            .iter()
            .map(|e| {
                e.parse().map_err(|_| {
                    EngineError::InvalidParameter(format!("invalid filter 'exited={e}'"))
                })
            })
            .collect::<Result<_>>()?;
        let created_of = |n: &str| -> Result<chrono::DateTime<Utc>> {
            Ok(self.containers.resolve(n)?.snapshot().created)
        };
        let before = f
            .get("before")
            .iter()
            .map(|n| created_of(n))
            .collect::<Result<Vec<_>>>()?;
        let since = f
            .get("since")
            .iter()
            .map(|n| created_of(n))
            .collect::<Result<Vec<_>>>()?;
        let ancestors: Vec<String> = f
            .get("ancestor")
            .iter()
            .filter_map(|a| self.images.resolve(a).ok().map(|i| i.id))
            .collect();
        let mut all: Vec<Container> = self.containers.all().iter().map(|h| h.snapshot()).collect();
        all.sort_by_key(|c| std::cmp::Reverse(c.created));
        let show_all = opts.all
            || opts.limit.is_some()
            || !f.0.is_empty() && (f.contains("status") || f.contains("exited"));
        let now = Utc::now();
        let mut out = Vec::new();
        for c in all {
            if !show_all && !c.state.status.is_alive() {
                continue;
            }
            if f.contains("id") && !f.get("id").iter().any(|p| c.id.starts_with(p.as_str())) {
                continue;
            }
            if f.contains("name")
                && !f
                    .get("name")
                    .iter()
                    .any(|p| name_matches(p, c.short_name()) || name_matches(p, &c.name))
            {
                continue;
            }
            let labels = c.config.labels.clone().unwrap_or_default();
            if !f.match_labels("label", |k| labels.get(k).map(String::as_str)) {
                continue;
            }
            if f.contains("status") && !f.get("status").iter().any(|s| s == c.state.status.as_str())
            {
                continue;
            }
            if !exited.is_empty()
                && (c.state.status != Status::Exited || !exited.contains(&c.state.exit_code))
            {
                continue;
            }
            if f.contains("ancestor") && !ancestors.contains(&c.image_id) {
                continue;
            }
            if before.iter().any(|b| c.created >= *b) || since.iter().any(|s| c.created <= *s) {
                continue;
            }
            if f.contains("volume")
                && !f.get("volume").iter().any(|v| {
                    c.mounts
                        .iter()
                        .any(|m| m.name.as_deref() == Some(v.as_str()) || m.destination == *v)
                })
            {
                continue;
            }
            if f.contains("network") && !f.get("network").iter().any(|n| *n == network_name(&c)) {
                continue;
            }
            let health = super::health::filter_value(c.state.health.as_ref());
            if f.contains("health") && !f.get("health").iter().any(|h| h == health) {
                continue;
            }
            let sizes = if opts.size {
                let engine = Arc::clone(self);
                let c2 = c.clone();
                Some(
                    tokio::task::spawn_blocking(move || engine.container_sizes(&c2))
                        .await
                        .map_err(|e| EngineError::Internal(e.to_string()))?,
                )
            } else {
                None
            };
            let mut command = c.path.clone();
            for a in &c.args {
                command.push(' ');
                command.push_str(a);
            }
            out.push(ContainerSummary {
                id: Some(c.id.clone()),
                names: Some(vec![c.name.clone()]),
                image: Some(c.config.image.clone().unwrap_or_default()),
                image_id: Some(c.image_id.clone()),
                command: Some(command),
                created: Some(c.created.timestamp()),
                ports: Some(self.port_summaries(&c)),
                size_rw: sizes.map(|s| s.0),
                size_root_fs: sizes.map(|s| s.1),
                labels: Some(labels),
                state: Some(summary_state(c.state.status)),
                status: Some(c.status_text(now)),
                host_config: Some(ContainerSummaryHostConfig {
                    network_mode: Some(network_name(&c)),
                    annotations: None,
                }),
                network_settings: Some(ContainerSummaryNetworkSettings {
                    networks: Some(
                        self.network_settings(&c)
                            .and_then(|n| n.networks)
                            .unwrap_or_else(|| endpoints(&c)),
                    ),
                }),
                mounts: Some(mount_points(&c)),
                ..Default::default()
            });
            if opts.limit.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
        Ok(out)
    }
}

/// dockerd matches `name=` filters as regular expressions.
fn name_matches(pattern: &str, value: &str) -> bool {
    regex::Regex::new(pattern).is_ok_and(|r| r.is_match(value))
}

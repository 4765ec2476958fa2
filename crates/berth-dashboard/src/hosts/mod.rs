//! Other hosts the dashboard watches, through their Engine API only: a
//! berthd or a dockerd behind a unix socket or TCP (with TLS client
//! certificates). One task per host polls `/version`, `/info` and
//! `/containers/json` every few seconds and stats every second (berth's
//! all-containers `/containers/stats?stream=0` on one request; dockerd's
//! `/containers/{id}/stats?stream=false&one-shot=true` per container), and
//! keeps the same compact history the local sampler keeps. A host that
//! stops answering is shown as down with the reason, and retried.

pub mod client;
mod spec;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use berth_engine::stats::history::{Point, Ring, HISTORY_POINTS};
use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::Value;

pub use client::{ClientError, Endpoint};
pub use spec::{parse_host_spec, HostSpec};

use crate::view::{HostInfo, RemoteContainer};

/// How often stats are read.
const STATS_EVERY: Duration = Duration::from_secs(1);
/// Every how many stats rounds the host's info and container list are read.
const META_EVERY: u64 = 3;
/// Wait before retrying a host that is down.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// Per-container stats requests in flight at once against a dockerd.
const STATS_CONCURRENCY: usize = 8;

/// What kind of daemon answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Berth,
    Dockerd,
}

/// What is known of a remote host now.
#[derive(Debug, Default)]
pub struct HostState {
    pub up: bool,
    pub error: Option<String>,
    pub last_ok: Option<DateTime<Utc>>,
    pub kind: Option<Kind>,
    pub info: Option<HostInfo>,
    pub containers: Vec<RemoteContainer>,
    pub history: HashMap<String, Ring<Point>>,
}

/// One watched host.
pub struct RemoteHost {
    /// Short ID used in the dashboard's URLs (`h1`, `h2`, ...).
    pub id: String,
    pub spec: HostSpec,
    pub endpoint: Endpoint,
    pub state: RwLock<HostState>,
}

impl RemoteHost {
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, HostState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HostState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn down(&self, e: &ClientError) {
        let mut s = self.write();
        if s.up || s.error.is_none() {
            tracing::info!(host = %self.spec.name, "dashboard host is down: {e}");
        }
        s.up = false;
        s.error = Some(e.to_string());
    }
}

/// Every remote host, and the tasks polling them.
pub struct Hosts {
    pub remotes: Vec<Arc<RemoteHost>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Hosts {
    /// Hosts for `specs`; polling starts with [`Hosts::start`].
    pub fn new(specs: Vec<HostSpec>) -> Result<Hosts, ClientError> {
        let mut remotes = Vec::new();
        for (i, spec) in specs.into_iter().enumerate() {
            let endpoint = spec.endpoint()?;
            remotes.push(Arc::new(RemoteHost {
                id: format!("h{}", i + 1),
                spec,
                endpoint,
                state: RwLock::new(HostState::default()),
            }));
        }
        Ok(Hosts {
            remotes,
            stop: tokio::sync::watch::channel(false).0,
        })
    }

    /// Starts one polling task per host (call inside the runtime).
    pub fn start(&self) {
        for host in &self.remotes {
            let host = Arc::clone(host);
            let mut stop = self.stop.subscribe();
            tokio::spawn(async move {
                tokio::select! {
                    _ = poll(&host) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            });
        }
    }

    /// Ends the polling tasks.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// The host with dashboard ID `id`.
    pub fn get(&self, id: &str) -> Option<&Arc<RemoteHost>> {
        self.remotes.iter().find(|h| h.id == id)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `host` forever.
async fn poll(host: &RemoteHost) {
    let mut round: u64 = 0;
    loop {
        let started = tokio::time::Instant::now();
        let result = async {
            let up = host.read().up;
            if round.is_multiple_of(META_EVERY) || !up {
                refresh_meta(host).await?;
            }
            refresh_stats(host).await
        }
        .await;
        match result {
            Ok(()) => {
                round += 1;
                {
                    let mut s = host.write();
                    if !s.up {
                        tracing::info!(host = %host.spec.name, "dashboard host is up");
                    }
                    s.up = true;
                    s.error = None;
                    s.last_ok = Some(Utc::now());
                }
                tokio::time::sleep_until(started + STATS_EVERY).await;
            }
            Err(e) => {
                host.down(&e);
                round = 0;
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
}

/// `/version` (which daemon), `/info` and `/containers/json?all=1`.
async fn refresh_meta(host: &RemoteHost) -> Result<(), ClientError> {
    let version = host.endpoint.get_json("/version").await?;
    let kind = if version["Platform"]["Name"].as_str() == Some("berth") {
        Kind::Berth
    } else {
        Kind::Dockerd
    };
    let info = host.endpoint.get_json("/info").await?;
    let list = host.endpoint.get_json("/containers/json?all=1").await?;
    let containers: Vec<RemoteContainer> = list
        .as_array()
        .map(|a| a.iter().map(RemoteContainer::from_summary).collect())
        .unwrap_or_default();
    let mut s = host.write();
    s.kind = Some(kind);
    s.info = Some(HostInfo::from_remote(&info, &version));
    s.history
        .retain(|id, _| containers.iter().any(|c| &c.id == id && c.running()));
    s.containers = containers;
    Ok(())
}

/// One stats reading of every running container into the history.
async fn refresh_stats(host: &RemoteHost) -> Result<(), ClientError> {
    let (kind, running) = {
        let s = host.read();
        let running: Vec<String> = s
            .containers
            .iter()
            .filter(|c| c.running())
            .map(|c| c.id.clone())
            .collect();
        (s.kind, running)
    };
    let bodies: Vec<Value> = match kind {
        Some(Kind::Berth) => host
            .endpoint
            .get_json("/containers/stats?stream=0")
            .await?
            .as_array()
            .cloned()
            .unwrap_or_default(),
        _ => {
            let ep = &host.endpoint;
            stream::iter(running)
                .map(|id| async move {
                    ep.get_json(&format!(
                        "/containers/{id}/stats?stream=false&one-shot=true"
                    ))
                    .await
                })
                .buffer_unordered(STATS_CONCURRENCY)
                .filter_map(|r| async move {
                    // A container that stopped meanwhile is no reason to
                    // call the host down; one that does not answer is.
                    match r {
                        Ok(v) => Some(Ok(v)),
                        Err(ClientError::Status { .. }) => None,
                        Err(e) => Some(Err(e)),
                    }
                })
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    let mut s = host.write();
    for body in bodies {
        let Some(id) = body["id"].as_str().map(str::to_string) else {
            continue;
        };
        // dockerd answers a stopped container with an empty body.
        if body["read"].as_str().is_none_or(|r| r.starts_with("0001-")) {
            continue;
        }
        let point = crate::view::point_from_stats(&body);
        s.history
            .entry(id)
            .or_insert_with(|| Ring::new(HISTORY_POINTS))
            .push(point);
    }
    Ok(())
}

//! What berth remembers about one container: its configuration (merged
//! with the image's), host configuration, resolved mounts and run state.
//! Persisted as `<data-root>/containers/<id>/container.json`, rewritten
//! atomically on every change; the in-memory copy is the truth while the
//! daemon runs.

use std::path::{Path, PathBuf};

use bollard_stubs::models::{ContainerConfig, ContainerStateStatusEnum, HostConfig};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::images::config::timestamp;
use crate::runtime::spec::MountKind;

/// Lifecycle status, named as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    /// The API enum value.
    pub fn api(self) -> ContainerStateStatusEnum {
        match self {
            Status::Created => ContainerStateStatusEnum::CREATED,
            Status::Running => ContainerStateStatusEnum::RUNNING,
            Status::Paused => ContainerStateStatusEnum::PAUSED,
            Status::Restarting => ContainerStateStatusEnum::RESTARTING,
            Status::Removing => ContainerStateStatusEnum::REMOVING,
            Status::Exited => ContainerStateStatusEnum::EXITED,
            Status::Dead => ContainerStateStatusEnum::DEAD,
        }
    }

    /// The word `docker ps --filter status=` matches.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }

    /// Whether a process exists (running or frozen).
    pub fn is_alive(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }
}

/// Run state of a container.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunState {
    pub status: Status,
    pub pid: u32,
    pub exit_code: i64,
    pub error: String,
    pub oom_killed: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Health-check state (containers whose config has a probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<bollard_stubs::models::Health>,
}

/// One mount of a container as recorded (and shown by inspect).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountRecord {
    /// `bind`, `volume` or `tmpfs`.
    pub kind: String,
    /// Volume name (volumes only).
    pub name: Option<String>,
    /// Host path (volume `_data`, bind source); empty for tmpfs.
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
    /// `z`, `Z`, `ro`, ... as given (`Mode` of inspect).
    pub mode: String,
    pub propagation: String,
    /// tmpfs options.
    pub options: Vec<String>,
    /// Whether the container made this volume (anonymous; `rm -v` removes).
    pub anonymous: bool,
}

impl MountRecord {
    /// The runtime's kind of this mount.
    pub fn mount_kind(&self) -> MountKind {
        match self.kind.as_str() {
            "volume" => MountKind::Volume,
            "tmpfs" => MountKind::Tmpfs,
            _ => MountKind::Bind,
        }
    }
}

/// Everything about one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    /// With the leading `/`, as the API shows it.
    pub name: String,
    pub created: DateTime<Utc>,
    /// The program and its arguments (Entrypoint + Cmd resolved).
    pub path: String,
    pub args: Vec<String>,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    /// `sha256:...` of the image it was created from.
    pub image_id: String,
    pub state: RunState,
    pub restart_count: i64,
    pub mounts: Vec<MountRecord>,
    /// Set by `docker stop`/`kill`; restart policies leave it alone.
    pub manually_stopped: bool,
    pub has_been_started: bool,
    /// The OCI runtime used for this container.
    pub runtime: String,
}

/// Where a container's files live.
#[derive(Debug, Clone)]
pub struct ContainerPaths {
    pub dir: PathBuf,
}

impl ContainerPaths {
    /// `<data-root>/containers/<id>`.
    pub fn new(data_root: &Path, id: &str) -> ContainerPaths {
        ContainerPaths {
            dir: data_root.join("containers").join(id),
        }
    }
    pub fn record(&self) -> PathBuf {
        self.dir.join("container.json")
    }
    pub fn log(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}-json.log"))
    }
    pub fn hostname(&self) -> PathBuf {
        self.dir.join("hostname")
    }
    pub fn hosts(&self) -> PathBuf {
        self.dir.join("hosts")
    }
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }
    /// The shim's records of the init process.
    pub fn init_state(&self) -> PathBuf {
        self.dir.join("init")
    }
    /// The shim's records of an exec process.
    pub fn exec_state(&self, exec_id: &str) -> PathBuf {
        self.dir.join("exec").join(exec_id)
    }
}

impl Container {
    /// Writes the record atomically.
    pub fn save(&self, data_root: &Path) -> Result<()> {
        let paths = ContainerPaths::new(data_root, &self.id);
        berth_storage::atomic::write_json(&paths.record(), self)?;
        Ok(())
    }

    /// Reads a record.
    pub fn load(path: &Path) -> Result<Container> {
        let data = std::fs::read(path)
            .map_err(|e| EngineError::io(format!("read {}", path.display()), e))?;
        serde_json::from_slice(&data)
            .map_err(|e| EngineError::Internal(format!("corrupt {}: {e}", path.display())))
    }

    /// The name without its leading `/`.
    pub fn short_name(&self) -> &str {
        self.name.trim_start_matches('/')
    }

    /// `docker ps` STATUS text ("Up 3 minutes", "Exited (0) 2 seconds ago").
    pub fn status_text(&self, now: DateTime<Utc>) -> String {
        let ago = |t: Option<DateTime<Utc>>| human_duration(now - t.unwrap_or(now));
        match self.state.status {
            Status::Created => "Created".into(),
            Status::Running => format!(
                "Up {}{}",
                ago(self.state.started_at),
                super::health::status_suffix(self.state.health.as_ref())
            ),
            Status::Paused => format!("Up {} (Paused)", ago(self.state.started_at)),
            Status::Restarting => format!(
                "Restarting ({}) {} ago",
                self.state.exit_code,
                ago(self.state.finished_at)
            ),
            Status::Removing => "Removal In Progress".into(),
            Status::Exited => {
                if self.state.finished_at.is_none() {
                    "Created".into()
                } else {
                    format!(
                        "Exited ({}) {} ago",
                        self.state.exit_code,
                        ago(self.state.finished_at)
                    )
                }
            }
            Status::Dead => "Dead".into(),
        }
    }

    /// StartedAt/FinishedAt as inspect prints them (zero time when unset).
    pub fn time_field(t: Option<DateTime<Utc>>) -> String {
        t.map(timestamp)
            .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string())
    }
}

/// Docker's `units.HumanDuration`.
pub fn human_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds();
    if secs < 1 {
        return "Less than a second".into();
    }
    if secs == 1 {
        return "1 second".into();
    }
    if secs < 60 {
        return format!("{secs} seconds");
    }
    let mins = d.num_minutes();
    if mins == 1 {
        return "About a minute".into();
    }
    if mins < 60 {
        return format!("{mins} minutes");
    }
    let hours = (d.num_seconds() as f64 / 3600.0).round() as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    let days = hours / 24;
    if days < 14 {
        return format!("{days} days");
    }
    if days < 60 {
        return format!("{} weeks", days / 7);
    }
    if days < 365 * 2 {
        return format!("{} months", days / 30);
    }
    format!("{} years", days / 365)
}

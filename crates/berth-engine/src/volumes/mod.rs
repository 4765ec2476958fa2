//! Local named volumes (`<data-root>/volumes/<name>/_data`): the Engine API
//! operations (create, list, inspect, remove, prune), and what containers
//! call on them — references (create/remove), mounts (start/stop) and the
//! copy of the image's files into a new volume — with dockerd's events.

mod local;
mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bollard_stubs::models::{
    EventMessageTypeEnum, Volume, VolumeCreateRequest, VolumeListResponse, VolumePruneResponse,
    VolumeScopeEnum, VolumeUsageData,
};
use chrono::{SecondsFormat, Utc};

pub use local::ANONYMOUS_LABEL;
pub use store::{VolumeRecord, VolumeStore};

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::filters::Filters;

fn no_such_volume(name: &str) -> EngineError {
    EngineError::NotFound(format!("get {name}: no such volume"))
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

/// dockerd's `MatchKVList`: every `key` or `key=value` is in `labels`.
fn labels_match(wanted: &[String], labels: &HashMap<String, String>) -> bool {
    wanted.iter().all(|w| match w.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
        None => labels.contains_key(w.as_str()),
    })
}

/// Runs filesystem work off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::Internal(format!("volume task failed: {e}")))?
}

/// Clears the prune flag however the prune ends.
struct PruneGuard<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for PruneGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Engine {
    /// The API shape of a volume record.
    fn volume_api(&self, r: &VolumeRecord) -> Volume {
        Volume {
            name: r.name.clone(),
            driver: r.driver.clone(),
            mountpoint: self.volumes.data_path(&r.name).display().to_string(),
            created_at: Some(r.created_at.to_rfc3339_opts(SecondsFormat::Secs, true)),
            status: None,
            labels: r.labels.clone(),
            scope: Some(VolumeScopeEnum::LOCAL),
            cluster_volume: None,
            options: r.options.clone(),
            usage_data: None,
        }
    }

    fn publish_volume(&self, action: &str, name: &str, attrs: &[(&str, &str)]) {
        let attrs = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.events
            .publish(EventMessageTypeEnum::VOLUME, action, name, attrs);
    }

    /// Creates a volume, or returns the existing one of that name as
    /// dockerd does; `reference` (a container ID) is recorded as a user.
    fn create_volume_now(
        &self,
        req: VolumeCreateRequest,
        reference: Option<&str>,
    ) -> Result<Volume> {
        let (name, anonymous) = match req.name.filter(|n| !n.is_empty()) {
            Some(n) => (n, false),
            None => (berth_storage::random_id(), true),
        };
        let driver = req
            .driver
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| local::DRIVER.to_string());
        if driver != local::DRIVER {
            // What dockerd answers when no volume plugin has that name.
            return Err(EngineError::NotFound(format!(
                "create {name}: error looking up volume plugin {driver}: plugin {driver:?} not found"
            )));
        }
        let _lock = self.volumes.lock(&name);
        if let Some(mut existing) = self.volumes.get(&name) {
            if let Some(r) = reference {
                if existing.references.insert(r.to_string()) {
                    self.volumes.save(&existing)?;
                }
            }
            return Ok(self.volume_api(&existing));
        }
        let invalid = |msg: String| EngineError::InvalidParameter(format!("create {name}: {msg}"));
        local::validate_name(&name).map_err(invalid)?;
        let options = req.driver_opts.unwrap_or_default();
        local::validate_opts(&options).map_err(invalid)?;
        let mut labels = req.labels.unwrap_or_default();
        if anonymous {
            labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
        }
        let record = VolumeRecord {
            name: name.clone(),
            driver: driver.clone(),
            labels,
            options,
            created_at: Utc::now(),
            references: reference.map(str::to_string).into_iter().collect(),
            mounts: Default::default(),
        };
        self.volumes.create(&record)?;
        self.publish_volume("create", &name, &[("driver", &driver)]);
        Ok(self.volume_api(&record))
    }

    /// `POST /volumes/create`.
    pub async fn create_volume(self: &Arc<Self>, req: VolumeCreateRequest) -> Result<Volume> {
        let engine = Arc::clone(self);
        blocking(move || engine.create_volume_now(req, None)).await
    }

    /// `GET /volumes?filters=` (`dangling`, `driver`, `label`, `name`).
    pub async fn list_volumes(self: &Arc<Self>, filters: &Filters) -> Result<VolumeListResponse> {
        filters.validate(&["dangling", "driver", "label", "name"])?;
        let dangling = filters.get_bool("dangling")?;
        let mut volumes: Vec<Volume> = self
            .volumes
            .all()
            .into_iter()
            .filter(|r| {
                (!filters.contains("driver") || filters.get("driver").contains(&r.driver))
                    && (!filters.contains("name") || matches_pattern(filters.get("name"), &r.name))
                    && labels_match(filters.get("label"), &r.labels)
                    && dangling.is_none_or(|d| r.references.is_empty() == d)
            })
            .map(|r| self.volume_api(&r))
            .collect();
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(VolumeListResponse {
            volumes: Some(volumes),
            warnings: None,
        })
    }

    /// `GET /volumes/{name}`.
    pub async fn inspect_volume(self: &Arc<Self>, name: &str) -> Result<Volume> {
        self.volumes
            .get(name)
            .map(|r| self.volume_api(&r))
            .ok_or_else(|| no_such_volume(name))
    }

    fn remove_volume_now(&self, name: &str, force: bool) -> Result<()> {
        let _lock = self.volumes.lock(name);
        let Some(record) = self.volumes.get(name) else {
            return if force {
                Ok(())
            } else {
                Err(no_such_volume(name))
            };
        };
        if !record.references.is_empty() {
            let users: Vec<&str> = record.references.iter().map(String::as_str).collect();
            return Err(EngineError::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        if !record.mounts.is_empty() {
            return Err(EngineError::Internal(format!(
                "remove {name}: volume has active mounts"
            )));
        }
        let data = self.volumes.data_path(name);
        if self.volumes.is_mounted(name) {
            local::unmount(&data).map_err(EngineError::Internal)?;
            self.volumes.set_mounted(name, false);
        }
        if let Err(e) = self.volumes.remove(name) {
            if force {
                // As dockerd's `--force`: the volume is forgotten even when
                // its files could not all be removed.
                self.volumes.forget(name);
            }
            return Err(e);
        }
        self.publish_volume("destroy", name, &[("driver", &record.driver)]);
        Ok(())
    }

    /// `DELETE /volumes/{name}?force=`: 409 while a container references
    /// it; `force` only makes a missing volume (or a failed removal) not an
    /// error.
    pub async fn remove_volume(self: &Arc<Self>, name: &str, force: bool) -> Result<()> {
        let engine = Arc::clone(self);
        let name = name.to_string();
        blocking(move || engine.remove_volume_now(&name, force)).await
    }

    /// `POST /volumes/prune?filters=`: unused local volumes without mount
    /// options; only anonymous ones unless `all=true` (dockerd ≥ 23 and API
    /// ≥ 1.42 — the API adds `all=true` for older clients).
    pub async fn prune_volumes(self: &Arc<Self>, filters: &Filters) -> Result<VolumePruneResponse> {
        if self.volumes.pruning.swap(true, Ordering::SeqCst) {
            return Err(EngineError::Conflict(
                "a prune operation is already running".into(),
            ));
        }
        let guard_engine = Arc::clone(self);
        let filters = filters.clone();
        blocking(move || {
            let _guard = PruneGuard(&guard_engine.volumes.pruning);
            guard_engine.prune_volumes_now(&filters)
        })
        .await
    }

    fn prune_volumes_now(&self, filters: &Filters) -> Result<VolumePruneResponse> {
        filters.validate(&["label", "label!", "all"])?;
        let all = match filters.get("all") {
            [] => false,
            [one] => parse_go_bool(one).ok_or_else(|| {
                EngineError::InvalidParameter(format!(
                    "invalid filter 'all': strconv.ParseBool: parsing {one:?}: invalid syntax"
                ))
            })?,
            many => {
                return Err(EngineError::InvalidParameter(format!(
                    "invalid filter 'all=[{}]': only one value is expected",
                    many.join(" ")
                )))
            }
        };
        let mut wanted = filters.get("label").to_vec();
        if !all {
            wanted.push(ANONYMOUS_LABEL.to_string());
        }
        let unwanted = filters.get("label!");
        let candidates: Vec<String> = self
            .volumes
            .all()
            .into_iter()
            .filter(|r| {
                r.driver == local::DRIVER
                    && r.references.is_empty()
                    && r.options.is_empty()
                    && labels_match(&wanted, &r.labels)
                    && (unwanted.is_empty() || !labels_match(unwanted, &r.labels))
            })
            .map(|r| r.name)
            .collect();
        let mut deleted = Vec::new();
        let mut reclaimed: u64 = 0;
        for name in candidates {
            let _lock = self.volumes.lock(&name);
            // A container may have taken it since the list was made.
            let Some(record) = self.volumes.get(&name) else {
                continue;
            };
            if !record.references.is_empty() {
                continue;
            }
            let size = local::dir_size(&self.volumes.data_path(&name)).unwrap_or_else(|e| {
                tracing::warn!("could not determine size of volume {name}: {e}");
                0
            });
            if let Err(e) = self.volumes.remove(&name) {
                tracing::warn!("could not remove volume {name}: {e}");
                continue;
            }
            self.publish_volume("destroy", &name, &[("driver", &record.driver)]);
            reclaimed += size;
            deleted.push(name);
        }
        self.publish_volume("prune", "", &[("reclaimed", &reclaimed.to_string())]);
        Ok(VolumePruneResponse {
            volumes_deleted: Some(deleted),
            space_reclaimed: Some(reclaimed as i64),
        })
    }

    /// The local volumes without mount options with their `UsageData`
    /// (size on disk, containers referencing them), for `GET /system/df`.
    pub async fn volumes_disk_usage(self: &Arc<Self>) -> Result<Vec<Volume>> {
        let engine = Arc::clone(self);
        blocking(move || {
            let mut out = Vec::new();
            for r in engine.volumes.all() {
                if r.driver != local::DRIVER || !r.options.is_empty() {
                    continue;
                }
                let size = match local::dir_size(&engine.volumes.data_path(&r.name)) {
                    Ok(n) => n as i64,
                    Err(_) => -1,
                };
                let mut v = engine.volume_api(&r);
                v.usage_data = Some(VolumeUsageData {
                    size,
                    ref_count: r.references.len() as i64,
                });
                out.push(v);
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await
    }

    /// Container create, for `-v name:/path` and `--mount source=name`:
    /// takes a reference on volume `name` for `container_id`, creating the
    /// volume when it does not exist. Returns its `Mountpoint`. Blocking.
    pub fn volume_acquire(&self, name: &str, container_id: &str) -> Result<PathBuf> {
        let req = VolumeCreateRequest {
            name: Some(name.to_string()),
            ..Default::default()
        };
        self.create_volume_now(req, Some(container_id))?;
        Ok(self.volumes.data_path(name))
    }

    /// Container create, for volumes the request describes (`-v /path` —
    /// no name, so an anonymous volume — or `--mount` with `volume-opt`,
    /// `volume-driver` or labels): creates it unless a volume of that name
    /// exists, and takes a reference for `container_id`. Blocking.
    pub fn volume_acquire_new(
        &self,
        req: VolumeCreateRequest,
        container_id: &str,
    ) -> Result<Volume> {
        self.create_volume_now(req, Some(container_id))
    }

    /// Container removal: drops `container_id`'s reference on `name`.
    /// Missing volumes and references are fine. Blocking.
    pub fn volume_release(&self, name: &str, container_id: &str) -> Result<()> {
        let _lock = self.volumes.lock(name);
        let Some(mut record) = self.volumes.get(name) else {
            return Ok(());
        };
        if record.references.remove(container_id) {
            self.volumes.save(&record)?;
        }
        Ok(())
    }

    /// The containers referencing volume `name`.
    pub fn volume_users(&self, name: &str) -> Vec<String> {
        self.volumes
            .get(name)
            .map(|r| r.references.into_iter().collect())
            .unwrap_or_default()
    }

    /// Container start: mounts what the volume's options describe (first
    /// user only), counts `container_id` as a holder, and publishes
    /// dockerd's `mount` event. Returns the host path to bind into the
    /// container. Blocking.
    pub fn volume_mount(
        &self,
        name: &str,
        container_id: &str,
        destination: &str,
        read_write: bool,
        propagation: &str,
    ) -> Result<PathBuf> {
        let _lock = self.volumes.lock(name);
        let mut record = self.volumes.get(name).ok_or_else(|| no_such_volume(name))?;
        let data = self.volumes.data_path(name);
        if local::needs_mount(&record.options) && !self.volumes.is_mounted(name) {
            local::mount(&record.options, &data).map_err(EngineError::Internal)?;
            self.volumes.set_mounted(name, true);
        }
        *record.mounts.entry(container_id.to_string()).or_default() += 1;
        self.volumes.save(&record)?;
        self.publish_volume(
            "mount",
            name,
            &[
                ("driver", &record.driver),
                ("container", container_id),
                ("destination", destination),
                ("read/write", if read_write { "true" } else { "false" }),
                ("propagation", propagation),
            ],
        );
        Ok(data)
    }

    /// Container stop: drops one of `container_id`'s mounts, unmounts the
    /// options' mount after the last holder, and publishes `unmount`.
    /// Blocking.
    pub fn volume_unmount(&self, name: &str, container_id: &str) -> Result<()> {
        let _lock = self.volumes.lock(name);
        let Some(mut record) = self.volumes.get(name) else {
            return Ok(());
        };
        match record.mounts.get_mut(container_id) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                record.mounts.remove(container_id);
            }
            None => {
                tracing::warn!("volume {name}: {container_id} unmounts without a mount");
                return Ok(());
            }
        }
        if record.mounts.is_empty() && self.volumes.is_mounted(name) {
            local::unmount(&self.volumes.data_path(name)).map_err(EngineError::Internal)?;
            self.volumes.set_mounted(name, false);
        }
        self.volumes.save(&record)?;
        self.publish_volume(
            "unmount",
            name,
            &[("driver", &record.driver), ("container", container_id)],
        );
        Ok(())
    }

    /// Container create: fills an empty volume with what the image has at
    /// the mount point, as dockerd does (unless `nocopy`). `destination`
    /// is resolved inside `rootfs` (the container's mounted root) with
    /// chroot semantics, so image symlinks cannot point the copy at the
    /// host. Nothing happens when the volume already has files or the
    /// image has no directory there. Blocking.
    pub fn volume_copy_up(&self, name: &str, rootfs: &Path, destination: &str) -> Result<()> {
        let _lock = self.volumes.lock(name);
        let record = self.volumes.get(name).ok_or_else(|| no_such_volume(name))?;
        let root = berth_storage::archive::beneath::open_root(rootfs)?;
        let Some(source) =
            berth_storage::archive::in_root::open_dir(&root, Path::new(destination))?
        else {
            return Ok(());
        };
        let data = self.volumes.data_path(name);
        // Like dockerd, a volume whose options mount something is mounted
        // for the copy and unmounted after it.
        let mount_now = local::needs_mount(&record.options) && !self.volumes.is_mounted(name);
        if mount_now {
            local::mount(&record.options, &data).map_err(EngineError::Internal)?;
        }
        let copied = (|| {
            let empty = std::fs::read_dir(&data)
                .map_err(|e| EngineError::io(format!("read {}", data.display()), e))?
                .next()
                .is_none();
            if !empty {
                return Ok(());
            }
            let source = berth_storage::archive::in_root::fd_path(&source);
            berth_storage::drivers::copy_tree(&source, &data).map_err(EngineError::from)
        })();
        if mount_now {
            if let Err(e) = local::unmount(&data) {
                tracing::warn!("volume {name}: {e}");
            }
        }
        copied
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests;

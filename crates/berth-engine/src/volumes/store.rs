//! The volume store: every volume's record in memory and on disk
//! (`<data-root>/volumes/<name>/volume.json` beside `_data`), and the
//! per-name locks that keep create, remove, mount and reference changes on
//! one volume in order while different volumes proceed in parallel.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Condvar, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::local;
use crate::error::{EngineError, Result};

const RECORD_FILE: &str = "volume.json";
const DATA_DIR: &str = "_data";

/// What berth keeps about one volume. References and mount holders are
/// persisted so a restarted daemon still refuses to remove a volume a
/// container uses, and unmounts a mounted one only after its last user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeRecord {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "Labels", default)]
    pub labels: HashMap<String, String>,
    #[serde(rename = "Options", default)]
    pub options: HashMap<String, String>,
    #[serde(rename = "CreatedAt")]
    pub created_at: DateTime<Utc>,
    /// Containers that reference the volume (created with it, not yet removed).
    #[serde(rename = "References", default)]
    pub references: BTreeSet<String>,
    /// Active mounts by holder (a container ID), for volumes whose options
    /// mount something on `_data`.
    #[serde(rename = "Mounts", default)]
    pub mounts: BTreeMap<String, u32>,
}

struct Entry {
    record: VolumeRecord,
    /// Whether the options' mount is on `_data` now (not persisted: the
    /// kernel is asked at start).
    mounted: bool,
}

/// All volumes of one data root.
pub struct VolumeStore {
    root: PathBuf,
    entries: Mutex<BTreeMap<String, Entry>>,
    busy: Mutex<HashSet<String>>,
    freed: Condvar,
    /// Set while a prune runs; a second prune is refused as dockerd does.
    pub(crate) pruning: AtomicBool,
    /// Who owns a new volume's `_data`: container root on the host
    /// (`--userns-remap`), else the daemon.
    data_owner: (u32, u32),
}

/// Holds the lock on one volume name; released on drop.
pub struct NameLock<'a> {
    store: &'a VolumeStore,
    name: String,
}

impl Drop for NameLock<'_> {
    fn drop(&mut self) {
        let mut busy = self.store.busy.lock().unwrap_or_else(|e| e.into_inner());
        busy.remove(&self.name);
        self.store.freed.notify_all();
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> EngineError {
    EngineError::io(format!("{what} {}", path.display()), e)
}

impl VolumeStore {
    /// New volumes' `_data` belongs to `owner` (the remapped root), as
    /// dockerd's local driver makes it under `--userns-remap`.
    pub fn with_data_owner(mut self, owner: (u32, u32)) -> VolumeStore {
        self.data_owner = owner;
        self
    }

    /// Loads every volume under `<data_root>/volumes`, dropping the
    /// half-made ones a crash left in `.tmp-*` directories.
    pub fn open(data_root: &Path) -> Result<VolumeStore> {
        let root = data_root.join("volumes");
        std::fs::create_dir_all(&root).map_err(|e| io("create", &root, e))?;
        let mut entries = BTreeMap::new();
        for dirent in std::fs::read_dir(&root).map_err(|e| io("read", &root, e))? {
            let dirent = dirent.map_err(|e| io("read", &root, e))?;
            let name = dirent.file_name().to_string_lossy().into_owned();
            let path = dirent.path();
            if name.starts_with(".tmp-") {
                if let Err(e) = std::fs::remove_dir_all(&path) {
                    tracing::warn!("removing half-made volume {}: {e}", path.display());
                }
                continue;
            }
            if !path.is_dir() {
                continue;
            }
            let record_path = path.join(RECORD_FILE);
            let record: VolumeRecord = match std::fs::read(&record_path) {
                Ok(data) => match serde_json::from_slice(&data) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!("skipping volume {name}: corrupt {RECORD_FILE}: {e}");
                        continue;
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::debug!("skipping non-volume directory {}", path.display());
                    continue;
                }
                Err(e) => return Err(io("read", &record_path, e)),
            };
            let mounted =
                local::needs_mount(&record.options) && local::is_mount_root(&path.join(DATA_DIR));
            entries.insert(name, Entry { record, mounted });
        }
        Ok(VolumeStore {
            data_owner: (0, 0),
            root,
            entries: Mutex::new(entries),
            busy: Mutex::new(HashSet::new()),
            freed: Condvar::new(),
            pruning: AtomicBool::new(false),
        })
    }

    fn entries(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for, then takes, the lock on `name`.
    pub fn lock(&self, name: &str) -> NameLock<'_> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        while busy.contains(name) {
            busy = self.freed.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        busy.insert(name.to_string());
        NameLock {
            store: self,
            name: name.to_string(),
        }
    }

    /// Where volume `name` keeps its data (its `Mountpoint`).
    pub fn data_path(&self, name: &str) -> PathBuf {
        self.root.join(name).join(DATA_DIR)
    }

    /// The record of `name`.
    pub fn get(&self, name: &str) -> Option<VolumeRecord> {
        self.entries().get(name).map(|e| e.record.clone())
    }

    /// Whether the options' mount of `name` is in place.
    pub fn is_mounted(&self, name: &str) -> bool {
        self.entries().get(name).is_some_and(|e| e.mounted)
    }

    /// Records whether the options' mount of `name` is in place.
    pub fn set_mounted(&self, name: &str, mounted: bool) {
        if let Some(e) = self.entries().get_mut(name) {
            e.mounted = mounted;
        }
    }

    /// Every record, by name.
    pub fn all(&self) -> Vec<VolumeRecord> {
        self.entries().values().map(|e| e.record.clone()).collect()
    }

    /// Makes the volume on disk — `_data` and its record built in a
    /// `.tmp-` directory, then renamed into place, so a crash leaves either
    /// a whole volume or nothing — and in memory. Hold the name's lock.
    pub fn create(&self, record: &VolumeRecord) -> Result<()> {
        let tmp = self
            .root
            .join(format!(".tmp-{}", &berth_storage::random_id()[..16]));
        let made = (|| {
            use std::os::unix::fs::DirBuilderExt;
            // The volume's own directory is only traversable, as dockerd
            // makes it; `_data` is what containers see.
            std::fs::DirBuilder::new()
                .mode(0o701)
                .create(&tmp)
                .map_err(|e| io("create", &tmp, e))?;
            let data = tmp.join(DATA_DIR);
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(&data)
                .map_err(|e| io("create", &data, e))?;
            if self.data_owner != (0, 0) {
                let (uid, gid) = self.data_owner;
                std::os::unix::fs::chown(&data, Some(uid), Some(gid))
                    .map_err(|e| io("chown", &data, e))?;
            }
            berth_storage::atomic::write_json(&tmp.join(RECORD_FILE), record)?;
            let dest = self.root.join(&record.name);
            std::fs::rename(&tmp, &dest).map_err(|e| io("rename onto", &dest, e))?;
            berth_storage::atomic::sync_dir(&self.root)?;
            Ok::<(), EngineError>(())
        })();
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        self.entries().insert(
            record.name.clone(),
            Entry {
                record: record.clone(),
                mounted: false,
            },
        );
        Ok(())
    }

    /// Persists a changed record (references, mounts). Hold the name's lock.
    pub fn save(&self, record: &VolumeRecord) -> Result<()> {
        let path = self.root.join(&record.name).join(RECORD_FILE);
        berth_storage::atomic::write_json(&path, record)?;
        if let Some(e) = self.entries().get_mut(&record.name) {
            e.record = record.clone();
        }
        Ok(())
    }

    /// Deletes the volume's data and record. Refuses while something is
    /// still mounted on `_data`: deleting through a bind mount would
    /// delete the host directory it shows. Hold the name's lock.
    pub fn remove(&self, name: &str) -> Result<()> {
        let dir = self.root.join(name);
        let data = dir.join(DATA_DIR);
        if local::is_mount_root(&data) {
            return Err(EngineError::Internal(format!(
                "unable to remove volume {name}: {} is still mounted",
                data.display()
            )));
        }
        // Renamed aside first: a crash midway leaves a `.tmp-` directory
        // that start-up removes, never a volume with half its data.
        let doomed = self
            .root
            .join(format!(".tmp-{}", &berth_storage::random_id()[..16]));
        match std::fs::rename(&dir, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("rename", &dir, e)),
        }
        self.entries().remove(name);
        match std::fs::remove_dir_all(&doomed) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(EngineError::io(
                format!("error removing volume path '{}'", dir.display()),
                e,
            )),
        }
    }

    /// Forgets `name` without touching its files (`force` after a failed
    /// removal, as dockerd purges its metadata).
    pub fn forget(&self, name: &str) {
        let _ = std::fs::remove_file(self.root.join(name).join(RECORD_FILE));
        self.entries().remove(name);
    }
}

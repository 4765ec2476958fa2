//! The containers the engine knows, by ID and by name, each behind a
//! handle that carries its record, a lock serializing lifecycle
//! operations, a watch channel for waiters and the stream hub of its
//! running process. Lookups follow dockerd: full ID, name, ID prefix.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::{broadcast, watch};

use super::hub::StreamHub;
use super::record::{Container, Status};
use super::streams::OutputChunk;
use crate::error::{EngineError, Result};

/// What waiters watch: the status, the last exit code and how many exits
/// have happened (so "next exit" can tell a new one from an old one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watched {
    pub status: Status,
    pub exit_code: i64,
    pub exits: u64,
    pub removed: bool,
}

/// One container in memory.
pub struct ContainerHandle {
    pub id: String,
    record: Mutex<Container>,
    /// Held across a whole lifecycle operation (start, stop, remove...).
    pub op: tokio::sync::Mutex<()>,
    pub watch: watch::Sender<Watched>,
    /// The shim connection (output pump, stdin) of the running process.
    pub hub: Mutex<Option<Arc<StreamHub>>>,
    /// Output of every run of the container, for attach sessions; it
    /// outlives each process so an attach made before a start misses nothing.
    pub output: broadcast::Sender<OutputChunk>,
    /// Held while the record is written, so racing saves land in order.
    saving: Mutex<()>,
}

impl ContainerHandle {
    /// A handle for a loaded or new record.
    pub fn new(record: Container) -> Arc<ContainerHandle> {
        let watched = Watched {
            status: record.state.status,
            exit_code: record.state.exit_code,
            exits: 0,
            removed: false,
        };
        Arc::new(ContainerHandle {
            id: record.id.clone(),
            record: Mutex::new(record),
            op: tokio::sync::Mutex::new(()),
            watch: watch::channel(watched).0,
            hub: Mutex::new(None),
            output: broadcast::channel(1024).0,
            saving: Mutex::new(()),
        })
    }

    /// Writes the record as it is now. Each write takes the record under
    /// the save lock, so of two racing changes the later write is never
    /// the older state (a snapshot taken before the lock could be).
    pub fn persist(&self, data_root: &Path) -> Result<()> {
        let _saving = self.saving.lock().unwrap_or_else(|e| e.into_inner());
        self.snapshot().save(data_root)
    }

    /// The record, locked briefly (never across an await).
    pub fn lock(&self) -> MutexGuard<'_, Container> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the record.
    pub fn snapshot(&self) -> Container {
        self.lock().clone()
    }

    /// Tells waiters about the current state (`exited` counts an exit).
    pub fn notify(&self, exited: bool) {
        let (status, code) = {
            let r = self.lock();
            (r.state.status, r.state.exit_code)
        };
        self.watch.send_modify(|w| {
            w.status = status;
            w.exit_code = code;
            if exited {
                w.exits += 1;
            }
        });
    }

    /// The stream hub of the running process, if any.
    pub fn hub(&self) -> Option<Arc<StreamHub>> {
        self.hub.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the stream hub.
    pub fn set_hub(&self, hub: Option<Arc<StreamHub>>) {
        *self.hub.lock().unwrap_or_else(|e| e.into_inner()) = hub;
    }
}

#[derive(Default)]
struct Index {
    by_id: HashMap<String, Arc<ContainerHandle>>,
    /// `/name` → ID.
    names: HashMap<String, String>,
}

/// All containers.
#[derive(Default)]
pub struct ContainerStore {
    index: RwLock<Index>,
}

/// dockerd's "no such container" error.
pub fn no_such(name: &str) -> EngineError {
    EngineError::NotFound(format!("No such container: {name}"))
}

impl ContainerStore {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a container whose name was reserved (or is free).
    pub fn insert(&self, handle: Arc<ContainerHandle>) -> Result<()> {
        let name = handle.lock().name.clone();
        let mut idx = self.write();
        if let Some(other) = idx.names.get(&name) {
            if *other != handle.id {
                return Err(name_conflict(&name, other));
            }
        }
        idx.names.insert(name, handle.id.clone());
        idx.by_id.insert(handle.id.clone(), handle);
        Ok(())
    }

    /// Takes `name` (with leading `/`) for container `id` while it is being
    /// created, so two creates cannot both get it; 409 if taken. The
    /// reservation is given back on drop unless the container was inserted.
    pub fn reserve_name(&self, name: &str, id: &str) -> Result<NameReservation<'_>> {
        let mut idx = self.write();
        if let Some(other) = idx.names.get(name) {
            return Err(name_conflict(name, other));
        }
        idx.names.insert(name.to_string(), id.to_string());
        Ok(NameReservation {
            store: self,
            name: name.to_string(),
            id: id.to_string(),
        })
    }

    /// Forgets a container and its name.
    pub fn remove(&self, id: &str) {
        let mut idx = self.write();
        if let Some(h) = idx.by_id.remove(id) {
            let name = h.lock().name.clone();
            if idx.names.get(&name).map(String::as_str) == Some(id) {
                idx.names.remove(&name);
            }
        }
    }

    /// Moves `id` to `new_name` (with leading `/`); 409 if taken.
    pub fn rename(&self, id: &str, old: &str, new_name: &str) -> Result<()> {
        let mut idx = self.write();
        if let Some(other) = idx.names.get(new_name) {
            if other != id {
                return Err(name_conflict(new_name, other));
            }
        }
        idx.names.remove(old);
        idx.names.insert(new_name.to_string(), id.to_string());
        Ok(())
    }

    /// Whether `name` (with `/`) is taken, and by whom.
    pub fn name_owner(&self, name: &str) -> Option<String> {
        self.read().names.get(name).cloned()
    }

    /// Every container.
    pub fn all(&self) -> Vec<Arc<ContainerHandle>> {
        self.read().by_id.values().cloned().collect()
    }

    /// Finds a container by full ID, name, or unique ID prefix.
    pub fn resolve(&self, name: &str) -> Result<Arc<ContainerHandle>> {
        if name.is_empty() {
            return Err(no_such(name));
        }
        let idx = self.read();
        if let Some(h) = idx.by_id.get(name) {
            return Ok(h.clone());
        }
        let slashed = if name.starts_with('/') {
            name.to_string()
        } else {
            format!("/{name}")
        };
        if let Some(id) = idx.names.get(&slashed) {
            if let Some(h) = idx.by_id.get(id) {
                return Ok(h.clone());
            }
        }
        let mut found = idx.by_id.iter().filter(|(id, _)| id.starts_with(name));
        match (found.next(), found.next()) {
            (Some((_, h)), None) => Ok(h.clone()),
            (Some(_), Some(_)) => Err(EngineError::InvalidParameter(format!(
                "multiple IDs found with provided prefix: {name}"
            ))),
            _ => Err(no_such(name)),
        }
    }
}

/// A container name held by a create in progress (see
/// [`ContainerStore::reserve_name`]).
pub struct NameReservation<'a> {
    store: &'a ContainerStore,
    name: String,
    id: String,
}

impl Drop for NameReservation<'_> {
    fn drop(&mut self) {
        let mut idx = self.store.write();
        let ours = idx.names.get(&self.name) == Some(&self.id);
        if ours && !idx.by_id.contains_key(&self.id) {
            idx.names.remove(&self.name);
        }
    }
}

fn name_conflict(name: &str, id: &str) -> EngineError {
    EngineError::Conflict(format!(
        "Conflict. The container name \"{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
    ))
}

const ADJECTIVES: &[&str] = &[
    "amber", "bold", "brave", "bright", "calm", "clever", "cosmic", "crisp", "daring", "eager",
    "fancy", "fierce", "gentle", "glad", "golden", "happy", "hardy", "jolly", "keen", "kind",
    "lively", "lucid", "merry", "mighty", "nimble", "noble", "patient", "proud", "quiet", "rapid",
    "serene", "sharp", "sleepy", "steady", "swift", "tender", "vivid", "wise", "witty", "zesty",
];

const NAMES: &[&str] = &[
    "agnesi",
    "babbage",
    "bohr",
    "curie",
    "darwin",
    "dijkstra",
    "euler",
    "faraday",
    "fermi",
    "franklin",
    "galileo",
    "gauss",
    "goodall",
    "hamilton",
    "hopper",
    "hypatia",
    "johnson",
    "kepler",
    "knuth",
    "lamarr",
    "lovelace",
    "maxwell",
    "meitner",
    "mendel",
    "newton",
    "noether",
    "pascal",
    "ramanujan",
    "ritchie",
    "sagan",
    "shannon",
    "tesla",
    "thompson",
    "turing",
    "volta",
    "wozniak",
    "yalow",
    "zuse",
];

/// A random `adjective_scientist` name not yet taken.
pub fn generate_name(store: &ContainerStore) -> String {
    for attempt in 0.. {
        let mut raw = [0u8; 4];
        getrandom::fill(&mut raw).expect("the kernel's random source is available");
        let a = ADJECTIVES[raw[0] as usize % ADJECTIVES.len()];
        let n = NAMES[raw[1] as usize % NAMES.len()];
        let name = if attempt < 10 {
            format!("{a}_{n}")
        } else {
            format!("{a}_{n}{}", raw[2] % 10)
        };
        if store.name_owner(&format!("/{name}")).is_none() {
            return name;
        }
    }
    unreachable!("the loop only ends by returning")
}

/// Validates a user-given container name as dockerd does.
pub fn validate_name(name: &str) -> Result<String> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let mut chars = bare.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(EngineError::InvalidParameter(format!(
            "Invalid container name ({bare}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    Ok(format!("/{bare}"))
}

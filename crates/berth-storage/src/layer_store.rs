//! The content-addressed layer store above the driver. Image layers are
//! known by chain ID (their diff ID folded with their parents'), stored
//! once however many images share them, and reference counted in memory:
//! a child holds its parent, an image holds its top layer, a container's
//! writable layer holds its image's top layer. Counts are rebuilt at start
//! from what is on disk, so nothing but the layers themselves is persisted.
//!
//! On disk, under `<data-root>/layers/`:
//! `sha256/<hex>/layer.json` + `tar-split.zst` (written once, in `tmp/` and
//! renamed into place), `mounts/<name>.json` for writable layers, and
//! `tmp/<cache-id>/` for work in progress — which start-up removes, with its
//! driver layer, so a crash never leaves a half-made layer behind.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::archive::{self, SplitRecorder};
use crate::driver::{Driver, RwLayerOpts, Usage};
use crate::error::{Result, StorageError};
use crate::idmap::IdMap;

/// A layer's chain ID (`sha256:<hex>`).
pub type ChainId = String;
/// A layer's diff ID (`sha256:<hex>` of its uncompressed tar).
pub type DiffId = String;

/// What the store records about one image layer (immutable once written).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerInfo {
    pub chain_id: ChainId,
    pub diff_id: DiffId,
    pub parent: Option<ChainId>,
    /// The driver's id for this layer.
    pub cache_id: String,
    /// Bytes of file content the layer adds (dockerd's layer size).
    pub size: u64,
    /// Length of the uncompressed layer tar.
    pub tar_size: u64,
    pub created: DateTime<Utc>,
}

/// A container's writable layer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RwLayer {
    /// The owner's name (the container ID).
    pub name: String,
    /// The driver's id for this layer.
    pub mount_id: String,
    /// The image top layer it sits on.
    pub parent: Option<ChainId>,
    /// `--storage-opt size`, if one was set.
    pub size_limit: Option<u64>,
    /// The driver's id for the init layer between image and container
    /// (mount points and placeholder files the runtime needs), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_id: Option<String>,
}

/// Fills a container's init layer, given the layer's mounted root.
pub type InitLayer<'a> = &'a dyn Fn(&Path) -> Result<()>;

struct Held {
    info: LayerInfo,
    refs: usize,
}

#[derive(Default)]
struct State {
    layers: HashMap<ChainId, Held>,
    rw: HashMap<String, RwLayer>,
}

/// The layer store.
pub struct LayerStore {
    root: PathBuf,
    driver: Arc<dyn Driver>,
    state: Mutex<State>,
    /// `--userns-remap`: whose ids layers are stored with.
    ids: IdMap,
}

/// The chain ID of `diff_id` on top of `parent`.
pub fn chain_id(parent: Option<&str>, diff_id: &str) -> ChainId {
    match parent {
        None => diff_id.to_string(),
        Some(p) => format!(
            "sha256:{}",
            hex::encode(Sha256::digest(format!("{p} {diff_id}").as_bytes()))
        ),
    }
}

/// A fresh random id for the driver (64 hex digits).
pub fn random_id() -> String {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).expect("the kernel's random source is available");
    hex::encode(raw)
}

fn digest_hex(digest: &str) -> Result<&str> {
    match digest.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(h),
        _ => Err(StorageError::InvalidArchive(format!(
            "invalid digest {digest:?}"
        ))),
    }
}

/// Hashes and counts what passes through.
struct DigestReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Hashes what passes through to a writer.
struct DigestWriter<'a> {
    inner: &'a mut dyn Write,
    hasher: Sha256,
}

impl Write for DigestWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl LayerStore {
    /// Opens `<data-root>/layers`. Call [`LayerStore::reconcile`] before use.
    pub fn open(data_root: &Path, driver: Arc<dyn Driver>) -> Result<LayerStore> {
        let root = data_root.join("layers");
        for sub in ["sha256", "mounts", "tmp"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| StorageError::at(&dir, "create", e))?;
        }
        Ok(LayerStore {
            root,
            driver,
            state: Mutex::new(State::default()),
            ids: IdMap::identity(),
        })
    }

    /// Stores layers for containers remapped by `ids`: unpacked owners are
    /// translated to the host, every new layer's root belongs to the
    /// remapped root, and diffs are written with the container's ids. The
    /// data root must be one of its own per mapping (dockerd's
    /// `<data-root>/<uid>.<gid>`), so ownerships never mix.
    pub fn with_id_map(mut self, ids: IdMap) -> LayerStore {
        self.ids = ids;
        self
    }

    /// The id mapping layers are stored with.
    pub fn id_map(&self) -> &IdMap {
        &self.ids
    }

    /// Gives a new layer's root directory to the remapped root when the
    /// driver made it for the daemon (`0:0`); a root inherited from a
    /// parent layer keeps its owner.
    fn own_root(&self, id: &str) -> Result<()> {
        if self.ids.is_identity() {
            return Ok(());
        }
        let root = self.driver.content_root(id)?;
        let owned = (|| -> Result<()> {
            let st =
                rustix::fs::stat(&root).map_err(|e| StorageError::at(&root, "stat", e.into()))?;
            if (st.st_uid, st.st_gid) == (0, 0) {
                let (uid, gid) = self.ids.root();
                rustix::fs::chown(
                    &root,
                    Some(rustix::fs::Uid::from_raw(uid)),
                    Some(rustix::fs::Gid::from_raw(gid)),
                )
                .map_err(|e| StorageError::at(&root, "chown", e.into()))?;
            }
            Ok(())
        })();
        let released = self.driver.release_content_root(id);
        owned?;
        released
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn layer_dir(&self, chain: &str) -> Result<PathBuf> {
        Ok(self.root.join("sha256").join(digest_hex(chain)?))
    }

    fn tmp_dir(&self, cache_id: &str) -> PathBuf {
        self.root.join("tmp").join(cache_id)
    }

    /// The driver below the store.
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.driver
    }

    /// The layer `chain`, if the store has it.
    pub fn get(&self, chain: &str) -> Option<LayerInfo> {
        self.lock().layers.get(chain).map(|h| h.info.clone())
    }

    /// Every layer in the store.
    pub fn list(&self) -> Vec<LayerInfo> {
        self.lock()
            .layers
            .values()
            .map(|h| h.info.clone())
            .collect()
    }

    /// Takes a reference on layer `chain`.
    pub fn acquire(&self, chain: &str) -> Result<LayerInfo> {
        let mut st = self.lock();
        let held = st
            .layers
            .get_mut(chain)
            .ok_or_else(|| StorageError::NotFound(format!("layer does not exist: {chain}")))?;
        held.refs += 1;
        Ok(held.info.clone())
    }

    /// Unpacks a layer tar (plain, gzip or zstd) on top of `parent` and
    /// returns it with a reference held for the caller. When `expected`
    /// is given and that layer is already stored, the input is not read.
    /// On any failure nothing of the new layer remains.
    pub fn register(
        &self,
        parent: Option<&str>,
        input: &mut dyn Read,
        expected: Option<&str>,
    ) -> Result<LayerInfo> {
        if let Some(diff_id) = expected {
            digest_hex(diff_id)?;
            let chain = chain_id(parent, diff_id);
            if let Ok(info) = self.acquire(&chain) {
                return Ok(info);
            }
        }
        let parent_info = match parent {
            Some(p) => Some(self.acquire(p)?),
            None => None,
        };
        let cache_id = random_id();
        let tmp = self.tmp_dir(&cache_id);
        let result = self.unpack(&cache_id, &tmp, parent_info.as_ref(), input, expected);
        let info = match result {
            Ok(info) => info,
            Err(e) => {
                self.discard(&cache_id);
                if let Some(p) = parent {
                    let _ = self.release(p);
                }
                return Err(e);
            }
        };
        let mut st = self.lock();
        if let Some(existing) = st.layers.get_mut(&info.chain_id) {
            // Someone stored the same layer meanwhile: keep theirs.
            existing.refs += 1;
            let existing = existing.info.clone();
            drop(st);
            self.discard(&cache_id);
            if let Some(p) = parent {
                let _ = self.release(p);
            }
            return Ok(existing);
        }
        let dir = self.layer_dir(&info.chain_id)?;
        let placed = std::fs::rename(&tmp, &dir)
            .map_err(|e| StorageError::at(&dir, "rename into", e))
            .and_then(|_| crate::atomic::sync_dir(&self.root.join("sha256")));
        if let Err(e) = placed {
            drop(st);
            self.discard(&cache_id);
            if let Some(p) = parent {
                let _ = self.release(p);
            }
            return Err(e);
        }
        // The parent reference taken above now belongs to the child.
        st.layers.insert(
            info.chain_id.clone(),
            Held {
                info: info.clone(),
                refs: 1,
            },
        );
        Ok(info)
    }

    fn unpack(
        &self,
        cache_id: &str,
        tmp: &Path,
        parent: Option<&LayerInfo>,
        input: &mut dyn Read,
        expected: Option<&str>,
    ) -> Result<LayerInfo> {
        // The tmp dir exists before the driver layer, so a crash in between
        // is cleaned up at start-up.
        std::fs::create_dir(tmp).map_err(|e| StorageError::at(tmp, "create", e))?;
        crate::atomic::sync_dir(&self.root.join("tmp"))?;
        self.driver
            .create(cache_id, parent.map(|p| p.cache_id.as_str()))?;
        self.own_root(cache_id)?;
        let (_, plain) = archive::decompress(input)?;
        let mut reader = DigestReader {
            inner: plain,
            hasher: Sha256::new(),
            count: 0,
        };
        let mut split = SplitRecorder::create(&tmp.join("tar-split.zst"))?;
        let stats = self.driver.apply_diff(
            cache_id,
            parent.map(|p| p.cache_id.as_str()),
            &mut reader,
            Some(&mut split),
            &self.ids,
        )?;
        let tar_size = split.finish()?;
        if tar_size != reader.count {
            return Err(StorageError::io(
                "record layer",
                std::io::Error::other(format!(
                    "tar-split covers {tar_size} bytes of a {} byte layer",
                    reader.count
                )),
            ));
        }
        let diff_id = format!("sha256:{}", hex::encode(reader.hasher.finalize()));
        if let Some(want) = expected {
            if want != diff_id {
                return Err(StorageError::DigestMismatch(format!(
                    "layer verification failed: expected diff ID {want}, got {diff_id}"
                )));
            }
        }
        let info = LayerInfo {
            chain_id: chain_id(parent.map(|p| p.chain_id.as_str()), &diff_id),
            diff_id,
            parent: parent.map(|p| p.chain_id.clone()),
            cache_id: cache_id.to_string(),
            size: stats.size,
            tar_size,
            created: Utc::now(),
        };
        crate::atomic::write_json(&tmp.join("layer.json"), &info)?;
        Ok(info)
    }

    /// Removes a half-made or dropped layer: driver layer, then its dir.
    fn discard(&self, cache_id: &str) {
        if let Err(e) = self.driver.remove(cache_id) {
            tracing::warn!("removing layer {cache_id}: {e}");
            return;
        }
        let tmp = self.tmp_dir(cache_id);
        if let Err(e) = std::fs::remove_dir_all(&tmp) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("removing {}: {e}", tmp.display());
            }
        }
    }

    /// Drops a reference on `chain`; the last one removes the layer and
    /// releases its parent in turn. Returns the chains removed.
    pub fn release(&self, chain: &str) -> Result<Vec<ChainId>> {
        let mut removed = Vec::new();
        let mut next = Some(chain.to_string());
        while let Some(chain) = next.take() {
            let info = {
                let mut st = self.lock();
                let Some(held) = st.layers.get_mut(&chain) else {
                    return Err(StorageError::NotFound(format!(
                        "layer does not exist: {chain}"
                    )));
                };
                held.refs = held.refs.saturating_sub(1);
                if held.refs > 0 {
                    break;
                }
                let info = held.info.clone();
                st.layers.remove(&chain);
                info
            };
            self.delete(&info)?;
            removed.push(chain);
            next = info.parent;
        }
        Ok(removed)
    }

    /// Deletes a layer from disk: its dir moves to `tmp/` first, so a crash
    /// mid-way is finished at the next start.
    fn delete(&self, info: &LayerInfo) -> Result<()> {
        let dir = self.layer_dir(&info.chain_id)?;
        let tmp = self.tmp_dir(&info.cache_id);
        std::fs::rename(&dir, &tmp).map_err(|e| StorageError::at(&dir, "move away", e))?;
        self.driver.remove(&info.cache_id)?;
        std::fs::remove_dir_all(&tmp).map_err(|e| StorageError::at(&tmp, "remove", e))
    }

    /// Writes layer `chain`'s original tar, byte for byte, verifying its
    /// digest as it goes.
    pub fn tar_stream(&self, chain: &str, out: &mut dyn Write) -> Result<()> {
        let info = self
            .get(chain)
            .ok_or_else(|| StorageError::NotFound(format!("layer does not exist: {chain}")))?;
        let split = self.layer_dir(chain)?.join("tar-split.zst");
        let root = self.driver.content_root(&info.cache_id)?;
        let mut writer = DigestWriter {
            inner: out,
            hasher: Sha256::new(),
        };
        let result = archive::reassemble(&split, &root, &mut writer);
        let released = self.driver.release_content_root(&info.cache_id);
        result?;
        released?;
        let got = format!("sha256:{}", hex::encode(writer.hasher.finalize()));
        if got != info.diff_id {
            return Err(StorageError::DigestMismatch(format!(
                "layer {} content changed on disk: expected {}, rebuilt {got}",
                info.chain_id, info.diff_id
            )));
        }
        Ok(())
    }

    fn rw_meta(&self, name: &str) -> PathBuf {
        self.root.join("mounts").join(format!("{name}.json"))
    }

    /// Creates the writable layer `name` on top of image layer `parent`.
    pub fn create_rw(
        &self,
        name: &str,
        parent: Option<&str>,
        opts: &RwLayerOpts,
    ) -> Result<RwLayer> {
        self.create_rw_with_init(name, parent, opts, None)
    }

    /// Like [`LayerStore::create_rw`], with an init layer in between when
    /// `init` is given (dockerd's `<id>-init`: the mount points and
    /// placeholder files a runtime needs live there, so `docker diff` and
    /// `commit` see only what the container itself did).
    pub fn create_rw_with_init(
        &self,
        name: &str,
        parent: Option<&str>,
        opts: &RwLayerOpts,
        init: Option<InitLayer<'_>>,
    ) -> Result<RwLayer> {
        if self.lock().rw.contains_key(name) {
            return Err(StorageError::Conflict(format!(
                "writable layer {name} already exists"
            )));
        }
        let parent_info = parent.map(|p| self.acquire(p)).transpose()?;
        let mount_id = random_id();
        let layer = RwLayer {
            name: name.to_string(),
            init_id: init.is_some().then(|| format!("{mount_id}-init")),
            mount_id,
            parent: parent.map(str::to_string),
            size_limit: opts.size,
        };
        let parent_cache = parent_info.as_ref().map(|p| p.cache_id.as_str());
        let made = crate::atomic::write_json(&self.rw_meta(name), &layer).and_then(|_| {
            let below = match (&layer.init_id, init) {
                (Some(init_id), Some(fill)) => {
                    self.driver.create(init_id, parent_cache)?;
                    self.own_root(init_id)?;
                    let root = self.driver.mount(init_id)?;
                    let filled = fill(&root);
                    self.driver.unmount(init_id)?;
                    filled?;
                    Some(init_id.as_str())
                }
                _ => parent_cache,
            };
            self.driver.create_rw(&layer.mount_id, below, opts)?;
            self.own_root(&layer.mount_id)
        });
        if let Err(e) = made {
            let _ = self.driver.remove(&layer.mount_id);
            if let Some(init_id) = &layer.init_id {
                let _ = self.driver.remove(init_id);
            }
            let _ = std::fs::remove_file(self.rw_meta(name));
            if let Some(p) = parent {
                let _ = self.release(p);
            }
            return Err(e);
        }
        self.lock().rw.insert(name.to_string(), layer.clone());
        Ok(layer)
    }

    /// The writable layer `name`.
    pub fn get_rw(&self, name: &str) -> Result<RwLayer> {
        self.lock()
            .rw
            .get(name)
            .cloned()
            .ok_or_else(|| StorageError::NotFound(format!("no writable layer {name}")))
    }

    /// Removes the writable layer `name` and releases its image layer.
    pub fn remove_rw(&self, name: &str) -> Result<()> {
        let layer = self.get_rw(name)?;
        self.driver.remove(&layer.mount_id)?;
        if let Some(init_id) = &layer.init_id {
            self.driver.remove(init_id)?;
        }
        let meta = self.rw_meta(name);
        match std::fs::remove_file(&meta) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::at(&meta, "remove", e)),
        }
        self.lock().rw.remove(name);
        if let Some(p) = &layer.parent {
            self.release(p)?;
        }
        Ok(())
    }

    /// Mounts writable layer `name` (ref counted) and returns its root.
    pub fn mount_rw(&self, name: &str) -> Result<PathBuf> {
        self.driver.mount(&self.get_rw(name)?.mount_id)
    }

    /// Releases one [`LayerStore::mount_rw`].
    pub fn unmount_rw(&self, name: &str) -> Result<()> {
        self.driver.unmount(&self.get_rw(name)?.mount_id)
    }

    /// The driver layer directly below a writable layer: its init layer,
    /// else its image's top layer.
    fn rw_parent_cache(&self, layer: &RwLayer) -> Option<String> {
        if let Some(init_id) = &layer.init_id {
            return Some(init_id.clone());
        }
        layer
            .parent
            .as_ref()
            .and_then(|p| self.get(p))
            .map(|i| i.cache_id)
    }

    /// What the container changed (`docker diff`).
    pub fn rw_changes(&self, name: &str) -> Result<Vec<archive::Change>> {
        let layer = self.get_rw(name)?;
        let parent = self.rw_parent_cache(&layer);
        self.driver.changes(&layer.mount_id, parent.as_deref())
    }

    /// The container's changes as a layer tar (`docker commit`).
    pub fn rw_diff(&self, name: &str, out: &mut dyn Write) -> Result<()> {
        let layer = self.get_rw(name)?;
        let parent = self.rw_parent_cache(&layer);
        self.driver
            .diff(&layer.mount_id, parent.as_deref(), out, &self.ids)
    }

    /// Space the container's writable layer uses (`SizeRw`).
    pub fn rw_usage(&self, name: &str) -> Result<Usage> {
        let layer = self.get_rw(name)?;
        let parent = self.rw_parent_cache(&layer);
        self.driver.usage(&layer.mount_id, parent.as_deref())
    }

    /// Every writable layer.
    pub fn list_rw(&self) -> Vec<RwLayer> {
        self.lock().rw.values().cloned().collect()
    }

    /// Rebuilds the in-memory state after a start: finishes interrupted
    /// work in `tmp/`, loads layers and writable layers, counts references
    /// from `held` (image top layers, one per image) and from writable
    /// layers whose owner is in `live_rw`, then removes everything nothing
    /// holds — metadata and driver layers alike.
    pub fn reconcile(&self, held: &[ChainId], live_rw: &HashSet<String>) -> Result<()> {
        self.finish_tmp()?;
        let mut layers = HashMap::new();
        for entry in read_dir(&self.root.join("sha256"))? {
            let path = entry.join("layer.json");
            match std::fs::read(&path)
                .ok()
                .and_then(|d| serde_json::from_slice::<LayerInfo>(&d).ok())
            {
                Some(info) => {
                    layers.insert(info.chain_id.clone(), Held { info, refs: 0 });
                }
                None => {
                    tracing::warn!("removing unreadable layer {}", entry.display());
                    let _ = std::fs::remove_dir_all(&entry);
                }
            }
        }
        let mut rw = HashMap::new();
        for path in read_dir(&self.root.join("mounts"))? {
            let layer = std::fs::read(&path)
                .ok()
                .and_then(|d| serde_json::from_slice::<RwLayer>(&d).ok());
            match layer {
                Some(l) if live_rw.contains(&l.name) => {
                    rw.insert(l.name.clone(), l);
                }
                Some(l) => {
                    tracing::info!("removing writable layer of vanished container {}", l.name);
                    self.driver.remove(&l.mount_id)?;
                    if let Some(init_id) = &l.init_id {
                        self.driver.remove(init_id)?;
                    }
                    let _ = std::fs::remove_file(&path);
                }
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let parents: Vec<ChainId> = layers
            .values()
            .filter_map(|h| h.info.parent.clone())
            .chain(held.iter().cloned())
            .chain(rw.values().filter_map(|l| l.parent.clone()))
            .collect();
        for p in parents {
            match layers.get_mut(&p) {
                Some(h) => h.refs += 1,
                None => tracing::warn!("layer {p} is referenced but missing"),
            }
        }
        let known: HashSet<String> = layers
            .values()
            .map(|h| h.info.cache_id.clone())
            .chain(rw.values().map(|l| l.mount_id.clone()))
            .chain(rw.values().filter_map(|l| l.init_id.clone()))
            .collect();
        let orphans: Vec<ChainId> = layers
            .iter()
            .filter(|(_, h)| h.refs == 0)
            .map(|(c, _)| c.clone())
            .collect();
        {
            let mut st = self.lock();
            st.layers = layers;
            st.rw = rw;
        }
        for chain in orphans {
            tracing::info!("removing unreferenced layer {chain}");
            // Held with one count so that release removes it.
            if let Some(h) = self.lock().layers.get_mut(&chain) {
                h.refs = 1;
            }
            self.release(&chain)?;
        }
        for id in self.driver.list()? {
            if !known.contains(&id) {
                tracing::info!("removing driver layer {id} that no layer record names");
                self.driver.remove(&id)?;
            }
        }
        Ok(())
    }

    /// Removes what interrupted registrations and deletions left in `tmp/`.
    fn finish_tmp(&self) -> Result<()> {
        for dir in read_dir(&self.root.join("tmp"))? {
            if let Some(cache_id) = dir.file_name().and_then(|n| n.to_str()) {
                tracing::info!("removing interrupted layer {cache_id}");
                self.driver.remove(cache_id)?;
            }
            std::fs::remove_dir_all(&dir).map_err(|e| StorageError::at(&dir, "remove", e))?;
        }
        Ok(())
    }
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| StorageError::at(dir, "read", e))? {
        let entry = entry.map_err(|e| StorageError::at(dir, "read", e))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(".tmp-") {
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        out.push(entry.path());
    }
    Ok(out)
}

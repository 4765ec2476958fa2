//! The image store on disk and in memory: image configs kept byte for byte
//! (the image ID is their digest), a little metadata per image, and the
//! tag table. Lookups follow dockerd: a reference first, then a full or
//! abbreviated image ID.
//!
//! On disk, under `<data-root>/images/`: `configs/<hex>` (raw config),
//! `meta/<hex>.json`, `repositories.json`; all written atomically.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use berth_storage::atomic;
use berth_storage::ChainId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config::ImageConfigFile;
use super::reference::ImageRef;
use crate::error::{EngineError, Result};

/// Per-image metadata that is not part of the config.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ImageMeta {
    /// When a tag last moved onto this image (`Metadata.LastTagTime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tag_time: Option<String>,
    /// The image this one was committed from, if it is local.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// One stored image.
#[derive(Debug, Clone)]
pub struct Image {
    /// `sha256:<hex>` of `raw`.
    pub id: String,
    /// The config exactly as loaded.
    pub raw: Arc<Vec<u8>>,
    pub config: Arc<ImageConfigFile>,
    /// Chain ID of the top layer (`None` for an image without layers).
    pub top_layer: Option<ChainId>,
    pub meta: ImageMeta,
}

impl Image {
    /// The chain IDs of the image's layers, bottom first.
    pub fn chain(&self) -> Vec<ChainId> {
        let mut out = Vec::new();
        let mut parent: Option<String> = None;
        for diff in &self.config.rootfs.diff_ids {
            let c = berth_storage::chain_id(parent.as_deref(), diff);
            out.push(c.clone());
            parent = Some(c);
        }
        out
    }

    /// The ID without `sha256:`.
    pub fn hex(&self) -> &str {
        self.id.strip_prefix("sha256:").unwrap_or(&self.id)
    }
}

/// The chain ID of the top layer of `config`.
pub fn top_layer_of(config: &ImageConfigFile) -> Option<ChainId> {
    let mut parent: Option<String> = None;
    for diff in &config.rootfs.diff_ids {
        parent = Some(berth_storage::chain_id(parent.as_deref(), diff));
    }
    parent
}

#[derive(Default)]
struct State {
    images: HashMap<String, Image>,
    /// Normalized reference → image ID.
    tags: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Default)]
struct RepositoriesFile {
    #[serde(rename = "Repositories", default)]
    repositories: BTreeMap<String, BTreeMap<String, String>>,
}

/// Image configs and repository tags.
pub struct ImageStore {
    dir: PathBuf,
    state: RwLock<State>,
}

fn io(path: &Path, what: &str, e: std::io::Error) -> EngineError {
    EngineError::io(format!("{what} {}", path.display()), e)
}

impl ImageStore {
    /// Opens `<data-root>/images`, dropping configs whose bytes no longer
    /// match their name and tags that point at no image.
    pub fn open(data_root: &Path) -> Result<ImageStore> {
        let dir = data_root.join("images");
        for sub in ["configs", "meta"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| io(&d, "create", e))?;
        }
        let mut state = State::default();
        let configs = dir.join("configs");
        for entry in std::fs::read_dir(&configs).map_err(|e| io(&configs, "read", e))? {
            let entry = entry.map_err(|e| io(&configs, "read", e))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with(".tmp-") {
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            let raw = std::fs::read(entry.path()).map_err(|e| io(&entry.path(), "read", e))?;
            let hex = hex::encode(Sha256::digest(&raw));
            let config = match ImageConfigFile::parse(&raw) {
                Ok(c) if hex == name => c,
                _ => {
                    tracing::warn!("removing corrupt image config {name}");
                    let _ = std::fs::remove_file(entry.path());
                    continue;
                }
            };
            let meta = std::fs::read(dir.join("meta").join(format!("{name}.json")))
                .ok()
                .and_then(|d| serde_json::from_slice(&d).ok())
                .unwrap_or_default();
            let id = format!("sha256:{hex}");
            state.images.insert(
                id.clone(),
                Image {
                    id,
                    top_layer: top_layer_of(&config),
                    raw: Arc::new(raw),
                    config: Arc::new(config),
                    meta,
                },
            );
        }
        let repos: RepositoriesFile = std::fs::read(dir.join("repositories.json"))
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or_default();
        for tags in repos.repositories.into_values() {
            for (r, id) in tags {
                if state.images.contains_key(&id) {
                    state.tags.insert(r, id);
                }
            }
        }
        Ok(ImageStore {
            dir,
            state: RwLock::new(state),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The top layer chain of every image, for layer reconciliation.
    pub fn all_top_layers(&self) -> Vec<ChainId> {
        self.read()
            .images
            .values()
            .filter_map(|i| i.top_layer.clone())
            .collect()
    }

    /// Every image.
    pub fn all(&self) -> Vec<Image> {
        self.read().images.values().cloned().collect()
    }

    /// How many images there are.
    pub fn len(&self) -> usize {
        self.read().images.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The image with full ID `id`.
    pub fn get(&self, id: &str) -> Option<Image> {
        self.read().images.get(id).cloned()
    }

    /// Stores a config (already parsed) and returns the image and whether
    /// it is new. The caller holds the image's top layer for it.
    pub fn add(
        &self,
        raw: Vec<u8>,
        config: ImageConfigFile,
        meta: ImageMeta,
    ) -> Result<(Image, bool)> {
        let hex = hex::encode(Sha256::digest(&raw));
        let id = format!("sha256:{hex}");
        if let Some(existing) = self.get(&id) {
            return Ok((existing, false));
        }
        let meta_path = self.dir.join("meta").join(format!("{hex}.json"));
        atomic::write_json(&meta_path, &meta)?;
        atomic::write_file(&self.dir.join("configs").join(&hex), &raw)?;
        let image = Image {
            id: id.clone(),
            top_layer: top_layer_of(&config),
            raw: Arc::new(raw),
            config: Arc::new(config),
            meta,
        };
        let mut st = self.write();
        if let Some(existing) = st.images.get(&id) {
            return Ok((existing.clone(), false));
        }
        st.images.insert(id, image.clone());
        Ok((image, true))
    }

    /// Forgets image `id` (its tags must be gone already).
    pub fn remove(&self, id: &str) -> Result<Option<Image>> {
        let hex = id.strip_prefix("sha256:").unwrap_or(id);
        let config = self.dir.join("configs").join(hex);
        match std::fs::remove_file(&config) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&config, "remove", e)),
        }
        let _ = std::fs::remove_file(self.dir.join("meta").join(format!("{hex}.json")));
        Ok(self.write().images.remove(id))
    }

    /// Updates the metadata of image `id`.
    pub fn set_meta(&self, id: &str, meta: ImageMeta) -> Result<()> {
        let hex = id.strip_prefix("sha256:").unwrap_or(id);
        atomic::write_json(&self.dir.join("meta").join(format!("{hex}.json")), &meta)?;
        if let Some(img) = self.write().images.get_mut(id) {
            img.meta = meta;
        }
        Ok(())
    }

    fn save_tags(&self, st: &State) -> Result<()> {
        let mut file = RepositoriesFile::default();
        for (r, id) in &st.tags {
            let repo = r
                .split('@')
                .next()
                .map(|n| match n.rsplit_once(':') {
                    Some((name, tag)) if !tag.contains('/') => name,
                    _ => n,
                })
                .unwrap_or(r)
                .to_string();
            file.repositories
                .entry(repo)
                .or_default()
                .insert(r.clone(), id.clone());
        }
        atomic::write_json(&self.dir.join("repositories.json"), &file)?;
        Ok(())
    }

    /// Points `reference` at image `id`; returns the image it pointed at
    /// before, if another.
    pub fn tag(&self, id: &str, reference: &ImageRef) -> Result<Option<String>> {
        let mut st = self.write();
        if !st.images.contains_key(id) {
            return Err(EngineError::NotFound(format!("No such image: {id}")));
        }
        let previous = st.tags.insert(reference.normalized(), id.to_string());
        self.save_tags(&st)?;
        Ok(previous.filter(|p| p != id))
    }

    /// Removes `reference`; returns the image it pointed at.
    pub fn untag(&self, reference: &ImageRef) -> Result<Option<String>> {
        let mut st = self.write();
        let previous = st.tags.remove(&reference.normalized());
        if previous.is_some() {
            self.save_tags(&st)?;
        }
        Ok(previous)
    }

    /// The references pointing at image `id`.
    pub fn references(&self, id: &str) -> Vec<ImageRef> {
        self.read()
            .tags
            .iter()
            .filter(|(_, v)| *v == id)
            .filter_map(|(r, _)| ImageRef::parse(r).ok())
            .collect()
    }

    /// Every tag that names repository `name` (normalized, no tag).
    pub fn tags_of_repository(&self, name: &str) -> Vec<(ImageRef, String)> {
        self.read()
            .tags
            .iter()
            .filter_map(|(r, id)| ImageRef::parse(r).ok().map(|p| (p, id.clone())))
            .filter(|(r, _)| r.name == name && r.tag.is_some())
            .collect()
    }

    /// Images whose recorded parent is `id`.
    pub fn children(&self, id: &str) -> Vec<String> {
        self.read()
            .images
            .values()
            .filter(|i| i.meta.parent.as_deref() == Some(id))
            .map(|i| i.id.clone())
            .collect()
    }

    /// Finds an image as dockerd does: by reference (tag or digest), then
    /// by full or abbreviated ID.
    pub fn resolve(&self, name: &str) -> Result<Image> {
        let not_found = || EngineError::NotFound(format!("No such image: {name}"));
        if name.is_empty() {
            return Err(not_found());
        }
        let st = self.read();
        if let Some(img) = st.images.get(name) {
            return Ok(img.clone());
        }
        let is_id_like = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if let Ok(r) = ImageRef::parse(name) {
            if let Some(id) = st.tags.get(&r.normalized()) {
                if let Some(img) = st.images.get(id) {
                    return Ok(img.clone());
                }
            }
            // A digest reference names the image whose config has that digest.
            if let Some(d) = &r.digest {
                if let Some(img) = st.images.get(d) {
                    return Ok(img.clone());
                }
            }
        }
        let prefix = name.strip_prefix("sha256:").unwrap_or(name);
        if is_id_like(prefix) {
            let mut found = st.images.values().filter(|i| i.hex().starts_with(prefix));
            if let Some(first) = found.next() {
                if found.next().is_some() {
                    return Err(EngineError::InvalidParameter(format!(
                        "ambiguous image ID {name}: more than one image starts with it"
                    )));
                }
                return Ok(first.clone());
            }
        }
        Err(not_found())
    }
}

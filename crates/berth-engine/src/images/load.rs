//! `docker load`: reading a docker-save archive (`manifest.json`) or an
//! OCI image layout (`index.json`), with plain, gzip or zstd layers. The
//! archive is unpacked into a scratch directory below the data root with
//! the same escape-proof unpacker as layers; every path the manifests name
//! is opened beneath it. A failed image leaves no layer behind.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_storage::archive::{self, beneath, WhiteoutFormat};
use berth_storage::ChainId;
use bollard_stubs::models::EventMessageTypeEnum;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::config::{is_sha256_digest, ImageConfigFile};
use super::reference::ImageRef;
use super::store::ImageMeta;
use super::BodyReader;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::progress::{Progress, ProgressSender};
use crate::scratch::ScratchDir;

/// Largest config or manifest JSON a load reads.
const MAX_JSON: u64 = 16 << 20;

/// One image an archive offers: where its config and layers are, and the
/// names it should get.
struct Candidate {
    config: PathBuf,
    /// Expected digest of the config (OCI descriptors carry one).
    config_digest: Option<String>,
    layers: Vec<PathBuf>,
    tags: Vec<String>,
}

#[derive(Deserialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Deserialize)]
struct OciIndex {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct OciManifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidParameter(msg.into())
}

fn read_json<T: for<'de> Deserialize<'de>>(root: &OwnedFd, rel: &Path) -> Result<(Vec<u8>, T)> {
    let mut raw = Vec::new();
    beneath::open_file(root, rel)?
        .take(MAX_JSON)
        .read_to_end(&mut raw)
        .map_err(|e| EngineError::io(format!("read {}", rel.display()), e))?;
    let value = serde_json::from_slice(&raw)
        .map_err(|e| invalid(format!("invalid {} in archive: {e}", rel.display())))?;
    Ok((raw, value))
}

fn clean(rel: &str) -> Result<PathBuf> {
    Ok(beneath::clean_entry_path(Path::new(rel))?)
}

fn blob_path(digest: &str) -> Result<PathBuf> {
    if !is_sha256_digest(digest) {
        return Err(invalid(format!("invalid digest {digest:?} in archive")));
    }
    Ok(PathBuf::from("blobs/sha256").join(&digest[7..]))
}

const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// The images an unpacked archive offers.
fn candidates(root: &OwnedFd, dir: &Path) -> Result<Vec<Candidate>> {
    if dir.join("manifest.json").exists() {
        let (_, entries): (_, Vec<ManifestEntry>) = read_json(root, Path::new("manifest.json"))?;
        return entries
            .into_iter()
            .map(|e| {
                Ok(Candidate {
                    config: clean(&e.config)?,
                    config_digest: None,
                    layers: e.layers.iter().map(|l| clean(l)).collect::<Result<_>>()?,
                    tags: e.repo_tags.unwrap_or_default(),
                })
            })
            .collect();
    }
    if dir.join("index.json").exists() {
        let (_, index): (_, OciIndex) = read_json(root, Path::new("index.json"))?;
        let mut out = Vec::new();
        for desc in index.manifests {
            let name = desc
                .annotations
                .get("io.containerd.image.name")
                .or_else(|| desc.annotations.get("org.opencontainers.image.ref.name"))
                .filter(|n| n.contains(':') || n.contains('/'))
                .cloned();
            let manifest = resolve_manifest(root, desc, 0)?;
            let layers = manifest
                .layers
                .iter()
                .map(|l| blob_path(&l.digest))
                .collect::<Result<_>>()?;
            out.push(Candidate {
                config: blob_path(&manifest.config.digest)?,
                config_digest: Some(manifest.config.digest),
                layers,
                tags: name.into_iter().collect(),
            });
        }
        return Ok(out);
    }
    Err(invalid(
        "invalid archive: it holds neither a manifest.json (docker save) nor an index.json (OCI image layout)",
    ))
}

/// Follows an index descriptor down to the linux/amd64 image manifest.
fn resolve_manifest(root: &OwnedFd, desc: Descriptor, depth: usize) -> Result<OciManifest> {
    if depth > 4 {
        return Err(invalid("invalid archive: image indexes nest too deep"));
    }
    let path = blob_path(&desc.digest)?;
    if INDEX_TYPES.contains(&desc.media_type.as_str()) {
        let (raw, index): (_, OciIndex) = read_json(root, &path)?;
        verify_digest(&raw, &desc.digest)?;
        let pick = index
            .manifests
            .into_iter()
            .filter(|m| {
                MANIFEST_TYPES.contains(&m.media_type.as_str())
                    || INDEX_TYPES.contains(&m.media_type.as_str())
            })
            .find(|m| {
                m.platform
                    .as_ref()
                    .is_none_or(|p| p.os == "linux" && p.architecture == "amd64")
            })
            .ok_or_else(|| invalid("no linux/amd64 image in the archive's index"))?;
        return resolve_manifest(root, pick, depth + 1);
    }
    if !desc.media_type.is_empty() && !MANIFEST_TYPES.contains(&desc.media_type.as_str()) {
        return Err(invalid(format!(
            "unsupported manifest media type {:?}",
            desc.media_type
        )));
    }
    let (raw, manifest) = read_json(root, &path)?;
    verify_digest(&raw, &desc.digest)?;
    Ok(manifest)
}

fn verify_digest(raw: &[u8], want: &str) -> Result<()> {
    let got = format!("sha256:{}", hex::encode(Sha256::digest(raw)));
    if got != want {
        return Err(invalid(format!(
            "invalid archive: content of {want} has digest {got}"
        )));
    }
    Ok(())
}

/// Counts bytes read and reports them as "Loading layer" progress.
struct LayerProgress<'a, R> {
    inner: R,
    progress: &'a ProgressSender,
    id: String,
    done: u64,
    total: u64,
    last: u64,
}

impl<R: Read> Read for LayerProgress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.done - self.last >= 512 * 1024 || (n == 0 && self.done != self.last) {
            self.last = self.done;
            self.progress.bytes(
                &self.id,
                "Loading layer",
                self.done,
                self.total.max(self.done),
            );
        }
        Ok(n)
    }
}

impl Engine {
    /// The blocking body of `load_images`.
    pub(crate) fn load_archive(
        self: &Arc<Self>,
        body: BodyReader,
        progress: &ProgressSender,
    ) -> Result<()> {
        let scratch = ScratchDir::new(&self.config.data_root, "load")?;
        let mut input = tokio_util::io::SyncIoBridge::new(body);
        let (_, mut plain) = archive::decompress(&mut input)?;
        archive::apply_layer(
            scratch.path(),
            &[],
            &mut plain,
            WhiteoutFormat::Delete,
            None,
            &berth_storage::IdMap::identity(),
        )?;
        let root = beneath::open_root(scratch.path())?;
        let candidates = candidates(&root, scratch.path())?;
        if candidates.is_empty() {
            return Err(invalid("invalid archive: it names no image"));
        }
        for c in candidates {
            self.load_candidate(&root, c, progress)?;
        }
        Ok(())
    }

    fn load_candidate(
        self: &Arc<Self>,
        root: &OwnedFd,
        c: Candidate,
        progress: &ProgressSender,
    ) -> Result<()> {
        let mut raw = Vec::new();
        beneath::open_file(root, &c.config)?
            .take(MAX_JSON)
            .read_to_end(&mut raw)
            .map_err(|e| EngineError::io("read image config", e))?;
        if let Some(want) = &c.config_digest {
            verify_digest(&raw, want)?;
        }
        let config = ImageConfigFile::parse(&raw)?;
        let diff_ids = config.rootfs.diff_ids.clone();
        if diff_ids.len() != c.layers.len() {
            return Err(invalid(format!(
                "invalid manifest, layers length mismatch: expected {}, got {}",
                diff_ids.len(),
                c.layers.len()
            )));
        }
        let tags = c
            .tags
            .iter()
            .map(|t| ImageRef::parse(t))
            .collect::<Result<Vec<_>>>()?;
        let mut held: Vec<ChainId> = Vec::new();
        let result = self.register_layers(root, &c.layers, &diff_ids, progress, &mut held);
        let top = match result {
            Ok(top) => top,
            Err(e) => {
                self.release_layers(&held);
                return Err(e);
            }
        };
        let _guard = self.image_lock();
        let (image, is_new) = match self.images.add(raw, config, ImageMeta::default()) {
            Ok(v) => v,
            Err(e) => {
                self.release_layers(&held);
                return Err(e);
            }
        };
        // The image keeps a reference on its top layer only; each layer
        // holds its parent. An image we already had holds its own.
        let keep = if is_new { top } else { None };
        let release: Vec<ChainId> = held
            .into_iter()
            .filter(|c| Some(c) != keep.as_ref())
            .collect();
        self.release_layers(&release);
        self.publish_image(EventMessageTypeEnum::IMAGE, "load", &image.id, &image.id);
        if tags.is_empty() {
            progress.stream(format!("Loaded image ID: {}\n", image.id));
        }
        for t in tags {
            if let Some(old) = self.images.tag(&image.id, &t)? {
                progress.stream(format!(
                    "The image {} already exists, renaming the old one with ID {old} to empty string\n",
                    t.familiar()
                ));
            }
            self.touch_tag_time(&image.id)?;
            self.publish_image(EventMessageTypeEnum::IMAGE, "tag", &image.id, &t.familiar());
            progress.stream(format!("Loaded image: {}\n", t.familiar()));
        }
        Ok(())
    }

    /// Registers (or takes references on) the layers of one image, bottom
    /// first; every reference taken is pushed to `held`.
    fn register_layers(
        &self,
        root: &OwnedFd,
        paths: &[PathBuf],
        diff_ids: &[String],
        progress: &ProgressSender,
        held: &mut Vec<ChainId>,
    ) -> Result<Option<ChainId>> {
        let mut parent: Option<ChainId> = None;
        for (path, diff) in paths.iter().zip(diff_ids) {
            let short = diff[7..19].to_string();
            let chain = berth_storage::chain_id(parent.as_deref(), diff);
            let info = match self.layers.acquire(&chain) {
                Ok(info) => {
                    progress.bytes(&short, "Loading layer", info.tar_size, info.tar_size);
                    info
                }
                Err(_) => {
                    let file: File = beneath::open_file(root, path)?;
                    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
                    let mut reader = LayerProgress {
                        inner: file,
                        progress,
                        id: short,
                        done: 0,
                        total,
                        last: 0,
                    };
                    self.layers
                        .register(parent.as_deref(), &mut reader, Some(diff))?
                }
            };
            held.push(info.chain_id.clone());
            parent = Some(info.chain_id);
        }
        Ok(parent)
    }

    /// Drops references taken on layers, newest first.
    pub(crate) fn release_layers(&self, held: &[ChainId]) {
        for chain in held.iter().rev() {
            if let Err(e) = self.layers.release(chain) {
                tracing::warn!("releasing layer {chain}: {e}");
            }
        }
    }

    /// Records that a tag moved onto image `id` now.
    pub(crate) fn touch_tag_time(&self, id: &str) -> Result<()> {
        if let Some(img) = self.images.get(id) {
            let mut meta = img.meta.clone();
            meta.last_tag_time = Some(super::config::timestamp(chrono::Utc::now()));
            self.images.set_meta(id, meta)?;
        }
        Ok(())
    }
}

/// Runs a load, reporting its end (or failure) on the channel.
pub(crate) fn run_load(engine: Arc<Engine>, body: BodyReader, progress: ProgressSender) {
    if let Err(e) = engine.load_archive(body, &progress) {
        progress.send(Progress::Error(e.to_string()));
    }
}

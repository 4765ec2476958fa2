//! `docker save`: an OCI image layout that also carries docker-save's
//! `manifest.json`, as dockerd 25+ writes it, so berthd and every dockerd
//! can load it. Layer blobs are each layer's original tar, rebuilt from
//! tar-split, so diff IDs and image IDs survive a save/load round trip.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;

use bollard_stubs::models::EventMessageTypeEnum;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::reference::ImageRef;
use super::store::Image;
use crate::engine::Engine;
use crate::error::{EngineError, Result};

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// What one `docker save` will write: images and the names they go by.
pub(crate) struct SavePlan {
    images: Vec<(Image, Vec<ImageRef>)>,
}

fn io_err(e: std::io::Error) -> EngineError {
    EngineError::io("write image archive", e)
}

/// Whether `name` is a bare repository (no tag, digest, or ID shape).
fn is_repository_only(name: &str) -> bool {
    let last = name.rsplit('/').next().unwrap_or(name);
    !last.contains(':') && !name.contains('@')
}

impl Engine {
    /// Resolves the names of a save; unknown names fail here, before any
    /// byte is sent.
    pub(crate) fn plan_save(&self, names: &[String]) -> Result<SavePlan> {
        let mut by_id: BTreeMap<String, (Image, Vec<ImageRef>)> = BTreeMap::new();
        let mut order = Vec::new();
        let mut add = |image: Image, r: Option<ImageRef>, order: &mut Vec<String>| {
            let entry = by_id.entry(image.id.clone()).or_insert_with(|| {
                order.push(image.id.clone());
                (image, Vec::new())
            });
            if let Some(r) = r {
                if !entry.1.contains(&r) {
                    entry.1.push(r);
                }
            }
        };
        for name in names {
            if is_repository_only(name) {
                if let Ok(r) = ImageRef::parse(name) {
                    let tagged = self.images.tags_of_repository(&r.name);
                    if !tagged.is_empty() {
                        for (t, id) in tagged {
                            if let Some(img) = self.images.get(&id) {
                                add(img, Some(t), &mut order);
                            }
                        }
                        continue;
                    }
                }
            }
            let image = self.images.resolve(name)?;
            let by_ref = ImageRef::parse(name)
                .ok()
                .filter(|r| r.digest.is_none())
                .filter(|r| self.images.references(&image.id).contains(r));
            add(image, by_ref, &mut order);
        }
        Ok(SavePlan {
            images: order
                .into_iter()
                .filter_map(|id| by_id.remove(&id))
                .collect(),
        })
    }

    /// Writes the archive for `plan` to `out`.
    pub(crate) fn write_save(&self, plan: &SavePlan, out: &mut dyn Write) -> Result<()> {
        let mut tar = tar::Builder::new(out);
        let mut written: HashSet<String> = HashSet::new();
        let mut index = Vec::new();
        let mut manifest_json = Vec::new();
        add_dir(&mut tar, "blobs/")?;
        add_dir(&mut tar, "blobs/sha256/")?;
        for (image, refs) in &plan.images {
            if written.insert(image.id.clone()) {
                add_file(
                    &mut tar,
                    &format!("blobs/sha256/{}", image.hex()),
                    &image.raw,
                )?;
            }
            let mut layer_descs = Vec::new();
            let mut layer_paths = Vec::new();
            for chain in image.chain() {
                let info = self.layers.get(&chain).ok_or_else(|| {
                    EngineError::Internal(format!(
                        "image {} is missing its layer {chain}",
                        image.id
                    ))
                })?;
                let hex = &info.diff_id[7..];
                let path = format!("blobs/sha256/{hex}");
                if written.insert(info.diff_id.clone()) {
                    self.write_layer_entry(&mut tar, &path, &chain, info.tar_size)?;
                }
                layer_descs.push(json!({
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": info.diff_id,
                    "size": info.tar_size,
                }));
                layer_paths.push(path);
            }
            let manifest = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": image.id,
                    "size": image.raw.len(),
                },
                "layers": layer_descs,
            }))
            .map_err(|e| EngineError::Internal(e.to_string()))?;
            let manifest_digest = format!("sha256:{}", hex::encode(Sha256::digest(&manifest)));
            if written.insert(manifest_digest.clone()) {
                add_file(
                    &mut tar,
                    &format!("blobs/sha256/{}", &manifest_digest[7..]),
                    &manifest,
                )?;
            }
            let descriptor = |annotations: serde_json::Value| {
                json!({
                    "mediaType": MANIFEST_TYPE,
                    "digest": manifest_digest,
                    "size": manifest.len(),
                    "annotations": annotations,
                })
            };
            if refs.is_empty() {
                index.push(descriptor(json!({})));
            }
            for r in refs {
                index.push(descriptor(json!({
                    "io.containerd.image.name": r.normalized(),
                    "org.opencontainers.image.ref.name": r.tag.clone().unwrap_or_default(),
                })));
            }
            let tags: Vec<String> = refs.iter().map(ImageRef::familiar).collect();
            manifest_json.push(json!({
                "Config": format!("blobs/sha256/{}", image.hex()),
                "RepoTags": if tags.is_empty() { serde_json::Value::Null } else { json!(tags) },
                "Layers": layer_paths,
            }));
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": index,
        });
        add_file(
            &mut tar,
            "index.json",
            &serde_json::to_vec(&index).unwrap_or_default(),
        )?;
        add_file(
            &mut tar,
            "manifest.json",
            &serde_json::to_vec(&manifest_json).unwrap_or_default(),
        )?;
        add_file(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        tar.finish().map_err(io_err)?;
        for (image, _) in &plan.images {
            self.publish_image(EventMessageTypeEnum::IMAGE, "save", &image.id, &image.id);
        }
        Ok(())
    }

    /// A layer blob: header by hand (its size is known from tar-split),
    /// then the rebuilt tar streamed straight into the archive.
    fn write_layer_entry(
        &self,
        tar: &mut tar::Builder<&mut dyn Write>,
        path: &str,
        chain: &str,
        size: u64,
    ) -> Result<()> {
        let mut header = tar::Header::new_ustar();
        header.set_path(path).map_err(io_err)?;
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(size);
        header.set_cksum();
        let out = tar.get_mut();
        out.write_all(header.as_bytes()).map_err(io_err)?;
        self.layers.tar_stream(chain, out)?;
        let pad = (512 - (size % 512) as usize) % 512;
        out.write_all(&vec![0u8; pad]).map_err(io_err)
    }
}

fn add_dir(tar: &mut tar::Builder<&mut dyn Write>, path: &str) -> Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    tar.append_data(&mut header, path, std::io::empty())
        .map_err(io_err)
}

fn add_file(tar: &mut tar::Builder<&mut dyn Write>, path: &str, data: &[u8]) -> Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    tar.append_data(&mut header, path, data).map_err(io_err)
}

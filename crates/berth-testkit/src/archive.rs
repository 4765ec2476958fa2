//! `ImageBuilder`: turns layers and an image config into the archives
//! `docker load` reads — the legacy docker-save layout (`manifest.json`,
//! `repositories`, `<id>/layer.tar`) and the OCI image layout docker 25+
//! writes (`oci-layout`, `index.json`, `blobs/sha256/…`, plus `manifest.json`)
//! — with uncompressed, gzip or zstd layers. Output is byte-for-byte stable.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::layer::{LayerTar, MTIME};

/// `created` of every config and history entry, matching [`MTIME`].
pub const CREATED: &str = "2024-01-01T00:00:00Z";

/// Which archive layout to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// docker save up to docker 24: `<v1 id>/layer.tar`, `<config hex>.json`,
    /// `manifest.json`, `repositories`.
    DockerSave,
    /// OCI image layout; with `manifest_json` also the docker-compatible
    /// `manifest.json` and `repositories`, as docker 25+ writes.
    Oci { manifest_json: bool },
}

/// How layer blobs are compressed inside the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    fn compress(self, tar: &[u8]) -> Vec<u8> {
        match self {
            Compression::None => tar.to_vec(),
            Compression::Gzip => {
                // GzEncoder writes mtime 0 and a fixed OS byte: deterministic.
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(tar).expect("gzip into memory");
                enc.finish().expect("gzip into memory")
            }
            Compression::Zstd => zstd::encode_all(tar, 3).expect("zstd into memory"),
        }
    }
}

/// One `history` entry of the image config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    pub created_by: String,
    pub empty_layer: bool,
}

/// What an image archive is made of. Build with [`ImageBuilder::build`].
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    repo_tags: Vec<String>,
    layers: Vec<LayerTar>,
    history: Vec<History>,
    cmd: Vec<String>,
    entrypoint: Option<Vec<String>>,
    env: Vec<String>,
    labels: BTreeMap<String, String>,
    working_dir: String,
    layout: Layout,
    compression: Compression,
    metadata_first: bool,
    corrupt_diff_id: Option<usize>,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        ImageBuilder {
            repo_tags: Vec::new(),
            layers: Vec::new(),
            history: Vec::new(),
            cmd: vec!["sh".to_string()],
            entrypoint: None,
            env: vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            ],
            labels: BTreeMap::new(),
            working_dir: String::new(),
            layout: Layout::DockerSave,
            compression: Compression::None,
            metadata_first: false,
            corrupt_diff_id: None,
        }
    }
}

impl ImageBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a `name:tag` the archive carries (`RepoTags`). None makes an
    /// untagged archive that loads as a dangling image.
    pub fn tag(mut self, reference: &str) -> Self {
        self.repo_tags.push(reference.to_string());
        self
    }

    /// Replaces all tags.
    pub fn tags(mut self, references: &[&str]) -> Self {
        self.repo_tags = references.iter().map(|r| r.to_string()).collect();
        self
    }

    /// Appends a layer, with a history entry saying `created_by`.
    pub fn layer(mut self, layer: LayerTar, created_by: &str) -> Self {
        self.layers.push(layer);
        self.history.push(History {
            created_by: created_by.to_string(),
            empty_layer: false,
        });
        self
    }

    /// Appends a history entry that made no layer (`LABEL`, `CMD`...).
    pub fn empty_layer_history(mut self, created_by: &str) -> Self {
        self.history.push(History {
            created_by: created_by.to_string(),
            empty_layer: true,
        });
        self
    }

    pub fn cmd(mut self, cmd: &[&str]) -> Self {
        self.cmd = cmd.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn entrypoint(mut self, entrypoint: &[&str]) -> Self {
        self.entrypoint = Some(entrypoint.iter().map(|s| s.to_string()).collect());
        self
    }

    pub fn env(mut self, var: &str) -> Self {
        self.env.push(var.to_string());
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    pub fn working_dir(mut self, dir: &str) -> Self {
        self.working_dir = dir.to_string();
        self
    }

    pub fn layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Write manifest/config/index entries before the layer blobs (docker
    /// writes them after), so a loader that streams can start on layers
    /// before the archive ends — what the truncated-archive test needs.
    pub fn metadata_first(mut self, first: bool) -> Self {
        self.metadata_first = first;
        self
    }

    /// Put a wrong diff ID for layer `index` into the config; the layer blob
    /// itself (and its OCI digest) stay correct.
    pub fn corrupt_diff_id(mut self, index: usize) -> Self {
        self.corrupt_diff_id = Some(index);
        self
    }

    /// Writes the archive.
    pub fn build(&self) -> BuiltImage {
        let tars: Vec<Vec<u8>> = self.layers.iter().map(LayerTar::to_tar).collect();
        let diff_ids: Vec<String> = tars.iter().map(|t| sha256_digest(t)).collect();
        let layer_sizes: Vec<u64> = self.layers.iter().map(LayerTar::content_size).collect();
        let blobs: Vec<Vec<u8>> = tars.iter().map(|t| self.compression.compress(t)).collect();

        let mut config_diff_ids = diff_ids.clone();
        if let Some(i) = self.corrupt_diff_id {
            config_diff_ids[i] = sha256_digest(format!("not layer {i}").as_bytes());
        }
        let config = self.config_json(&config_diff_ids);
        let config_bytes = serde_json::to_vec(&config).expect("config serializes");
        let id = sha256_digest(&config_bytes);

        let mut files: Vec<(String, Vec<u8>, bool)> = Vec::new(); // (path, data, is_layer)
        let mut manifest_digest = None;
        let mut layer_paths = Vec::new();
        match self.layout {
            Layout::DockerSave => {
                let mut parent: Option<String> = None;
                for (i, blob) in blobs.iter().enumerate() {
                    let v1_id = hex_sha256(
                        format!("{}{}", parent.as_deref().unwrap_or(""), diff_ids[i]).as_bytes(),
                    );
                    let mut v1 = json!({"id": v1_id, "created": CREATED, "os": "linux"});
                    if let Some(p) = &parent {
                        v1["parent"] = json!(p);
                    }
                    files.push((format!("{v1_id}/VERSION"), b"1.0".to_vec(), false));
                    files.push((format!("{v1_id}/json"), to_bytes(&v1), false));
                    files.push((format!("{v1_id}/layer.tar"), blob.clone(), true));
                    layer_paths.push(format!("{v1_id}/layer.tar"));
                    parent = Some(v1_id);
                }
                let config_name = format!("{}.json", hex_of(&id));
                files.push((config_name.clone(), config_bytes.clone(), false));
                let manifest = json!([{
                    "Config": config_name,
                    "RepoTags": self.repo_tags,
                    "Layers": layer_paths,
                }]);
                files.push(("manifest.json".into(), to_bytes(&manifest), false));
                if let Some(top) = parent {
                    files.push((
                        "repositories".into(),
                        to_bytes(&self.repositories_json(&top)),
                        false,
                    ));
                }
            }
            Layout::Oci { manifest_json } => {
                let mut layer_descs = Vec::new();
                for blob in &blobs {
                    let digest = sha256_digest(blob);
                    layer_descs.push(json!({
                        "mediaType": self.compression.oci_media_type(),
                        "digest": digest,
                        "size": blob.len(),
                    }));
                    let path = format!("blobs/sha256/{}", hex_of(&digest));
                    layer_paths.push(path.clone());
                    files.push((path, blob.clone(), true));
                }
                files.push((
                    format!("blobs/sha256/{}", hex_of(&id)),
                    config_bytes.clone(),
                    false,
                ));
                let manifest = json!({
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {
                        "mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": id,
                        "size": config_bytes.len(),
                    },
                    "layers": layer_descs,
                });
                let manifest_bytes = to_bytes(&manifest);
                let m_digest = sha256_digest(&manifest_bytes);
                files.push((
                    format!("blobs/sha256/{}", hex_of(&m_digest)),
                    manifest_bytes.clone(),
                    false,
                ));
                let descriptors: Vec<Value> = if self.repo_tags.is_empty() {
                    vec![json!({
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": m_digest,
                        "size": manifest_bytes.len(),
                    })]
                } else {
                    self.repo_tags
                        .iter()
                        .map(|r| {
                            let (_, tag) = split_reference(r);
                            json!({
                                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                "digest": m_digest,
                                "size": manifest_bytes.len(),
                                "annotations": {
                                    "io.containerd.image.name": full_reference(r),
                                    "org.opencontainers.image.ref.name": tag,
                                },
                            })
                        })
                        .collect()
                };
                let index = json!({
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": descriptors,
                });
                files.push(("index.json".into(), to_bytes(&index), false));
                files.push((
                    "oci-layout".into(),
                    to_bytes(&json!({"imageLayoutVersion": "1.0.0"})),
                    false,
                ));
                if manifest_json {
                    let docker_manifest = json!([{
                        "Config": format!("blobs/sha256/{}", hex_of(&id)),
                        "RepoTags": self.repo_tags,
                        "Layers": layer_paths,
                    }]);
                    files.push(("manifest.json".into(), to_bytes(&docker_manifest), false));
                    if let Some(top) = layer_paths.last() {
                        let top_hex = top.rsplit('/').next().unwrap_or_default().to_string();
                        files.push((
                            "repositories".into(),
                            to_bytes(&self.repositories_json(&top_hex)),
                            false,
                        ));
                    }
                }
                manifest_digest = Some(m_digest);
            }
        }

        // Like `tar -C dir .`: sorted paths, then (optionally) metadata ahead
        // of the layers.
        files.sort_by(|a, b| a.0.cmp(&b.0));
        if self.metadata_first {
            files.sort_by_key(|f| f.2);
        }
        let (bytes, entries) = write_outer_tar(&files);

        BuiltImage {
            bytes,
            id,
            diff_ids,
            layer_sizes,
            config,
            repo_tags: self.repo_tags.clone(),
            history: self.history.clone(),
            manifest_digest,
            entries,
            layer_paths,
        }
    }

    fn config_json(&self, diff_ids: &[String]) -> Value {
        let mut container_config = json!({
            "Env": self.env,
            "Cmd": self.cmd,
            "Labels": self.labels,
        });
        if let Some(ep) = &self.entrypoint {
            container_config["Entrypoint"] = json!(ep);
        }
        if !self.working_dir.is_empty() {
            container_config["WorkingDir"] = json!(self.working_dir);
        }
        let history: Vec<Value> = self
            .history
            .iter()
            .map(|h| {
                let mut v = json!({"created": CREATED, "created_by": h.created_by});
                if h.empty_layer {
                    v["empty_layer"] = json!(true);
                }
                v
            })
            .collect();
        json!({
            "architecture": "amd64",
            "os": "linux",
            "created": CREATED,
            "config": container_config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        })
    }

    fn repositories_json(&self, top: &str) -> Value {
        let mut repos: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for r in &self.repo_tags {
            let (name, tag) = split_reference(r);
            repos
                .entry(name.to_string())
                .or_default()
                .insert(tag.to_string(), top.to_string());
        }
        json!(repos)
    }
}

/// An archive ready to `docker load`, and what loading it must produce.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The archive bytes.
    pub bytes: Vec<u8>,
    /// `sha256:<hex>` of the config: the image ID docker must report.
    pub id: String,
    /// `sha256:<hex>` of each uncompressed layer tar, base first.
    pub diff_ids: Vec<String>,
    /// Each layer's size as berth reports it (see [`LayerTar::content_size`]).
    pub layer_sizes: Vec<u64>,
    pub config: Value,
    pub repo_tags: Vec<String>,
    pub history: Vec<History>,
    /// For the OCI layout, the manifest's digest.
    pub manifest_digest: Option<String>,
    /// `(path, start, end)` byte ranges of each archive member (header
    /// included), in archive order.
    pub entries: Vec<(String, usize, usize)>,
    /// Archive paths of the layer blobs, in image order (base first).
    pub layer_paths: Vec<String>,
}

impl BuiltImage {
    /// The image's size (`docker images`, inspect `Size`): its layers' sizes.
    pub fn size(&self) -> u64 {
        self.layer_sizes.iter().sum()
    }

    /// `docker images`' SIZE column for this image (see [`human_size`]).
    pub fn human_size(&self) -> String {
        human_size(self.size())
    }

    /// Writes the archive to `path`.
    pub fn write_to(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, &self.bytes)
    }

    /// The archive cut off halfway through the layer blob that comes last
    /// in the archive (not necessarily the image's top layer).
    pub fn truncated_in_last_layer(&self) -> Vec<u8> {
        let (_, start, end) = self
            .entries
            .iter()
            .filter(|(p, _, _)| self.layer_paths.contains(p))
            .max_by_key(|(_, start, _)| *start)
            .expect("image has layers");
        self.bytes[..start + (end - start) / 2].to_vec()
    }
}

/// Formats a byte count as the docker CLI's SIZE columns do: go-units'
/// `HumanSizeWithPrecision(size, 3)`, i.e. decimal units and Go's `%.3g`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    format!("{}{}", go_g3(size), UNITS[unit])
}

/// Go's `%.3g` for 0 <= v < 1000: three significant digits, trailing zeros
/// and a trailing dot dropped.
fn go_g3(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    let digits_before_point = (v.abs().log10().floor() as i32) + 1;
    let decimals = (3 - digits_before_point).max(0) as usize;
    let s = format!("{v:.decimals$}");
    // Rounding may carry into a new digit (9.995 -> "10.00"): re-round.
    let rounded: f64 = s.parse().unwrap_or(v);
    let digits_after = (rounded.abs().log10().floor() as i32) + 1;
    let decimals = (3 - digits_after).max(0) as usize;
    let s = format!("{rounded:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn write_outer_tar(files: &[(String, Vec<u8>, bool)]) -> (Vec<u8>, Vec<(String, usize, usize)>) {
    let mut builder = tar::Builder::new(Vec::new());
    let mut entries = Vec::new();
    let mut dirs_written = std::collections::BTreeSet::new();
    for (path, data, _) in files {
        // Parent directories first, once each, as `tar -C dir .` would.
        let mut parent = String::new();
        for component in path.split('/').collect::<Vec<_>>().split_last().unwrap().1 {
            parent.push_str(component);
            parent.push('/');
            if dirs_written.insert(parent.clone()) {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_mtime(MTIME);
                h.set_size(0);
                builder
                    .append_data(&mut h, &parent, std::io::empty())
                    .expect("dir entry");
            }
        }
        let start = builder.get_ref().len();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_mtime(MTIME);
        h.set_size(data.len() as u64);
        builder
            .append_data(&mut h, path, data.as_slice())
            .expect("file entry");
        entries.push((path.clone(), start, builder.get_ref().len()));
    }
    (builder.into_inner().expect("finish archive"), entries)
}

/// The regular files of a tar archive, by path (e.g. what `docker save`
/// wrote), for tests that check an archive from outside.
pub fn members(archive: &[u8]) -> std::io::Result<BTreeMap<String, Vec<u8>>> {
    use std::io::Read;
    let mut out = BTreeMap::new();
    let mut reader = tar::Archive::new(archive);
    for entry in reader.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type().is_file() {
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            out.insert(name, data);
        }
    }
    Ok(out)
}

/// `blob` decompressed if it starts with a gzip or zstd magic, else as is
/// (how `docker load` treats layer blobs).
pub fn decompress(blob: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    if blob.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(blob).read_to_end(&mut out)?;
        Ok(out)
    } else if blob.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::decode_all(blob)
    } else {
        Ok(blob.to_vec())
    }
}

/// `data` compressed as `compression` (deterministically).
pub fn compress(data: &[u8], compression: Compression) -> Vec<u8> {
    compression.compress(data)
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex_sha256(data))
}

fn hex_sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("json serializes")
}

/// Splits `repo:tag` (the tag is after the last `:` that follows the last
/// `/`, so registry ports survive); no tag means `latest`.
pub fn split_reference(reference: &str) -> (&str, &str) {
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(i) => (
            &reference[..last_slash + i],
            &reference[last_slash + i + 1..],
        ),
        None => (reference, "latest"),
    }
}

/// `docker.io/library/busybox:latest` style name containerd annotates with.
fn full_reference(reference: &str) -> String {
    let (name, tag) = split_reference(reference);
    let first = name.split('/').next().unwrap_or("");
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':')) || first == "localhost";
    let full = if has_registry {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    format!("{full}:{tag}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_image() -> ImageBuilder {
        ImageBuilder::new()
            .tag("berth-test/unit:latest")
            .layer(
                LayerTar::new().dir("a", 0o755).file("a/x", 0o644, "x\n"),
                "ADD a",
            )
            .empty_layer_history("LABEL k=v")
            .layer(
                LayerTar::new().whiteout("a/x").file("b", 0o644, "bb"),
                "RUN rm a/x",
            )
            .label("k", "v")
    }

    fn members(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
        super::members(bytes).unwrap()
    }

    fn decompress(blob: &[u8]) -> Vec<u8> {
        super::decompress(blob).unwrap()
    }

    #[test]
    fn docker_save_layout_parses_and_digests_match() {
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let img = small_image().compression(compression).build();
            let m = members(&img.bytes);
            let manifest: Value = serde_json::from_slice(&m["manifest.json"]).unwrap();
            let config_name = manifest[0]["Config"].as_str().unwrap();
            let config = &m[config_name];
            assert_eq!(sha256_digest(config), img.id);
            assert_eq!(format!("sha256:{config_name}"), format!("{}.json", img.id));
            let config: Value = serde_json::from_slice(config).unwrap();
            assert_eq!(config["architecture"], "amd64");
            assert_eq!(config["os"], "linux");
            assert_eq!(config["config"]["Cmd"], json!(["sh"]));
            assert_eq!(config["history"].as_array().unwrap().len(), 3);
            assert_eq!(config["history"][1]["empty_layer"], json!(true));
            let layers = manifest[0]["Layers"].as_array().unwrap();
            assert_eq!(layers.len(), 2);
            for (i, l) in layers.iter().enumerate() {
                let tar = decompress(&m[l.as_str().unwrap()]);
                assert_eq!(sha256_digest(&tar), img.diff_ids[i]);
                assert_eq!(config["rootfs"]["diff_ids"][i], json!(img.diff_ids[i]));
            }
            assert_eq!(manifest[0]["RepoTags"], json!(["berth-test/unit:latest"]));
            let repos: Value = serde_json::from_slice(&m["repositories"]).unwrap();
            assert!(repos["berth-test/unit"]["latest"].is_string());
            assert_eq!(img.size(), 2 + 2);
        }
    }

    #[test]
    fn oci_layout_blobs_are_content_addressed() {
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let img = small_image()
                .layout(Layout::Oci {
                    manifest_json: true,
                })
                .compression(compression)
                .build();
            let m = members(&img.bytes);
            for (name, data) in &m {
                if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                    assert_eq!(hex_sha256(data), hex, "{name}");
                }
            }
            let layout: Value = serde_json::from_slice(&m["oci-layout"]).unwrap();
            assert_eq!(layout["imageLayoutVersion"], "1.0.0");
            let index: Value = serde_json::from_slice(&m["index.json"]).unwrap();
            let desc = &index["manifests"][0];
            assert_eq!(
                desc["annotations"]["io.containerd.image.name"],
                "docker.io/berth-test/unit:latest"
            );
            let mdigest = desc["digest"].as_str().unwrap();
            assert_eq!(Some(mdigest.to_string()), img.manifest_digest);
            let manifest: Value =
                serde_json::from_slice(&m[&format!("blobs/sha256/{}", hex_of(mdigest))]).unwrap();
            assert_eq!(manifest["config"]["digest"], json!(img.id));
            for (i, l) in manifest["layers"].as_array().unwrap().iter().enumerate() {
                let blob = &m[&format!("blobs/sha256/{}", hex_of(l["digest"].as_str().unwrap()))];
                assert_eq!(l["size"], json!(blob.len()));
                assert_eq!(sha256_digest(&decompress(blob)), img.diff_ids[i]);
            }
            assert!(m.contains_key("manifest.json"));
        }
    }

    #[test]
    fn builds_are_byte_identical() {
        for layout in [
            Layout::DockerSave,
            Layout::Oci {
                manifest_json: false,
            },
        ] {
            for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
                let a = small_image()
                    .layout(layout)
                    .compression(compression)
                    .build();
                let b = small_image()
                    .layout(layout)
                    .compression(compression)
                    .build();
                assert_eq!(a.bytes, b.bytes);
                assert_eq!(a.id, b.id);
            }
        }
    }

    #[test]
    fn corrupt_diff_id_only_touches_the_config() {
        let good = small_image().build();
        let bad = small_image().corrupt_diff_id(1).build();
        assert_ne!(good.id, bad.id);
        assert_eq!(good.diff_ids, bad.diff_ids);
        assert_ne!(bad.config["rootfs"]["diff_ids"][1], json!(bad.diff_ids[1]));
    }

    #[test]
    fn metadata_first_and_truncation() {
        let img = small_image().metadata_first(true).build();
        let first_layer = img
            .entries
            .iter()
            .position(|(p, _, _)| p.ends_with("layer.tar"))
            .unwrap();
        assert!(img.entries[..first_layer]
            .iter()
            .any(|(p, _, _)| p == "manifest.json"));
        let cut = img.truncated_in_last_layer();
        assert!(cut.len() < img.bytes.len());
        let mut archive = tar::Archive::new(cut.as_slice());
        let result: Result<Vec<_>, _> = archive
            .entries()
            .unwrap()
            .map(|e| e.and_then(|mut e| std::io::copy(&mut e, &mut std::io::sink())))
            .collect();
        assert!(result.is_err(), "a truncated archive must not read cleanly");
    }

    #[test]
    fn human_size_matches_go_units() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(2_172_000), "2.17MB");
        assert_eq!(human_size(2_175_000), "2.17MB"); // %.3g rounds half to even-ish in binary
        assert_eq!(human_size(12_300_000), "12.3MB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_size(9_999_000), "10MB");
    }

    #[test]
    fn references_split_like_docker() {
        assert_eq!(split_reference("a/b:c"), ("a/b", "c"));
        assert_eq!(split_reference("reg:5000/a"), ("reg:5000/a", "latest"));
        assert_eq!(full_reference("busybox:1"), "docker.io/library/busybox:1");
        assert_eq!(full_reference("reg:5000/a:t"), "reg:5000/a:t");
    }
}

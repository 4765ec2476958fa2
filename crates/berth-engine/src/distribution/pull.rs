//! `docker pull`: resolve the reference to an image manifest (through an
//! index for the wanted platform), then fetch the config, download the
//! missing layers three at a time into scratch files (digest checked as
//! the bytes arrive), and unpack them bottom-up into the layer store as
//! each is ready. Layers already stored are not fetched. Progress lines
//! are dockerd's; a failure or a client that goes away leaves no layer
//! or image behind.

use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_storage::ChainId;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, Semaphore};

use super::blob_digests::RemoteBlob;
use super::client::{transport_cause, RepoClient};
use super::manifest::{self, Descriptor, Manifest, Platform};
use super::{
    is_name_only, pull_error, sha256_digest, short, split_name, AuthConfig, Reporter, Tasks,
};
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::images::config::ImageConfigFile;
use crate::images::reference::ImageRef;
use crate::images::store::ImageMeta;
use crate::progress::Progress;
use crate::scratch::ScratchDir;

/// How many layers download at once (dockerd's `max-concurrent-downloads`).
const CONCURRENT_DOWNLOADS: usize = 3;
/// Bytes between two progress updates of one layer.
const PROGRESS_EVERY: u64 = 512 * 1024;
/// How long a blob download may go without receiving a byte.
const CHUNK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// `POST /images/create?fromImage=...` parameters.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `fromImage` (may carry a tag or digest).
    pub from_image: String,
    /// `tag`: a tag or a digest.
    pub tag: Option<String>,
    /// `platform` (`linux/arm64`...); default linux/amd64.
    pub platform: Option<String>,
    /// From `X-Registry-Auth`.
    pub auth: AuthConfig,
}

/// What one pull asks for.
struct Target {
    /// The reference as requested (name only when pulling every tag).
    requested: ImageRef,
    all_tags: bool,
}

impl Target {
    /// dockerd's reading of `fromImage` + `tag`: a tag that parses as a
    /// digest pins it; no tag at all means every tag.
    fn parse(from_image: &str, tag: Option<&str>) -> Result<Target> {
        let tag = tag.map(str::trim).filter(|t| !t.is_empty());
        let mut r = ImageRef::parse(from_image)?;
        if let Some(t) = tag {
            if !is_name_only(from_image) {
                // dockerd ignores `tag` when the image already names one.
                return Ok(Target {
                    requested: r,
                    all_tags: false,
                });
            }
            if t.starts_with("sha256:") {
                if !crate::images::config::is_sha256_digest(t) {
                    return Err(EngineError::InvalidParameter(format!(
                        "invalid reference format: invalid digest {t:?}"
                    )));
                }
                r.tag = None;
                r.digest = Some(t.to_string());
            } else {
                r = ImageRef::with_tag(from_image, Some(t))?;
            }
            return Ok(Target {
                requested: r,
                all_tags: false,
            });
        }
        let all_tags = is_name_only(from_image);
        if all_tags {
            r.tag = None;
        }
        Ok(Target {
            requested: r,
            all_tags,
        })
    }
}

/// One image manifest to pull, resolved from a tag or digest.
struct Resolved {
    /// The reference being pulled (tag or digest form).
    reference: ImageRef,
    /// The tag or digest as progress shows it.
    tag_or_digest: String,
    /// The digest of what the reference names (an index's, if it is one).
    digest: String,
    client: Arc<RepoClient>,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// Layer references a pull holds until its image takes over; whatever is
/// still held when the pull ends without an image is released, also when
/// a layer finishes unpacking after the pull was abandoned.
struct LayerHold {
    engine: Arc<Engine>,
    state: Arc<Mutex<HoldState>>,
}

#[derive(Default)]
struct HoldState {
    chains: Vec<ChainId>,
    closed: bool,
}

impl LayerHold {
    fn new(engine: Arc<Engine>) -> LayerHold {
        LayerHold {
            engine,
            state: Arc::default(),
        }
    }

    fn push(&self, chain: ChainId) {
        hold_or_release(&self.engine, &self.state, chain);
    }

    /// Hands the references over (the image store now accounts for them).
    fn take(&self) -> Vec<ChainId> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.closed = true;
        std::mem::take(&mut st.chains)
    }
}

fn hold_or_release(engine: &Engine, state: &Mutex<HoldState>, chain: ChainId) {
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    if st.closed {
        drop(st);
        engine.release_layers(&[chain]);
    } else {
        st.chains.push(chain);
    }
}

impl Drop for LayerHold {
    fn drop(&mut self) {
        let chains = self.take();
        if chains.is_empty() {
            return;
        }
        let engine = self.engine.clone();
        // Releasing removes layers from disk: not on an async worker.
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn_blocking(move || engine.release_layers(&chains));
            }
            Err(_) => engine.release_layers(&chains),
        }
    }
}

impl Engine {
    /// `POST /images/create?fromImage=`: resolves the reference before
    /// answering (so "not found" and "unauthorized" are HTTP errors, as with
    /// dockerd), then streams the transfer. Dropping the receiver (the
    /// client went away) cancels the pull.
    pub async fn pull_image(
        self: &Arc<Self>,
        opts: PullOptions,
    ) -> Result<mpsc::Receiver<Progress>> {
        let target = Target::parse(&opts.from_image, opts.tag.as_deref())?;
        let platform = match opts.platform.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => Platform::parse(p)?,
            None => Platform::host(),
        };
        let mut first = Vec::new();
        let mut tags = Vec::new();
        if target.all_tags {
            let clients = self
                .connect_repo(&target.requested.name, "pull", &opts.auth, true)
                .await
                .map_err(|e| pull_error(e, &target.requested))?;
            let client = clients
                .into_iter()
                .next()
                .expect("connect_repo returns one");
            tags = client
                .tags()
                .await
                .map_err(|e| pull_error(e, &target.requested))?;
        } else {
            first.push(
                self.resolve(&target.requested, &opts.auth, &platform)
                    .await?,
            );
        }
        let (tx, rx) = mpsc::channel(64);
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            let report = Reporter(tx.clone());
            let work = engine.run_pull(&target, first, tags, &opts.auth, &platform, &report);
            tokio::select! {
                result = work => {
                    if let Err(e) = result {
                        tracing::info!("pull of {} failed: {e}", target.requested.familiar());
                        let _ = tx.send(Progress::Error(e.to_string())).await;
                    }
                }
                _ = tx.closed() => {
                    tracing::info!(
                        "pull of {} cancelled: the client went away",
                        target.requested.familiar()
                    );
                }
            }
        });
        Ok(rx)
    }

    async fn run_pull(
        self: &Arc<Self>,
        target: &Target,
        first: Vec<Resolved>,
        tags: Vec<String>,
        auth: &AuthConfig,
        platform: &Platform,
        report: &Reporter,
    ) -> Result<()> {
        let mut updated = false;
        for resolved in first {
            updated |= self.pull_resolved(resolved, report).await?;
        }
        for t in tags {
            let mut r = target.requested.clone();
            r.tag = Some(t);
            let resolved = self.resolve(&r, auth, platform).await?;
            updated |= self.pull_resolved(resolved, report).await?;
        }
        let requested = target.requested.familiar();
        if updated {
            report
                .message(
                    None,
                    format!("Status: Downloaded newer image for {requested}"),
                )
                .await;
        } else {
            report
                .message(None, format!("Status: Image is up to date for {requested}"))
                .await;
        }
        let engine = Arc::clone(self);
        let name = target.requested.name.clone();
        tokio::task::spawn_blocking(move || engine.publish_transfer("pull", &requested, &name))
            .await
            .map_err(|e| EngineError::Internal(format!("pull task: {e}")))?;
        Ok(())
    }

    /// Fetches the manifest for `r` and, for an index, the one for
    /// `platform`.
    async fn resolve(
        &self,
        r: &ImageRef,
        auth: &AuthConfig,
        platform: &Platform,
    ) -> Result<Resolved> {
        let tag_or_digest = r
            .digest
            .clone()
            .or_else(|| r.tag.clone())
            .unwrap_or_else(|| "latest".into());
        let fetched = self.fetch_manifest(r, &tag_or_digest, auth).await?;
        let client = fetched.client.clone();
        let (config, layers) = match fetched.manifest {
            Manifest::Image { config, layers, .. } => (config, layers),
            Manifest::Index { manifests, .. } => {
                let pick = manifest::choose(&manifests, platform)?;
                let (raw, media_type) = client
                    .manifest(&pick.digest)
                    .await
                    .map_err(|e| pull_error(e, r))?;
                if sha256_digest(&raw) != pick.digest {
                    return Err(EngineError::Internal(format!(
                        "manifest verification failed for digest {}",
                        pick.digest
                    )));
                }
                let media_type = if media_type.is_empty() {
                    pick.media_type.clone()
                } else {
                    media_type
                };
                match Manifest::parse(&media_type, &raw, &r.normalized())? {
                    Manifest::Image { config, layers, .. } => (config, layers),
                    Manifest::Index { .. } => {
                        return Err(EngineError::InvalidParameter(
                            "unsupported manifest format: an index inside an index".into(),
                        ))
                    }
                }
            }
        };
        manifest::check_config_type(&config.media_type)?;
        for l in &layers {
            manifest::check_layer_type(&l.media_type)?;
        }
        Ok(Resolved {
            reference: r.clone(),
            tag_or_digest,
            digest: fetched.digest,
            client,
            config,
            layers,
        })
    }

    /// Pulls one resolved image; whether a reference moved or a new image
    /// arrived ("Downloaded newer image").
    async fn pull_resolved(self: &Arc<Self>, res: Resolved, report: &Reporter) -> Result<bool> {
        report
            .message(
                Some(&res.tag_or_digest),
                // dockerd names the repository by its path on the registry
                // (`library/busybox`, `busybox`), not its full name.
                format!("Pulling from {}", split_name(&res.reference.name).1),
            )
            .await;
        let raw = res
            .client
            .blob_bytes(&res.config.digest)
            .await
            .map_err(|e| pull_error(e, &res.reference))?;
        if sha256_digest(&raw) != res.config.digest {
            return Err(EngineError::Internal(format!(
                "image config verification failed for digest {}",
                res.config.digest
            )));
        }
        let config = ImageConfigFile::parse(&raw)?;
        let diff_ids = config.rootfs.diff_ids.clone();
        if diff_ids.len() != res.layers.len() {
            return Err(EngineError::InvalidParameter(
                "layers from manifest don't match image configuration".into(),
            ));
        }
        let hold = LayerHold::new(Arc::clone(self));
        let top = match self.fetch_layers(&res, &diff_ids, &hold, report).await {
            Ok(top) => top,
            Err(e) => {
                // Release now rather than from the hold's drop, so no layer
                // of this pull is left when the client reads the error.
                let chains = hold.take();
                let engine = Arc::clone(self);
                let _ = tokio::task::spawn_blocking(move || engine.release_layers(&chains)).await;
                return Err(e);
            }
        };
        let engine = Arc::clone(self);
        let reference = res.reference.clone();
        let digest = res.digest.clone();
        let blobs: Vec<(String, RemoteBlob)> = diff_ids
            .iter()
            .zip(&res.layers)
            .map(|(d, l)| {
                (
                    d.clone(),
                    RemoteBlob {
                        digest: l.digest.clone(),
                        media_type: l.media_type.clone(),
                        size: l.size,
                        repository: res.reference.name.clone(),
                    },
                )
            })
            .collect();
        let updated = tokio::task::spawn_blocking(move || {
            for (diff_id, blob) in blobs {
                if let Err(e) = engine.distribution.blobs.record(&diff_id, blob) {
                    tracing::warn!("recording the blob of layer {diff_id}: {e}");
                }
            }
            engine.store_pulled(raw.to_vec(), config, top, &hold, &reference, &digest)
        })
        .await
        .map_err(|e| EngineError::Internal(format!("pull task: {e}")))??;
        report
            .message(None, format!("Digest: {}", res.digest))
            .await;
        Ok(updated)
    }

    /// Takes or fetches every layer of `res`; returns the top chain ID.
    async fn fetch_layers(
        self: &Arc<Self>,
        res: &Resolved,
        diff_ids: &[String],
        hold: &LayerHold,
        report: &Reporter,
    ) -> Result<Option<ChainId>> {
        let mut chains = Vec::new();
        let mut parent: Option<ChainId> = None;
        for d in diff_ids {
            let c = berth_storage::chain_id(parent.as_deref(), d);
            chains.push(c.clone());
            parent = Some(c);
        }
        // Layers already stored form a prefix: a layer's chain covers its
        // parents.
        let mut present = 0;
        for (i, c) in chains.iter().enumerate() {
            if self.layers.acquire(c).is_err() {
                break;
            }
            hold.push(c.clone());
            report
                .update(&short(&res.layers[i].digest), "Already exists")
                .await;
            present = i + 1;
        }
        if present == chains.len() {
            return Ok(chains.last().cloned());
        }
        let scratch = Arc::new(ScratchDir::new(&self.config.data_root, "pull")?);
        for (n, l) in res.layers[present..].iter().enumerate() {
            let id = short(&l.digest);
            report.update(&id, "Pulling fs layer").await;
            if n >= CONCURRENT_DOWNLOADS {
                report.update(&id, "Waiting").await;
            }
        }
        let slots = Arc::new(Semaphore::new(CONCURRENT_DOWNLOADS));
        let mut downloads = Tasks(Vec::new());
        for (i, l) in res.layers.iter().enumerate().skip(present) {
            let path = scratch.path().join(format!("layer-{i}"));
            downloads.0.push(tokio::spawn(download(
                res.client.clone(),
                l.clone(),
                path,
                report.clone(),
                slots.clone(),
                scratch.clone(),
            )));
        }
        let result = self
            .extract_in_order(
                res,
                diff_ids,
                &chains,
                present,
                &mut downloads,
                hold,
                report,
            )
            .await;
        if result.is_err() {
            // Stop the other downloads and wait until they are gone, so
            // their scratch files are removed before the failure is told.
            for h in &downloads.0 {
                h.abort();
            }
            for h in std::mem::take(&mut downloads.0) {
                let _ = h.await;
            }
        }
        result?;
        Ok(chains.last().cloned())
    }

    /// Unpacks the downloaded layers bottom-up as each download finishes.
    #[allow(clippy::too_many_arguments)]
    async fn extract_in_order(
        self: &Arc<Self>,
        res: &Resolved,
        diff_ids: &[String],
        chains: &[ChainId],
        present: usize,
        downloads: &mut Tasks<Result<PathBuf>>,
        hold: &LayerHold,
        report: &Reporter,
    ) -> Result<()> {
        for i in present..chains.len() {
            let handle = downloads.0.remove(0);
            let path = handle
                .await
                .map_err(|e| EngineError::Internal(format!("layer download task: {e}")))??;
            let parent = (i > 0).then(|| chains[i - 1].clone());
            let engine = Arc::clone(self);
            let state = hold.state.clone();
            let diff_id = diff_ids[i].clone();
            let id = short(&res.layers[i].digest);
            let blocking_report = report.clone();
            tokio::task::spawn_blocking(move || -> Result<()> {
                let file = std::fs::File::open(&path)
                    .map_err(|e| EngineError::io(format!("open {}", path.display()), e))?;
                let total = file.metadata().map(|m| m.len()).unwrap_or(0);
                let mut reader = ExtractProgress {
                    inner: file,
                    report: &blocking_report,
                    id: &id,
                    done: 0,
                    last: 0,
                    total,
                };
                let info =
                    engine
                        .layers
                        .register(parent.as_deref(), &mut reader, Some(&diff_id))?;
                hold_or_release(&engine, &state, info.chain_id);
                let _ = std::fs::remove_file(&path);
                Ok(())
            })
            .await
            .map_err(|e| EngineError::Internal(format!("layer extraction task: {e}")))??;
            report
                .update(&short(&res.layers[i].digest), "Pull complete")
                .await;
        }
        Ok(())
    }

    /// Stores the pulled image and points the reference (and its digest
    /// form) at it; true when something changed.
    fn store_pulled(
        &self,
        raw: Vec<u8>,
        config: ImageConfigFile,
        top: Option<ChainId>,
        hold: &LayerHold,
        reference: &ImageRef,
        digest: &str,
    ) -> Result<bool> {
        let _guard = self.image_lock();
        let (image, is_new) = self.images.add(raw, config, ImageMeta::default())?;
        // The image keeps a reference on its top layer only; an image we
        // already had holds its own.
        let held = hold.take();
        let keep = if is_new { top } else { None };
        let release: Vec<ChainId> = held
            .into_iter()
            .filter(|c| Some(c) != keep.as_ref())
            .collect();
        self.release_layers(&release);
        let already = self
            .images
            .references(&image.id)
            .iter()
            .any(|r| r.normalized() == reference.normalized());
        if !already {
            self.images.tag(&image.id, reference)?;
        }
        let by_digest = ImageRef {
            name: reference.name.clone(),
            tag: None,
            digest: Some(digest.to_string()),
        };
        if by_digest.normalized() != reference.normalized() {
            self.images.tag(&image.id, &by_digest)?;
        }
        Ok(is_new || !already)
    }
}

/// Downloads one layer blob into `path`, checking its digest as the bytes
/// arrive and reporting dockerd's per-layer lines.
async fn download(
    client: Arc<RepoClient>,
    desc: Descriptor,
    path: PathBuf,
    report: Reporter,
    slots: Arc<Semaphore>,
    _scratch: Arc<ScratchDir>,
) -> Result<PathBuf> {
    let _slot = slots
        .acquire_owned()
        .await
        .map_err(|_| EngineError::Internal("download slots closed".into()))?;
    let id = short(&desc.digest);
    let resp = client
        .blob(&desc.digest)
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    let total = if desc.size > 0 {
        desc.size
    } else {
        resp.content_length().unwrap_or(0)
    };
    let host = resp.url().host_str().unwrap_or_default().to_string();
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| EngineError::io(format!("create {}", path.display()), e))?;
    let mut hasher = Sha256::new();
    let (mut done, mut last) = (0u64, 0u64);
    let mut body = resp.bytes_stream();
    loop {
        // A registry that stops sending mid-blob must fail the pull, not
        // hang it.
        let next = tokio::time::timeout(CHUNK_TIMEOUT, body.next())
            .await
            .map_err(|_| {
                EngineError::Internal(format!(
                    "read tcp {host}: i/o timeout: no data for {}s",
                    CHUNK_TIMEOUT.as_secs()
                ))
            })?;
        let Some(chunk) = next else {
            break;
        };
        let chunk = chunk.map_err(|e| EngineError::Internal(transport_cause(&e, &host)))?;
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| EngineError::io(format!("write {}", path.display()), e))?;
        done += chunk.len() as u64;
        if done - last >= PROGRESS_EVERY {
            last = done;
            report.bytes(&id, "Downloading", done, total).await;
        }
    }
    file.flush()
        .await
        .map_err(|e| EngineError::io(format!("write {}", path.display()), e))?;
    if total > 0 && done < total {
        return Err(EngineError::Internal("unexpected EOF".into()));
    }
    report.update(&id, "Verifying Checksum").await;
    let got = format!("sha256:{}", hex::encode(hasher.finalize()));
    if got != desc.digest {
        return Err(EngineError::Internal(format!(
            "filesystem layer verification failed for digest {}",
            desc.digest
        )));
    }
    report.update(&id, "Download complete").await;
    Ok(path)
}

/// Reports "Extracting" as the layer store reads a downloaded blob.
struct ExtractProgress<'a> {
    inner: std::fs::File,
    report: &'a Reporter,
    id: &'a str,
    done: u64,
    last: u64,
    total: u64,
}

impl Read for ExtractProgress<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.done - self.last >= PROGRESS_EVERY || (n == 0 && self.done != self.last) {
            self.last = self.done;
            self.report
                .blocking_bytes(self.id, "Extracting", self.done, self.total.max(self.done));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_from_image_and_tag_as_dockerd() {
        let t = Target::parse("127.0.0.1:5000/bb", Some("v1")).unwrap();
        assert_eq!(t.requested.familiar(), "127.0.0.1:5000/bb:v1");
        assert!(!t.all_tags);
        let d = format!("sha256:{}", "a".repeat(64));
        let t = Target::parse("127.0.0.1:5000/bb", Some(&d)).unwrap();
        assert_eq!(t.requested.digest.as_deref(), Some(d.as_str()));
        assert_eq!(t.requested.tag, None);
        let t = Target::parse("127.0.0.1:5000/bb", None).unwrap();
        assert!(t.all_tags);
        assert_eq!(t.requested.familiar(), "127.0.0.1:5000/bb");
        let t = Target::parse("busybox:1.36", Some("latest")).unwrap();
        assert_eq!(t.requested.familiar(), "busybox:1.36");
        assert!(Target::parse("127.0.0.1:5000/bb", Some("sha256:zz")).is_err());
    }
}

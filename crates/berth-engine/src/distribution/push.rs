//! `docker push`: for each tag of the repository (or the one asked for),
//! upload only the layers the registry lacks — asked with HEAD for the
//! blobs this layer is known by, then mounted from another repository of
//! the same registry when possible, else rebuilt from the layer store and
//! gzipped on the fly while streaming — then the config and a Docker
//! schema2 manifest. The digest of every blob sent is remembered.

use std::io::{self, Write};
use std::sync::Arc;

use berth_storage::ChainId;
use bytes::Bytes;
use flate2::write::GzEncoder;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Semaphore};

use super::blob_digests::RemoteBlob;
use super::client::{RegistryError, RepoClient};
use super::manifest::{self, is_gzip_layer, DOCKER_LAYER_GZIP};
use super::{is_name_only, sha256_digest, short, split_name, AuthConfig, Reporter, Tasks};
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::images::reference::{familiar, ImageRef};
use crate::images::Image;
use crate::progress::Progress;

/// How many layers upload at once (dockerd's `max-concurrent-uploads`).
const CONCURRENT_UPLOADS: usize = 5;
/// Uncompressed bytes between two "Pushing" updates.
const PROGRESS_EVERY: u64 = 512 * 1024;
/// Size of the chunks the compressor hands to the upload.
const CHUNK: usize = 256 * 1024;

/// `POST /images/{name}/push?tag=` parameters.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// The repository (may carry a tag).
    pub name: String,
    /// `tag`; none (and none in `name`) pushes every tag.
    pub tag: Option<String>,
    /// From `X-Registry-Auth`.
    pub auth: AuthConfig,
}

fn registry_error(e: RegistryError) -> EngineError {
    EngineError::Internal(e.to_string())
}

impl Engine {
    /// `POST /images/{name}/push`: a bad name is an HTTP error; everything
    /// after that is reported in the stream, as dockerd does. Dropping the
    /// receiver cancels the push.
    pub async fn push_image(
        self: &Arc<Self>,
        opts: PushOptions,
    ) -> Result<mpsc::Receiver<Progress>> {
        let tag = opts.tag.as_deref().map(str::trim).filter(|t| !t.is_empty());
        let all = tag.is_none() && is_name_only(&opts.name);
        let mut r = match tag {
            Some(t) => ImageRef::with_tag(&opts.name, Some(t))?,
            None => ImageRef::parse(&opts.name)?,
        };
        if r.digest.is_some() {
            return Err(EngineError::InvalidParameter(
                "cannot push a digest reference".into(),
            ));
        }
        if all {
            r.tag = None;
        }
        let (tx, rx) = mpsc::channel(64);
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            let report = Reporter(tx.clone());
            let work = engine.run_push(&r, &opts.auth, &report);
            tokio::select! {
                result = work => {
                    if let Err(e) = result {
                        tracing::info!("push of {} failed: {e}", r.familiar());
                        let _ = tx.send(Progress::Error(e.to_string())).await;
                    }
                }
                _ = tx.closed() => {
                    tracing::info!("push of {} cancelled: the client went away", r.familiar());
                }
            }
        });
        Ok(rx)
    }

    async fn run_push(
        self: &Arc<Self>,
        r: &ImageRef,
        auth: &AuthConfig,
        report: &Reporter,
    ) -> Result<()> {
        report
            .message(None, format!("The push refers to repository [{}]", r.name))
            .await;
        let mut tags = self.images.tags_of_repository(&r.name);
        if tags.is_empty() {
            return Err(EngineError::NotFound(format!(
                "An image does not exist locally with the tag: {}",
                familiar(&r.name)
            )));
        }
        tags.sort_by_key(|(t, _)| t.normalized());
        if r.tag.is_some() {
            tags.retain(|(t, _)| t.normalized() == r.normalized());
            if tags.is_empty() {
                return Err(EngineError::NotFound(format!(
                    "tag does not exist: {}",
                    r.familiar()
                )));
            }
        }
        let client = self
            .connect_repo(&r.name, "pull,push", auth, false)
            .await
            .map_err(registry_error)?
            .into_iter()
            .next()
            .expect("connect_repo returns one");
        let client = Arc::new(client);
        for (tag_ref, id) in tags {
            let image = self.images.get(&id).ok_or_else(|| {
                EngineError::NotFound(format!(
                    "could not find image from tag {}: No such image: {id}",
                    tag_ref.familiar()
                ))
            })?;
            self.push_tag(&client, &tag_ref, &image, report).await?;
        }
        let engine = Arc::clone(self);
        let (shown, name) = (r.familiar(), r.name.clone());
        tokio::task::spawn_blocking(move || engine.publish_transfer("push", &shown, &name))
            .await
            .map_err(|e| EngineError::Internal(format!("push task: {e}")))?;
        Ok(())
    }

    async fn push_tag(
        self: &Arc<Self>,
        client: &Arc<RepoClient>,
        tag_ref: &ImageRef,
        image: &Image,
        report: &Reporter,
    ) -> Result<()> {
        let diff_ids = image.config.rootfs.diff_ids.clone();
        let chains = image.chain();
        for (n, d) in diff_ids.iter().enumerate() {
            report.update(&short(d), "Preparing").await;
            if n >= CONCURRENT_UPLOADS {
                report.update(&short(d), "Waiting").await;
            }
        }
        let slots = Arc::new(Semaphore::new(CONCURRENT_UPLOADS));
        let mut uploads = Tasks(Vec::new());
        for (d, c) in diff_ids.iter().zip(&chains) {
            uploads.0.push(tokio::spawn(push_layer(
                Arc::clone(self),
                client.clone(),
                tag_ref.name.clone(),
                d.clone(),
                c.clone(),
                slots.clone(),
                report.clone(),
            )));
        }
        let mut layers = Vec::new();
        for h in uploads.0.iter_mut() {
            layers.push(
                h.await
                    .map_err(|e| EngineError::Internal(format!("layer upload task: {e}")))??,
            );
        }
        if client
            .blob_exists(&image.id)
            .await
            .map_err(registry_error)?
            .is_none()
        {
            client
                .put_blob(&image.id, Bytes::from(image.raw.to_vec()))
                .await
                .map_err(registry_error)?;
        }
        let body = manifest::schema2((&image.id, image.raw.len() as u64), &layers);
        let tag = tag_ref.tag.clone().unwrap_or_else(|| "latest".into());
        let digest = sha256_digest(&body);
        let size = body.len();
        client
            .put_manifest(&tag, manifest::DOCKER_MANIFEST, Bytes::from(body))
            .await
            .map_err(registry_error)?;
        report
            .message(None, format!("{tag}: digest: {digest} size: {size}"))
            .await;
        let engine = Arc::clone(self);
        let (id, by_digest) = (
            image.id.clone(),
            ImageRef {
                name: tag_ref.name.clone(),
                tag: None,
                digest: Some(digest.clone()),
            },
        );
        tokio::task::spawn_blocking(move || {
            let _guard = engine.image_lock();
            engine.images.tag(&id, &by_digest).map(|_| ())
        })
        .await
        .map_err(|e| EngineError::Internal(format!("push task: {e}")))??;
        // The signing hook of old clients (content trust) reads this.
        let _ = report
            .0
            .send(Progress::Aux(
                json!({"Tag": tag, "Digest": digest, "Size": size}),
            ))
            .await;
        Ok(())
    }
}

/// Makes sure the registry has layer `diff_id` in `target`; returns the
/// blob's digest and size for the manifest.
async fn push_layer(
    engine: Arc<Engine>,
    client: Arc<RepoClient>,
    target: String,
    diff_id: String,
    chain: ChainId,
    slots: Arc<Semaphore>,
    report: Reporter,
) -> Result<(String, u64)> {
    let _slot = slots
        .acquire_owned()
        .await
        .map_err(|_| EngineError::Internal("upload slots closed".into()))?;
    let id = short(&diff_id);
    let known: Vec<RemoteBlob> = engine
        .distribution
        .blobs
        .get(&diff_id)
        .into_iter()
        .filter(|b| is_gzip_layer(&b.media_type))
        .collect();
    let remember = |blob: &RemoteBlob| {
        let mut b = blob.clone();
        b.repository = target.clone();
        if let Err(e) = engine.distribution.blobs.record(&diff_id, b) {
            tracing::warn!("recording the blob of layer {diff_id}: {e}");
        }
    };
    for b in known.iter().take(3) {
        if client
            .blob_exists(&b.digest)
            .await
            .map_err(registry_error)?
            .is_some()
        {
            report.update(&id, "Layer already exists").await;
            remember(b);
            return Ok((b.digest.clone(), b.size));
        }
    }
    let (host, _) = split_name(&target);
    let mut location = None;
    for b in known
        .iter()
        .filter(|b| b.repository != target && split_name(&b.repository).0 == host)
        .take(3)
    {
        let from = split_name(&b.repository).1;
        match client.start_upload(Some((&b.digest, from))).await {
            Ok(None) => {
                report.update(&id, format!("Mounted from {from}")).await;
                remember(b);
                return Ok((b.digest.clone(), b.size));
            }
            // The registry would not mount and opened an upload instead.
            Ok(Some(loc)) => {
                location = Some(loc);
                break;
            }
            Err(e) => tracing::debug!("mounting {} from {from}: {e}", b.digest),
        }
    }
    let location = match location {
        Some(l) => l,
        None => client
            .start_upload(None)
            .await
            .map_err(registry_error)?
            .ok_or_else(|| {
                EngineError::Internal("registry mounted a blob nobody asked for".into())
            })?,
    };
    let total = engine.layers.get(&chain).map_or(0, |l| l.tar_size);
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
    let compressor = {
        let engine = Arc::clone(&engine);
        let report = report.clone();
        let id = id.clone();
        tokio::task::spawn_blocking(move || compress(&engine, &chain, tx, &report, &id, total))
    };
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let digest = async {
        compressor
            .await
            .map_err(|e| RegistryError::Protocol(format!("layer compression task: {e}")))?
            .map_err(|e| RegistryError::Protocol(e.to_string()))
    };
    let (digest, size) = client
        .upload(&location, body, digest)
        .await
        .map_err(registry_error)?;
    report.update(&id, "Pushed").await;
    remember(&RemoteBlob {
        digest: digest.clone(),
        media_type: DOCKER_LAYER_GZIP.to_string(),
        size,
        repository: target.clone(),
    });
    Ok((digest, size))
}

/// Rebuilds layer `chain`'s tar, gzips it and sends it down `tx` in
/// chunks; returns the compressed digest and size.
fn compress(
    engine: &Engine,
    chain: &str,
    tx: mpsc::Sender<io::Result<Bytes>>,
    report: &Reporter,
    id: &str,
    total: u64,
) -> Result<(String, u64)> {
    let sink = ChunkSender {
        tx: tx.clone(),
        buf: Vec::with_capacity(CHUNK),
        hasher: Sha256::new(),
        size: 0,
    };
    let mut counted = CountingWriter {
        inner: GzEncoder::new(sink, flate2::Compression::default()),
        report,
        id,
        done: 0,
        last: 0,
        total,
    };
    let result = engine
        .layers
        .tar_stream(chain, &mut counted)
        .map_err(EngineError::from)
        .and_then(|()| {
            counted
                .inner
                .try_finish()
                .map_err(|e| EngineError::io("compress layer", e))
        });
    if let Err(e) = result {
        // Cut the upload so the registry never commits a partial blob.
        let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
        return Err(e);
    }
    report.blocking_bytes(id, "Pushing", counted.done, total.max(counted.done));
    let mut sink = counted
        .inner
        .finish()
        .map_err(|e| EngineError::io("compress layer", e))?;
    sink.send_buf()
        .map_err(|e| EngineError::io("send layer", e))?;
    Ok((
        format!("sha256:{}", hex::encode(sink.hasher.finalize())),
        sink.size,
    ))
}

/// Counts the uncompressed bytes going in and reports "Pushing".
struct CountingWriter<'a, W> {
    inner: W,
    report: &'a Reporter,
    id: &'a str,
    done: u64,
    last: u64,
    total: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.done += n as u64;
        if self.done - self.last >= PROGRESS_EVERY {
            self.last = self.done;
            self.report
                .blocking_bytes(self.id, "Pushing", self.done, self.total.max(self.done));
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes the compressed bytes and sends them on in chunks.
struct ChunkSender {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
    hasher: Sha256,
    size: u64,
}

impl ChunkSender {
    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.hasher.update(data);
        self.size += data.len() as u64;
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send_buf()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

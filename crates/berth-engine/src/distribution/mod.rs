//! Registries: `docker pull`, `docker push`, `docker login` (`POST /auth`)
//! and `GET /distribution/{name}/json`, over the OCI distribution API.
//! This module owns how berth reaches registries (`registries`), talks to
//! one repository (`client`, `auth`), reads manifests (`manifest`) and
//! remembers which compressed blobs hold which layers (`blob_digests`);
//! `pull` and `push` are the two transfers.

pub mod auth;
pub mod blob_digests;
pub mod client;
pub mod manifest;
mod pull;
mod push;
pub mod registries;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bollard_stubs::models::EventMessageTypeEnum;
use bytes::Bytes;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

pub use auth::AuthConfig;
pub use pull::PullOptions;
pub use push::PushOptions;
pub use registries::{Registries, RegistryOptions};

use self::blob_digests::BlobDigests;
use self::client::{RegistryError, RepoClient};
use self::manifest::Manifest;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::images::reference::{familiar, ImageRef};
use crate::progress::Progress;

/// The engine's registry state: configuration and the blob map.
pub struct Distribution {
    pub(crate) registries: Registries,
    pub(crate) blobs: BlobDigests,
}

impl Distribution {
    /// Validates the options and opens the blob map under `data_root`.
    pub fn open(data_root: &Path, opts: &RegistryOptions) -> Result<Distribution> {
        Ok(Distribution {
            registries: Registries::new(opts)?,
            blobs: BlobDigests::open(data_root)?,
        })
    }

    /// The validated registry configuration (`docker info`).
    pub fn registries(&self) -> &Registries {
        &self.registries
    }
}

/// `sha256:<hex>` of `data`.
pub(crate) fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The 12-hex-digit form progress lines use as an id.
pub(crate) fn short(digest: &str) -> String {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    hex.chars().take(12).collect()
}

/// `127.0.0.1:5000/a/b` → (`127.0.0.1:5000`, `a/b`).
pub(crate) fn split_name(name: &str) -> (&str, &str) {
    name.split_once('/').unwrap_or(("docker.io", name))
}

/// Whether `s` names a repository without a tag or digest (pull and push
/// then act on every tag).
pub(crate) fn is_name_only(s: &str) -> bool {
    let last = s.rsplit('/').next().unwrap_or(s);
    !s.contains('@') && !last.contains(':')
}

/// Sends progress from async code; a gone client is noticed by the
/// transfer's cancellation, not here.
#[derive(Clone)]
pub(crate) struct Reporter(pub(crate) mpsc::Sender<Progress>);

impl Reporter {
    /// A line with no byte counts (`"Digest: ..."`).
    pub async fn message(&self, id: Option<&str>, status: impl Into<String>) {
        let _ = self
            .0
            .send(Progress::Status {
                id: id.map(str::to_string),
                status: status.into(),
                current: None,
                total: None,
            })
            .await;
    }

    /// A per-layer update with an empty `progressDetail`, as dockerd sends
    /// "Pulling fs layer", "Waiting", "Pull complete".
    pub async fn update(&self, id: &str, status: impl Into<String>) {
        self.bytes(id, status, 0, 0).await;
    }

    /// A per-layer update with byte counts (draws the bar).
    pub async fn bytes(&self, id: &str, status: impl Into<String>, current: u64, total: u64) {
        let _ = self.0.send(bytes_status(id, status, current, total)).await;
    }

    /// Same, from a blocking thread.
    pub fn blocking_bytes(&self, id: &str, status: &str, current: u64, total: u64) {
        let _ = self
            .0
            .blocking_send(bytes_status(id, status, current, total));
    }
}

fn bytes_status(id: &str, status: impl Into<String>, current: u64, total: u64) -> Progress {
    Progress::Status {
        id: Some(id.to_string()),
        status: status.into(),
        current: Some(current),
        total: Some(total),
    }
}

/// Tasks of one transfer (layer downloads or uploads), aborted together
/// when the transfer is dropped.
pub(crate) struct Tasks<T>(pub(crate) Vec<tokio::task::JoinHandle<T>>);

impl<T> Drop for Tasks<T> {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// dockerd's `translatePullError`: registry answers that mean "not there"
/// become 404s with its wording; the rest keep the registry's words.
pub(crate) fn pull_error(e: RegistryError, r: &ImageRef) -> EngineError {
    let text = e.to_string();
    match e.code() {
        Some("DENIED") => EngineError::NotFound(format!(
            "pull access denied for {}, repository does not exist or may require 'docker login': {text}",
            r.familiar_name()
        )),
        Some("MANIFEST_UNKNOWN") => {
            EngineError::NotFound(format!("manifest for {} not found: {text}", r.familiar()))
        }
        Some("NAME_UNKNOWN") => EngineError::NotFound(format!(
            "repository {} not found: {text}",
            r.familiar_name()
        )),
        _ => EngineError::Internal(text),
    }
}

/// A manifest fetched from a registry, with the client that fetched it.
pub(crate) struct Fetched {
    pub client: Arc<RepoClient>,
    pub raw: Bytes,
    pub manifest: Manifest,
    /// The digest of `raw`.
    pub digest: String,
}

impl Engine {
    /// The registry state.
    pub fn distribution(&self) -> &Distribution {
        &self.distribution
    }

    /// Connects to the first endpoint of `r`'s registry that answers,
    /// for `actions` (`pull` or `pull,push`).
    pub(crate) async fn connect_repo(
        &self,
        name: &str,
        actions: &'static str,
        auth: &AuthConfig,
        with_mirrors: bool,
    ) -> std::result::Result<Vec<RepoClient>, RegistryError> {
        let (host, path) = split_name(name);
        let endpoints = self
            .distribution
            .registries
            .endpoints(host, with_mirrors)
            .await
            .map_err(|e| RegistryError::Protocol(e.to_string()))?;
        let mut out = Vec::new();
        let mut last = None;
        for ep in &endpoints {
            match RepoClient::connect(ep, path, actions, auth).await {
                Ok(c) => out.push(c),
                Err(e) => {
                    tracing::debug!("registry endpoint {}: {e}", ep.base);
                    last = Some(e);
                }
            }
        }
        if out.is_empty() {
            return Err(last.unwrap_or_else(|| RegistryError::Protocol("no endpoint".into())));
        }
        Ok(out)
    }

    /// Fetches the manifest `reference` (a tag or digest) of `r`, trying
    /// mirrors and fallbacks in dockerd's order. A digest is verified.
    pub(crate) async fn fetch_manifest(
        &self,
        r: &ImageRef,
        reference: &str,
        auth: &AuthConfig,
    ) -> Result<Fetched> {
        let clients = self
            .connect_repo(&r.name, "pull", auth, true)
            .await
            .map_err(|e| pull_error(e, r))?;
        let mut last = None;
        for client in clients {
            match client.manifest(reference).await {
                Ok((raw, media_type)) => {
                    let digest = sha256_digest(&raw);
                    if reference.starts_with("sha256:") && digest != reference {
                        return Err(EngineError::Internal(format!(
                            "manifest verification failed for digest {reference}"
                        )));
                    }
                    let manifest = Manifest::parse(&media_type, &raw, &r.normalized())?;
                    return Ok(Fetched {
                        client: Arc::new(client),
                        raw,
                        manifest,
                        digest,
                    });
                }
                Err(e) => {
                    let next = e.is_transport() || client.is_mirror();
                    tracing::debug!("manifest {reference} from {}: {e}", client.base());
                    if !next {
                        return Err(pull_error(e, r));
                    }
                    last = Some(e);
                }
            }
        }
        Err(pull_error(
            last.unwrap_or_else(|| RegistryError::Protocol("no endpoint".into())),
            r,
        ))
    }

    /// Publishes `image pull`/`image push` as dockerd does: the requested
    /// reference as the actor, its repository as `name`, the image's labels.
    pub(crate) fn publish_transfer(&self, action: &str, reference: &str, repository: &str) {
        let mut attrs: HashMap<String, String> = self
            .images
            .resolve(reference)
            .map(|i| i.config.labels())
            .unwrap_or_default();
        attrs.insert("name".into(), familiar(repository));
        self.events
            .publish(EventMessageTypeEnum::IMAGE, action, reference, attrs);
    }

    /// `POST /auth`: checks `auth` against its registry as `docker login`
    /// wants; returns the identity token to keep (berth has none to give).
    pub async fn registry_login(&self, auth: &AuthConfig) -> Result<String> {
        let auth = auth.clone().normalized();
        let host = login_host(&auth.server_address);
        let endpoints = self.distribution.registries.endpoints(&host, false).await?;
        let mut last: Option<EngineError> = None;
        for ep in &endpoints {
            let client = match RepoClient::connect(ep, "", "pull", &auth).await {
                Ok(c) => c,
                Err(e) => {
                    last = Some(EngineError::Internal(e.to_string()));
                    continue;
                }
            };
            match client.login().await {
                Ok(()) => return Ok(String::new()),
                Err(e) if e.is_transport() => last = Some(EngineError::Internal(e.to_string())),
                Err(e) => return Err(EngineError::Internal(e.to_string())),
            }
        }
        Err(last.unwrap_or_else(|| EngineError::Internal(format!("no endpoint for {host}"))))
    }

    /// `GET /distribution/{name}/json`: the manifest descriptor of a remote
    /// image and the platforms it offers.
    pub async fn distribution_inspect(
        &self,
        name: &str,
        auth: &AuthConfig,
    ) -> Result<serde_json::Value> {
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(EngineError::Internal(
                "no manifest found for full image ID".into(),
            ));
        }
        let r = ImageRef::parse(name)?;
        let reference = r
            .digest
            .clone()
            .or_else(|| r.tag.clone())
            .unwrap_or_else(|| "latest".into());
        let fetched = self.fetch_manifest(&r, &reference, auth).await?;
        let mut platforms = Vec::new();
        match &fetched.manifest {
            Manifest::Index { manifests, .. } => {
                for m in manifests {
                    if let Some(p) = &m.platform {
                        platforms.push(serde_json::to_value(p).unwrap_or_default());
                    }
                }
            }
            Manifest::Image { config, .. } => {
                if let Ok(raw) = fetched.client.blob_bytes(&config.digest).await {
                    if let Ok(p) = serde_json::from_slice::<manifest::Platform>(&raw) {
                        if !p.os.is_empty() || !p.architecture.is_empty() {
                            platforms.push(serde_json::to_value(&p).unwrap_or_default());
                        }
                    }
                }
            }
        }
        Ok(json!({
            "Descriptor": {
                "mediaType": fetched.manifest.media_type(),
                "digest": fetched.digest,
                "size": fetched.raw.len(),
            },
            "Platforms": platforms,
        }))
    }
}

/// The registry a login is for: `serveraddress` without scheme or path;
/// Docker Hub's many spellings (and nothing) mean `docker.io`.
fn login_host(server: &str) -> String {
    let s = server.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "" | "index.docker.io" | "docker.io" | "registry-1.docker.io" => {
            registries::DOCKER_HUB.to_string()
        }
        h => h.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids() {
        assert_eq!(split_name("127.0.0.1:5000/a/b"), ("127.0.0.1:5000", "a/b"));
        assert_eq!(
            split_name("docker.io/library/x"),
            ("docker.io", "library/x")
        );
        assert!(is_name_only("127.0.0.1:5000/busybox"));
        assert!(!is_name_only("127.0.0.1:5000/busybox:1"));
        assert!(!is_name_only("busybox@sha256:aa"));
        assert_eq!(short("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(login_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(login_host("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(login_host("http://127.0.0.1:5000/v2/"), "127.0.0.1:5000");
    }

    #[test]
    fn not_found_errors_read_like_dockerd() {
        let r = ImageRef::parse("127.0.0.1:5000/nope:1").unwrap();
        let e = pull_error(
            RegistryError::Api {
                status: 404,
                errors: vec![client::ApiError {
                    code: "MANIFEST_UNKNOWN".into(),
                    message: "manifest unknown".into(),
                }],
            },
            &r,
        );
        assert_eq!(e.kind(), crate::ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            "manifest for 127.0.0.1:5000/nope:1 not found: manifest unknown: manifest unknown"
        );
    }
}

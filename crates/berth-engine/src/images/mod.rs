//! Images: the store of image configs and tags, and the operations on them
//! (load, save, import, list, inspect, history, tag, remove, prune). The
//! rules for what `docker rmi` untags or deletes, and when it refuses,
//! follow dockerd's.

pub mod config;
mod import;
mod load;
pub mod reference;
mod save;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};

use bollard_stubs::models::{
    DriverData, EventMessageTypeEnum, ImageDeleteResponseItem, ImageHistoryResponseItem,
    ImageInspect, ImageInspectMetadata, ImageInspectRootFs, ImagePruneResponse, ImageSummary,
};
use tokio::io::AsyncRead;
use tokio::sync::mpsc;

pub use import::apply_changes;
pub use reference::ImageRef;
pub use store::{Image, ImageStore};

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::filters::Filters;
use crate::progress::{byte_channel, ByteStream, Progress, ProgressSender};

/// A request body the engine reads (load, import).
pub type BodyReader = Box<dyn AsyncRead + Send + Unpin>;

/// `POST /images/create?fromSrc=-` parameters (`docker import`).
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// `repo` (may carry a `:tag`).
    pub repo: Option<String>,
    /// `tag`.
    pub tag: Option<String>,
    /// `changes`: Dockerfile instructions (`CMD ["sh"]`, `ENV A=b`...).
    pub changes: Vec<String>,
    /// `message`: the history comment.
    pub message: Option<String>,
    /// `platform` (`linux/amd64`).
    pub platform: Option<String>,
}

/// `GET /images/json` parameters.
#[derive(Debug, Clone, Default)]
pub struct ListImagesOptions {
    /// `all`: include intermediate images.
    pub all: bool,
    /// `filters`: dangling, reference, label, before, since.
    pub filters: Filters,
    /// `digests`: fill RepoDigests.
    pub digests: bool,
    /// `shared-size`: compute SharedSize.
    pub shared_size: bool,
}

/// Which containers use an image, for `docker rmi` conflicts.
#[derive(Debug, Clone, Default)]
pub struct ImageUsers {
    /// A running container using it.
    pub running: Option<String>,
    /// A stopped container using it.
    pub stopped: Option<String>,
}

fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

fn glob_match(pattern: &str, value: &str) -> bool {
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    glob::Pattern::new(pattern).is_ok_and(|p| p.matches_with(value, opts))
}

impl Engine {
    /// Serializes image mutations (store, tag, delete) with each other.
    pub(crate) fn image_lock(&self) -> MutexGuard<'_, ()> {
        self.image_ops.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes an image event with dockerd's attributes (name, labels).
    pub(crate) fn publish_image(
        &self,
        typ: EventMessageTypeEnum,
        action: &str,
        id: &str,
        name: &str,
    ) {
        let mut attrs: HashMap<String, String> = self
            .images
            .get(id)
            .map(|i| i.config.labels())
            .unwrap_or_default();
        attrs.insert("name".into(), name.to_string());
        self.events.publish(typ, action, id, attrs);
    }

    /// The containers using image `id`.
    pub(crate) fn image_users(&self, id: &str) -> ImageUsers {
        let mut users = ImageUsers::default();
        for h in self.containers.all() {
            let c = h.snapshot();
            if c.image_id != id {
                continue;
            }
            if c.state.status.is_alive() {
                users.running.get_or_insert(c.id);
            } else {
                users.stopped.get_or_insert(c.id);
            }
        }
        users
    }

    /// Total size of an image's layers.
    fn image_size(&self, image: &Image) -> u64 {
        image
            .chain()
            .iter()
            .filter_map(|c| self.layers.get(c))
            .map(|l| l.size)
            .sum()
    }

    /// `POST /images/load`: reads a docker-save or OCI-layout tar from
    /// `body`. Problems arrive as [`Progress::Error`] on the channel, which
    /// closes when the load is done.
    pub async fn load_images(
        self: &Arc<Self>,
        body: BodyReader,
        quiet: bool,
    ) -> Result<mpsc::Receiver<Progress>> {
        let (progress, rx) = ProgressSender::channel(!quiet);
        let engine = Arc::clone(self);
        tokio::task::spawn_blocking(move || load::run_load(engine, body, progress));
        Ok(rx)
    }

    /// `GET /images/get?names=..` and `GET /images/{name}/get`: a tar that
    /// both berthd and dockerd can load. Unknown names fail before any
    /// byte is sent.
    pub async fn save_images(self: &Arc<Self>, names: Vec<String>) -> Result<ByteStream> {
        if names.is_empty() {
            return Err(EngineError::InvalidParameter("no image names given".into()));
        }
        let plan = self.plan_save(&names)?;
        let (mut writer, stream) = byte_channel();
        let engine = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = engine.write_save(&plan, &mut writer) {
                tracing::warn!("image save failed: {e}");
                writer.fail(std::io::Error::other(e.to_string()));
            }
        });
        Ok(stream)
    }

    /// `POST /images/create?fromSrc=-`: makes a one-layer image from a
    /// rootfs tar (plain, gzip or zstd). Options are checked before the
    /// body is read; the last `Status` carries the new image ID.
    pub async fn import_image(
        self: &Arc<Self>,
        body: BodyReader,
        opts: ImportOptions,
    ) -> Result<mpsc::Receiver<Progress>> {
        if let Some(p) = opts.platform.as_deref().filter(|p| !p.is_empty()) {
            if p != "linux" && p != "linux/amd64" {
                return Err(EngineError::InvalidParameter(format!(
                    "unsupported platform {p:?}: berth runs linux/amd64 images"
                )));
            }
        }
        let tag = match opts.repo.as_deref().filter(|r| !r.is_empty()) {
            Some(repo) => Some(ImageRef::with_tag(repo, opts.tag.as_deref())?),
            None => None,
        };
        let mut image_config = bollard_stubs::models::ImageConfig::default();
        apply_changes(&mut image_config, &opts.changes)?;
        let (progress, rx) = ProgressSender::channel(true);
        let engine = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = engine.import_blocking(body, &opts, image_config, tag, &progress) {
                progress.send(Progress::Error(e.to_string()));
            }
        });
        Ok(rx)
    }

    /// `GET /images/json`.
    pub fn list_images(&self, opts: &ListImagesOptions) -> Result<Vec<ImageSummary>> {
        let f = &opts.filters;
        f.validate(&["dangling", "reference", "label", "before", "since", "until"])?;
        let dangling = f.get_bool("dangling")?;
        let created_of =
            |name: &str| -> Result<i64> { Ok(self.images.resolve(name)?.config.created_unix()) };
        let before = f
            .get("before")
            .iter()
            .map(|n| created_of(n))
            .collect::<Result<Vec<_>>>()?;
        let since = f
            .get("since")
            .iter()
            .map(|n| created_of(n))
            .collect::<Result<Vec<_>>>()?;
        let mut out = Vec::new();
        for image in self.images.all() {
            let refs = self.images.references(&image.id);
            let mut tags: Vec<String> = refs
                .iter()
                .filter(|r| r.tag.is_some() && r.digest.is_none())
                .map(ImageRef::familiar)
                .collect();
            tags.sort();
            let digests: Vec<String> = refs
                .iter()
                .filter(|r| r.digest.is_some())
                .map(|r| {
                    format!(
                        "{}@{}",
                        r.familiar_name(),
                        r.digest.as_deref().unwrap_or("")
                    )
                })
                .collect();
            let has_children = !self.images.children(&image.id).is_empty();
            if !opts.all && tags.is_empty() && digests.is_empty() && has_children {
                continue;
            }
            if let Some(d) = dangling {
                let is_dangling = tags.is_empty() && digests.is_empty();
                if d != is_dangling {
                    continue;
                }
            }
            let created = image.config.created_unix();
            if before.iter().any(|b| created >= *b) || since.iter().any(|s| created <= *s) {
                continue;
            }
            let labels = image.config.labels();
            if !f.match_labels("label", |k| labels.get(k).map(String::as_str)) {
                continue;
            }
            if f.contains("reference") {
                let matched: Vec<String> = tags
                    .iter()
                    .filter(|t| {
                        let name = t.rsplit_once(':').map_or(t.as_str(), |(n, _)| n);
                        f.get("reference")
                            .iter()
                            .any(|p| glob_match(p, t) || glob_match(p, name))
                    })
                    .cloned()
                    .collect();
                if matched.is_empty() {
                    continue;
                }
                tags = matched;
            }
            out.push(ImageSummary {
                id: image.id.clone(),
                parent_id: image.meta.parent.clone().unwrap_or_default(),
                repo_tags: tags,
                repo_digests: digests,
                created,
                size: self.image_size(&image) as i64,
                shared_size: -1,
                labels,
                containers: -1,
                manifests: None,
                descriptor: None,
            });
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// `GET /images/{name}/json`.
    pub fn inspect_image(&self, name: &str) -> Result<ImageInspect> {
        let image = self.images.resolve(name)?;
        let refs = self.images.references(&image.id);
        let mut tags: Vec<String> = refs
            .iter()
            .filter(|r| r.digest.is_none())
            .map(ImageRef::familiar)
            .collect();
        tags.sort();
        let digests: Vec<String> = refs
            .iter()
            .filter(|r| r.digest.is_some())
            .map(|r| {
                format!(
                    "{}@{}",
                    r.familiar_name(),
                    r.digest.as_deref().unwrap_or("")
                )
            })
            .collect();
        let graph_data = image
            .top_layer
            .as_ref()
            .and_then(|c| self.layers.get(c))
            .and_then(|l| self.driver.metadata(&l.cache_id).ok())
            .unwrap_or_default();
        let cfg = &image.config;
        Ok(ImageInspect {
            id: Some(image.id.clone()),
            repo_tags: Some(tags),
            repo_digests: Some(digests),
            comment: Some(cfg.comment.clone().unwrap_or_default()),
            created: cfg.created.clone(),
            author: Some(cfg.author.clone().unwrap_or_default()),
            config: cfg.config.clone(),
            architecture: cfg.architecture.clone(),
            variant: cfg.variant.clone(),
            os: cfg.os.clone(),
            os_version: cfg.os_version.clone(),
            size: Some(self.image_size(&image) as i64),
            graph_driver: Some(DriverData {
                name: self.driver.name().to_string(),
                data: graph_data.into_iter().collect(),
            }),
            root_fs: Some(ImageInspectRootFs {
                typ: "layers".into(),
                layers: Some(cfg.rootfs.diff_ids.clone()),
            }),
            metadata: Some(ImageInspectMetadata {
                last_tag_time: image.meta.last_tag_time.clone(),
            }),
            ..Default::default()
        })
    }

    /// `GET /images/{name}/history`.
    pub fn image_history(&self, name: &str) -> Result<Vec<ImageHistoryResponseItem>> {
        let image = self.images.resolve(name)?;
        let sizes: Vec<u64> = image
            .chain()
            .iter()
            .map(|c| self.layers.get(c).map_or(0, |l| l.size))
            .collect();
        let mut layer = 0;
        let mut out = Vec::new();
        for h in &image.config.history {
            let size = if h.empty_layer {
                0
            } else {
                layer += 1;
                sizes.get(layer - 1).copied().unwrap_or(0)
            };
            out.push(ImageHistoryResponseItem {
                id: "<missing>".into(),
                created: h
                    .created
                    .as_deref()
                    .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                    .map_or(0, |t| t.timestamp()),
                created_by: h.created_by.clone().unwrap_or_default(),
                tags: Vec::new(),
                size: size as i64,
                comment: h.comment.clone().unwrap_or_default(),
            });
        }
        out.reverse();
        if let Some(top) = out.first_mut() {
            top.id = image.id.clone();
            let mut tags: Vec<String> = self
                .images
                .references(&image.id)
                .iter()
                .filter(|r| r.digest.is_none())
                .map(ImageRef::familiar)
                .collect();
            tags.sort();
            top.tags = tags;
        }
        Ok(out)
    }

    /// `POST /images/{name}/tag?repo=&tag=`.
    pub fn tag_image(&self, name: &str, repo: &str, tag: Option<&str>) -> Result<()> {
        let image = self.images.resolve(name)?;
        let r = ImageRef::with_tag(repo, tag)?;
        let _guard = self.image_lock();
        self.images.tag(&image.id, &r)?;
        self.touch_tag_time(&image.id)?;
        self.publish_image(EventMessageTypeEnum::IMAGE, "tag", &image.id, &r.familiar());
        Ok(())
    }

    /// `DELETE /images/{name}?force=&noprune=`.
    pub fn remove_image(
        &self,
        name: &str,
        force: bool,
        noprune: bool,
    ) -> Result<Vec<ImageDeleteResponseItem>> {
        let _ = noprune;
        let _guard = self.image_lock();
        let image = self.images.resolve(name)?;
        let mut records = Vec::new();
        let by_id = {
            let prefix = name.strip_prefix("sha256:").unwrap_or(name);
            image.hex().starts_with(prefix)
        };
        let refs = self.images.references(&image.id);
        if !by_id {
            let users = self.image_users(&image.id);
            if !force && refs.len() == 1 {
                if let Some(c) = users.running.or(users.stopped) {
                    return Err(EngineError::Conflict(format!(
                        "conflict: unable to remove repository reference {name:?} (must force) - container {} is using its referenced image {}",
                        short_id(&c),
                        short_id(&image.id)
                    )));
                }
            }
            let r = ImageRef::parse(name)?;
            self.images.untag(&r)?;
            self.publish_image(EventMessageTypeEnum::IMAGE, "untag", &image.id, &image.id);
            records.push(ImageDeleteResponseItem {
                untagged: Some(r.familiar()),
                deleted: None,
            });
            if r.digest.is_none() {
                self.untag_orphaned_digests(&image.id, &r, &mut records)?;
            }
            if !self.images.references(&image.id).is_empty() {
                return Ok(records);
            }
            // The last name is gone: delete the image unless it is used.
            let users = self.image_users(&image.id);
            if users.running.is_some() || users.stopped.is_some() {
                return Ok(records);
            }
        } else {
            let users = self.image_users(&image.id);
            if let Some(c) = users.running {
                return Err(EngineError::Conflict(format!(
                    "conflict: unable to delete {} (cannot be forced) - image is being used by running container {}",
                    short_id(&image.id),
                    short_id(&c)
                )));
            }
            if !force {
                if refs.len() > 1 {
                    return Err(EngineError::Conflict(format!(
                        "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                        short_id(&image.id)
                    )));
                }
                if let Some(c) = users.stopped {
                    return Err(EngineError::Conflict(format!(
                        "conflict: unable to delete {} (must be forced) - image is being used by stopped container {}",
                        short_id(&image.id),
                        short_id(&c)
                    )));
                }
            }
        }
        if !self.images.children(&image.id).is_empty() {
            return Err(EngineError::Conflict(format!(
                "conflict: unable to delete {} (cannot be forced) - image has dependent child images",
                short_id(&image.id)
            )));
        }
        self.delete_image(&image, &mut records)?;
        Ok(records)
    }

    /// dockerd's rule once a tag is removed: if no tag of that repository
    /// still names the image, its digest references in that repository
    /// (the RepoDigests a pull or push recorded) go too, without events.
    /// Otherwise `docker rmi host/repo:tag` after a pull would leave the
    /// image (and its layers) behind under a digest nobody asked to keep.
    fn untag_orphaned_digests(
        &self,
        id: &str,
        removed: &ImageRef,
        records: &mut Vec<ImageDeleteResponseItem>,
    ) -> Result<()> {
        let left = self.images.references(id);
        let same_repo = |r: &&ImageRef| r.name == removed.name;
        if left.iter().filter(same_repo).any(|r| r.digest.is_none()) {
            return Ok(());
        }
        for r in left.iter().filter(same_repo) {
            self.images.untag(r)?;
            records.push(ImageDeleteResponseItem {
                untagged: Some(r.familiar()),
                deleted: None,
            });
        }
        Ok(())
    }

    /// Untags every name of `image`, deletes it and releases its layers,
    /// recording each step as `docker rmi` prints it.
    fn delete_image(
        &self,
        image: &Image,
        records: &mut Vec<ImageDeleteResponseItem>,
    ) -> Result<u64> {
        for r in self.images.references(&image.id) {
            self.images.untag(&r)?;
            self.publish_image(EventMessageTypeEnum::IMAGE, "untag", &image.id, &image.id);
            records.push(ImageDeleteResponseItem {
                untagged: Some(r.familiar()),
                deleted: None,
            });
        }
        self.publish_image(EventMessageTypeEnum::IMAGE, "delete", &image.id, &image.id);
        self.images.remove(&image.id)?;
        records.push(ImageDeleteResponseItem {
            untagged: None,
            deleted: Some(image.id.clone()),
        });
        let mut reclaimed = 0;
        if let Some(top) = &image.top_layer {
            let sizes: HashMap<String, u64> = self
                .layers
                .list()
                .into_iter()
                .map(|l| (l.chain_id, l.size))
                .collect();
            for chain in self.layers.release(top)? {
                reclaimed += sizes.get(&chain).copied().unwrap_or(0);
                records.push(ImageDeleteResponseItem {
                    untagged: None,
                    deleted: Some(chain),
                });
            }
        }
        Ok(reclaimed)
    }

    /// `POST /images/prune?filters=`.
    pub fn prune_images(&self, filters: &Filters) -> Result<ImagePruneResponse> {
        filters.validate(&["dangling", "label", "label!", "until"])?;
        let dangling_only = filters.get_bool("dangling")?.unwrap_or(true);
        let until = match filters.get("until") {
            [] => None,
            [one] => Some(crate::filters::parse_timestamp(one)?),
            _ => {
                return Err(EngineError::InvalidParameter(
                    "more than one until filter specified".into(),
                ))
            }
        };
        let _guard = self.image_lock();
        let mut deleted = Vec::new();
        let mut reclaimed = 0;
        for image in self.images.all() {
            let refs = self.images.references(&image.id);
            if dangling_only && !refs.is_empty() {
                continue;
            }
            if !self.images.children(&image.id).is_empty() {
                continue;
            }
            let users = self.image_users(&image.id);
            if users.running.is_some() || users.stopped.is_some() {
                continue;
            }
            if let Some(until) = until {
                if image.config.created_unix() >= until {
                    continue;
                }
            }
            let labels = image.config.labels();
            let get = |k: &str| labels.get(k).map(String::as_str);
            if !filters.match_labels("label", get) {
                continue;
            }
            if filters.contains("label!")
                && filters
                    .get("label!")
                    .iter()
                    .any(|want| match want.split_once('=') {
                        Some((k, v)) => get(k) == Some(v),
                        None => get(want).is_some(),
                    })
            {
                continue;
            }
            reclaimed += self.delete_image(&image, &mut deleted)?;
        }
        let mut attrs = HashMap::new();
        attrs.insert("reclaimed".to_string(), reclaimed.to_string());
        self.events
            .publish(EventMessageTypeEnum::IMAGE, "prune", "", attrs);
        Ok(ImagePruneResponse {
            images_deleted: if deleted.is_empty() {
                None
            } else {
                Some(deleted)
            },
            space_reclaimed: Some(reclaimed as i64),
        })
    }

    /// How many images the store holds (`docker info`).
    pub fn image_count(&self) -> usize {
        self.images.len()
    }
}

//! Images: the store of image configs and tags, and the operations on them
//! (load, save, import, list, inspect, history, tag, remove, prune).

use std::path::Path;

use berth_storage::ChainId;
use bollard_stubs::models::{
    ImageDeleteResponseItem, ImageHistoryResponseItem, ImageInspect, ImagePruneResponse,
    ImageSummary,
};
use tokio::io::AsyncRead;
use tokio::sync::mpsc;

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::filters::Filters;
use crate::progress::{ByteStream, Progress};

/// Image configs and repository tags on disk.
pub struct ImageStore {}

impl ImageStore {
    /// Opens `<data-root>/images`.
    pub fn open(_data_root: &Path) -> Result<ImageStore> {
        Ok(ImageStore {})
    }

    /// The top layer chain of every image, for layer reconciliation.
    pub fn all_top_layers(&self) -> Vec<ChainId> {
        Vec::new()
    }
}

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

impl Engine {
    /// `POST /images/load`: reads a docker-save or OCI-layout tar from
    /// `body`. Fails before the response starts for errors found up front;
    /// later problems arrive as [`Progress::Error`] on the channel, which
    /// closes when the load is done.
    pub async fn load_images(
        &self,
        body: BodyReader,
        quiet: bool,
    ) -> Result<mpsc::Receiver<Progress>> {
        let _ = (body, quiet);
        Err(EngineError::NotImplemented("load".into()))
    }

    /// `GET /images/get?names=..` and `GET /images/{name}/get`: a tar that
    /// both berthd and dockerd can load. Unknown names fail before any
    /// byte is sent.
    pub async fn save_images(&self, names: Vec<String>) -> Result<ByteStream> {
        let _ = names;
        Err(EngineError::NotImplemented("save".into()))
    }

    /// `POST /images/create?fromSrc=-`: makes a one-layer image from a
    /// rootfs tar (plain, gzip or zstd). Progress as in `load_images`; the
    /// last `Status` carries the new image ID.
    pub async fn import_image(
        &self,
        body: BodyReader,
        opts: ImportOptions,
    ) -> Result<mpsc::Receiver<Progress>> {
        let _ = (body, opts);
        Err(EngineError::NotImplemented("import".into()))
    }

    /// `GET /images/json`.
    pub fn list_images(&self, opts: &ListImagesOptions) -> Result<Vec<ImageSummary>> {
        let _ = opts;
        Ok(Vec::new())
    }

    /// `GET /images/{name}/json`.
    pub fn inspect_image(&self, name: &str) -> Result<ImageInspect> {
        Err(EngineError::NotFound(format!("No such image: {name}")))
    }

    /// `GET /images/{name}/history`.
    pub fn image_history(&self, name: &str) -> Result<Vec<ImageHistoryResponseItem>> {
        Err(EngineError::NotFound(format!("No such image: {name}")))
    }

    /// `POST /images/{name}/tag?repo=&tag=`.
    pub fn tag_image(&self, name: &str, repo: &str, tag: Option<&str>) -> Result<()> {
        let _ = (repo, tag);
        Err(EngineError::NotFound(format!("No such image: {name}")))
    }

    /// `DELETE /images/{name}?force=&noprune=`.
    pub fn remove_image(
        &self,
        name: &str,
        force: bool,
        noprune: bool,
    ) -> Result<Vec<ImageDeleteResponseItem>> {
        let _ = (force, noprune);
        Err(EngineError::NotFound(format!("No such image: {name}")))
    }

    /// `POST /images/prune?filters=`.
    pub fn prune_images(&self, filters: &Filters) -> Result<ImagePruneResponse> {
        let _ = filters;
        Ok(ImagePruneResponse::default())
    }

    /// How many images the store holds (`docker info`).
    pub fn image_count(&self) -> usize {
        0
    }
}

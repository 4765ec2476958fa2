//! `docker cp`: stat, read and write paths inside a container's
//! filesystem (volumes and binds included), never leaving it.

use std::sync::Arc;

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::images::BodyReader;
use crate::progress::ByteStream;

/// What `HEAD/GET /containers/{id}/archive` reports about a path (the API
/// sends it base64-encoded in `X-Docker-Container-Path-Stat`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// Go `os.FileMode` bits, as the docker CLI decodes them.
    pub mode: u32,
    /// RFC 3339.
    pub mtime: String,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

impl Engine {
    /// `HEAD /containers/{id}/archive?path=`.
    pub async fn archive_stat(self: &Arc<Self>, id: &str, path: &str) -> Result<PathStat> {
        let _ = (id, path);
        Err(EngineError::NotImplemented(
            "archive is not implemented yet".into(),
        ))
    }

    /// `GET /containers/{id}/archive?path=`.
    pub async fn archive_get(
        self: &Arc<Self>,
        id: &str,
        path: &str,
    ) -> Result<(PathStat, ByteStream)> {
        let _ = (id, path);
        Err(EngineError::NotImplemented(
            "archive is not implemented yet".into(),
        ))
    }

    /// `PUT /containers/{id}/archive?path=&noOverwriteDirNonDir=&copyUIDGID=`.
    pub async fn archive_put(
        self: &Arc<Self>,
        id: &str,
        path: &str,
        body: BodyReader,
        no_overwrite_dir_non_dir: bool,
        copy_uid_gid: bool,
    ) -> Result<()> {
        let _ = (id, path, body, no_overwrite_dir_non_dir, copy_uid_gid);
        Err(EngineError::NotImplemented(
            "archive is not implemented yet".into(),
        ))
    }
}

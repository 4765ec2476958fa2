//! The vfs driver: every layer is a plain directory holding a full copy of
//! its parent (reflinked where the filesystem allows). Slow and large, but
//! it runs on any filesystem; changes and diffs use the naive comparison.
//! On xfs with `pquota`, container layers can be size-limited (project quota).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::tree_copy::copy_tree;
use super::xfs_quota::ProjectQuota;
use super::{fsinfo, parse_size, unknown_option, DriverOptions};
use crate::driver::{Driver, RwLayerOpts};
use crate::error::{Result, StorageError};

/// dockerd's refusal of a size where project quota is missing.
const NO_QUOTA: &str = "Filesystem does not support, or has not enabled quotas";

/// The vfs driver rooted at `<data-root>/vfs`.
pub struct Vfs {
    home: PathBuf,
    /// Project quota on the home's xfs, when it is mounted with `pquota`.
    quota: Option<ProjectQuota>,
    /// `vfs.size` (or dockerd's plain `size`): the limit of container
    /// layers without their own.
    default_size: Option<u64>,
}

impl Vfs {
    /// Opens (creating) the driver home; `vfs.size` needs xfs with project
    /// quota under it.
    pub fn open(home: &Path, options: &DriverOptions) -> Result<Vfs> {
        let mut default_size = None;
        for (key, value) in options.iter() {
            match key {
                "vfs.size" | "size" => default_size = Some(parse_size(value)?),
                _ => return Err(unknown_option("vfs", key)),
            }
        }
        let dirs = home.join("dir");
        std::fs::create_dir_all(&dirs).map_err(|e| StorageError::at(&dirs, "create", e))?;
        let quota = match ProjectQuota::probe(&dirs, home) {
            Ok(q) => Some(q),
            Err(reason) if default_size.is_some() => {
                return Err(StorageError::InvalidOption(format!(
                    "{NO_QUOTA} ({reason}; backing filesystem {})",
                    fsinfo::backing_fs_name(&dirs)
                )));
            }
            Err(_) => None,
        };
        Ok(Vfs {
            home: home.to_path_buf(),
            quota,
            default_size,
        })
    }

    /// Makes `id`'s directory, limited to `size` when given, then fills it
    /// with a copy of `parent` (the copy counts against the limit, as the
    /// container sees it).
    fn make(&self, id: &str, parent: Option<&str>, size: Option<u64>) -> Result<()> {
        let dir = self.dir(id);
        std::fs::create_dir(&dir).map_err(|e| StorageError::at(&dir, "create", e))?;
        let result = (|| {
            if let (Some(size), Some(quota)) = (size, &self.quota) {
                quota.set_limit(&dir, size)?;
            }
            match parent {
                Some(p) => copy_tree(&self.dir(p), &dir),
                None => {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                        .map_err(|e| StorageError::at(&dir, "chmod", e))
                }
            }
        })();
        if result.is_err() {
            let _ = self.remove(id);
        }
        result
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.home.join("dir").join(id)
    }
}

impl Driver for Vfs {
    fn name(&self) -> &'static str {
        "vfs"
    }

    fn home(&self) -> &Path {
        &self.home
    }

    fn create(&self, id: &str, parent: Option<&str>) -> Result<()> {
        self.make(id, parent, None)
    }

    fn create_rw(&self, id: &str, parent: Option<&str>, opts: &RwLayerOpts) -> Result<()> {
        let size = opts.size.or(self.default_size);
        if size.is_some() && self.quota.is_none() {
            return Err(StorageError::InvalidOption(NO_QUOTA.into()));
        }
        self.make(id, parent, size)
    }

    fn remove(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::at(&dir, "remove", e)),
        }
    }

    fn exists(&self, id: &str) -> bool {
        self.dir(id).is_dir()
    }

    fn list(&self) -> Result<Vec<String>> {
        list_dir_names(&self.home.join("dir"))
    }

    fn mount(&self, id: &str) -> Result<PathBuf> {
        let dir = self.dir(id);
        if !dir.is_dir() {
            return Err(StorageError::NotFound(format!("vfs: no layer {id}")));
        }
        Ok(dir)
    }

    fn unmount(&self, _id: &str) -> Result<()> {
        Ok(())
    }

    fn status(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    fn metadata(&self, _id: &str) -> Result<BTreeMap<String, String>> {
        Ok(BTreeMap::new())
    }

    fn cleanup(&self) -> Result<()> {
        Ok(())
    }
}

/// Names of the entries of `dir` (the layer ids a driver holds).
pub(crate) fn list_dir_names(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(StorageError::at(dir, "read", e)),
    };
    for entry in rd {
        let entry = entry.map_err(|e| StorageError::at(dir, "read", e))?;
        if let Some(name) = entry.file_name().to_str() {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

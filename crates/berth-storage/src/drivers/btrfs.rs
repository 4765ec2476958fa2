//! The btrfs driver: an image's base layer is a subvolume, every child
//! layer and every container layer a writable snapshot of its parent, all
//! made through btrfs ioctls (`btrfs-uapi`), never the `btrfs` command.
//! Snapshots share extents, so layers cost only what they change. A
//! container's `size` is a qgroup limit; quota is turned on when first needed.

mod qgroup;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use self::qgroup::QuotaState;
use super::vfs::list_dir_names;
use super::{fsinfo, human_size, parse_size, unknown_option, DriverOptions, FsMagic};
use crate::archive;
use crate::driver::{Driver, RwLayerOpts, Usage};
use crate::error::{Result, StorageError};

/// The btrfs driver rooted at `<data-root>/btrfs`.
pub struct Btrfs {
    home: PathBuf,
    /// `btrfs.min_space`: the smallest `size` a container may ask for.
    min_space: Option<u64>,
    /// `btrfs.size`: the limit of a container created without `size`.
    default_size: Option<u64>,
    /// Quota as last seen or set; the lock also makes enabling happen once.
    quota: Mutex<QuotaState>,
}

fn errno(e: nix::errno::Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

fn cname(id: &str) -> Result<CString> {
    CString::new(id).map_err(|_| StorageError::InvalidOption(format!("invalid layer id {id:?}")))
}

impl Btrfs {
    /// Opens (creating) the driver home; refuses a data root not on btrfs.
    /// With `btrfs.min_space` or `btrfs.size` set, quota is turned on now
    /// (dockerd does so for `min_space`); otherwise at the first container
    /// that asks for a size.
    pub fn open(home: &Path, options: &DriverOptions) -> Result<Btrfs> {
        let mut min_space = None;
        let mut default_size = None;
        for (key, value) in options.iter() {
            match key {
                "btrfs.min_space" => min_space = Some(parse_size(value)?),
                "btrfs.size" => default_size = Some(parse_size(value)?),
                _ => return Err(unknown_option("btrfs", key)),
            }
        }
        let data_root = home.parent().unwrap_or(home);
        if fsinfo::magic(data_root) != Some(FsMagic::Btrfs) {
            return Err(StorageError::Unsupported(format!(
                "btrfs: {} is not on a btrfs filesystem (it is on {}); put the data root on btrfs \
                 or choose another driver with --storage-driver",
                data_root.display(),
                fsinfo::backing_fs_name(data_root)
            )));
        }
        let subvolumes = home.join("subvolumes");
        std::fs::create_dir_all(&subvolumes)
            .map_err(|e| StorageError::at(&subvolumes, "create", e))?;
        let state = qgroup::state(Self::open_dir(home)?.as_fd())?;
        let driver = Btrfs {
            home: home.to_path_buf(),
            min_space: min_space.filter(|m| *m > 0),
            default_size,
            quota: Mutex::new(state),
        };
        if let Some(size) = driver.default_size {
            driver.check_size(size).map_err(|e| {
                StorageError::InvalidOption(format!("btrfs.size={}: {e}", human_size(size)))
            })?;
        }
        if driver.min_space.is_some() || driver.default_size.is_some() {
            driver.enable_quota()?;
        }
        if let QuotaState::On { .. } = state {
            // Qgroups of subvolumes deleted while the kernel was still
            // freeing them (see `qgroup::destroy`).
            qgroup::clear_stale(Self::open_dir(home)?.as_fd());
        }
        Ok(driver)
    }

    /// dockerd's rules and words for a container size.
    fn check_size(&self, size: u64) -> Result<()> {
        if size == 0 {
            return Err(StorageError::InvalidOption(format!(
                "btrfs: invalid storage size: {}",
                human_size(size)
            )));
        }
        if let Some(min) = self.min_space.filter(|m| size < *m) {
            return Err(StorageError::InvalidOption(format!(
                "btrfs: storage size cannot be less than {}",
                human_size(min)
            )));
        }
        Ok(())
    }

    fn quota_state(&self) -> QuotaState {
        *self.quota.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Turns quota on unless it is; once per filesystem.
    fn enable_quota(&self) -> Result<()> {
        let mut state = self.quota.lock().unwrap_or_else(|e| e.into_inner());
        if let QuotaState::On { .. } = *state {
            return Ok(());
        }
        let home = Self::open_dir(&self.home)?;
        // Another daemon or the operator may have turned it on meanwhile.
        if let QuotaState::Off = qgroup::state(home.as_fd())? {
            tracing::info!("btrfs: enabling quota on {}", self.home.display());
            qgroup::enable(home.as_fd())?;
        }
        *state = qgroup::state(home.as_fd())?;
        Ok(())
    }

    /// Limits layer `id` to `size` bytes.
    fn limit(&self, id: &str, size: u64) -> Result<()> {
        let group = qgroup::qgroup_of(&self.dir(id))?;
        qgroup::limit(Self::open_dir(&self.home)?.as_fd(), group, size)
    }

    fn subvolumes(&self) -> PathBuf {
        self.home.join("subvolumes")
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.subvolumes().join(id)
    }

    fn open_dir(path: &Path) -> Result<File> {
        File::open(path).map_err(|e| StorageError::at(path, "open", e))
    }

    /// Deletes the subvolume `id`, first any subvolumes nested inside it
    /// (a container may have made some).
    /// With quota on, the subvolume's qgroup goes too (without waiting).
    fn delete_subvolume(&self, id: &str) -> Result<()> {
        let path = self.dir(id);
        if !path.exists() {
            return Ok(());
        }
        let group = match self.quota_state() {
            QuotaState::On { .. } => qgroup::qgroup_of(&path).ok(),
            QuotaState::Off => None,
        };
        self.delete_nested(&path)?;
        let parent = Self::open_dir(&self.subvolumes())?;
        btrfs_uapi::subvolume::subvolume_delete(parent.as_fd(), &cname(id)?)
            .map_err(|e| StorageError::at(&path, "delete subvolume", errno(e)))?;
        if let Some(group) = group {
            qgroup::destroy(parent.as_fd(), group);
        }
        Ok(())
    }

    fn delete_nested(&self, dir: &Path) -> Result<()> {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(_) => return Ok(()),
        };
        for entry in rd.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            if !ft.is_dir() {
                continue;
            }
            let path = entry.path();
            self.delete_nested(&path)?;
            // A subvolume root has inode number 256.
            if std::os::unix::fs::MetadataExt::ino(
                &entry
                    .metadata()
                    .map_err(|e| StorageError::at(&path, "stat", e))?,
            ) == 256
            {
                let parent = Self::open_dir(dir)?;
                let name = CString::new(entry.file_name().as_bytes())
                    .map_err(|_| StorageError::InvalidOption("bad name".into()))?;
                btrfs_uapi::subvolume::subvolume_delete(parent.as_fd(), &name)
                    .map_err(|e| StorageError::at(&path, "delete nested subvolume", errno(e)))?;
            }
        }
        Ok(())
    }
}

impl Driver for Btrfs {
    fn name(&self) -> &'static str {
        "btrfs"
    }

    fn home(&self) -> &Path {
        &self.home
    }

    fn create(&self, id: &str, parent: Option<&str>) -> Result<()> {
        let subvolumes = Self::open_dir(&self.subvolumes())?;
        let name = cname(id)?;
        match parent {
            None => btrfs_uapi::subvolume::subvolume_create(subvolumes.as_fd(), &name, &[])
                .map_err(|e| StorageError::at(self.dir(id), "create subvolume", errno(e))),
            Some(p) => {
                let source = Self::open_dir(&self.dir(p))?;
                btrfs_uapi::subvolume::snapshot_create(
                    subvolumes.as_fd(),
                    source.as_fd(),
                    &name,
                    false,
                    &[],
                )
                .map_err(|e| StorageError::at(self.dir(id), "snapshot", errno(e)))
            }
        }
    }

    fn create_rw(&self, id: &str, parent: Option<&str>, opts: &RwLayerOpts) -> Result<()> {
        let Some(size) = opts.size.or(self.default_size) else {
            return self.create(id, parent);
        };
        self.check_size(size)?;
        // Before the snapshot, so its qgroup is made and counted with it.
        self.enable_quota()?;
        self.create(id, parent)?;
        if let Err(e) = self.limit(id, size) {
            let _ = self.delete_subvolume(id);
            return Err(e);
        }
        Ok(())
    }

    fn remove(&self, id: &str) -> Result<()> {
        self.delete_subvolume(id)
    }

    fn exists(&self, id: &str) -> bool {
        self.dir(id).is_dir()
    }

    fn list(&self) -> Result<Vec<String>> {
        list_dir_names(&self.subvolumes())
    }

    fn mount(&self, id: &str) -> Result<PathBuf> {
        let dir = self.dir(id);
        if !dir.is_dir() {
            return Err(StorageError::NotFound(format!("btrfs: no layer {id}")));
        }
        Ok(dir)
    }

    fn unmount(&self, _id: &str) -> Result<()> {
        Ok(())
    }

    /// The qgroup's exclusive bytes when quota is on and its numbers are
    /// consistent; otherwise what the changes add up to.
    fn usage(&self, id: &str, parent: Option<&str>) -> Result<Usage> {
        let dir = self.dir(id);
        if !dir.is_dir() {
            return Err(StorageError::NotFound(format!("btrfs: no layer {id}")));
        }
        if let QuotaState::On { .. } = self.quota_state() {
            let home = Self::open_dir(&self.home)?;
            if qgroup::state(home.as_fd())?
                == (QuotaState::On {
                    inconsistent: false,
                })
            {
                let group = qgroup::qgroup_of(&dir)?;
                if let Some(size) = qgroup::exclusive_bytes(home.as_fd(), group)? {
                    return Ok(Usage { size, inodes: None });
                }
            }
        }
        let lower = parent.map(|p| self.dir(p));
        let changes = archive::changes_between(lower.as_deref(), &dir)?;
        Ok(Usage {
            size: archive::changes_size(&dir, &changes),
            inodes: Some(changes.len() as u64),
        })
    }

    fn status(&self) -> Vec<(String, String)> {
        let state = Self::open_dir(&self.home)
            .and_then(|home| qgroup::state(home.as_fd()))
            .unwrap_or_else(|_| self.quota_state());
        let mut status = vec![
            ("Backing Filesystem".to_string(), "btrfs".to_string()),
            (
                "Quota Enabled".to_string(),
                matches!(state, QuotaState::On { .. }).to_string(),
            ),
        ];
        if let QuotaState::On { inconsistent: true } = state {
            status.push((
                "Quota Inconsistent".to_string(),
                "true (run `btrfs quota rescan`)".to_string(),
            ));
        }
        if let Some(size) = self.default_size {
            status.push(("Default Size Limit".to_string(), human_size(size)));
        }
        if let Some(min) = self.min_space {
            status.push(("Minimum Size Limit".to_string(), human_size(min)));
        }
        status
    }

    /// `SizeLimit` in bytes for a layer with a qgroup limit.
    fn metadata(&self, id: &str) -> Result<BTreeMap<String, String>> {
        let mut data = BTreeMap::new();
        if let QuotaState::On { .. } = self.quota_state() {
            let home = Self::open_dir(&self.home)?;
            if let Ok(group) = qgroup::qgroup_of(&self.dir(id)) {
                if let Some(limit) = qgroup::referenced_limit(home.as_fd(), group)? {
                    data.insert("SizeLimit".to_string(), limit.to_string());
                }
            }
        }
        Ok(data)
    }

    fn cleanup(&self) -> Result<()> {
        Ok(())
    }
}

//! The btrfs driver: an image's base layer is a subvolume, every child
//! layer and every container layer a writable snapshot of its parent, all
//! made through btrfs ioctls (`btrfs-uapi`), never the `btrfs` command.
//! Snapshots share extents, so layers cost only what they change.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::vfs::list_dir_names;
use super::{fsinfo, unknown_option, DriverOptions, FsMagic};
use crate::driver::{Driver, RwLayerOpts};
use crate::error::{Result, StorageError};

/// The btrfs driver rooted at `<data-root>/btrfs`.
pub struct Btrfs {
    home: PathBuf,
}

fn errno(e: nix::errno::Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

fn cname(id: &str) -> Result<CString> {
    CString::new(id).map_err(|_| StorageError::InvalidOption(format!("invalid layer id {id:?}")))
}

impl Btrfs {
    /// Opens (creating) the driver home; refuses a data root not on btrfs.
    pub fn open(home: &Path, options: &DriverOptions) -> Result<Btrfs> {
        for (key, _) in options.iter() {
            match key {
                // dockerd's only btrfs option; container sizes arrive with the quota work.
                "btrfs.min_space" => {}
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
        Ok(Btrfs {
            home: home.to_path_buf(),
        })
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
    fn delete_subvolume(&self, id: &str) -> Result<()> {
        let path = self.dir(id);
        if !path.exists() {
            return Ok(());
        }
        self.delete_nested(&path)?;
        let parent = Self::open_dir(&self.subvolumes())?;
        btrfs_uapi::subvolume::subvolume_delete(parent.as_fd(), &cname(id)?)
            .map_err(|e| StorageError::at(&path, "delete subvolume", errno(e)))
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
        if opts.size.is_some() {
            return Err(StorageError::InvalidOption(
                "--storage-opt size is not supported by the btrfs driver yet".into(),
            ));
        }
        self.create(id, parent)
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

    fn status(&self) -> Vec<(String, String)> {
        let quota = Self::open_dir(&self.home)
            .ok()
            .and_then(|f| btrfs_uapi::quota::qgroup_list(f.as_fd()).ok())
            .is_some();
        vec![
            ("Backing Filesystem".into(), "btrfs".into()),
            ("Quota Enabled".into(), quota.to_string()),
        ]
    }

    fn metadata(&self, _id: &str) -> Result<BTreeMap<String, String>> {
        Ok(BTreeMap::new())
    }

    fn cleanup(&self) -> Result<()> {
        Ok(())
    }
}

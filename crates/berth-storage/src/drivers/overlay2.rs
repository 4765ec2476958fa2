//! The overlay2 driver: each layer is a `diff` directory holding only what
//! it changed; a container's root is an overlayfs mount of its `diff` over
//! the image layers' `diff`s. Lower layers are named through short links
//! (`l/<26 chars>`) and mounted from a thread whose working directory is
//! the driver home, so 128+ layers fit in one page of mount options.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags};

use super::mount_refs::MountRefs;
use super::vfs::list_dir_names;
use super::xfs_quota::ProjectQuota;
use super::{fsinfo, parse_size, unknown_option, DriverOptions, FsMagic};
use crate::archive::{self, ApplyStats, Change, SplitRecorder, WhiteoutFormat};
use crate::driver::{Driver, RwLayerOpts, Usage};
use crate::error::{Result, StorageError};
use crate::idmap::IdMap;

const LINK_DIR: &str = "l";
const LINK_LEN: usize = 26;

/// The overlay2 driver rooted at `<data-root>/overlay2`.
pub struct Overlay2 {
    home: PathBuf,
    mounts: MountRefs,
    /// Project quota on the home's xfs, when it is mounted with `pquota`.
    quota: Option<ProjectQuota>,
    /// `overlay2.size`: the limit of container layers without their own.
    default_size: Option<u64>,
}

/// dockerd's refusal of a size where project quota is missing.
const NO_QUOTA: &str =
    "--storage-opt is supported only for overlay over xfs with 'pquota' mount option";

/// Whether overlayfs can be used for a data root at `data_root`.
pub fn supported(data_root: &Path) -> bool {
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    filesystems
        .lines()
        .any(|l| l.trim_end().ends_with("\toverlay") || l.trim() == "nodev\toverlay")
        && !matches!(
            fsinfo::magic(data_root),
            Some(FsMagic::Overlay) | Some(FsMagic::Zfs) | Some(FsMagic::Fuse)
        )
}

impl Overlay2 {
    /// Opens (creating) the driver home after checking overlayfs works here.
    pub fn open(home: &Path, options: &DriverOptions) -> Result<Overlay2> {
        let mut default_size = None;
        for (key, value) in options.iter() {
            match key {
                // Accepted for dockerd compatibility; berth has no kernel check to skip.
                "overlay2.override_kernel_check" => {}
                "overlay2.size" => default_size = Some(parse_size(value)?),
                _ => return Err(unknown_option("overlay2", key)),
            }
        }
        if !supported(home) {
            return Err(StorageError::Unsupported(format!(
                "overlay2: the kernel has no overlayfs, or {} is on a filesystem overlayfs cannot use ({})",
                home.display(),
                fsinfo::backing_fs_name(home)
            )));
        }
        let links = home.join(LINK_DIR);
        std::fs::create_dir_all(&links).map_err(|e| StorageError::at(&links, "create", e))?;
        let quota = match ProjectQuota::probe(home, home) {
            Ok(q) => Some(q),
            Err(reason) if default_size.is_some() => {
                return Err(StorageError::InvalidOption(
                    if fsinfo::magic(home) == Some(FsMagic::Xfs) {
                        format!(
                            "Storage option overlay2.size not supported. Filesystem does not \
                             support Project Quota: {reason}"
                        )
                    } else {
                        format!(
                            "Storage Option overlay2.size only supported for backingFS XFS. \
                             Found {}",
                            fsinfo::backing_fs_name(home)
                        )
                    },
                ));
            }
            Err(_) => None,
        };
        let driver = Overlay2 {
            home: home.to_path_buf(),
            mounts: MountRefs::default(),
            quota,
            default_size,
        };
        driver.adopt_existing_mounts();
        Ok(driver)
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.home.join(id)
    }

    /// Takes over merged mounts a previous daemon left (its containers may
    /// still run): they count as mounted once, so the owner's `unmount`
    /// or shutdown cleanup releases them.
    fn adopt_existing_mounts(&self) {
        let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return;
        };
        for line in info.lines() {
            let Some(point) = line.split(' ').nth(4) else {
                continue;
            };
            let point = Path::new(point);
            if let Ok(rest) = point.strip_prefix(&self.home) {
                let mut comps = rest.components();
                if let (Some(id), Some(last), None) = (comps.next(), comps.next(), comps.next()) {
                    if last.as_os_str() == "merged" {
                        self.mounts.adopt(&id.as_os_str().to_string_lossy());
                    }
                }
            }
        }
    }

    /// The lower layers of `id` as driver-home-relative link paths, topmost first.
    fn lowers(&self, id: &str) -> Result<Vec<String>> {
        let path = self.dir(id).join("lower");
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(s
                .split(':')
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(StorageError::at(&path, "read", e)),
        }
    }

    /// The lower layers' `diff` directories, absolute, topmost first.
    fn lower_dirs(&self, id: &str) -> Result<Vec<PathBuf>> {
        Ok(self
            .lowers(id)?
            .into_iter()
            .map(|l| {
                let link = self.home.join(&l);
                std::fs::canonicalize(&link).unwrap_or(link)
            })
            .collect())
    }

    fn new_link(&self, id: &str) -> Result<String> {
        loop {
            let mut raw = [0u8; LINK_LEN];
            getrandom::fill(&mut raw)
                .map_err(|e| StorageError::io("random", std::io::Error::other(e.to_string())))?;
            const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
            let name: String = raw
                .iter()
                .map(|b| ALPHABET[(*b as usize) % 32] as char)
                .collect();
            let link = self.home.join(LINK_DIR).join(&name);
            match std::os::unix::fs::symlink(Path::new("..").join(id).join("diff"), &link) {
                Ok(()) => return Ok(name),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(StorageError::at(&link, "symlink", e)),
            }
        }
    }

    /// Makes layer `id`; with `size`, its directory becomes a quota project
    /// before anything is made inside it, so `diff` and `work` inherit it.
    fn make_layer(&self, id: &str, parent: Option<&str>, size: Option<u64>) -> Result<()> {
        let dir = self.dir(id);
        std::fs::create_dir(&dir).map_err(|e| StorageError::at(&dir, "create", e))?;
        if let (Some(size), Some(quota)) = (size, &self.quota) {
            quota.set_limit(&dir, size)?;
        }
        let diff = dir.join("diff");
        std::fs::create_dir(&diff).map_err(|e| StorageError::at(&diff, "create", e))?;
        let link = self.new_link(id)?;
        write(&dir.join("link"), link.as_bytes())?;
        if let Some(parent) = parent {
            let parent_link = std::fs::read_to_string(self.dir(parent).join("link"))
                .map_err(|e| StorageError::at(self.dir(parent), "read link of", e))?;
            let mut lowers = vec![format!("{LINK_DIR}/{}", parent_link.trim())];
            lowers.extend(self.lowers(parent)?);
            write(&dir.join("lower"), lowers.join(":").as_bytes())?;
            for sub in ["work", "merged"] {
                let p = dir.join(sub);
                std::fs::create_dir(&p).map_err(|e| StorageError::at(&p, "create", e))?;
            }
        }
        Ok(())
    }

    fn mount_overlay(&self, id: &str) -> Result<PathBuf> {
        let lowers = self.lowers(id)?;
        let merged = self.dir(id).join("merged");
        if lowers.is_empty() {
            return Ok(self.dir(id).join("diff"));
        }
        let options = format!(
            "index=off,lowerdir={},upperdir={id}/diff,workdir={id}/work",
            lowers.join(":")
        );
        if options.len() >= 4096 {
            return Err(StorageError::Unsupported(format!(
                "overlay2: layer {id} has too many lower layers ({}) for one mount",
                lowers.len()
            )));
        }
        let home = self.home.clone();
        let target = PathBuf::from(id).join("merged");
        let options = std::ffi::CString::new(options)
            .map_err(|_| StorageError::InvalidOption("overlay2: NUL in mount options".into()))?;
        // chdir is per-process; a thread with its own fs context can change
        // its working directory without disturbing the rest of the daemon.
        std::thread::spawn(move || -> rustix::io::Result<()> {
            // SAFETY: this thread only chdirs and mounts, then ends.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS)? };
            rustix::process::chdir(&home)?;
            rustix::mount::mount(
                "overlay",
                &target,
                "overlay",
                MountFlags::empty(),
                options.as_c_str(),
            )
        })
        .join()
        .map_err(|_| StorageError::io("overlay mount thread", std::io::Error::other("panicked")))?
        .map_err(|e| {
            StorageError::io(format!("mount overlay on {}", merged.display()), e.into())
        })?;
        Ok(merged)
    }

    fn diff_dir(&self, id: &str) -> PathBuf {
        self.dir(id).join("diff")
    }
}

fn write(path: &Path, data: &[u8]) -> Result<()> {
    std::fs::write(path, data).map_err(|e| StorageError::at(path, "write", e))
}

impl Driver for Overlay2 {
    fn name(&self) -> &'static str {
        "overlay2"
    }

    fn home(&self) -> &Path {
        &self.home
    }

    fn create(&self, id: &str, parent: Option<&str>) -> Result<()> {
        let result = self.make_layer(id, parent, None);
        if result.is_err() {
            let _ = self.remove(id);
        }
        result
    }

    fn create_rw(&self, id: &str, parent: Option<&str>, opts: &RwLayerOpts) -> Result<()> {
        let Some(size) = opts.size.or(self.default_size) else {
            return self.create(id, parent);
        };
        if self.quota.is_none() {
            return Err(StorageError::InvalidOption(NO_QUOTA.into()));
        }
        let result = self.make_layer(id, parent, Some(size));
        if result.is_err() {
            let _ = self.remove(id);
        }
        result
    }

    fn remove(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        let merged = dir.join("merged");
        self.mounts.force_release(id, || Ok(()))?;
        let _ = rustix::mount::unmount(&merged, UnmountFlags::DETACH);
        if let Ok(link) = std::fs::read_to_string(dir.join("link")) {
            let _ = std::fs::remove_file(self.home.join(LINK_DIR).join(link.trim()));
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::at(&dir, "remove", e)),
        }
    }

    fn exists(&self, id: &str) -> bool {
        self.diff_dir(id).is_dir()
    }

    fn list(&self) -> Result<Vec<String>> {
        // Layers are the directories besides `l`; files here (the quota
        // project record) are not.
        Ok(list_dir_names(&self.home)?
            .into_iter()
            .filter(|n| n != LINK_DIR && self.home.join(n).is_dir())
            .collect())
    }

    fn mount(&self, id: &str) -> Result<PathBuf> {
        if !self.exists(id) {
            return Err(StorageError::NotFound(format!("overlay2: no layer {id}")));
        }
        let merged = if self.lowers(id)?.is_empty() {
            self.diff_dir(id)
        } else {
            self.dir(id).join("merged")
        };
        self.mounts
            .acquire(id, || self.mount_overlay(id), || merged.clone())
    }

    fn unmount(&self, id: &str) -> Result<()> {
        let has_lower = !self.lowers(id)?.is_empty();
        let merged = self.dir(id).join("merged");
        self.mounts.release(id, || {
            if has_lower {
                rustix::mount::unmount(&merged, UnmountFlags::DETACH)
                    .map_err(|e| StorageError::at(&merged, "unmount", e.into()))?;
            }
            Ok(())
        })
    }

    fn apply_diff(
        &self,
        id: &str,
        _parent: Option<&str>,
        tar: &mut dyn Read,
        split: Option<&mut SplitRecorder>,
        ids: &IdMap,
    ) -> Result<ApplyStats> {
        let lowers = self.lower_dirs(id)?;
        archive::apply_layer(
            &self.diff_dir(id),
            &lowers,
            tar,
            WhiteoutFormat::Overlay,
            split,
            ids,
        )
    }

    fn content_root(&self, id: &str) -> Result<PathBuf> {
        Ok(self.diff_dir(id))
    }

    fn release_content_root(&self, _id: &str) -> Result<()> {
        Ok(())
    }

    fn changes(&self, id: &str, _parent: Option<&str>) -> Result<Vec<Change>> {
        archive::overlay_changes(&self.lower_dirs(id)?, &self.diff_dir(id))
    }

    fn diff(
        &self,
        id: &str,
        _parent: Option<&str>,
        out: &mut dyn Write,
        ids: &IdMap,
    ) -> Result<()> {
        archive::write_overlay_diff(&self.diff_dir(id), out, ids)
    }

    fn usage(&self, id: &str, _parent: Option<&str>) -> Result<Usage> {
        let changes = archive::overlay_changes(&self.lower_dirs(id)?, &self.diff_dir(id))?;
        Ok(Usage {
            size: archive::changes_size(&self.diff_dir(id), &changes),
            inodes: Some(changes.len() as u64),
        })
    }

    fn status(&self) -> Vec<(String, String)> {
        vec![
            (
                "Backing Filesystem".into(),
                fsinfo::backing_fs_name(&self.home),
            ),
            ("Supports d_type".into(), "true".into()),
            ("Using metacopy".into(), "false".into()),
            ("Native Overlay Diff".into(), "true".into()),
            ("userxattr".into(), "false".into()),
        ]
    }

    fn metadata(&self, id: &str) -> Result<BTreeMap<String, String>> {
        let dir = self.dir(id);
        let mut m = BTreeMap::new();
        let lowers = self.lower_dirs(id)?;
        if !lowers.is_empty() {
            let joined: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
            m.insert("LowerDir".into(), joined.join(":"));
        }
        m.insert("MergedDir".into(), dir.join("merged").display().to_string());
        m.insert("UpperDir".into(), dir.join("diff").display().to_string());
        m.insert("WorkDir".into(), dir.join("work").display().to_string());
        Ok(m)
    }

    fn cleanup(&self) -> Result<()> {
        for id in self.mounts.held() {
            let merged = self.dir(&id).join("merged");
            self.mounts.force_release(&id, || {
                let _ = rustix::mount::unmount(&merged, UnmountFlags::DETACH);
                Ok(())
            })?;
        }
        Ok(())
    }
}

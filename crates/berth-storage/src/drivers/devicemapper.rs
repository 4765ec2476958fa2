//! The devicemapper driver: every layer is a dm-thin device in one thin
//! pool — the base device holds an empty filesystem of `dm.basesize`, each
//! image layer is a thin snapshot of its parent (or of the base), each
//! container layer a snapshot whose virtual size is its storage limit. A
//! layer's filesystem is mounted only while something uses it.
//!
//! This file opens the driver (pool, recovery, leftovers) and implements
//! `Driver`; the thin devices are handled in `thin_devices`, the
//! filesystems on them (the base device's among them) in `filesystem`.

mod dm_ioctl;
mod filesystem;
mod metadata;
mod options;
mod pool;
mod thin_devices;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::mount::MntFlags;

use self::dm_ioctl::Control;
use self::metadata::MetadataFile;
use self::options::{Filesystem, Options, DEFAULT_BASE_SIZE};
use self::pool::{Pool, PoolStatus};
use self::thin_devices::remove_with_retry;
use super::mount_refs::MountRefs;
use super::{human_size, DriverOptions};
use crate::driver::{Driver, RwLayerOpts, Usage};
use crate::error::{Result, StorageError};

/// The key of the base device in the driver's bookkeeping.
const BASE: &str = "base";

/// dockerd's warning for loopback pools, logged at start.
pub const LOOPBACK_WARNING: &str = "Usage of loopback devices is strongly discouraged for \
production use. Please use `--storage-opt dm.thinpooldev` or use `man dockerd` to refer to \
dm.thinpooldev section.";

/// What one lock guards: the control device, the pool, the records and
/// which thin devices are active.
struct State {
    dm: Control,
    pool: Pool,
    meta: MetadataFile,
    active: BTreeSet<String>,
    closed: bool,
}

/// The devicemapper driver rooted at `<data-root>/devicemapper`.
pub struct DeviceMapper {
    home: PathBuf,
    /// `berth-<maj>:<min>-<inode>`: names this data root's devices apart
    /// from another daemon's.
    prefix: String,
    fs: Filesystem,
    mount_options: String,
    mkfs_args: Vec<String>,
    min_free_percent: u32,
    mounts: MountRefs,
    state: Mutex<State>,
}

impl DeviceMapper {
    /// Opens the pool (making a loopback one if no `dm.thinpooldev` is
    /// given), recovers an interrupted device creation, makes or checks
    /// the base device, and takes over devices a previous daemon left.
    pub fn open(home: &Path, options: &DriverOptions) -> Result<DeviceMapper> {
        let opts = Options::parse(options)?;
        std::fs::create_dir_all(home.join("mnt"))
            .map_err(|e| StorageError::at(home.join("mnt"), "create", e))?;
        let dm = Control::open()?;
        let st = rustix::fs::stat(home).map_err(|e| StorageError::at(home, "stat", e.into()))?;
        let prefix = format!(
            "berth-{}:{}-{}",
            rustix::fs::major(st.st_dev),
            rustix::fs::minor(st.st_dev),
            st.st_ino
        );
        let pool = Pool::open(
            &dm,
            &opts.source,
            home,
            &format!("{prefix}-pool"),
            opts.block_size,
        )?;
        if pool.loopback.is_some() {
            tracing::warn!("devicemapper: {LOOPBACK_WARNING}");
        }
        let owned_pool = pool.owned.then(|| pool.name.clone());
        let result = Self::finish_open(home, prefix, opts, dm, pool);
        if result.is_err() {
            if let (Some(name), Ok(dm)) = (owned_pool, Control::open()) {
                let _ = remove_with_retry(&dm, &name);
            }
        }
        result
    }

    fn finish_open(
        home: &Path,
        prefix: String,
        opts: Options,
        dm: Control,
        pool: Pool,
    ) -> Result<DeviceMapper> {
        let default_fs = opts.filesystem.unwrap_or(Filesystem::Xfs);
        let meta = MetadataFile::load(home, &pool.name, default_fs.name())?;
        if meta.data.pool_name != pool.name {
            return Err(StorageError::Unsupported(format!(
                "devmapper: the layers of {} live in thin pool {}, not {}; start with \
                 --storage-opt dm.thinpooldev={} or use another --data-root",
                home.display(),
                meta.data.pool_name,
                pool.name,
                meta.data.pool_name
            )));
        }
        let fs = Filesystem::parse(&meta.data.filesystem)?;
        if let Some(wanted) = opts.filesystem {
            if wanted != fs && meta.data.base.is_some() {
                return Err(StorageError::InvalidOption(format!(
                    "devmapper: the base device was made with dm.fs={}; dm.fs={} needs a new \
                     data root",
                    fs.name(),
                    wanted.name()
                )));
            }
        }
        let mut mount_options = vec![fs.mount_options().to_string()];
        mount_options.extend(opts.mount_options.iter().cloned());
        let driver = DeviceMapper {
            home: home.to_path_buf(),
            prefix,
            fs,
            mount_options: mount_options.join(","),
            mkfs_args: opts.mkfs_args.clone(),
            min_free_percent: opts.min_free_percent,
            mounts: MountRefs::default(),
            state: Mutex::new(State {
                dm,
                pool,
                meta,
                active: BTreeSet::new(),
                closed: false,
            }),
        };
        {
            let mut st = driver.lock();
            driver.recover_pending(&mut st)?;
            driver.adopt_leftovers(&mut st)?;
            match st.meta.data.base.clone() {
                None => driver.make_base(&mut st, opts.base_size.unwrap_or(DEFAULT_BASE_SIZE))?,
                Some(base) => match opts.base_size {
                    Some(want) if want < base.size => {
                        return Err(StorageError::InvalidOption(format!(
                            "devmapper: Base device size cannot be smaller than {}",
                            human_size(base.size)
                        )));
                    }
                    Some(want) if want > base.size => driver.grow_base(&mut st, want)?,
                    _ => {}
                },
            }
        }
        Ok(driver)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dm_name(&self, key: &str) -> String {
        format!("{}-{key}", self.prefix)
    }

    fn mount_point(&self, key: &str) -> PathBuf {
        self.home.join("mnt").join(key)
    }

    /// A thin device id reserved before a crash but never recorded: the
    /// pool may or may not have created it, so delete it if it is there.
    fn recover_pending(&self, st: &mut State) -> Result<()> {
        if let Some(pending) = st.meta.data.pending.take() {
            tracing::info!(
                "devicemapper: removing thin device {} of interrupted layer {}",
                pending.device_id,
                pending.layer
            );
            let _ = st
                .dm
                .message(&st.pool.name, &format!("delete {}", pending.device_id));
            st.meta.save()?;
        }
        Ok(())
    }

    /// Devices a previous daemon left active: mounted ones are adopted
    /// (their containers may still run), the others deactivated.
    fn adopt_leftovers(&self, st: &mut State) -> Result<()> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mounted: BTreeSet<PathBuf> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
            .collect();
        let keys: Vec<String> = std::iter::once(BASE.to_string())
            .chain(st.meta.data.devices.keys().cloned())
            .collect();
        for key in keys {
            let name = self.dm_name(&key);
            if st.dm.info(&name)?.is_none() {
                continue;
            }
            if key != BASE && mounted.contains(&self.mount_point(&key)) {
                st.active.insert(key.clone());
                self.mounts.adopt(&key);
            } else {
                let _ = nix::mount::umount2(&self.mount_point(&key), MntFlags::MNT_DETACH);
                remove_with_retry(&st.dm, &name)?;
            }
        }
        Ok(())
    }

    fn pool_status(&self, st: &State) -> Option<PoolStatus> {
        st.pool.status(&st.dm).ok()
    }
}

impl Driver for DeviceMapper {
    fn name(&self) -> &'static str {
        "devicemapper"
    }

    fn home(&self) -> &Path {
        &self.home
    }

    fn create(&self, id: &str, parent: Option<&str>) -> Result<()> {
        self.create_layer(id, parent, None, false)
    }

    fn create_rw(&self, id: &str, parent: Option<&str>, opts: &RwLayerOpts) -> Result<()> {
        self.create_layer(id, parent, opts.size, true)
    }

    fn remove(&self, id: &str) -> Result<()> {
        self.mounts.force_release(id, || self.unmount_fs(id))?;
        let mut st = self.lock();
        let Some(record) = st.meta.data.devices.get(id).cloned() else {
            return Ok(());
        };
        self.deactivate(&mut st, id)?;
        st.dm
            .message(&st.pool.name, &format!("delete {}", record.device_id))?;
        st.meta.data.devices.remove(id);
        st.meta.save()?;
        let _ = std::fs::remove_dir(self.mount_point(id));
        Ok(())
    }

    fn exists(&self, id: &str) -> bool {
        self.lock().meta.data.devices.contains_key(id)
    }

    fn list(&self) -> Result<Vec<String>> {
        Ok(self.lock().meta.data.devices.keys().cloned().collect())
    }

    fn mount(&self, id: &str) -> Result<PathBuf> {
        let rootfs = self.mount_point(id).join("rootfs");
        self.mounts.acquire(
            id,
            || {
                let mut st = self.lock();
                let dev = self.activate(&mut st, id)?;
                if let Err(e) = self.mount_fs(id, &dev) {
                    let _ = self.deactivate(&mut st, id);
                    return Err(e);
                }
                Ok(rootfs.clone())
            },
            || rootfs.clone(),
        )
    }

    fn unmount(&self, id: &str) -> Result<()> {
        self.mounts.release(id, || {
            self.unmount_fs(id)?;
            let mut st = self.lock();
            if let Err(e) = self.deactivate(&mut st, id) {
                // Still held (a lazily detached mount): it is removed with
                // the layer or at shutdown.
                tracing::warn!("devicemapper: deactivating {id}: {e}");
            }
            Ok(())
        })
    }

    fn usage(&self, id: &str, parent: Option<&str>) -> Result<Usage> {
        let mut st = self.lock();
        Self::record(&st, id)?;
        let own = self.mapped_bytes(&mut st, id)?;
        let below = self.mapped_bytes(&mut st, parent.unwrap_or(BASE))?;
        Ok(Usage {
            size: own.saturating_sub(below),
            inodes: None,
        })
    }

    fn space(&self) -> Vec<crate::driver::SpaceUsage> {
        let st = self.lock();
        let Some(pool) = self.pool_status(&st) else {
            return Vec::new();
        };
        [("data", pool.data), ("metadata", pool.metadata)]
            .into_iter()
            .map(|(name, s)| crate::driver::SpaceUsage {
                pool: name.to_string(),
                used: s.used,
                total: s.total,
            })
            .collect()
    }

    fn status(&self) -> Vec<(String, String)> {
        let st = self.lock();
        let pool = self.pool_status(&st).unwrap_or_default();
        let base = st.meta.data.base.as_ref().map(|b| b.size).unwrap_or(0);
        let mut out = vec![
            ("Pool Name".to_string(), st.pool.name.clone()),
            ("Pool Blocksize".into(), human_size(st.pool.block_size)),
            ("Base Device Size".into(), human_size(base)),
            ("Backing Filesystem".into(), self.fs.name().to_string()),
            ("Udev Sync Supported".into(), "false".into()),
        ];
        let mut data_available = pool.data.total.saturating_sub(pool.data.used);
        let mut metadata_available = pool.metadata.total.saturating_sub(pool.metadata.used);
        if let Some(lb) = &st.pool.loopback {
            out.push(("Data file".into(), lb.data_loop.display().to_string()));
            out.push((
                "Metadata file".into(),
                lb.metadata_loop.display().to_string(),
            ));
            out.push(("Data loop file".into(), lb.data_file.display().to_string()));
            out.push((
                "Metadata loop file".into(),
                lb.metadata_file.display().to_string(),
            ));
            // A sparse file can only grow into what its filesystem has left.
            if let Ok(fs) = rustix::fs::statvfs(&lb.data_file) {
                let free = fs.f_bavail * fs.f_frsize;
                data_available = data_available.min(free);
                metadata_available = metadata_available.min(free);
            }
        }
        let min_free = pool.data.total * self.min_free_percent as u64 / 100;
        out.extend([
            ("Data Space Used".into(), human_size(pool.data.used)),
            ("Data Space Total".into(), human_size(pool.data.total)),
            ("Data Space Available".into(), human_size(data_available)),
            ("Metadata Space Used".into(), human_size(pool.metadata.used)),
            (
                "Metadata Space Total".into(),
                human_size(pool.metadata.total),
            ),
            (
                "Metadata Space Available".into(),
                human_size(metadata_available),
            ),
            ("Thin Pool Minimum Free Space".into(), human_size(min_free)),
            ("Deferred Removal Enabled".into(), "false".into()),
            ("Deferred Deletion Enabled".into(), "false".into()),
            ("Deferred Deleted Device Count".into(), "0".into()),
        ]);
        out
    }

    fn warnings(&self) -> Vec<String> {
        let st = self.lock();
        let mut w = vec![
            "WARNING: the devicemapper storage-driver is deprecated in dockerd and kept in berth"
                .to_string(),
        ];
        if st.pool.loopback.is_some() {
            w.push(format!("WARNING: devicemapper: {LOOPBACK_WARNING}"));
        }
        w
    }

    fn metadata(&self, id: &str) -> Result<BTreeMap<String, String>> {
        let st = self.lock();
        let record = Self::record(&st, id)?;
        let mut m = BTreeMap::new();
        m.insert("DeviceId".into(), record.device_id.to_string());
        m.insert("DeviceSize".into(), record.size.to_string());
        m.insert("DeviceName".into(), self.dm_name(id));
        Ok(m)
    }

    fn cleanup(&self) -> Result<()> {
        for id in self.mounts.held() {
            self.mounts.force_release(&id, || self.unmount_fs(&id))?;
        }
        let mut st = self.lock();
        if st.closed {
            return Ok(());
        }
        let active: Vec<String> = st.active.iter().cloned().collect();
        let mut first_error = None;
        for key in active {
            if let Err(e) = self.deactivate(&mut st, &key) {
                first_error.get_or_insert(e);
            }
        }
        if st.pool.owned && first_error.is_none() {
            // The loop devices under a loopback pool detach themselves
            // (autoclear) once the pool lets go of them.
            if let Err(e) = remove_with_retry(&st.dm, &st.pool.name) {
                first_error.get_or_insert(e);
            }
        }
        st.closed = true;
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for DeviceMapper {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            tracing::warn!("devicemapper: shutting down: {e}");
        }
    }
}

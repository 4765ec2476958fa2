//! The devicemapper driver: every layer is a dm-thin device in one thin
//! pool — the base device holds an empty filesystem of `dm.basesize`, each
//! image layer is a thin snapshot of its parent (or of the base), each
//! container layer a snapshot whose virtual size is its storage limit. A
//! layer's filesystem is mounted only while something uses it.

mod dm_ioctl;
mod metadata;
mod options;
mod pool;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use nix::mount::{MntFlags, MsFlags};

use self::dm_ioctl::{device_path, Control, Target};
use self::metadata::{DeviceRecord, MetadataFile};
use self::options::{Filesystem, Options, DEFAULT_BASE_SIZE};
use self::pool::{Pool, PoolStatus};
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

    fn record(st: &State, key: &str) -> Result<DeviceRecord> {
        let found = if key == BASE {
            st.meta.data.base.clone()
        } else {
            st.meta.data.devices.get(key).cloned()
        };
        found.ok_or_else(|| StorageError::NotFound(format!("devicemapper: no layer {key}")))
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

    /// Makes the base device: a thin device of `size` with an empty
    /// filesystem holding the `rootfs` directory layers start from.
    fn make_base(&self, st: &mut State, size: u64) -> Result<()> {
        self.check_free_space(st)?;
        let id = st.meta.reserve(BASE)?;
        let made = st.dm.message(&st.pool.name, &format!("create_thin {id}"));
        if let Err(e) = made {
            st.meta.data.pending = None;
            st.meta.save()?;
            return Err(e);
        }
        st.meta.data.base = Some(DeviceRecord {
            device_id: id,
            size,
        });
        st.meta.data.pending = None;
        st.meta.save()?;
        let formatted = self.format_base(st);
        if formatted.is_err() {
            let _ = self.deactivate(st, BASE);
            let _ = st.dm.message(&st.pool.name, &format!("delete {id}"));
            st.meta.data.base = None;
            st.meta.save()?;
        }
        formatted
    }

    fn format_base(&self, st: &mut State) -> Result<()> {
        let dev = self.activate(st, BASE)?;
        let mut mkfs = match self.fs {
            Filesystem::Xfs => {
                let mut c = Command::new("mkfs.xfs");
                c.arg("-q");
                c
            }
            Filesystem::Ext4 => {
                let mut c = Command::new("mkfs.ext4");
                c.args([
                    "-q",
                    "-E",
                    "nodiscard,lazy_itable_init=1,lazy_journal_init=1",
                ]);
                c
            }
        };
        mkfs.args(&self.mkfs_args).arg(&dev);
        tracing::info!(
            "devicemapper: creating filesystem {} on the base device",
            self.fs.name()
        );
        run(&mut mkfs)?;
        let target = self.mount_fs(BASE, &dev)?;
        let rootfs = target.join("rootfs");
        let made = std::fs::create_dir(&rootfs)
            .and_then(|_| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&rootfs, std::fs::Permissions::from_mode(0o755))
            })
            .map_err(|e| StorageError::at(&rootfs, "create", e));
        let unmounted = self.unmount_fs(BASE);
        made?;
        unmounted?;
        self.deactivate(st, BASE)
    }

    /// `dm.basesize` went up since the last start: new layers start from
    /// the bigger base.
    fn grow_base(&self, st: &mut State, size: u64) -> Result<()> {
        tracing::info!(
            "devicemapper: growing the base device to {}",
            human_size(size)
        );
        if let Some(base) = st.meta.data.base.as_mut() {
            base.size = size;
        }
        st.meta.save()?;
        self.grow_fs(st, BASE)
    }

    /// Activates `key`'s thin device with its recorded size; returns its node.
    fn activate(&self, st: &mut State, key: &str) -> Result<PathBuf> {
        let record = Self::record(st, key)?;
        let name = self.dm_name(key);
        if let Some(info) = st.dm.info(&name)? {
            st.active.insert(key.to_string());
            return Ok(device_path(info.dev));
        }
        let table = [Target {
            start: 0,
            length: record.size / 512,
            kind: "thin".into(),
            params: format!("{} {}", st.pool.dev.table_name(), record.device_id),
        }];
        let dev = st.dm.create(&name)?;
        if let Err(e) = st.dm.load(&name, &table).and_then(|_| st.dm.resume(&name)) {
            let _ = st.dm.remove(&name);
            return Err(e);
        }
        st.active.insert(key.to_string());
        let path = device_path(dev);
        // devtmpfs adds the node when the disk goes live; give it a moment.
        for _ in 0..200 {
            if path.exists() {
                return Ok(path);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(StorageError::io(
            format!("devicemapper: activate {name}"),
            std::io::Error::other(format!("{} did not appear", path.display())),
        ))
    }

    fn deactivate(&self, st: &mut State, key: &str) -> Result<()> {
        let name = self.dm_name(key);
        if st.dm.info(&name)?.is_some() {
            remove_with_retry(&st.dm, &name)?;
        }
        st.active.remove(key);
        Ok(())
    }

    fn mount_fs(&self, key: &str, dev: &Path) -> Result<PathBuf> {
        let target = self.mount_point(key);
        std::fs::create_dir_all(&target).map_err(|e| StorageError::at(&target, "create", e))?;
        nix::mount::mount(
            Some(dev),
            &target,
            Some(self.fs.name()),
            MsFlags::empty(),
            Some(self.mount_options.as_str()),
        )
        .map_err(|e| {
            StorageError::io(
                format!(
                    "devicemapper: mount {} ({}) on {}",
                    dev.display(),
                    self.fs.name(),
                    target.display()
                ),
                std::io::Error::from_raw_os_error(e as i32),
            )
        })?;
        Ok(target)
    }

    fn unmount_fs(&self, key: &str) -> Result<()> {
        let target = self.mount_point(key);
        match nix::mount::umount2(&target, MntFlags::empty()) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(nix::errno::Errno::EBUSY) => {
                // Someone still works in it; detach so the path is free.
                // The device stays open until they leave.
                let _ = nix::mount::umount2(&target, MntFlags::MNT_DETACH);
                Ok(())
            }
            Err(e) => Err(StorageError::io(
                format!("devicemapper: unmount {}", target.display()),
                std::io::Error::from_raw_os_error(e as i32),
            )),
        }
    }

    /// Grows the filesystem of `key` to its recorded size (the thin device
    /// itself is virtual: activating it with the new length is all it takes).
    fn grow_fs(&self, st: &mut State, key: &str) -> Result<()> {
        self.deactivate(st, key)?;
        let dev = self.activate(st, key)?;
        let result = self.mount_fs(key, &dev).and_then(|target| {
            let mut cmd = match self.fs {
                Filesystem::Xfs => {
                    let mut c = Command::new("xfs_growfs");
                    c.arg(&target);
                    c
                }
                Filesystem::Ext4 => {
                    let mut c = Command::new("resize2fs");
                    c.arg(&dev);
                    c
                }
            };
            let grown = run(&mut cmd);
            let unmounted = self.unmount_fs(key);
            grown.and(unmounted)
        });
        let deactivated = self.deactivate(st, key);
        result?;
        deactivated
    }

    /// dockerd's `dm.min_free_space` check, made before every new device
    /// so a nearly full pool refuses work instead of hanging writes.
    fn check_free_space(&self, st: &State) -> Result<()> {
        let status = st.pool.status(&st.dm)?;
        if status.read_only {
            return Err(StorageError::Unsupported(format!(
                "devmapper: thin pool {} is read-only (out of metadata space, or it needs a \
                 check); new layers cannot be made",
                st.pool.name
            )));
        }
        if self.min_free_percent == 0 {
            return Ok(());
        }
        let pct = self.min_free_percent as u64;
        let (data_used, data_total) = status.data_blocks;
        let min_data = (data_total * pct / 100).max(1);
        let data_free = data_total.saturating_sub(data_used);
        if data_free < min_data {
            return Err(StorageError::Unsupported(format!(
                "devmapper: Thin Pool has {data_free} free data blocks which is less than \
                 minimum required {min_data} free data blocks. Create more free space in thin \
                 pool or use dm.min_free_space option to change behavior"
            )));
        }
        let (meta_used, meta_total) = status.metadata_blocks;
        let min_meta = (meta_total * pct / 100).max(1);
        let meta_free = meta_total.saturating_sub(meta_used);
        if meta_free < min_meta {
            return Err(StorageError::Unsupported(format!(
                "devmapper: Thin Pool has {meta_free} free metadata blocks which is less than \
                 minimum required {min_meta} free metadata blocks. Create more free metadata \
                 space in thin pool or use dm.min_free_space option to change behavior"
            )));
        }
        Ok(())
    }

    /// Makes layer `id` as a snapshot of `parent` (or of the base), of
    /// `size` bytes when given (never below the origin's size).
    fn create_layer(
        &self,
        id: &str,
        parent: Option<&str>,
        size: Option<u64>,
        container: bool,
    ) -> Result<()> {
        if id == BASE {
            return Err(StorageError::InvalidOption(format!(
                "devicemapper: layer id {id:?} is reserved"
            )));
        }
        let mut st = self.lock();
        if st.meta.data.devices.contains_key(id) {
            return Err(StorageError::Conflict(format!(
                "devmapper: device {id} already exists"
            )));
        }
        let origin_key = parent.unwrap_or(BASE);
        let origin = Self::record(&st, origin_key)?;
        let base_size = Self::record(&st, BASE)?.size;
        if let Some(want) = size {
            if want < origin.size {
                return Err(StorageError::InvalidOption(format!(
                    "devmapper: Container size cannot be smaller than {}",
                    human_size(origin.size)
                )));
            }
        }
        // A raised dm.basesize reaches containers of images made before it.
        let size = match (size, container) {
            (Some(want), _) => want,
            (None, true) => origin.size.max(base_size),
            (None, false) => origin.size,
        };
        self.check_free_space(&st)?;
        let device_id = st.meta.reserve(id)?;
        if let Err(e) = self.snapshot(&mut st, device_id, origin_key, origin.device_id) {
            st.meta.data.pending = None;
            st.meta.save()?;
            return Err(e);
        }
        st.meta.data.devices.insert(
            id.to_string(),
            DeviceRecord {
                device_id,
                size: origin.size,
            },
        );
        st.meta.data.pending = None;
        st.meta.save()?;
        if size > origin.size {
            if let Some(rec) = st.meta.data.devices.get_mut(id) {
                rec.size = size;
            }
            let grown = st.meta.save().and_then(|_| self.grow_fs(&mut st, id));
            if let Err(e) = grown {
                drop(st);
                let _ = self.remove(id);
                return Err(e);
            }
        }
        Ok(())
    }

    /// `create_snap` in the pool; an active origin is suspended meanwhile
    /// so the snapshot sees all its writes.
    fn snapshot(&self, st: &mut State, id: u32, origin_key: &str, origin_id: u32) -> Result<()> {
        let origin_name = self.dm_name(origin_key);
        let active = st.dm.info(&origin_name)?.is_some();
        if active {
            st.dm.suspend(&origin_name)?;
        }
        let made = st
            .dm
            .message(&st.pool.name, &format!("create_snap {id} {origin_id}"));
        if active {
            st.dm.resume(&origin_name)?;
        }
        made
    }

    /// Bytes the thin device of `key` has mapped in the pool.
    fn mapped_bytes(&self, st: &mut State, key: &str) -> Result<u64> {
        let was_active = st.dm.info(&self.dm_name(key))?.is_some();
        if !was_active {
            self.activate(st, key)?;
        }
        let status = st.dm.status(&self.dm_name(key));
        if !was_active {
            let _ = self.deactivate(st, key);
        }
        let line = status?
            .first()
            .map(|t| t.params.clone())
            .unwrap_or_default();
        // "<mapped sectors> <highest mapped sector>", or "-" when empty.
        Ok(line
            .split_whitespace()
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
            * 512)
    }

    fn pool_status(&self, st: &State) -> Option<PoolStatus> {
        st.pool.status(&st.dm).ok()
    }
}

/// Removes a device-mapper device, retrying while something (udev's probe,
/// a closing file) still holds it open for a moment.
fn remove_with_retry(dm: &Control, name: &str) -> Result<()> {
    let mut last = None;
    for _ in 0..50 {
        match dm.remove(name) {
            Ok(()) => return Ok(()),
            Err(StorageError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENXIO) => {
                return Ok(())
            }
            Err(StorageError::Io { context, source })
                if source.raw_os_error() == Some(libc::EBUSY) =>
            {
                last = Some(StorageError::Io { context, source });
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| StorageError::Conflict(format!("devmapper: {name} is busy"))))
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .map_err(|e| StorageError::io(format!("devicemapper: run {:?}", cmd.get_program()), e))?;
    if out.status.success() {
        return Ok(());
    }
    Err(StorageError::io(
        format!("devicemapper: {cmd:?}"),
        std::io::Error::other(format!(
            "{}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    ))
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

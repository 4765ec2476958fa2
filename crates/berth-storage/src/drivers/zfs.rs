//! The zfs driver: every layer is a dataset `<parent dataset>/<id>` kept at
//! `mountpoint=legacy`; a base layer is a new filesystem, a child layer or
//! container layer a clone of a snapshot of its parent (`<parent>@<id>`),
//! so layers share blocks; a container's `size` is the clone's `quota`.
//! Runs on kernel ZFS and on zfs-fuse, through the `zfs`/`zpool` commands.

mod cli;
mod mounting;

pub use self::mounting::{with_fuse_mount_lock, FUSE_MOUNT_LOCK};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once, RwLock};

use self::cli::Failure;
use self::mounting::DatasetMounter;
use super::mount_refs::MountRefs;
use super::{fsinfo, parse_size, unknown_option, DriverOptions};
use crate::driver::{Driver, RwLayerOpts, Usage};
use crate::error::{Result, StorageError};

/// A user property every layer dataset carries (`image` or `container`),
/// so datasets an operator keeps beside berth's are never taken for
/// layers, listed or removed.
const LAYER_PROPERTY: &str = "berth:layer";

/// The zfs driver rooted at `<data-root>/zfs`; layers are mounted under
/// `<data-root>/zfs/graph/<id>`, dockerd's layout.
pub struct Zfs {
    home: PathBuf,
    /// The dataset layers are made under (`zfs.fsname`, or the one holding
    /// the data root).
    fsname: String,
    /// `zfs.size`: the quota of a container layer created without `size`.
    default_size: Option<u64>,
    mounter: Box<dyn DatasetMounter>,
    mounts: MountRefs,
    /// Held shared by `make` from `zfs snapshot` to `zfs clone`, and
    /// exclusively by the orphan-snapshot sweep while it checks and
    /// destroys one snapshot: the sweep runs beside creates and must
    /// never take a snapshot a create is about to clone.
    cloning: Arc<RwLock<()>>,
    /// Starts the orphan-snapshot sweep once, after the first `list`.
    sweep: Once,
}

/// One layer dataset as `zfs list` shows it.
#[derive(Debug, Clone)]
struct LayerDataset {
    id: String,
    /// The snapshot it was cloned from (`<fsname>/<parent>@<id>`), if any.
    origin: Option<String>,
}

/// What one `zfs list` walk of the parent dataset found.
struct PoolListing {
    /// Layer datasets directly under the parent dataset.
    layers: Vec<LayerDataset>,
    /// Snapshots of the datasets directly under it (of layers and of
    /// anything else kept there), if the walk asked for snapshots.
    snapshots: Vec<String>,
}

/// One `zfs list` walk of `fsname`: its layer datasets and, with
/// `snapshots`, the snapshots of the datasets directly under it. On
/// zfs-fuse this is slow (seconds for a few thousand datasets) and the
/// snapshots are most of it.
fn walk(fsname: &str, snapshots: bool) -> Result<PoolListing> {
    let columns = format!("name,origin,{LAYER_PROPERTY}");
    let (types, depth) = if snapshots {
        ("filesystem,snapshot", "2")
    } else {
        ("filesystem", "1")
    };
    let out = cli::zfs(&[
        "list", "-H", "-o", &columns, "-t", types, "-r", "-d", depth, fsname,
    ])?;
    let prefix = format!("{fsname}/");
    let mut listing = PoolListing {
        layers: Vec::new(),
        snapshots: Vec::new(),
    };
    for line in out.lines() {
        let mut cols = line.split('\t');
        let (Some(name), Some(origin), Some(mark)) = (cols.next(), cols.next(), cols.next()) else {
            continue;
        };
        let Some(below) = name.strip_prefix(&prefix) else {
            continue;
        };
        match below.split_once('@') {
            Some((dataset, _)) if !dataset.contains('/') => {
                listing.snapshots.push(name.to_string());
            }
            Some(_) => {}
            None if mark != "-" && !below.contains('/') => {
                listing.layers.push(LayerDataset {
                    id: below.to_string(),
                    origin: (origin != "-").then(|| origin.to_string()),
                });
            }
            None => {}
        }
    }
    Ok(listing)
}

/// The layer id a snapshot `<fsname>/<id>@<name>` (a clone's origin)
/// belongs to.
fn snapshot_layer<'a>(fsname: &str, snapshot: &'a str) -> Option<&'a str> {
    let (dataset, _) = snapshot.split_once('@')?;
    dataset
        .strip_prefix(fsname)?
        .strip_prefix('/')
        .filter(|id| !id.contains('/'))
}

/// Destroys snapshots of layer datasets that no clone came from: a crash
/// after `zfs snapshot` and before `zfs clone`, or between destroying a
/// clone and its origin. They would pin their dataset's blocks, and show
/// in `zfs list -t all`, as long as it lives. Runs beside creates: a
/// snapshot that looks orphaned is checked again holding `cloning`
/// exclusively. Only `<fsname>/<id>` is ever cloned from `<parent>@<id>`,
/// so that one dataset's origin says whether the snapshot is in use.
fn remove_orphan_snapshots(fsname: &str, cloning: &RwLock<()>) -> Result<()> {
    let listing = walk(fsname, true)?;
    let ours: HashSet<&str> = listing.layers.iter().map(|l| l.id.as_str()).collect();
    let origins: HashSet<&str> = listing
        .layers
        .iter()
        .filter_map(|l| l.origin.as_deref())
        .collect();
    for snapshot in &listing.snapshots {
        let owned = snapshot_layer(fsname, snapshot).is_some_and(|id| ours.contains(id));
        if !owned || origins.contains(snapshot.as_str()) {
            continue;
        }
        let Some((_, child)) = snapshot.split_once('@') else {
            continue;
        };
        let _held = cloning.write().unwrap_or_else(|e| e.into_inner());
        match cli::get_one(&format!("{fsname}/{child}"), "origin") {
            Ok(origin) if origin == *snapshot => continue,
            Ok(_) => {}
            Err(e) if e.kind == Failure::NoDataset => {}
            Err(e) => return Err(e.into()),
        }
        tracing::info!("zfs: destroying snapshot {snapshot} that no layer was cloned from");
        match cli::destroy(&[], snapshot) {
            // Something else was cloned from it (an operator's `zfs clone`).
            Err(e) if e.kind == Failure::DependentClones => {}
            other => other?,
        }
    }
    Ok(())
}

/// The ZFS dataset mounted where `path` (or its nearest existing ancestor)
/// lives, from the mount table: on zfs-fuse statfs says FUSE, so the magic
/// number cannot tell.
pub fn dataset_of(path: &Path) -> Option<String> {
    let st = path.ancestors().find_map(|p| rustix::fs::stat(p).ok())?;
    let dev = format!(
        "{}:{}",
        rustix::fs::major(st.st_dev),
        rustix::fs::minor(st.st_dev)
    );
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    table.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut right = right.split(' ');
        let (fs_type, source) = (right.next()?, right.next()?);
        (left.split(' ').nth(2)? == dev && matches!(fs_type, "zfs" | "fuse.zfs"))
            .then(|| unescape_mountinfo(source))
    })
}

/// Undoes the octal escapes (`\040` for a space) of `/proc/self/mountinfo`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let (b'\\', Some(digits)) = (bytes[i], octal) {
            let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
            out.push(value as u8);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Layer ids become dataset and snapshot names: keep them to characters
/// ZFS allows and that cannot name another dataset (`/`, `@`).
fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidOption(format!(
            "zfs: invalid layer id {id:?}"
        )))
    }
}

impl Zfs {
    /// Opens the driver: finds the parent dataset (`zfs.fsname` or the one
    /// holding the data root, else a refusal), creates the driver home,
    /// and takes over mounts a previous daemon left. Snapshots whose clone
    /// is gone are swept after the first [`Driver::list`].
    pub fn open(home: &Path, options: &DriverOptions) -> Result<Zfs> {
        let mut fsname = None;
        let mut default_size = None;
        for (key, value) in options.iter() {
            match key {
                "zfs.fsname" => fsname = Some(value.trim_end_matches('/').to_string()),
                "zfs.size" => default_size = Some(parse_size(value)?).filter(|s| *s > 0),
                _ => return Err(unknown_option("zfs", key)),
            }
        }
        let data_root = home.parent().unwrap_or(home);
        let fsname = match fsname {
            Some(name) if !name.is_empty() => name,
            _ => dataset_of(data_root).ok_or_else(|| {
                StorageError::Unsupported(format!(
                    "zfs: {} is not on a ZFS dataset (it is on {}); put the data root on a \
                     dataset (`berth storage setup --driver zfs`) or name one with \
                     --storage-opt zfs.fsname=POOL/DATASET",
                    data_root.display(),
                    fsinfo::backing_fs_name(data_root)
                ))
            })?,
        };
        match cli::get_one(&fsname, "type") {
            Ok(kind) if kind == "filesystem" => {}
            Ok(kind) => {
                return Err(StorageError::Unsupported(format!(
                    "zfs: {fsname} is a {kind}, not a filesystem"
                )))
            }
            Err(e) if e.kind == Failure::NoDataset => {
                return Err(StorageError::Unsupported(format!(
                    "zfs: cannot find root filesystem {fsname}: {}",
                    e.message
                )))
            }
            Err(e) => return Err(e.into()),
        }
        let graph = home.join("graph");
        std::fs::create_dir_all(&graph).map_err(|e| StorageError::at(&graph, "create", e))?;
        let driver = Zfs {
            home: home.to_path_buf(),
            fsname,
            default_size,
            mounter: mounting::for_host(),
            mounts: MountRefs::default(),
            cloning: Arc::default(),
            sweep: Once::new(),
        };
        driver.adopt_existing_mounts();
        Ok(driver)
    }

    /// The parent dataset layers live under.
    pub fn fsname(&self) -> &str {
        &self.fsname
    }

    fn dataset(&self, id: &str) -> String {
        format!("{}/{id}", self.fsname)
    }

    fn mount_dir(&self, id: &str) -> PathBuf {
        self.home.join("graph").join(id)
    }

    /// Runs [`remove_orphan_snapshots`] on a thread of its own: on zfs-fuse
    /// listing a pool's snapshots takes seconds (4.6–7.4 s for 1,000), and
    /// nothing needs the result.
    fn start_orphan_sweep(&self) {
        let (fsname, cloning) = (self.fsname.clone(), Arc::clone(&self.cloning));
        let spawned = std::thread::Builder::new()
            .name("zfs-orphan-sweep".into())
            .spawn(move || {
                if let Err(e) = remove_orphan_snapshots(&fsname, &cloning) {
                    tracing::warn!("zfs: sweeping orphan snapshots under {fsname}: {e}");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("zfs: cannot start the orphan-snapshot sweep: {e}");
        }
    }

    /// Takes over layer mounts a previous daemon left (its containers may
    /// still run): each counts as mounted once.
    fn adopt_existing_mounts(&self) {
        let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return;
        };
        let graph = self.home.join("graph");
        for line in table.lines() {
            let Some(point) = line.split(' ').nth(4) else {
                continue;
            };
            let point = PathBuf::from(unescape_mountinfo(point));
            if let Ok(rest) = point.strip_prefix(&graph) {
                let mut parts = rest.components();
                if let (Some(id), None) = (parts.next(), parts.next()) {
                    self.mounts.adopt(&id.as_os_str().to_string_lossy());
                }
            }
        }
    }

    /// Creates layer `id`: a filesystem, or a clone of a fresh snapshot
    /// `<parent>@<id>` of `parent`. A half-made clone leaves no snapshot
    /// behind; a dataset or snapshot an interrupted create left is
    /// destroyed and the create retried.
    fn make(&self, id: &str, parent: Option<&str>, kind: &str, quota: Option<u64>) -> Result<()> {
        check_id(id)?;
        if let Some(p) = parent {
            check_id(p)?;
        }
        let name = self.dataset(id);
        let snapshot = parent.map(|p| format!("{}@{id}", self.dataset(p)));
        // Until the clone exists, the orphan sweep must not take the snapshot.
        let _cloning = snapshot
            .is_some()
            .then(|| self.cloning.read().unwrap_or_else(|e| e.into_inner()));
        let mark = format!("{LAYER_PROPERTY}={kind}");
        let quota = quota.map(|q| format!("quota={q}"));
        let mut properties = vec!["-o", "mountpoint=legacy", "-o", &mark];
        if let Some(q) = &quota {
            properties.extend(["-o", q.as_str()]);
        }
        let attempt = || -> Result<()> {
            match &snapshot {
                None => {
                    let mut args = vec!["create"];
                    args.extend(&properties);
                    args.push(&name);
                    cli::zfs(&args)?;
                }
                Some(snapshot) => {
                    cli::zfs(&["snapshot", snapshot])?;
                    let mut args = vec!["clone"];
                    args.extend(&properties);
                    args.extend([snapshot.as_str(), name.as_str()]);
                    if let Err(e) = cli::zfs(&args) {
                        let _ = cli::destroy(&[], snapshot);
                        return Err(e.into());
                    }
                }
            }
            Ok(())
        };
        match attempt() {
            // Left by an interrupted create (the dataset, or only the
            // snapshot when it died before `zfs clone`): start over, as
            // dockerd does. Only `<fsname>/<id>` is ever cloned from
            // `<parent>@<id>`, so once that is gone the snapshot is free.
            Err(StorageError::Conflict(msg)) if msg.contains("already exists") => {
                tracing::info!("zfs: {name} exists from an interrupted create; recreating");
                self.remove(id)?;
                if let Some(snapshot) = &snapshot {
                    cli::destroy(&[], snapshot)?;
                }
                attempt()
            }
            other => other,
        }
    }
}

impl Driver for Zfs {
    fn name(&self) -> &'static str {
        "zfs"
    }

    fn home(&self) -> &Path {
        &self.home
    }

    fn create(&self, id: &str, parent: Option<&str>) -> Result<()> {
        self.make(id, parent, "image", None)
    }

    fn create_rw(&self, id: &str, parent: Option<&str>, opts: &RwLayerOpts) -> Result<()> {
        // An explicit size of 0 means "no quota", as dockerd reads it.
        let quota = opts.size.or(self.default_size).filter(|s| *s > 0);
        self.make(id, parent, "container", quota)
    }

    fn remove(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let name = self.dataset(id);
        let dir = self.mount_dir(id);
        self.mounts
            .force_release(id, || self.mounter.unmount(&name, &dir))?;
        let properties = match cli::get(&name, &["origin", "mounted"]) {
            Ok(p) => p.into_iter().collect::<HashMap<_, _>>(),
            Err(e) if e.kind == Failure::NoDataset => {
                let _ = std::fs::remove_dir(&dir);
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        if properties.get("mounted").map(String::as_str) == Some("yes") {
            // Mounted by a daemon that crashed, and not adopted.
            self.mounter.unmount(&name, &dir)?;
        }
        // The clone first (`-r` takes snapshots of it whose clones are
        // gone), then the snapshot it came from, which only then has no
        // dependent. A snapshot something else was cloned from as well (an
        // operator's `zfs clone`) stays: ZFS refuses to destroy it, which
        // is cheaper to ask than to walk the pool for its clones.
        cli::destroy(&["-r"], &name)?;
        if let Some(origin) = properties.get("origin").filter(|o| o.as_str() != "-") {
            if snapshot_layer(&self.fsname, origin).is_some() {
                match cli::destroy(&[], origin) {
                    Err(e) if e.kind == Failure::DependentClones => {}
                    other => other?,
                }
            }
        }
        let _ = std::fs::remove_dir(&dir);
        Ok(())
    }

    fn exists(&self, id: &str) -> bool {
        check_id(id).is_ok() && cli::get_one(&self.dataset(id), LAYER_PROPERTY).is_ok()
    }

    /// Clones come before the layers they were cloned from, so removing in
    /// this order never meets a dataset with dependent clones. The first
    /// call (the layer store's start-up reconciliation) then starts the
    /// orphan-snapshot sweep: not sooner, because zfs-fuse walks slow each
    /// other down (this walk took 1.4 s alone and 3.3 s beside the sweep's
    /// with 1,000 layers), and start-up waits for this one.
    fn list(&self) -> Result<Vec<String>> {
        let layers = walk(&self.fsname, false)?.layers;
        self.sweep.call_once(|| self.start_orphan_sweep());
        let parent_of: HashMap<&str, &str> = layers
            .iter()
            .filter_map(|l| {
                Some((
                    l.id.as_str(),
                    snapshot_layer(&self.fsname, l.origin.as_deref()?)?,
                ))
            })
            .collect();
        let mut ids: Vec<(usize, String)> = Vec::with_capacity(layers.len());
        for layer in &layers {
            let (mut at, mut depth) = (layer.id.as_str(), 0usize);
            while let Some(parent) = parent_of.get(at) {
                at = parent;
                depth += 1;
                if depth > layers.len() {
                    break;
                }
            }
            ids.push((depth, layer.id.clone()));
        }
        ids.sort_by(|a, b| b.cmp(a));
        Ok(ids.into_iter().map(|(_, id)| id).collect())
    }

    fn mount(&self, id: &str) -> Result<PathBuf> {
        check_id(id)?;
        let name = self.dataset(id);
        let dir = self.mount_dir(id);
        self.mounts.acquire(
            id,
            || {
                std::fs::create_dir_all(&dir).map_err(|e| StorageError::at(&dir, "create", e))?;
                if let Err(e) = self.mounter.mount(&name, &dir) {
                    let _ = std::fs::remove_dir(&dir);
                    return Err(e);
                }
                Ok(dir.clone())
            },
            || dir.clone(),
        )
    }

    fn unmount(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let name = self.dataset(id);
        let dir = self.mount_dir(id);
        self.mounts.release(id, || {
            self.mounter.unmount(&name, &dir)?;
            let _ = std::fs::remove_dir(&dir);
            Ok(())
        })
    }

    /// What the dataset itself holds (`usedbydataset`): the blocks the layer
    /// wrote, not those it shares with its origin. ZFS counts them when a
    /// transaction group commits, a few seconds after the write.
    fn usage(&self, id: &str, _parent: Option<&str>) -> Result<Usage> {
        check_id(id)?;
        let value = cli::get_one(&self.dataset(id), "usedbydataset")?;
        Ok(Usage {
            size: cli::size_value(&value).unwrap_or(0),
            inodes: None,
        })
    }

    /// The parent dataset's `used` against `used + available` (what
    /// its layers can grow into, quota included), named after the zpool.
    fn space(&self) -> Vec<crate::driver::SpaceUsage> {
        let pool = self.fsname.split('/').next().unwrap_or(&self.fsname);
        let props: HashMap<String, String> = cli::get(&self.fsname, &["used", "available"])
            .map(|p| p.into_iter().collect())
            .unwrap_or_default();
        let bytes = |key: &str| props.get(key).and_then(|v| cli::size_value(v));
        match (bytes("used"), bytes("available")) {
            (Some(used), Some(available)) => vec![crate::driver::SpaceUsage {
                pool: pool.to_string(),
                used,
                total: used + available,
            }],
            _ => Vec::new(),
        }
    }

    fn status(&self) -> Vec<(String, String)> {
        let pool_name = self
            .fsname
            .split('/')
            .next()
            .unwrap_or(&self.fsname)
            .to_string();
        let (pool, health) = match cli::zpool(&["list", "-H", "-o", "name,health", &pool_name]) {
            Ok(out) => match out.split_once('\t') {
                Some((name, health)) => (name.to_string(), health.to_string()),
                None => (pool_name, "not available".into()),
            },
            Err(e) => (
                format!("error while getting pool information {e}"),
                "not available".into(),
            ),
        };
        let props: HashMap<String, String> =
            cli::get(&self.fsname, &["used", "available", "quota", "compression"])
                .map(|p| p.into_iter().collect())
                .unwrap_or_default();
        let bytes = |key: &str| {
            props
                .get(key)
                .and_then(|v| cli::size_value(v))
                .unwrap_or(0)
                .to_string()
        };
        let quota = props
            .get("quota")
            .and_then(|v| cli::size_value(v))
            .map_or_else(|| "no".to_string(), |q| q.to_string());
        let mut status = vec![
            ("Zpool".to_string(), pool),
            ("Zpool Health".to_string(), health),
            ("Parent Dataset".to_string(), self.fsname.clone()),
            ("Space Used By Parent".to_string(), bytes("used")),
            ("Space Available".to_string(), bytes("available")),
            ("Parent Quota".to_string(), quota),
            (
                "Compression".to_string(),
                props.get("compression").cloned().unwrap_or_default(),
            ),
        ];
        if let Some(size) = self.default_size {
            status.push(("Default Container Quota".to_string(), size.to_string()));
        }
        status.push((
            "Mounts Through".to_string(),
            self.mounter.describe().to_string(),
        ));
        status
    }

    fn metadata(&self, id: &str) -> Result<BTreeMap<String, String>> {
        check_id(id)?;
        Ok(BTreeMap::from([
            (
                "Mountpoint".to_string(),
                self.mount_dir(id).display().to_string(),
            ),
            ("Dataset".to_string(), self.dataset(id)),
        ]))
    }

    fn cleanup(&self) -> Result<()> {
        for id in self.mounts.held() {
            let name = self.dataset(&id);
            let dir = self.mount_dir(&id);
            self.mounts.force_release(&id, || {
                if let Err(e) = self.mounter.unmount(&name, &dir) {
                    tracing::warn!("zfs: unmounting {name}: {e}");
                }
                let _ = std::fs::remove_dir(&dir);
                Ok(())
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"tank/a\040b"), "tank/a b");
        assert_eq!(unescape_mountinfo("tank/plain"), "tank/plain");
        assert_eq!(unescape_mountinfo(r"end\"), r"end\");
    }

    #[test]
    fn ids_cannot_name_other_datasets() {
        assert!(check_id("0123abcd-ef").is_ok());
        assert!(check_id("stray").is_ok());
        for bad in ["", "a/b", "a@b", "..", ".hidden", "a b"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }
}

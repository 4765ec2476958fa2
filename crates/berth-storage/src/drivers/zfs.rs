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
}

/// One layer dataset as `zfs list` shows it.
#[derive(Debug, Clone)]
struct LayerDataset {
    id: String,
    /// The snapshot it was cloned from (`<fsname>/<parent>@<id>`), if any.
    origin: Option<String>,
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
    /// takes over mounts a previous daemon left and removes snapshots whose
    /// clone is gone (a crash between snapshot and clone, or in removal).
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
        };
        driver.adopt_existing_mounts();
        driver.remove_orphan_snapshots()?;
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

    /// Every layer dataset directly under the parent dataset.
    fn layers(&self) -> Result<Vec<LayerDataset>> {
        let columns = format!("name,origin,{LAYER_PROPERTY}");
        let out = cli::zfs(&[
            "list",
            "-H",
            "-o",
            &columns,
            "-t",
            "filesystem",
            "-r",
            "-d",
            "1",
            &self.fsname,
        ])?;
        let prefix = format!("{}/", self.fsname);
        Ok(out
            .lines()
            .filter_map(|line| {
                let mut cols = line.split('\t');
                let (name, origin, mark) = (cols.next()?, cols.next()?, cols.next()?);
                let id = name.strip_prefix(&prefix)?;
                (mark != "-" && !id.contains('/')).then(|| LayerDataset {
                    id: id.to_string(),
                    origin: (origin != "-").then(|| origin.to_string()),
                })
            })
            .collect())
    }

    /// The layer id a clone's origin snapshot belongs to.
    fn origin_layer<'a>(&self, origin: &'a str) -> Option<&'a str> {
        let (dataset, _) = origin.split_once('@')?;
        dataset
            .strip_prefix(&self.fsname)?
            .strip_prefix('/')
            .filter(|id| !id.contains('/'))
    }

    /// Snapshots of layer datasets that no clone came from: a crash after
    /// `zfs snapshot` and before `zfs clone`, or between destroying a clone
    /// and its origin. They would pin their dataset's blocks forever.
    fn remove_orphan_snapshots(&self) -> Result<()> {
        let layers = self.layers()?;
        let ours: HashSet<&str> = layers.iter().map(|l| l.id.as_str()).collect();
        let origins: HashSet<&str> = layers.iter().filter_map(|l| l.origin.as_deref()).collect();
        let out = cli::zfs(&[
            "list",
            "-H",
            "-o",
            "name",
            "-t",
            "snapshot",
            "-r",
            "-d",
            "2",
            &self.fsname,
        ])?;
        for snapshot in out.lines() {
            let owned = self
                .origin_layer(snapshot)
                .is_some_and(|id| ours.contains(id));
            if owned && !origins.contains(snapshot) {
                tracing::info!("zfs: destroying snapshot {snapshot} that no layer was cloned from");
                cli::destroy(&[], snapshot)?;
            }
        }
        Ok(())
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

    /// Creates layer `id`: a filesystem, or a clone of a fresh snapshot of
    /// `parent`. A half-made clone leaves no snapshot behind.
    fn make(&self, id: &str, parent: Option<&str>, kind: &str, quota: Option<u64>) -> Result<()> {
        check_id(id)?;
        if let Some(p) = parent {
            check_id(p)?;
        }
        let name = self.dataset(id);
        let mark = format!("{LAYER_PROPERTY}={kind}");
        let quota = quota.map(|q| format!("quota={q}"));
        let mut properties = vec!["-o", "mountpoint=legacy", "-o", &mark];
        if let Some(q) = &quota {
            properties.extend(["-o", q.as_str()]);
        }
        let attempt = || -> Result<()> {
            match parent {
                None => {
                    let mut args = vec!["create"];
                    args.extend(&properties);
                    args.push(&name);
                    cli::zfs(&args)?;
                }
                Some(p) => {
                    let snapshot = format!("{}@{id}", self.dataset(p));
                    cli::zfs(&["snapshot", &snapshot])?;
                    let mut args = vec!["clone"];
                    args.extend(&properties);
                    args.extend([snapshot.as_str(), name.as_str()]);
                    if let Err(e) = cli::zfs(&args) {
                        let _ = cli::destroy(&[], &snapshot);
                        return Err(e.into());
                    }
                }
            }
            Ok(())
        };
        match attempt() {
            // Left by an interrupted create: start over, as dockerd does.
            Err(StorageError::Conflict(msg)) if msg.contains("already exists") => {
                tracing::info!("zfs: {name} exists from an interrupted create; recreating");
                self.remove(id)?;
                attempt()
            }
            other => other,
        }
    }

    /// Whether any layer is still a clone of `snapshot`.
    fn has_clones(&self, snapshot: &str) -> Result<bool> {
        Ok(self
            .layers()?
            .iter()
            .any(|l| l.origin.as_deref() == Some(snapshot)))
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
        // dependent.
        cli::destroy(&["-r"], &name)?;
        if let Some(origin) = properties.get("origin").filter(|o| o.as_str() != "-") {
            if self.origin_layer(origin).is_some() && !self.has_clones(origin)? {
                cli::destroy(&[], origin)?;
            }
        }
        let _ = std::fs::remove_dir(&dir);
        Ok(())
    }

    fn exists(&self, id: &str) -> bool {
        check_id(id).is_ok() && cli::get_one(&self.dataset(id), LAYER_PROPERTY).is_ok()
    }

    /// Clones come before the layers they were cloned from, so removing in
    /// this order never meets a dataset with dependent clones.
    fn list(&self) -> Result<Vec<String>> {
        let layers = self.layers()?;
        let parent_of: HashMap<&str, &str> = layers
            .iter()
            .filter_map(|l| Some((l.id.as_str(), self.origin_layer(l.origin.as_deref()?)?)))
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

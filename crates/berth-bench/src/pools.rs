//! Identical storage for the two daemons of one storage driver: two btrfs
//! loop filesystems of the same size; one ext4 loop filesystem holding both
//! overlay2 data roots (same filesystem, same disk); one zfs-fuse pool for
//! berthd alone (dockerd's zfs driver cannot run on zfs-fuse).

use std::path::PathBuf;

use berth_testkit::loopfs::LoopFs;
use berth_testkit::{FsKind, ZfsPool};

/// The storage drivers the bench knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Btrfs,
    Overlay2,
    Zfs,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::Btrfs => "btrfs",
            Driver::Overlay2 => "overlay2",
            Driver::Zfs => "zfs",
        }
    }

    pub fn parse(name: &str) -> Option<Driver> {
        match name {
            "btrfs" => Some(Driver::Btrfs),
            "overlay2" => Some(Driver::Overlay2),
            "zfs" => Some(Driver::Zfs),
            _ => None,
        }
    }

    /// What the storage is, for the report.
    pub fn describe(self, size_mib: u64) -> String {
        match self {
            Driver::Btrfs => format!("two btrfs loop filesystems of {size_mib} MiB each"),
            Driver::Overlay2 => {
                format!("overlay2: both data roots on one ext4 loop filesystem of {size_mib} MiB")
            }
            Driver::Zfs => format!(
                "one zfs-fuse pool of {size_mib} MiB on a file, berthd only \
                 (dockerd's zfs driver cannot run on zfs-fuse)"
            ),
        }
    }
}

/// The filesystems of one driver's row set; unmounted and deleted on drop
/// (after the daemons, which the suite drops first).
pub struct Pools {
    pub berth_root: PathBuf,
    pub dockerd_root: Option<PathBuf>,
    _loops: Vec<LoopFs>,
    zpool: Option<ZfsPool>,
}

impl Pools {
    /// The zfs pool's name, on zfs.
    pub fn zpool(&self) -> Option<&str> {
        self.zpool.as_ref().map(|p| p.name())
    }

    /// Makes the storage for `driver`: each pool `size_mib` (sparse).
    pub fn new(driver: Driver, size_mib: u64) -> std::io::Result<Pools> {
        match driver {
            Driver::Btrfs => {
                let berth = LoopFs::builder(FsKind::Btrfs).size_mib(size_mib).build()?;
                let dockerd = LoopFs::builder(FsKind::Btrfs).size_mib(size_mib).build()?;
                Ok(Pools {
                    berth_root: berth.path().join("data-root"),
                    dockerd_root: Some(dockerd.path().join("data-root")),
                    _loops: vec![berth, dockerd],
                    zpool: None,
                })
            }
            Driver::Overlay2 => {
                let fs = LoopFs::builder(FsKind::Ext4).size_mib(size_mib).build()?;
                Ok(Pools {
                    berth_root: fs.path().join("berthd"),
                    dockerd_root: Some(fs.path().join("dockerd")),
                    _loops: vec![fs],
                    zpool: None,
                })
            }
            Driver::Zfs => {
                let pool = ZfsPool::with_size_mib(size_mib)?;
                Ok(Pools {
                    berth_root: pool.path().join("data-root"),
                    dockerd_root: None,
                    _loops: Vec::new(),
                    zpool: Some(pool),
                })
            }
        }
    }
}

//! The thin pool under the devicemapper driver: an existing one named by
//! `dm.thinpooldev`, or a loopback pool made from two sparse files in the
//! driver home (testing only, as dockerd warns), and the pool's status line
//! parsed into the space figures `docker info` prints.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::dm_ioctl::{Control, DevNum, Target};
use crate::error::{Result, StorageError};

/// Thin-pool metadata blocks are always 4 KiB.
const METADATA_BLOCK: u64 = 4096;

/// Where the pool comes from.
#[derive(Debug, Clone)]
pub enum PoolSource {
    /// `dm.thinpooldev`: a pool the operator made (direct-lvm and the like).
    Existing(String),
    /// Sparse files `<home>/devicemapper/{data,metadata}` on loop devices.
    Loopback { data_size: u64, metadata_size: u64 },
}

/// The pool in use.
#[derive(Debug, Clone)]
pub struct Pool {
    pub name: String,
    pub dev: DevNum,
    /// Data block size in bytes.
    pub block_size: u64,
    /// Set for a loopback pool: the backing files and their loop devices.
    pub loopback: Option<Loopback>,
    /// Whether this daemon activated the pool (and so removes it at shutdown).
    pub owned: bool,
}

#[derive(Debug, Clone)]
pub struct Loopback {
    pub data_file: PathBuf,
    pub metadata_file: PathBuf,
    pub data_loop: PathBuf,
    pub metadata_loop: PathBuf,
}

/// Pool space in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Space {
    pub used: u64,
    pub total: u64,
}

/// What the thin-pool status line says.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolStatus {
    pub data: Space,
    pub metadata: Space,
    /// Blocks, for dockerd's minimum-free-space message.
    pub data_blocks: (u64, u64),
    pub metadata_blocks: (u64, u64),
    pub read_only: bool,
}

impl Pool {
    /// Finds or makes the pool. `block_size` (bytes) applies to a new
    /// loopback pool only; an existing pool has its own.
    pub fn open(
        dm: &Control,
        source: &PoolSource,
        home: &Path,
        loop_name: &str,
        block_size: u64,
    ) -> Result<Pool> {
        match source {
            PoolSource::Existing(name) => Self::existing(dm, name),
            PoolSource::Loopback {
                data_size,
                metadata_size,
            } => Self::loopback(dm, home, loop_name, *data_size, *metadata_size, block_size),
        }
    }

    fn existing(dm: &Control, name: &str) -> Result<Pool> {
        let name = name.strip_prefix("/dev/mapper/").unwrap_or(name);
        let info = dm.info(name)?.ok_or_else(|| {
            StorageError::Unsupported(format!(
                "devmapper: thin pool {name} (dm.thinpooldev) does not exist"
            ))
        })?;
        let table = dm.table(name)?;
        let target = table
            .first()
            .filter(|t| t.kind == "thin-pool")
            .ok_or_else(|| {
                StorageError::Unsupported(format!(
                    "devmapper: {name} (dm.thinpooldev) is not a thin pool"
                ))
            })?;
        let block_sectors: u64 = target
            .params
            .split_whitespace()
            .nth(2)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                StorageError::Unsupported(format!(
                    "devmapper: cannot read the block size of {name}: {:?}",
                    target.params
                ))
            })?;
        Ok(Pool {
            name: name.to_string(),
            dev: info.dev,
            block_size: block_sectors * 512,
            loopback: None,
            owned: false,
        })
    }

    fn loopback(
        dm: &Control,
        home: &Path,
        name: &str,
        data_size: u64,
        metadata_size: u64,
        block_size: u64,
    ) -> Result<Pool> {
        let dir = home.join("devicemapper");
        std::fs::create_dir_all(&dir).map_err(|e| StorageError::at(&dir, "create", e))?;
        let data_file = dir.join("data");
        let metadata_file = dir.join("metadata");
        if let Some(info) = dm.info(name)? {
            // A previous daemon's pool (it did not shut down cleanly, or
            // the pool outlived it): keep using it.
            let table = dm.table(name)?;
            let params: Vec<&str> = table
                .first()
                .map(|t| t.params.split_whitespace().collect())
                .unwrap_or_default();
            let block_sectors: u64 = params.get(2).and_then(|s| s.parse().ok()).unwrap_or(128);
            return Ok(Pool {
                name: name.to_string(),
                dev: info.dev,
                block_size: block_sectors * 512,
                loopback: Some(Loopback {
                    data_loop: params.get(1).map(|d| device_node(d)).unwrap_or_default(),
                    metadata_loop: params.first().map(|d| device_node(d)).unwrap_or_default(),
                    data_file,
                    metadata_file,
                }),
                owned: true,
            });
        }
        let data_len = sparse_file(&data_file, data_size)?;
        sparse_file(&metadata_file, metadata_size)?;
        let data_loop = LoopDevice::attach(&data_file)?;
        let metadata_loop = LoopDevice::attach(&metadata_file)?;
        let block_sectors = block_size / 512;
        let data_sectors = (data_len / 512) / block_sectors * block_sectors;
        let blocks = data_sectors / block_sectors;
        // error_if_no_space: a full pool fails writes with ENOSPC at once
        // instead of queueing them until someone extends it (the hang
        // dockerd users met).
        let params = format!(
            "{} {} {} {} 1 error_if_no_space",
            metadata_loop.dev.table_name(),
            data_loop.dev.table_name(),
            block_sectors,
            (blocks / 10).clamp(1, 32768)
        );
        let made = dm.create(name).and_then(|dev| {
            dm.load(
                name,
                &[Target {
                    start: 0,
                    length: data_sectors,
                    kind: "thin-pool".into(),
                    params,
                }],
            )
            .and_then(|_| dm.resume(name))
            .map(|_| dev)
        });
        // The pool holds the loop devices now; with autoclear they go when
        // the pool goes. Our handles are closed either way.
        let dev = match made {
            Ok(dev) => dev,
            Err(e) => {
                let _ = dm.remove(name);
                return Err(e);
            }
        };
        Ok(Pool {
            name: name.to_string(),
            dev,
            block_size,
            loopback: Some(Loopback {
                data_file,
                metadata_file,
                data_loop: data_loop.path,
                metadata_loop: metadata_loop.path,
            }),
            owned: true,
        })
    }

    /// The pool's current space figures.
    pub fn status(&self, dm: &Control) -> Result<PoolStatus> {
        let targets = dm.status(&self.name)?;
        let line = targets
            .first()
            .map(|t| t.params.clone())
            .unwrap_or_default();
        parse_status(&line, self.block_size).ok_or_else(|| {
            StorageError::io(
                format!("devmapper: status of pool {}", self.name),
                std::io::Error::other(format!("unexpected status {line:?}")),
            )
        })
    }
}

/// Parses `<transaction> <meta used>/<meta total> <data used>/<data total> ...`.
fn parse_status(line: &str, block_size: u64) -> Option<PoolStatus> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let pair = |s: &str| -> Option<(u64, u64)> {
        let (a, b) = s.split_once('/')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    let metadata_blocks = pair(fields.get(1)?)?;
    let data_blocks = pair(fields.get(2)?)?;
    Some(PoolStatus {
        data: Space {
            used: data_blocks.0 * block_size,
            total: data_blocks.1 * block_size,
        },
        metadata: Space {
            used: metadata_blocks.0 * METADATA_BLOCK,
            total: metadata_blocks.1 * METADATA_BLOCK,
        },
        data_blocks,
        metadata_blocks,
        read_only: fields.get(4).is_some_and(|m| *m != "rw"),
    })
}

/// Makes (or keeps) a sparse file of at least `size` bytes; returns its size.
fn sparse_file(path: &Path, size: u64) -> Result<u64> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| StorageError::at(path, "create", e))?;
    let len = file
        .metadata()
        .map_err(|e| StorageError::at(path, "stat", e))?
        .len();
    if len < size {
        file.set_len(size)
            .map_err(|e| StorageError::at(path, "grow", e))?;
        return Ok(size);
    }
    Ok(len)
}

/// `/dev/<name>` for a `major:minor`, from sysfs.
fn device_node(majmin: &str) -> PathBuf {
    let uevent =
        std::fs::read_to_string(format!("/sys/dev/block/{majmin}/uevent")).unwrap_or_default();
    uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .map(|n| PathBuf::from("/dev").join(n))
        .unwrap_or_else(|| PathBuf::from(majmin))
}

/// A loop device attached with autoclear (it detaches itself when the last
/// user — the pool — closes it).
struct LoopDevice {
    path: PathBuf,
    dev: DevNum,
    /// Held until the pool has opened the device: closing the last handle
    /// of an autoclear loop device detaches it.
    _handle: File,
}

const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
/// `sizeof(struct loop_info64)`.
const LOOP_INFO64_LEN: usize = 232;

impl LoopDevice {
    fn attach(file: &Path) -> Result<LoopDevice> {
        let backing = OpenOptions::new()
            .read(true)
            .write(true)
            .open(file)
            .map_err(|e| StorageError::at(file, "open", e))?;
        let control = File::open("/dev/loop-control").map_err(|e| {
            StorageError::Unsupported(format!(
                "devmapper: loopback pool needs loop devices: /dev/loop-control: {e}"
            ))
        })?;
        for _ in 0..64 {
            // SAFETY: LOOP_CTL_GET_FREE takes no argument.
            let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
            if n < 0 {
                return Err(StorageError::io(
                    "get a free loop device",
                    std::io::Error::last_os_error(),
                ));
            }
            let path = PathBuf::from(format!("/dev/loop{n}"));
            let device = match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(d) => d,
                // devtmpfs may lag the control device by a moment.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
                Err(e) => return Err(StorageError::at(&path, "open", e)),
            };
            // SAFETY: LOOP_SET_FD takes the backing file's descriptor.
            let rc = unsafe {
                libc::ioctl(
                    device.as_raw_fd(),
                    LOOP_SET_FD,
                    backing.as_raw_fd() as libc::c_ulong,
                )
            };
            if rc < 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EBUSY) {
                    // Another process took it between GET_FREE and SET_FD.
                    continue;
                }
                return Err(StorageError::at(&path, "attach", err));
            }
            let mut info = [0u8; LOOP_INFO64_LEN];
            info[52..56].copy_from_slice(&LO_FLAGS_AUTOCLEAR.to_ne_bytes());
            let name = file.as_os_str().as_encoded_bytes();
            let n_name = name.len().min(63);
            info[56..56 + n_name].copy_from_slice(&name[..n_name]);
            // SAFETY: the buffer is a loop_info64.
            let rc = unsafe { libc::ioctl(device.as_raw_fd(), LOOP_SET_STATUS64, info.as_ptr()) };
            if rc < 0 {
                let err = std::io::Error::last_os_error();
                // SAFETY: LOOP_CLR_FD takes no argument.
                unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CLR_FD) };
                return Err(StorageError::at(&path, "set autoclear on", err));
            }
            let meta = device
                .metadata()
                .map_err(|e| StorageError::at(&path, "stat", e))?;
            let rdev = std::os::unix::fs::MetadataExt::rdev(&meta);
            return Ok(LoopDevice {
                path,
                dev: DevNum {
                    major: libc::major(rdev),
                    minor: libc::minor(rdev),
                },
                _handle: device,
            });
        }
        Err(StorageError::io(
            "attach a loop device",
            std::io::Error::other("no free loop device after 64 tries"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_gives_space_in_bytes() {
        let s = parse_status(
            "0 2573/25600 10/32768 - rw discard_passdown error_if_no_space - 1024",
            65536,
        )
        .unwrap();
        assert_eq!(s.metadata.used, 2573 * 4096);
        assert_eq!(s.metadata.total, 25600 * 4096);
        assert_eq!(s.data.used, 10 * 65536);
        assert_eq!(s.data.total, 32768 * 65536);
        assert!(!s.read_only);
        assert!(parse_status("Fail", 65536).is_none());
    }
}

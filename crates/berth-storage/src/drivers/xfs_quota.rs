//! XFS project quotas, the size limit of overlay2 and vfs layers: a layer's
//! directory gets its own project id (`FS_IOC_FSSETXATTR`, inherited by all
//! it holds) and that project a block hard limit (`Q_XSETQLIM`). Works only
//! on xfs mounted with `pquota`/`prjquota`; [`ProjectQuota::probe`] says so.
//! Project ids are reserved in `<home>/quota-projects.json` before use.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::fsinfo::{self, FsMagic};
use crate::error::{Result, StorageError};

/// `struct fsxattr` (28 bytes) and its ioctls.
const FSXATTR_LEN: usize = 28;
const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801c_581f;
const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401c_5820;
const FS_XFLAG_PROJINHERIT: u32 = 0x0000_0200;

/// quotactl commands (`linux/dqblk_xfs.h`).
const Q_XGETQSTAT: u32 = (b'X' as u32) << 8 | 5;
const Q_XSETQLIM: u32 = (b'X' as u32) << 8 | 4;
const Q_XGETQUOTA: u32 = (b'X' as u32) << 8 | 3;
const PRJQUOTA: u32 = 2;
/// `struct fs_disk_quota` (112 bytes).
const DISK_QUOTA_LEN: usize = 112;
const FS_DQUOT_VERSION: i8 = 1;
const FS_PROJ_QUOTA: i8 = 2;
const FS_DQ_BSOFT: u16 = 1 << 2;
const FS_DQ_BHARD: u16 = 1 << 3;
/// `fs_quota_stat.qs_flags`: project quota enforced.
const FS_QUOTA_PDQ_ENFD: u16 = 1 << 5;

fn qcmd(cmd: u32, kind: u32) -> libc::c_int {
    ((cmd << 8) | (kind & 0xff)) as libc::c_int
}

/// Where quotactl is pointed: a file on the filesystem (`quotactl_fd`,
/// Linux 5.14+), or a block device node for older kernels.
enum QuotaTarget {
    Fd(File),
    Device(CString),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Allocation {
    next: u32,
}

/// Project quotas for the layer directories under one driver home.
pub struct ProjectQuota {
    target: QuotaTarget,
    /// `<home>/quota-projects.json`.
    record: PathBuf,
    /// The home's own project id; ours are above it.
    base: u32,
    alloc: Mutex<Allocation>,
}

/// What quotactl says about one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectUsage {
    /// Hard limit in bytes (0: none).
    pub limit: u64,
    /// Bytes in use.
    pub used: u64,
}

impl ProjectQuota {
    /// Project quota control for the layer directories under `home`, or
    /// `Err` with the reason when the filesystem is not xfs or project
    /// quota is not enforced on it. The id record (and, on old kernels, a
    /// device node) is kept in `state_dir`.
    pub fn probe(home: &Path, state_dir: &Path) -> std::result::Result<ProjectQuota, String> {
        if fsinfo::magic(home) != Some(FsMagic::Xfs) {
            return Err(format!(
                "{} is on {}, not xfs",
                home.display(),
                fsinfo::backing_fs_name(home)
            ));
        }
        let dir = File::open(home).map_err(|e| format!("open {}: {e}", home.display()))?;
        let mut target = QuotaTarget::Fd(dir);
        let mut stat = [0u8; 128];
        match quotactl(&target, qcmd(Q_XGETQSTAT, PRJQUOTA), 0, stat.as_mut_ptr()) {
            // ENOSYS: either no quotactl_fd (before Linux 5.14) or no quota
            // on this filesystem; the device-node form tells them apart.
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                let node = backing_device_node(home, state_dir)?;
                target = QuotaTarget::Device(node.clone());
                if let Err(e) = quotactl(&target, qcmd(Q_XGETQSTAT, PRJQUOTA), 0, stat.as_mut_ptr())
                {
                    let _ = std::fs::remove_file(std::ffi::OsStr::from_bytes(node.as_bytes()));
                    return Err(match e.raw_os_error() {
                        Some(libc::ENOSYS) | Some(libc::ESRCH) => format!(
                            "quotas are not enabled on the xfs filesystem of {} (mount it with \
                             -o pquota)",
                            home.display()
                        ),
                        _ => format!("quota state of {}: {e}", home.display()),
                    });
                }
            }
            Err(e) => return Err(format!("quota state of {}: {e}", home.display())),
            Ok(()) => {}
        }
        let flags = u16::from_ne_bytes([stat[2], stat[3]]);
        if flags & FS_QUOTA_PDQ_ENFD == 0 {
            return Err(format!(
                "project quota is not enforced on the xfs filesystem of {} (mount it with \
                 -o pquota)",
                home.display()
            ));
        }
        let record = state_dir.join("quota-projects.json");
        let mut alloc: Allocation = std::fs::read(&record)
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or_default();
        // Ids at or below the home's own project belong to the operator.
        let base = get_project_id(home).map_err(|e| e.to_string())?;
        alloc.next = alloc.next.max(base + 1);
        Ok(ProjectQuota {
            target,
            record,
            base,
            alloc: Mutex::new(alloc),
        })
    }

    /// Limits everything under `dir` to `bytes`: gives `dir` a project id of
    /// its own (kept if it has one already) and that project a hard limit.
    pub fn set_limit(&self, dir: &Path, bytes: u64) -> Result<u32> {
        let current = get_project_id(dir)?;
        let id = {
            let mut alloc = self.alloc.lock().unwrap_or_else(|e| e.into_inner());
            if current > self.base && current < alloc.next {
                current
            } else {
                // 0, or inherited from the home: the directory needs its own.
                let id = alloc.next;
                alloc.next += 1;
                crate::atomic::write_json(&self.record, &*alloc)?;
                id
            }
        };
        set_project_id(dir, id)?;
        let mut q = [0u8; DISK_QUOTA_LEN];
        q[0] = FS_DQUOT_VERSION as u8;
        q[1] = FS_PROJ_QUOTA as u8;
        q[2..4].copy_from_slice(&(FS_DQ_BHARD | FS_DQ_BSOFT).to_ne_bytes());
        q[4..8].copy_from_slice(&id.to_ne_bytes());
        // Limits are in 512-byte basic blocks.
        let blocks = bytes.div_ceil(512);
        q[8..16].copy_from_slice(&blocks.to_ne_bytes());
        q[16..24].copy_from_slice(&blocks.to_ne_bytes());
        quotactl(&self.target, qcmd(Q_XSETQLIM, PRJQUOTA), id, q.as_mut_ptr()).map_err(|e| {
            StorageError::io(
                format!("set quota limit for project {id} on {}", dir.display()),
                e,
            )
        })?;
        Ok(id)
    }

    /// The limit and usage of `dir`'s project, if it has one.
    pub fn usage(&self, dir: &Path) -> Result<Option<ProjectUsage>> {
        let id = get_project_id(dir)?;
        if id == 0 {
            return Ok(None);
        }
        let mut q = [0u8; DISK_QUOTA_LEN];
        quotactl(
            &self.target,
            qcmd(Q_XGETQUOTA, PRJQUOTA),
            id,
            q.as_mut_ptr(),
        )
        .map_err(|e| StorageError::io(format!("get quota of project {id}"), e))?;
        let word = |at: usize| u64::from_ne_bytes(q[at..at + 8].try_into().expect("8 bytes"));
        Ok(Some(ProjectUsage {
            limit: word(8) * 512,
            used: word(40) * 512,
        }))
    }
}

fn quotactl(target: &QuotaTarget, cmd: libc::c_int, id: u32, addr: *mut u8) -> std::io::Result<()> {
    // SAFETY: `addr` points to a buffer at least as large as the structure
    // the command reads or writes (fs_quota_stat, fs_disk_quota).
    let rc = unsafe {
        match target {
            QuotaTarget::Fd(f) => libc::syscall(
                libc::SYS_quotactl_fd,
                f.as_raw_fd() as libc::c_long,
                cmd as libc::c_long,
                id as libc::c_long,
                addr,
            ),
            QuotaTarget::Device(dev) => {
                libc::quotactl(cmd, dev.as_ptr(), id as libc::c_int, addr.cast()) as libc::c_long
            }
        }
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// For kernels without `quotactl_fd`: a block device node for the
/// filesystem of `home`, made in `home` (as dockerd does).
fn backing_device_node(home: &Path, state_dir: &Path) -> std::result::Result<CString, String> {
    let st = rustix::fs::stat(home).map_err(|e| format!("stat {}: {e}", home.display()))?;
    let node = state_dir.join("backingFsBlockDev");
    let _ = std::fs::remove_file(&node);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &node,
        rustix::fs::FileType::BlockDevice,
        rustix::fs::Mode::from_raw_mode(0o600),
        st.st_dev,
    )
    .map_err(|e| format!("mknod {}: {e}", node.display()))?;
    CString::new(node.as_os_str().as_bytes()).map_err(|e| e.to_string())
}

fn fsxattr(path: &Path) -> Result<(File, [u8; FSXATTR_LEN])> {
    let file = File::open(path).map_err(|e| StorageError::at(path, "open", e))?;
    let mut attr = [0u8; FSXATTR_LEN];
    // SAFETY: FS_IOC_FSGETXATTR fills a struct fsxattr.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FSGETXATTR, attr.as_mut_ptr()) };
    if rc < 0 {
        return Err(StorageError::at(
            path,
            "get project id of",
            std::io::Error::last_os_error(),
        ));
    }
    Ok((file, attr))
}

/// The project id of `path` (0 when it has none).
pub fn get_project_id(path: &Path) -> Result<u32> {
    let (_, attr) = fsxattr(path)?;
    Ok(u32::from_ne_bytes(
        attr[12..16].try_into().expect("4 bytes"),
    ))
}

/// Sets `path`'s project id with the inherit flag, so everything created
/// below it is charged to the same project.
fn set_project_id(path: &Path, id: u32) -> Result<()> {
    let (file, mut attr) = fsxattr(path)?;
    let flags = u32::from_ne_bytes(attr[0..4].try_into().expect("4 bytes")) | FS_XFLAG_PROJINHERIT;
    attr[0..4].copy_from_slice(&flags.to_ne_bytes());
    attr[12..16].copy_from_slice(&id.to_ne_bytes());
    // SAFETY: FS_IOC_FSSETXATTR reads a struct fsxattr.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FSSETXATTR, attr.as_ptr()) };
    if rc < 0 {
        return Err(StorageError::at(
            path,
            "set project id of",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_match_the_kernel_headers() {
        // QCMD(Q_XSETQLIM, PRJQUOTA) = 0x580402.
        assert_eq!(qcmd(Q_XSETQLIM, PRJQUOTA), 0x0058_0402);
        assert_eq!(qcmd(Q_XGETQSTAT, PRJQUOTA), 0x0058_0502);
    }

    #[test]
    fn probe_refuses_a_filesystem_that_is_not_xfs() {
        let dir = tempfile::tempdir().unwrap();
        if fsinfo::magic(dir.path()) == Some(FsMagic::Xfs) {
            return;
        }
        let reason = ProjectQuota::probe(dir.path(), dir.path()).err().unwrap();
        assert!(reason.contains("not xfs"), "{reason}");
    }
}

//! The filesystems on the thin devices: the base device made and formatted
//! once (`dm.fs`, with the `rootfs` directory every layer starts from) and
//! grown when `dm.basesize` rises, and a device's filesystem mounted under
//! `mnt/<key>`, unmounted and grown to its recorded size.

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{MntFlags, MsFlags};

use super::metadata::DeviceRecord;
use super::options::Filesystem;
use super::{DeviceMapper, State, BASE};
use crate::drivers::human_size;
use crate::error::{Result, StorageError};

impl DeviceMapper {
    /// Makes the base device: a thin device of `size` with an empty
    /// filesystem holding the `rootfs` directory layers start from.
    pub(super) fn make_base(&self, st: &mut State, size: u64) -> Result<()> {
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
    pub(super) fn grow_base(&self, st: &mut State, size: u64) -> Result<()> {
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

    pub(super) fn mount_fs(&self, key: &str, dev: &Path) -> Result<PathBuf> {
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

    pub(super) fn unmount_fs(&self, key: &str) -> Result<()> {
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
    pub(super) fn grow_fs(&self, st: &mut State, key: &str) -> Result<()> {
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

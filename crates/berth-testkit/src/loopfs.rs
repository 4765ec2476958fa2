//! `LoopFs`: a real filesystem (btrfs, xfs, ext4) on a loop device backed by
//! a sparse image file, mounted on a scratch directory for one test. Drop
//! unmounts (lazily if busy), detaches the loop device and deletes the file.
//! Also lists attached loop devices, for "nothing leaked" checks.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use loopdev::{LoopControl, LoopDevice};
use nix::mount::{MntFlags, MsFlags};
use tempfile::TempDir;

use crate::mountinfo;
use crate::scratch;

/// The filesystems tests put data roots on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    Btrfs,
    Xfs,
    Ext4,
}

impl FsKind {
    /// The name `mount -t` and `/proc/self/mountinfo` use.
    pub fn fs_type(self) -> &'static str {
        match self {
            FsKind::Btrfs => "btrfs",
            FsKind::Xfs => "xfs",
            FsKind::Ext4 => "ext4",
        }
    }

    fn mkfs(self, device: &Path) -> Command {
        let mut cmd;
        match self {
            FsKind::Btrfs => {
                cmd = Command::new("mkfs.btrfs");
                cmd.args(["-f", "-q"]);
            }
            FsKind::Xfs => {
                cmd = Command::new("mkfs.xfs");
                cmd.args(["-f", "-q"]);
            }
            FsKind::Ext4 => {
                cmd = Command::new("mkfs.ext4");
                cmd.args(["-F", "-q"]);
            }
        }
        cmd.arg(device);
        cmd
    }

    /// Smallest image mkfs accepts for this filesystem, in MiB (mkfs.xfs
    /// refuses below 300 MB).
    pub fn min_size_mib(self) -> u64 {
        match self {
            FsKind::Btrfs => 128,
            FsKind::Xfs => 320,
            FsKind::Ext4 => 16,
        }
    }
}

/// How to make a [`LoopFs`].
#[derive(Debug, Clone)]
pub struct LoopFsBuilder {
    kind: FsKind,
    size_mib: u64,
    mount_options: String,
    btrfs_quota: bool,
}

impl LoopFsBuilder {
    /// Size of the sparse image file. Only what is written takes disk space.
    pub fn size_mib(mut self, size_mib: u64) -> Self {
        self.size_mib = size_mib.max(self.kind.min_size_mib());
        self
    }

    /// Options passed to mount(2) as data, e.g. `pquota` for xfs.
    pub fn mount_options(mut self, options: &str) -> Self {
        self.mount_options = options.to_string();
        self
    }

    /// Enable btrfs quota groups right after mounting (btrfs only).
    pub fn btrfs_quota(mut self, enable: bool) -> Self {
        self.btrfs_quota = enable;
        self
    }

    /// Creates the image, attaches it, makes the filesystem and mounts it.
    pub fn build(self) -> io::Result<LoopFs> {
        let dir = scratch::scratch_dir("loopfs-")?;
        let image = dir.path().join("image");
        let mount_point = dir.path().join("mnt");
        std::fs::create_dir(&mount_point)?;
        File::create(&image)?.set_len(self.size_mib * 1024 * 1024)?;

        let device = attach_free_loop(&image)?;
        let device_path = device
            .path()
            .ok_or_else(|| io::Error::other("loop device has no path"))?;
        // From here on a failure must detach the device; build a LoopFs
        // early so its Drop does that.
        let mut fs = LoopFs {
            kind: self.kind,
            device: Some(device),
            device_path,
            image,
            mount_point,
            mounted: false,
            dir: Some(dir),
        };

        run(fs.kind.mkfs(&fs.device_path))?;
        let data = (!self.mount_options.is_empty()).then_some(self.mount_options.as_str());
        nix::mount::mount(
            Some(&fs.device_path),
            &fs.mount_point,
            Some(self.kind.fs_type()),
            MsFlags::empty(),
            data,
        )
        .map_err(|e| {
            io::Error::other(format!(
                "mount -t {} {} {} (options {:?}): {e}",
                self.kind.fs_type(),
                fs.device_path.display(),
                fs.mount_point.display(),
                self.mount_options
            ))
        })?;
        fs.mounted = true;
        if self.btrfs_quota {
            fs.enable_btrfs_quota()?;
        }
        Ok(fs)
    }
}

/// A filesystem on a loop device, mounted for the lifetime of the value.
#[derive(Debug)]
pub struct LoopFs {
    kind: FsKind,
    device: Option<LoopDevice>,
    device_path: PathBuf,
    image: PathBuf,
    mount_point: PathBuf,
    mounted: bool,
    /// Holds the image file and the mount point; removed last in Drop.
    dir: Option<TempDir>,
}

impl LoopFs {
    /// A builder with the default size (2 GiB sparse, plenty for the test
    /// images; only written blocks use disk).
    pub fn builder(kind: FsKind) -> LoopFsBuilder {
        LoopFsBuilder {
            kind,
            size_mib: 2048,
            mount_options: String::new(),
            btrfs_quota: false,
        }
    }

    /// A mounted filesystem of `kind` with the default size.
    pub fn new(kind: FsKind) -> io::Result<LoopFs> {
        Self::builder(kind).build()
    }

    pub fn btrfs() -> io::Result<LoopFs> {
        Self::new(FsKind::Btrfs)
    }

    pub fn xfs() -> io::Result<LoopFs> {
        Self::new(FsKind::Xfs)
    }

    pub fn ext4() -> io::Result<LoopFs> {
        Self::new(FsKind::Ext4)
    }

    pub fn kind(&self) -> FsKind {
        self.kind
    }

    /// Where the filesystem is mounted.
    pub fn path(&self) -> &Path {
        &self.mount_point
    }

    /// The loop device, e.g. `/dev/loop3`.
    pub fn device(&self) -> &Path {
        &self.device_path
    }

    /// The sparse backing file.
    pub fn image(&self) -> &Path {
        &self.image
    }

    /// Turns on btrfs quota groups (`btrfs quota enable`); the test harness
    /// may use the CLI, berth's driver itself uses ioctls.
    pub fn enable_btrfs_quota(&self) -> io::Result<()> {
        if self.kind != FsKind::Btrfs {
            return Err(io::Error::other("quota groups exist only on btrfs"));
        }
        let mut cmd = Command::new("btrfs");
        cmd.args(["quota", "enable"]).arg(&self.mount_point);
        run(cmd)
    }

    fn teardown(&mut self) {
        if self.mounted {
            // Anything a daemon left below the mount point goes first (lazily),
            // then the filesystem itself: cleanly if possible, so the loop
            // device is released now; lazily if something still holds it.
            let _ = mountinfo::unmount_all_below(&self.mount_point);
            if nix::mount::umount2(&self.mount_point, MntFlags::empty()).is_err() {
                let _ = nix::mount::umount2(&self.mount_point, MntFlags::MNT_DETACH);
            }
            self.mounted = false;
        }
        if let Some(device) = self.device.take() {
            // The device was attached with autoclear, so if a lazily unmounted
            // filesystem still holds it, the kernel detaches it when that goes.
            let _ = device.detach();
        }
        if let Some(dir) = self.dir.take() {
            let still_mounted = mountinfo::mounts_under(dir.path())
                .map(|m| !m.is_empty())
                .unwrap_or(true);
            if still_mounted {
                // Never recurse into a mounted filesystem to delete it.
                let kept = dir.keep();
                eprintln!(
                    "berth-testkit: {} is still mounted; leaving it",
                    kept.display()
                );
            }
        }
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Attaches `image` to a free loop device with autoclear set. Parallel tests
/// race for the same free device (LOOP_CTL_GET_FREE hands it to each of
/// them), so a busy device just means "ask again".
fn attach_free_loop(image: &Path) -> io::Result<LoopDevice> {
    let control = LoopControl::open()?;
    let mut last = None;
    for _ in 0..64 {
        let device = control.next_free()?;
        match device.with().autoclear(true).attach(image) {
            Ok(()) => return Ok(device),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free loop device")))
}

fn run(mut cmd: Command) -> io::Result<()> {
    let out = cmd
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{:?}: {e}", cmd.get_program())))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// A loop device and the file behind it, as `losetup -a` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopAttachment {
    pub device: PathBuf,
    pub backing_file: PathBuf,
}

/// Every attached loop device (from `/sys/block/loop*/loop/backing_file`).
pub fn attached_loops() -> io::Result<Vec<LoopAttachment>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/sys/block")? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(backing) = std::fs::read_to_string(entry.path().join("loop/backing_file")) else {
            continue; // not attached
        };
        found.push(LoopAttachment {
            device: PathBuf::from("/dev").join(&name),
            backing_file: PathBuf::from(backing.trim_end_matches('\n')),
        });
    }
    found.sort_by(|a, b| a.device.cmp(&b.device));
    Ok(found)
}

/// Loop devices whose backing file lies under `dir` — after a test, these
/// are leaks. (A deleted backing file shows as `path (deleted)`.)
pub fn loops_backed_under(dir: &Path) -> io::Result<Vec<LoopAttachment>> {
    Ok(attached_loops()?
        .into_iter()
        .filter(|l| l.backing_file.starts_with(dir))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        nix::unistd::Uid::effective().is_root()
    }

    #[test]
    fn each_filesystem_mounts_and_goes_away_cleanly() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        for kind in [FsKind::Btrfs, FsKind::Xfs, FsKind::Ext4] {
            let fs = LoopFs::new(kind).unwrap();
            let mnt = fs.path().to_path_buf();
            let image = fs.image().to_path_buf();
            let m = mountinfo::mounts_under(&mnt).unwrap();
            assert_eq!(m.len(), 1, "{kind:?}: {m:?}");
            assert_eq!(m[0].fs_type, kind.fs_type());
            std::fs::write(mnt.join("hello"), b"hi").unwrap();
            drop(fs);
            assert!(mountinfo::mounts_under(&mnt).unwrap().is_empty());
            assert!(!image.exists());
            assert!(loops_backed_under(image.parent().unwrap())
                .unwrap()
                .is_empty());
        }
    }

    #[test]
    fn busy_mount_is_detached_lazily() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        let fs = LoopFs::ext4().unwrap();
        let mnt = fs.path().to_path_buf();
        let image_dir = fs.image().parent().unwrap().to_path_buf();
        let held = File::create(mnt.join("held")).unwrap();
        drop(fs);
        assert!(mountinfo::mounts_under(&mnt).unwrap().is_empty());
        drop(held);
        // The loop device auto-clears once the lazily unmounted fs goes; the
        // kernel may finish that on a work queue, so allow it a moment.
        let mut left = loops_backed_under(&image_dir).unwrap();
        for _ in 0..100 {
            if left.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            left = loops_backed_under(&image_dir).unwrap();
        }
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn btrfs_quota_can_be_enabled() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        let fs = LoopFs::builder(FsKind::Btrfs)
            .btrfs_quota(true)
            .build()
            .unwrap();
        assert!(mountinfo::is_btrfs(fs.path()).unwrap());
        let out = Command::new("btrfs")
            .args(["qgroup", "show"])
            .arg(fs.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
}

//! Network namespaces berth makes for containers: created by a short-lived
//! thread that unshares its own namespace and bind-mounts it onto a file
//! under the exec root (so it outlives the daemon and can be re-adopted),
//! entered by other short-lived threads, and unmounted when done.
//! No thread that ever changed namespace goes back to a pool.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

/// Runs `f` on a new thread that has entered the namespace at `path`.
pub fn run_in<T: Send>(path: &Path, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let ns = File::open(path)?;
    std::thread::scope(|s| {
        s.spawn(move || {
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            f()
        })
        .join()
        .map_err(|_| io::Error::other("network namespace thread panicked"))?
    })
}

/// Makes a new namespace pinned at `path`, with loopback up and the
/// sysctls dockerd gives a container's own namespace.
pub fn create(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    File::create(path)?;
    let made = std::thread::scope(|s| {
        s.spawn(|| -> io::Result<()> {
            unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            mount(
                Some("/proc/thread-self/ns/net"),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(io::Error::from)?;
            // /proc/sys/net shows the namespace of the thread that opens it.
            for (key, value) in [
                ("ipv4/ping_group_range", "0 2147483647"),
                ("ipv4/ip_unprivileged_port_start", "0"),
            ] {
                let _ = std::fs::write(format!("/proc/sys/net/{key}"), value);
            }
            let mut nl = super::netlink::Netlink::open()?;
            if let Some(lo) = nl.link("lo")? {
                nl.set_up(lo.index, None)?;
            }
            Ok(())
        })
        .join()
        .map_err(|_| io::Error::other("network namespace thread panicked"))?
    });
    if made.is_err() {
        let _ = remove(path);
    }
    made
}

/// Unpins and forgets the namespace at `path`; its interfaces (and their
/// veth peers) go when nothing else holds it. Missing is fine.
pub fn remove(path: &Path) -> io::Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Drops the pin at `path` but keeps the file: processes inside keep the
/// namespace alive, and a restarted daemon pins it again from one of them.
pub fn unpin(path: &Path) {
    let _ = umount2(path, MntFlags::MNT_DETACH);
}

/// Pins the namespace of process `pid` at `path` again.
pub fn pin_from(path: &Path, pid: u32) -> io::Result<()> {
    if !path.exists() {
        File::create(path)?;
    }
    mount(
        Some(format!("/proc/{pid}/ns/net").as_str()),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(io::Error::from)
}

/// Pins at `path` the namespace runc made for process `pid` and brings its
/// loopback up. A `--userns-remap` container's namespace must be made this
/// way, inside its user namespace: one berthd made would belong to the
/// host's, where the container's root can neither mount sysfs nor `docker
/// exec` into it.
pub fn adopt(path: &Path, pid: u32) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    pin_from(path, pid)?;
    let up = run_in(path, || {
        let mut nl = super::netlink::Netlink::open()?;
        if let Some(lo) = nl.link("lo")? {
            nl.set_up(lo.index, None)?;
        }
        Ok(())
    });
    if up.is_err() {
        let _ = remove(path);
    }
    up
}

/// Whether `path` is a pinned namespace (a bind mount of an nsfs inode).
pub fn is_pinned(path: &Path) -> bool {
    const NSFS_MAGIC: u64 = 0x6e73_6673;
    rustix::fs::statfs(path).is_ok_and(|s| s.f_type as u64 == NSFS_MAGIC)
}

//! `ZfsPool`: a ZFS pool on a sparse file for one test, on kernel ZFS or on
//! zfs-fuse — started here when no ZFS answers ([`ZfsService`]), stopped
//! once the last user on the machine (test processes coordinate through
//! lock files) is gone and no other pool exists.
//! Mounts take berth's host-wide zfs-fuse mount lock ([`with_mount_lock`]).
//! Drop destroys the pool and deletes the file.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::scratch;

/// This process's uses of the ZFS service, and the shared lock on
/// [`USERS_LOCK`] it holds while there are any.
struct Service {
    users: usize,
    held: Option<Flock<File>>,
}

static SERVICE: Mutex<Service> = Mutex::new(Service {
    users: 0,
    held: None,
});

/// The lock berth's zfs driver takes around every mount on zfs-fuse
/// (`berth_storage::drivers::zfs::FUSE_MOUNT_LOCK`; the path must match).
/// zfs-fuse deadlocks all its mounts for good when two mounts happen at
/// once, so tests that make pools or mounted datasets in parallel (or while
/// a berthd mounts layers) take it too.
pub const FUSE_MOUNT_LOCK: &str = "/run/lock/berth-zfs-fuse-mount.lock";

/// Held exclusively while a test process starts or stops zfs-fuse: nextest
/// runs every test in its own process, and a second zfs-fuse started
/// beside the first exits 1.
const SERVICE_LOCK: &str = "/run/lock/berth-testkit-zfs-service.lock";

/// Held shared by every test process that uses the ZFS service; the last
/// one out (its exclusive try-lock succeeds) stops a zfs-fuse the testkit
/// started.
const USERS_LOCK: &str = "/run/lock/berth-testkit-zfs-users.lock";

/// Where a zfs-fuse the testkit started writes its pid (host-wide, like
/// zfs-fuse itself: one per machine).
const PIDFILE: &str = "/run/lock/berth-testkit-zfs-fuse.pid";

fn lock_file(path: &str, how: FlockArg) -> io::Result<Flock<File>> {
    std::fs::create_dir_all("/run/lock")?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    Flock::lock(file, how).map_err(|(_, e)| io::Error::from(e))
}

/// Runs `mount` holding [`FUSE_MOUNT_LOCK`].
pub fn with_mount_lock<T>(mount: impl FnOnce() -> T) -> io::Result<T> {
    let _held = lock_file(FUSE_MOUNT_LOCK, FlockArg::LockExclusive)?;
    Ok(mount())
}

fn run(program: &str, args: &[&str]) -> io::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{program}: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Whether ZFS answers (kernel module loaded or zfs-fuse running).
fn zfs_answers() -> bool {
    run("zpool", &["list", "-H", "-o", "name"]).is_ok()
}

/// Names of every imported pool.
pub fn pools() -> io::Result<Vec<String>> {
    Ok(run("zpool", &["list", "-H", "-o", "name"])?
        .lines()
        .map(str::to_string)
        .collect())
}

/// Starts zfs-fuse (the caller holds [`SERVICE_LOCK`]) and waits until it
/// answers. A zfs-fuse stopped just before lingers for seconds (a zombie
/// until pid 1 reaps it) and a new one exits 1 meanwhile: retried.
fn start_zfs_fuse() -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let _ = std::fs::remove_file(PIDFILE);
        let status = Command::new("zfs-fuse")
            .args(["--pidfile", PIDFILE, "--no-kstat-mount"])
            .status()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("zfs-fuse: {e} (install it: apt-get install -y zfs-fuse)"),
                )
            })?;
        if status.success() {
            break;
        }
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "zfs-fuse exited with {status} for 30 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while !zfs_answers() {
        if Instant::now() > deadline {
            return Err(io::Error::other("zfs-fuse did not answer within 15 s"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The zfs-fuse the testkit started, if it still runs.
fn started_zfs_fuse() -> Option<Pid> {
    let pid: i32 = std::fs::read_to_string(PIDFILE).ok()?.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "zfs-fuse").then(|| Pid::from_raw(pid))
}

fn stop_zfs_fuse(pid: Pid) {
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(20);
    while kill(pid, None).is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if kill(pid, None).is_ok() {
        let _ = kill(pid, Signal::SIGKILL);
    }
    let _ = std::fs::remove_file(PIDFILE);
}

/// A use of the ZFS service (kernel ZFS, or zfs-fuse started on first use):
/// for tests that make pools themselves, such as `berth storage setup`.
/// When the last use on the machine ends (across test processes), a
/// zfs-fuse the testkit started is stopped, unless a pool still needs it.
#[derive(Debug)]
pub struct ZfsService {
    _private: (),
}

impl ZfsService {
    /// Takes a use, starting zfs-fuse if no ZFS answers.
    pub fn acquire() -> io::Result<ZfsService> {
        let mut service = SERVICE.lock().unwrap_or_else(|e| e.into_inner());
        if service.users == 0 {
            let _starting = lock_file(SERVICE_LOCK, FlockArg::LockExclusive)?;
            if !zfs_answers() {
                start_zfs_fuse()?;
            }
            service.held = Some(lock_file(USERS_LOCK, FlockArg::LockShared)?);
        }
        service.users += 1;
        Ok(ZfsService { _private: () })
    }
}

impl Drop for ZfsService {
    fn drop(&mut self) {
        let mut service = SERVICE.lock().unwrap_or_else(|e| e.into_inner());
        service.users = service.users.saturating_sub(1);
        if service.users > 0 {
            return;
        }
        drop(service.held.take());
        let Ok(_stopping) = lock_file(SERVICE_LOCK, FlockArg::LockExclusive) else {
            return;
        };
        // Another process still using the service keeps its shared lock.
        let last = lock_file(USERS_LOCK, FlockArg::LockExclusiveNonblock).is_ok();
        if last && pools().map(|p| p.is_empty()).unwrap_or(true) {
            if let Some(pid) = started_zfs_fuse() {
                stop_zfs_fuse(pid);
            }
        }
    }
}

/// A pool on a sparse file, its root dataset mounted on a scratch dir.
#[derive(Debug)]
pub struct ZfsPool {
    name: String,
    image: PathBuf,
    mount_point: PathBuf,
    dir: Option<TempDir>,
    /// Dropped after the pool is destroyed (fields drop after `drop`).
    _service: ZfsService,
}

impl ZfsPool {
    /// A 1 GiB pool (sparse: only what is written uses disk).
    pub fn new() -> io::Result<ZfsPool> {
        Self::with_size_mib(1024)
    }

    /// A pool of `size_mib` (at least 128: ZFS refuses smaller vdevs).
    pub fn with_size_mib(size_mib: u64) -> io::Result<ZfsPool> {
        let service = ZfsService::acquire()?;
        Self::create(size_mib.max(128), service)
    }

    fn create(size_mib: u64, service: ZfsService) -> io::Result<ZfsPool> {
        let dir = scratch::scratch_dir("zpool-")?;
        let image = dir.path().join("pool.img");
        let mount_point = dir.path().join("mnt");
        std::fs::File::create(&image)?.set_len(size_mib * 1024 * 1024)?;
        let name = scratch::unique_name("berthtest").replace('-', "_");
        let (image_text, mount_text) = (path_str(&image)?, path_str(&mount_point)?);
        // cachefile=none: a pool a killed test leaves is not imported again
        // the next time zfs-fuse starts.
        with_mount_lock(|| {
            run(
                "zpool",
                &[
                    "create",
                    "-o",
                    "cachefile=none",
                    "-m",
                    mount_text,
                    &name,
                    image_text,
                ],
            )
        })??;
        Ok(ZfsPool {
            name,
            image,
            mount_point,
            dir: Some(dir),
            _service: service,
        })
    }

    /// The pool's name (also its root dataset's).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the root dataset is mounted.
    pub fn path(&self) -> &Path {
        &self.mount_point
    }

    /// The sparse file behind the pool.
    pub fn image(&self) -> &Path {
        &self.image
    }

    /// Creates `<pool>/<name>` with `-o` properties, e.g. `mountpoint=...`.
    pub fn create_dataset(&self, name: &str, properties: &[&str]) -> io::Result<String> {
        let full = format!("{}/{name}", self.name);
        let mut args = vec!["create"];
        for p in properties {
            args.extend(["-o", p]);
        }
        args.push(&full);
        // Mounted at once unless a property says otherwise.
        with_mount_lock(|| run("zfs", &args))??;
        Ok(full)
    }

    /// Every dataset, snapshot and clone in the pool (`zfs list -t all`),
    /// the root dataset included.
    pub fn datasets(&self) -> io::Result<Vec<String>> {
        Ok(run(
            "zfs",
            &["list", "-H", "-o", "name", "-t", "all", "-r", &self.name],
        )?
        .lines()
        .map(str::to_string)
        .collect())
    }

    /// `(name, origin)` of every filesystem in the pool; origin is `-` for
    /// one that is not a clone.
    pub fn origins(&self) -> io::Result<Vec<(String, String)>> {
        Ok(run(
            "zfs",
            &[
                "list",
                "-H",
                "-o",
                "name,origin",
                "-t",
                "filesystem",
                "-r",
                &self.name,
            ],
        )?
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect())
    }

    /// One property of a dataset, exact (`zfs get -Hp`).
    pub fn get(&self, dataset: &str, property: &str) -> io::Result<String> {
        Ok(
            run("zfs", &["get", "-Hp", "-o", "value", property, dataset])?
                .trim()
                .to_string(),
        )
    }
}

fn path_str(path: &Path) -> io::Result<&str> {
    path.to_str()
        .ok_or_else(|| io::Error::other(format!("{} is not UTF-8", path.display())))
}

impl Drop for ZfsPool {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match run("zpool", &["destroy", "-f", &self.name]) {
                Ok(_) => break,
                // zfs-fuse reports busy datasets for a while after unmounts.
                Err(e) if Instant::now() < deadline => {
                    eprintln!("berth-testkit: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => {
                    eprintln!("berth-testkit: leaving pool {}: {e}", self.name);
                    if let Some(dir) = self.dir.take() {
                        let _ = dir.keep();
                    }
                    break;
                }
            }
        }
        self.dir.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a mount answers within a few seconds (a hung FUSE request
    /// only yields to SIGKILL).
    fn answers(dir: &Path) -> bool {
        Command::new("timeout")
            .args(["-s", "KILL", "5", "mkdir"])
            .arg(dir.join("probe"))
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    #[test]
    fn pools_made_in_parallel_stay_mounted_and_answer() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        // Without the mount lock this hung zfs-fuse within a few rounds.
        for _ in 0..4 {
            let threads: Vec<_> = (0..3)
                .map(|_| std::thread::spawn(|| ZfsPool::with_size_mib(256).unwrap()))
                .collect();
            let pools: Vec<ZfsPool> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            for pool in &pools {
                assert!(answers(pool.path()), "{} does not answer", pool.name());
            }
        }
    }

    #[test]
    fn pool_comes_and_goes() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let pool = ZfsPool::with_size_mib(256).unwrap();
        let name = pool.name().to_string();
        let image = pool.image().to_path_buf();
        assert!(pools().unwrap().contains(&name));
        let ds = pool.create_dataset("a", &["mountpoint=legacy"]).unwrap();
        assert_eq!(pool.datasets().unwrap(), vec![name.clone(), ds]);
        std::fs::write(pool.path().join("hello"), b"hi").unwrap();
        drop(pool);
        assert!(!pools().unwrap_or_default().contains(&name));
        assert!(!image.exists());
    }
}

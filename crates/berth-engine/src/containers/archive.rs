//! `docker cp`: stat, read and write paths inside a container's filesystem
//! (volumes and binds included), never leaving it. Every lookup is made
//! relative to a handle on the container's root with `RESOLVE_IN_ROOT`,
//! so `..` and symlinks — absolute or relative — resolve as they would
//! for a process chrooted there: a running container is reached through
//! `/proc/<pid>/root` (its own mounts, exactly as it sees them); a stopped
//! one through its mounted writable layer, with its volumes and binds
//! mounted over it in a private mount namespace that dies with the request.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use berth_storage::archive::{in_root, pack_tree, unpack_tree, UnpackOptions};
use bollard_stubs::models::EventMessageTypeEnum;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use rustix::mount::{MountFlags, MountPropagationFlags};

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::images::BodyReader;
use crate::progress::{byte_channel, ByteStream};

/// What `HEAD/GET /containers/{id}/archive` reports about a path (the API
/// sends it base64-encoded in `X-Docker-Container-Path-Stat`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// Go `os.FileMode` bits, as the docker CLI decodes them.
    pub mode: u32,
    /// RFC 3339.
    pub mtime: String,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

/// What `docker cp` needs to know about a container.
#[derive(Debug, Clone, Default)]
pub struct ArchiveSubject {
    pub id: String,
    /// The init process while the container runs (or is paused).
    pub pid: Option<u32>,
    /// `HostConfig.ReadonlyRootfs`.
    pub readonly_rootfs: bool,
    /// `Config.User`, whose IDs `copyUIDGID` gives the new files.
    pub user: Option<String>,
    /// Its volumes and binds (not tmpfs: a copy never sees those, as with
    /// dockerd).
    pub mounts: Vec<ArchiveMount>,
    /// The attributes of its events (`name`, `image`, labels).
    pub event_attributes: HashMap<String, String>,
}

/// One volume or bind of an [`ArchiveSubject`].
#[derive(Debug, Clone, Default)]
pub struct ArchiveMount {
    /// Where it is in the container (`/data`).
    pub destination: String,
    /// The host path mounted there.
    pub source: PathBuf,
    pub writable: bool,
    /// The volume's name, for volumes.
    pub volume: Option<String>,
    pub propagation: String,
}

/// Go's `os.FileMode` bits the docker CLI decodes.
mod go_mode {
    pub const DIR: u32 = 1 << 31;
    pub const SYMLINK: u32 = 1 << 27;
    pub const DEVICE: u32 = 1 << 26;
    pub const NAMED_PIPE: u32 = 1 << 25;
    pub const SOCKET: u32 = 1 << 24;
    pub const SETUID: u32 = 1 << 23;
    pub const SETGID: u32 = 1 << 22;
    pub const CHAR_DEVICE: u32 = 1 << 21;
    pub const STICKY: u32 = 1 << 20;
}

/// A Linux `st_mode` as Go's `os.FileMode`.
fn go_file_mode(st_mode: u32) -> u32 {
    let mut mode = st_mode & 0o777;
    mode |= match FileType::from_raw_mode(st_mode) {
        FileType::Directory => go_mode::DIR,
        FileType::Symlink => go_mode::SYMLINK,
        FileType::BlockDevice => go_mode::DEVICE,
        FileType::CharacterDevice => go_mode::DEVICE | go_mode::CHAR_DEVICE,
        FileType::Fifo => go_mode::NAMED_PIPE,
        FileType::Socket => go_mode::SOCKET,
        _ => 0,
    };
    if st_mode & 0o4000 != 0 {
        mode |= go_mode::SETUID;
    }
    if st_mode & 0o2000 != 0 {
        mode |= go_mode::SETGID;
    }
    if st_mode & 0o1000 != 0 {
        mode |= go_mode::STICKY;
    }
    mode
}

/// A time as Go's `time.Time` marshals it (RFC 3339, nanoseconds without
/// trailing zeros).
fn go_time(secs: i64, nanos: i64) -> String {
    let t = chrono::DateTime::from_timestamp(secs, nanos.clamp(0, 999_999_999) as u32)
        .unwrap_or_default();
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    if nanos > 0 {
        let frac = format!("{:09}", nanos);
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// `path` cleaned as Go's `filepath.Clean` cleans it, made absolute.
fn clean_abs(path: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for comp in Path::new(path).components() {
        match comp {
            Component::Normal(c) => out.push(c),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// dockerd's reading of the `path` parameter: absolute and cleaned, but a
/// trailing `/` or `/.` kept, because they mean "the directory (a symlink
/// points to)" and "its contents". Returns the cleaned path, whether the
/// last component must be followed, and the name the archive gives it.
fn docker_path(raw: &str) -> (PathBuf, bool, String) {
    let cleaned = clean_abs(raw);
    let dot = raw == "." || raw.ends_with("/.");
    let slash = raw.ends_with('/');
    let base = if dot {
        ".".to_string()
    } else if cleaned == Path::new("/") {
        "/".to_string()
    } else {
        cleaned
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".into())
    };
    (cleaned, dot || slash, base)
}

/// A path found in the container: its parent directory handle and leaf
/// name (for `*at` calls), and where it is as the container sees it.
struct Located {
    parent: OwnedFd,
    leaf: OsString,
    /// Absolute in the container, symlinks resolved (but the leaf's own,
    /// unless the path asked for it to be followed).
    path: PathBuf,
    stat: Stat,
}

/// Why a lookup failed: the path is not there (404), or something else.
enum LookupError {
    Missing,
    Other(EngineError),
}

impl From<EngineError> for LookupError {
    fn from(e: EngineError) -> Self {
        LookupError::Other(e)
    }
}

fn errno_lookup(what: &Path, e: Errno) -> LookupError {
    match e {
        Errno::NOENT => LookupError::Missing,
        e => LookupError::Other(EngineError::Internal(format!(
            "lstat {}: {}",
            what.display(),
            std::io::Error::from(e)
        ))),
    }
}

/// Finds `cleaned` in the container: every symlink on the way resolved in
/// the container's root, the last one only when `follow`.
fn locate(root: BorrowedFd<'_>, cleaned: &Path, follow: bool) -> Result<Located, LookupError> {
    let resolved_parent;
    let leaf: OsString;
    if cleaned == Path::new("/") {
        resolved_parent = PathBuf::from("/");
        leaf = OsString::from(".");
    } else if follow {
        let full = in_root::resolve(root, cleaned).map_err(|e| errno_lookup(cleaned, e))?;
        match full.file_name() {
            Some(name) => {
                leaf = name.to_os_string();
                resolved_parent = full.parent().unwrap_or(Path::new("/")).to_path_buf();
            }
            None => {
                resolved_parent = PathBuf::from("/");
                leaf = OsString::from(".");
            }
        }
    } else {
        let parent = cleaned.parent().unwrap_or(Path::new("/"));
        resolved_parent = in_root::resolve(root, parent).map_err(|e| errno_lookup(cleaned, e))?;
        leaf = cleaned
            .file_name()
            .unwrap_or(OsStr::new("."))
            .to_os_string();
    }
    let parent = in_root::open(root, &resolved_parent, OFlags::PATH | OFlags::DIRECTORY)
        .map_err(|e| errno_lookup(cleaned, e))?;
    let stat = rustix::fs::statat(&parent, &leaf, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| errno_lookup(cleaned, e))?;
    let path = if leaf == "." {
        resolved_parent
    } else {
        resolved_parent.join(&leaf)
    };
    Ok(Located {
        parent,
        leaf,
        path,
        stat,
    })
}

/// The `PathStat` of `raw` and where it is.
fn stat_path(root: BorrowedFd<'_>, raw: &str) -> Result<(PathStat, Located), LookupError> {
    let (cleaned, follow, name) = docker_path(raw);
    let found = locate(root, &cleaned, follow)?;
    let st = &found.stat;
    let link_target = if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
        in_root::resolve(root, &found.path)
            .map_err(|e| errno_lookup(&cleaned, e))?
            .display()
            .to_string()
    } else {
        String::new()
    };
    let stat = PathStat {
        name,
        size: st.st_size,
        mode: go_file_mode(st.st_mode),
        mtime: go_time(st.st_mtime, st.st_mtime_nsec as i64),
        link_target,
    };
    Ok((stat, found))
}

/// dockerd's `checkWritablePath`: the innermost mount holding `path`
/// decides; outside every mount the root filesystem does.
fn check_writable(subject: &ArchiveSubject, path: &Path) -> Result<()> {
    let holder = subject
        .mounts
        .iter()
        .filter(|m| path.starts_with(clean_abs(&m.destination)))
        .max_by_key(|m| clean_abs(&m.destination).components().count());
    match holder {
        Some(m) if m.writable => Ok(()),
        Some(_) => Err(EngineError::InvalidParameter(
            "mounted volume is marked read-only".into(),
        )),
        None if subject.readonly_rootfs => Err(EngineError::InvalidParameter(
            "container rootfs is marked read-only".into(),
        )),
        None => Ok(()),
    }
}

/// Reads `/etc/<file>` of the container. It is untrusted: bounded in
/// size, and only a regular file — a FIFO planted there must not hang us.
fn read_etc(root: BorrowedFd<'_>, file: &str) -> String {
    use std::io::Read;
    let path = Path::new("/etc").join(file);
    let Ok(fd) = in_root::open(root, &path, OFlags::RDONLY | OFlags::NONBLOCK) else {
        return String::new();
    };
    match rustix::fs::fstat(&fd) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {}
        _ => return String::new(),
    }
    let mut text = String::new();
    let _ = std::fs::File::from(fd)
        .take(4 << 20)
        .read_to_string(&mut text);
    text
}

/// A numeric ID as dockerd accepts one (fits a signed 32-bit int).
fn numeric_id(s: &str) -> Option<u32> {
    s.parse::<u32>().ok().filter(|n| *n <= i32::MAX as u32)
}

/// `Config.User` (`name`, `uid`, `name:group`, `uid:gid`) to the IDs the
/// container's own `/etc/passwd` and `/etc/group` give it, as dockerd
/// resolves it for `copyUIDGID`.
fn container_user_ids(root: BorrowedFd<'_>, user: &str) -> Result<(u32, u32)> {
    let (user_part, group_part) = user.split_once(':').unwrap_or((user, ""));
    let passwd = read_etc(root, "passwd");
    let passwd_entry = |matches: &dyn Fn(&str, u32) -> bool| {
        passwd.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            let (name, uid, gid) = (f.first()?, f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?);
            matches(name, uid).then_some((uid, gid))
        })
    };
    let (mut uid, mut gid) = (0, 0);
    if !user_part.is_empty() {
        (uid, gid) = match numeric_id(user_part) {
            Some(id) => passwd_entry(&|_, u| u == id).unwrap_or((id, 0)),
            None => passwd_entry(&|n, _| n == user_part).ok_or_else(|| {
                EngineError::InvalidParameter(format!(
                    "failed to look up user {user_part:?} in container: no matching entries in passwd file"
                ))
            })?,
        };
    }
    if !group_part.is_empty() {
        gid = match numeric_id(group_part) {
            Some(id) => id,
            None => read_etc(root, "group")
                .lines()
                .find_map(|line| {
                    let f: Vec<&str> = line.split(':').collect();
                    (*f.first()? == group_part).then(|| f.get(2)?.parse().ok())?
                })
                .ok_or_else(|| {
                    EngineError::InvalidParameter(format!(
                        "failed to look up group {group_part:?} in container: no matching entries in group file"
                    ))
                })?,
        };
    }
    Ok((uid, gid))
}

fn not_found(path: &str, container: &str) -> EngineError {
    EngineError::NotFound(format!(
        "Could not find the file {path} in container {container}"
    ))
}

fn lookup_error(e: LookupError, path: &str, container: &str) -> EngineError {
    match e {
        LookupError::Missing => not_found(path, container),
        LookupError::Other(e) => e,
    }
}

fn view_err(what: &str, e: impl Into<std::io::Error>) -> EngineError {
    EngineError::io(format!("container filesystem: {what}"), e.into())
}

/// Inside a fresh private mount namespace (this thread's own), mounts
/// `mounts` over the container root `rootfs` and returns a handle on it.
/// Destinations are resolved inside the root and mounted through the
/// handle of what was found, so a symlink cannot redirect a mount onto the
/// host; read-only mounts are remounted read-only.
fn private_view(rootfs: &Path, mounts: &[(ArchiveMount, PathBuf)]) -> Result<OwnedFd> {
    // SAFETY: only the mount namespace (and with it the filesystem
    // context) is unshared; the fd table stays shared with every thread.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
        .map_err(|e| view_err("unshare mount namespace", e))?;
    // Nothing done here may propagate back to the host's mounts.
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
    )
    .map_err(|e| view_err("make / rslave", e))?;
    let root = berth_storage::archive::beneath::open_root(rootfs)?;
    let mut ordered: Vec<&(ArchiveMount, PathBuf)> = mounts.iter().collect();
    ordered.sort_by_key(|(m, _)| clean_abs(&m.destination).components().count());
    for (m, source) in ordered {
        let dest = clean_abs(&m.destination);
        let is_dir = std::fs::metadata(source)
            .map_err(|e| EngineError::io(format!("stat {}", source.display()), e))?
            .is_dir();
        create_mount_point(root.as_fd(), &dest, is_dir)?;
        let target = in_root::open(root.as_fd(), &dest, OFlags::PATH)
            .map_err(|e| view_err(&format!("open mount target {}", m.destination), e))?;
        let target_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&target));
        rustix::mount::mount_bind_recursive(source, target_path.as_str()).map_err(|e| {
            view_err(
                &format!("bind {} on {}", source.display(), m.destination),
                e,
            )
        })?;
        // A handle taken now is on the new mount itself: remount through it.
        let mounted = in_root::open(root.as_fd(), &dest, OFlags::PATH)
            .map_err(|e| view_err(&format!("open mount {}", m.destination), e))?;
        let mounted_path = format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&mounted)
        );
        if !m.writable {
            rustix::mount::mount_remount(
                mounted_path.as_str(),
                MountFlags::BIND | MountFlags::RDONLY,
                "",
            )
            .map_err(|e| view_err(&format!("make {} read-only", m.destination), e))?;
        }
        rustix::mount::mount_change(
            mounted_path.as_str(),
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        )
        .map_err(|e| view_err(&format!("make {} private", m.destination), e))?;
    }
    Ok(root)
}

/// Makes the mount point of a volume or bind if the image lacks it, as
/// dockerd (and later the runtime) does.
fn create_mount_point(root: BorrowedFd<'_>, dest: &Path, is_dir: bool) -> Result<()> {
    let resolved = in_root::resolve(root, dest).map_err(|e| view_err("resolve mount point", e))?;
    let mut current = in_root::open(root, Path::new("/"), OFlags::PATH | OFlags::DIRECTORY)
        .map_err(|e| view_err("open root", e))?;
    let parts: Vec<_> = resolved.components().skip(1).collect();
    for (i, comp) in parts.iter().enumerate() {
        let name = comp.as_os_str();
        let last = i + 1 == parts.len();
        let made = if last && !is_dir {
            rustix::fs::openat(
                &current,
                name,
                OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o755),
            )
            .map(drop)
        } else {
            rustix::fs::mkdirat(&current, name, Mode::from_raw_mode(0o755))
        };
        match made {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => {
                return Err(view_err(
                    &format!("create mount point {}", dest.display()),
                    e,
                ))
            }
        }
        if !last {
            current = rustix::fs::openat(
                &current,
                name,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| view_err(&format!("create mount point {}", dest.display()), e))?;
        }
    }
    Ok(())
}

/// The root of running container `id` through its init process `pid`.
/// The root is opened first and the process checked after: were the pid
/// recycled meanwhile, by a process outside the container's cgroup (whose
/// path holds the container ID), the handle — possibly on the host's own
/// root — is dropped.
fn running_root(pid: u32, id: &str) -> Option<OwnedFd> {
    use std::io::Read;
    let root = rustix::fs::open(
        format!("/proc/{pid}/root").as_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let mut cgroups = String::new();
    std::fs::File::open(format!("/proc/{pid}/cgroup"))
        .ok()?
        .take(64 << 10)
        .read_to_string(&mut cgroups)
        .ok()?;
    (!id.is_empty() && cgroups.lines().any(|l| l.contains(id))).then_some(root)
}

impl Engine {
    /// What `docker cp` needs to know about container `name` (ID, name or
    /// ID prefix), from the containers module's record.
    pub(crate) fn archive_subject(&self, name: &str) -> Result<ArchiveSubject> {
        let c = self.containers.resolve(name)?.snapshot();
        let pid = (c.state.status.is_alive() && c.state.pid > 0).then_some(c.state.pid);
        let mounts = c
            .mounts
            .iter()
            .filter(|m| m.kind == "bind" || m.kind == "volume")
            .map(|m| ArchiveMount {
                destination: m.destination.clone(),
                source: m.source.clone(),
                writable: !m.read_only,
                volume: (m.kind == "volume").then(|| m.name.clone()).flatten(),
                propagation: m.propagation.clone(),
            })
            .collect();
        let mut event_attributes = c.config.labels.clone().unwrap_or_default();
        event_attributes.insert("image".into(), c.config.image.clone().unwrap_or_default());
        event_attributes.insert("name".into(), c.short_name().to_string());
        Ok(ArchiveSubject {
            id: c.id.clone(),
            pid,
            readonly_rootfs: c.host_config.readonly_rootfs.unwrap_or(false),
            user: c.config.user.clone().filter(|u| !u.is_empty()),
            mounts,
            event_attributes,
        })
    }

    /// Runs `work` with a handle on the container's root as `docker cp`
    /// sees it. Blocking.
    fn with_container_root<T: Send>(
        &self,
        subject: &ArchiveSubject,
        work: impl FnOnce(BorrowedFd<'_>) -> Result<T> + Send,
    ) -> Result<T> {
        if let Some(pid) = subject.pid {
            match running_root(pid, &subject.id) {
                Some(root) => return work(root.as_fd()),
                // It exited (or the record is stale): its files are in its
                // writable layer.
                None => tracing::debug!("container {}: pid {pid} is gone", subject.id),
            }
        }
        let rootfs = self.layers.mount_rw(&subject.id)?;
        // Volumes whose options mount something are mounted for the view,
        // with dockerd's mount/unmount events.
        let mut mounts = Vec::new();
        let mut mounted_volumes = Vec::new();
        let mut setup = Ok(());
        for m in &subject.mounts {
            let source = match &m.volume {
                Some(v) => match self.volume_mount(
                    v,
                    &subject.id,
                    &m.destination,
                    m.writable,
                    &m.propagation,
                ) {
                    Ok(p) => {
                        mounted_volumes.push(v.clone());
                        p
                    }
                    Err(e) => {
                        setup = Err(e);
                        break;
                    }
                },
                None => m.source.clone(),
            };
            mounts.push((m.clone(), source));
        }
        let result = setup.and_then(|()| {
            // unshare() changes the calling thread only: a thread of our
            // own carries the namespace and ends with it.
            std::thread::scope(|s| {
                s.spawn(|| work(private_view(&rootfs, &mounts)?.as_fd()))
                    .join()
                    .unwrap_or_else(|_| {
                        Err(EngineError::Internal("docker cp worker panicked".into()))
                    })
            })
        });
        for v in mounted_volumes {
            if let Err(e) = self.volume_unmount(&v, &subject.id) {
                tracing::warn!("volume {v}: {e}");
            }
        }
        if let Err(e) = self.layers.unmount_rw(&subject.id) {
            tracing::warn!("unmounting {}: {e}", subject.id);
        }
        result
    }

    /// The stat of `path` in `subject`. Blocking.
    pub(crate) fn archive_stat_blocking(
        &self,
        subject: &ArchiveSubject,
        name: &str,
        path: &str,
    ) -> Result<PathStat> {
        self.with_container_root(subject, |root| {
            stat_path(root, path)
                .map(|(stat, _)| stat)
                .map_err(|e| lookup_error(e, path, name))
        })
    }

    /// Writes the tar of `path` in `subject` to `out`, after handing its
    /// stat to `on_stat` (not called when the path cannot be found).
    /// Blocking.
    pub(crate) fn archive_get_blocking(
        &self,
        subject: &ArchiveSubject,
        name: &str,
        path: &str,
        on_stat: impl FnOnce(PathStat) + Send,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<()> {
        self.with_container_root(subject, |root| {
            let (stat, found) = stat_path(root, path).map_err(|e| lookup_error(e, path, name))?;
            let entry = stat.name.clone();
            on_stat(stat);
            pack_tree(
                found.parent.as_fd(),
                &found.leaf,
                &entry,
                out,
                self.layers.id_map(),
            )?;
            Ok(())
        })
    }

    /// Extracts the tar (plain, gzip or zstd) `input` into the directory
    /// `path` of `subject`. Blocking.
    pub(crate) fn archive_put_blocking(
        &self,
        subject: &ArchiveSubject,
        name: &str,
        path: &str,
        input: &mut (dyn std::io::Read + Send),
        no_overwrite_dir_non_dir: bool,
        copy_uid_gid: bool,
    ) -> Result<()> {
        self.with_container_root(subject, |root| {
            let (_, mut tar) = berth_storage::archive::decompress(input)?;
            // The destination is followed to the end: extracting "into" a
            // symlink to a directory extracts into that directory.
            let cleaned = clean_abs(path);
            let found = locate(root, &cleaned, true).map_err(|e| lookup_error(e, path, name))?;
            if FileType::from_raw_mode(found.stat.st_mode) != FileType::Directory {
                return Err(EngineError::InvalidParameter(
                    "extraction point is not a directory".into(),
                ));
            }
            check_writable(subject, &found.path)?;
            let chown = match (&subject.user, copy_uid_gid) {
                (Some(user), true) => Some(container_user_ids(root, user)?),
                _ => None,
            };
            let dest = rustix::fs::openat(
                &found.parent,
                &found.leaf,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| view_err("open extraction point", e))?;
            let opts = UnpackOptions {
                no_overwrite_dir_non_dir,
                chown,
                dest_name: found.path.display().to_string(),
                ids: self.layers.id_map().clone(),
            };
            unpack_tree(dest.as_fd(), &mut tar, &opts)?;
            Ok(())
        })
    }

    fn publish_archive_event(&self, subject: &ArchiveSubject, action: &str) {
        self.events.publish(
            EventMessageTypeEnum::CONTAINER,
            action,
            &subject.id,
            subject.event_attributes.clone(),
        );
    }

    /// `HEAD /containers/{id}/archive?path=`.
    pub async fn archive_stat(self: &Arc<Self>, id: &str, path: &str) -> Result<PathStat> {
        let subject = self.archive_subject(id)?;
        let engine = Arc::clone(self);
        let (name, path) = (id.to_string(), path.to_string());
        tokio::task::spawn_blocking(move || engine.archive_stat_blocking(&subject, &name, &path))
            .await
            .map_err(|e| EngineError::Internal(format!("docker cp worker: {e}")))?
    }

    /// `GET /containers/{id}/archive?path=`: the stat, and the tar as it is
    /// read. Errors found before the first byte (404, 400) are returned;
    /// later ones cut the stream.
    pub async fn archive_get(
        self: &Arc<Self>,
        id: &str,
        path: &str,
    ) -> Result<(PathStat, ByteStream)> {
        let subject = self.archive_subject(id)?;
        let engine = Arc::clone(self);
        let (name, path) = (id.to_string(), path.to_string());
        let (stat_tx, stat_rx) = tokio::sync::oneshot::channel::<Result<PathStat>>();
        let (mut writer, stream) = byte_channel();
        let worker_subject = subject.clone();
        tokio::task::spawn_blocking(move || {
            let mut stat_tx = Some(stat_tx);
            let on_stat = |stat: PathStat| {
                if let Some(tx) = stat_tx.take() {
                    let _ = tx.send(Ok(stat));
                }
            };
            let result =
                engine.archive_get_blocking(&worker_subject, &name, &path, on_stat, &mut writer);
            if let Err(e) = result {
                match stat_tx.take() {
                    // Nothing was sent yet: the error is the response.
                    Some(tx) => {
                        let _ = tx.send(Err(e));
                    }
                    None => writer.fail(std::io::Error::other(e.to_string())),
                }
            }
        });
        let stat = stat_rx
            .await
            .map_err(|_| EngineError::Internal("docker cp worker ended early".into()))??;
        self.publish_archive_event(&subject, "archive-path");
        Ok((stat, stream))
    }

    /// `PUT /containers/{id}/archive?path=&noOverwriteDirNonDir=&copyUIDGID=`.
    pub async fn archive_put(
        self: &Arc<Self>,
        id: &str,
        path: &str,
        body: BodyReader,
        no_overwrite_dir_non_dir: bool,
        copy_uid_gid: bool,
    ) -> Result<()> {
        let handle = self.containers.resolve(id)?;
        // Like dockerd's container lock: no start, stop or removal while
        // files go in.
        let _op = handle.op.lock().await;
        let subject = self.archive_subject(&handle.id)?;
        let engine = Arc::clone(self);
        let (name, path) = (id.to_string(), path.to_string());
        let mut input = tokio_util::io::SyncIoBridge::new(body);
        let worker_subject = subject.clone();
        tokio::task::spawn_blocking(move || {
            engine.archive_put_blocking(
                &worker_subject,
                &name,
                &path,
                &mut input,
                no_overwrite_dir_non_dir,
                copy_uid_gid,
            )
        })
        .await
        .map_err(|e| EngineError::Internal(format!("docker cp worker: {e}")))??;
        self.publish_archive_event(&subject, "extract-to-dir");
        Ok(())
    }
}

#[cfg(test)]
mod tests;

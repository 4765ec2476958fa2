//! The one seam between the sampler and the kernel's cgroup interface:
//! [`CgroupReader`], implemented for v1 (`cgroup_v1`) and v2 (`cgroup_v2`)
//! and chosen once at start from what is mounted at /sys/fs/cgroup. Also
//! where a container's cgroup is: its init process's `/proc/<pid>/cgroup`,
//! else the path runc was given (`/berth/<id>` or the CgroupParent).

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{Mode, OFlags};

use super::response::{BlkioStats, CpuStats, MemoryStats, PidsStats};

/// A container's cgroup path per controller, relative to each hierarchy's
/// root; the key `""` is the cgroup v2 (unified) path.
pub type ControllerPaths = BTreeMap<String, String>;

/// What one read of a container's cgroup gives (CPU without the host's
/// usage, which the sampler reads once per tick for everyone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupSample {
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub blkio: BlkioStats,
    pub pids: PidsStats,
    /// Processes the kernel's OOM killer killed in the cgroup (v1
    /// `memory.oom_control`, v2 `memory.events` `oom_kill`), for
    /// `container_oom_events_total`; not part of dockerd's stats body.
    pub oom_kills: u64,
}

/// An open cgroup directory (an `O_PATH` descriptor). Files are opened
/// relative to it, so each read walks one path component instead of the
/// seven of `/sys/fs/cgroup/memory/berth/<id>/memory.stat`: with a
/// hundred containers read every second, path walks were a third of the
/// sampler's CPU time. A removed cgroup's directory fails every read.
#[derive(Debug, Clone)]
pub struct CgroupDir(Arc<OwnedFd>);

impl CgroupDir {
    /// Opens `path`; `None` when it is not a directory (gone).
    pub fn open(path: &Path) -> Option<CgroupDir> {
        rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()
        .map(|fd| CgroupDir(Arc::new(fd)))
    }

    /// The whole of `file` in this directory. Read into a page-sized
    /// buffer without asking the file's size first (kernfs files all
    /// claim 4096 bytes; the `fstat` was one more system call per read).
    pub fn read(&self, file: &str) -> Option<String> {
        let fd = rustix::fs::openat(
            &*self.0,
            file,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let mut f = std::fs::File::from(fd);
        let mut buf = Vec::with_capacity(4096);
        loop {
            let len = buf.len();
            if buf.capacity() - len < 1024 {
                buf.reserve(4096);
            }
            buf.resize(buf.capacity(), 0);
            match f.read(&mut buf[len..]) {
                Ok(0) => {
                    buf.truncate(len);
                    break;
                }
                Ok(n) => buf.truncate(len + n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => buf.truncate(len),
                Err(_) => return None,
            }
        }
        String::from_utf8(buf).ok()
    }
}

/// A container's open cgroup directories per controller (`""`: v2).
pub type ControllerDirs = BTreeMap<String, CgroupDir>;

/// Reads container cgroups of one cgroup version.
pub trait CgroupReader: Send + Sync {
    /// 1 or 2, for `/info`-style reporting and the debug dump.
    fn version(&self) -> u8;

    /// Opens the directories of the cgroup at `paths` that reads need;
    /// the sampler keeps them for as long as the container's process runs.
    fn open(&self, paths: &ControllerPaths) -> ControllerDirs;

    /// Reads the cgroup behind `dirs`. Missing files leave their fields
    /// zero (a controller may not be mounted); `None` when the cgroup is
    /// gone. `machine_memory` caps the memory limit, as dockerd reports it.
    /// With `prev` (the container's previous sample), the slow-moving
    /// fields — limits, the memory high-water mark, failcnt, OOM kills —
    /// are taken from it instead of read: the sampler reads them fully on
    /// one tick in [`FULL_READ_EVERY`].
    fn read_dirs(
        &self,
        dirs: &ControllerDirs,
        machine_memory: u64,
        prev: Option<&CgroupSample>,
    ) -> Option<CgroupSample>;

    /// The pids in the cgroup (its `cgroup.procs`), for the dashboard's
    /// process table; empty when the cgroup is gone.
    fn procs(&self, dirs: &ControllerDirs) -> Vec<u32>;

    /// Opens and reads at once.
    fn read(&self, paths: &ControllerPaths, machine_memory: u64) -> Option<CgroupSample> {
        self.read_dirs(&self.open(paths), machine_memory, None)
    }
}

/// Every how many ticks the slow-moving files are read (5 s at 1 s): a
/// third fewer files opened per container on the other ticks.
pub const FULL_READ_EVERY: u64 = 5;

/// The fields a partial read carries over from the previous sample.
#[derive(Debug, Clone, Copy, Default)]
pub struct SlowFields {
    pub memory_limit: u64,
    pub max_usage: u64,
    pub failcnt: u64,
    pub oom_kills: u64,
    pub pids_limit: u64,
}

impl SlowFields {
    pub fn of(s: &CgroupSample) -> SlowFields {
        SlowFields {
            memory_limit: s.memory.limit,
            max_usage: s.memory.max_usage,
            failcnt: s.memory.failcnt,
            oom_kills: s.oom_kills,
            pids_limit: s.pids.limit,
        }
    }
}

/// A `cgroup.procs` file's pids.
pub fn read_procs(dir: &CgroupDir) -> Vec<u32> {
    dir.read("cgroup.procs")
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;

/// The reader for this host: v2 when /sys/fs/cgroup is cgroup2, else v1
/// with the controllers' mount points from /proc/self/mountinfo.
pub fn detect() -> Box<dyn CgroupReader> {
    let root = Path::new("/sys/fs/cgroup");
    let unified = rustix::fs::statfs(root)
        .map(|st| st.f_type as u64 == CGROUP2_SUPER_MAGIC)
        .unwrap_or(false);
    if unified {
        Box::new(super::cgroup_v2::V2Reader::new(root.to_path_buf()))
    } else {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts = v1_mounts(&mountinfo);
        if mounts.is_empty() {
            // No mountinfo (unusual): assume the conventional layout.
            for c in ["cpu", "cpuacct", "memory", "blkio", "pids"] {
                mounts.insert(c.to_string(), (root.join(c), "/".to_string()));
            }
        }
        Box::new(super::cgroup_v1::V1Reader::new(mounts))
    }
}

/// cgroup v1 controllers → (mount point, root of the hierarchy there),
/// from mountinfo lines such as
/// `35 25 0:30 / /sys/fs/cgroup/memory rw,... shared:15 - cgroup cgroup rw,memory`.
pub fn v1_mounts(mountinfo: &str) -> BTreeMap<String, (PathBuf, String)> {
    let mut out = BTreeMap::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut rf = right.split_whitespace();
        if rf.next() != Some("cgroup") {
            continue;
        }
        let _source = rf.next();
        let options = rf.next().unwrap_or("");
        let lf: Vec<&str> = left.split_whitespace().collect();
        let (Some(root), Some(mount_point)) = (lf.get(3), lf.get(4)) else {
            continue;
        };
        for opt in options.split(',') {
            if matches!(opt, "cpu" | "cpuacct" | "memory" | "blkio" | "pids") {
                out.entry(opt.to_string())
                    .or_insert_with(|| (PathBuf::from(unescape(mount_point)), unescape(root)));
            }
        }
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/<pid>/cgroup`: `4:memory:/berth/<id>`, `2:cpu,cpuacct:/x`,
/// `0::/berth/<id>` (v2, key `""`).
pub fn parse_proc_cgroup(text: &str) -> ControllerPaths {
    let mut out = ControllerPaths::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if ctrls.is_empty() {
            out.insert(String::new(), path.to_string());
        } else {
            for c in ctrls.split(',') {
                out.insert(c.to_string(), path.to_string());
            }
        }
    }
    out
}

/// Where the container whose init is `pid` has its cgroups; `fallback`
/// (the cgroupsPath runc was given) when the process cannot be read.
pub fn locate(pid: u32, fallback: &str) -> ControllerPaths {
    if pid > 0 {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) {
            let paths = parse_proc_cgroup(&text);
            if !paths.is_empty() {
                return paths;
            }
        }
    }
    ["", "cpu", "cpuacct", "memory", "blkio", "pids"]
        .into_iter()
        .map(|c| (c.to_string(), fallback.to_string()))
        .collect()
}

/// `dir/file` as a trimmed string; `None` when unreadable.
pub fn read_str(dir: &CgroupDir, file: &str) -> Option<String> {
    dir.read(file).map(|s| s.trim().to_string())
}

/// `dir/file` as one number; `max` reads as `max_value`.
pub fn read_u64(dir: &CgroupDir, file: &str, max_value: u64) -> Option<u64> {
    let s = read_str(dir, file)?;
    if s == "max" {
        return Some(max_value);
    }
    s.parse().ok()
}

/// A flat-keyed file (`memory.stat`, `cpu.stat`): `key value` per line.
pub fn read_keyed(dir: &CgroupDir, file: &str) -> BTreeMap<String, u64> {
    dir.read(file).map(|t| parse_keyed(&t)).unwrap_or_default()
}

pub fn parse_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let k = f.next()?;
            let v = f.next()?.parse().ok()?;
            Some((k.to_string(), v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_cgroup_v1_and_v2() {
        let text = "9:name=systemd:/\n4:memory:/berth/abc\n2:cpu,cpuacct:/berth/abc\n0::/\n";
        let p = parse_proc_cgroup(text);
        assert_eq!(p["memory"], "/berth/abc");
        assert_eq!(p["cpu"], "/berth/abc");
        assert_eq!(p["cpuacct"], "/berth/abc");
        assert_eq!(p[""], "/");
        assert_eq!(p["name=systemd"], "/");
        let p = parse_proc_cgroup("0::/berth/def\n");
        assert_eq!(p[""], "/berth/def");
    }

    #[test]
    fn fallback_location_names_every_controller() {
        let p = locate(0, "/berth/abc");
        assert_eq!(p["memory"], "/berth/abc");
        assert_eq!(p[""], "/berth/abc");
    }

    #[test]
    fn finds_v1_mounts_including_comounted_controllers() {
        let mi = "\
35 25 0:30 / /sys/fs/cgroup/memory rw,nosuid shared:15 - cgroup cgroup rw,memory
36 25 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:16 - cgroup cgroup rw,cpu,cpuacct
37 25 0:32 /docker /sys/fs/cgroup/pids rw shared:17 - cgroup cgroup rw,pids
38 25 0:33 / /sys/fs/cgroup/unified rw shared:18 - cgroup2 cgroup2 rw
39 25 0:34 / /sys/fs/cgroup/my\\040dir rw shared:19 - cgroup cgroup rw,blkio
";
        let m = v1_mounts(mi);
        assert_eq!(m["memory"].0, PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(m["cpu"].0, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(m["cpuacct"].0, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(m["pids"].1, "/docker");
        assert_eq!(m["blkio"].0, PathBuf::from("/sys/fs/cgroup/my dir"));
        assert_eq!(m.len(), 5);
    }

    #[test]
    fn keyed_files_parse() {
        let k = parse_keyed("usage_usec 100\nuser_usec 60\nbad\nx y\n");
        assert_eq!(k["usage_usec"], 100);
        assert_eq!(k["user_usec"], 60);
        assert_eq!(k.len(), 2);
    }
}

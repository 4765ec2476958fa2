//! cgroup v1: one hierarchy per controller. CPU from `cpuacct.usage`,
//! `cpuacct.usage_percpu`, `cpuacct.stat` (ticks) and `cpu.stat`
//! (throttling); memory from `memory.*` with dockerd's fixed `stats` keys;
//! blkio from the CFQ files when the kernel has them, else the throttle
//! files (as containerd reads them); pids from `pids.*`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::cgroup::{
    read_keyed, read_procs, read_str, read_u64, CgroupDir, CgroupReader, CgroupSample,
    ControllerDirs, ControllerPaths, SlowFields,
};
use super::response::{
    BlkioStatEntry, BlkioStats, CpuStats, CpuUsage, MemoryStats, PidsStats, ThrottlingData,
};

/// USER_HZ: `cpuacct.stat` counts in these (fixed at 100 on Linux).
const CLOCK_TICKS: u64 = 100;

/// The `memory_stats.stats` keys dockerd reports on v1, all of them even
/// when the kernel lacks one (then 0).
const MEMORY_KEYS: [&str; 32] = [
    "cache",
    "rss",
    "rss_huge",
    "mapped_file",
    "dirty",
    "writeback",
    "pgpgin",
    "pgpgout",
    "pgfault",
    "pgmajfault",
    "inactive_anon",
    "active_anon",
    "inactive_file",
    "active_file",
    "unevictable",
    "hierarchical_memory_limit",
    "hierarchical_memsw_limit",
    "total_cache",
    "total_rss",
    "total_rss_huge",
    "total_mapped_file",
    "total_dirty",
    "total_writeback",
    "total_pgpgin",
    "total_pgpgout",
    "total_pgfault",
    "total_pgmajfault",
    "total_inactive_anon",
    "total_active_anon",
    "total_inactive_file",
    "total_active_file",
    "total_unevictable",
];

/// Reads v1 hierarchies mounted at the given points.
pub struct V1Reader {
    /// controller → (mount point, hierarchy root as mounted).
    mounts: BTreeMap<String, (PathBuf, String)>,
    /// Whether the kernel has CFQ's blkio files (decided at the first
    /// read: the same for every cgroup of a boot).
    cfq: std::sync::OnceLock<bool>,
}

/// The v1 controllers read.
const CONTROLLERS: [&str; 5] = ["cpu", "cpuacct", "memory", "blkio", "pids"];

impl V1Reader {
    pub fn new(mounts: BTreeMap<String, (PathBuf, String)>) -> Self {
        V1Reader {
            mounts,
            cfq: std::sync::OnceLock::new(),
        }
    }

    /// The directory of `controller` for the container.
    fn dir(&self, paths: &ControllerPaths, controller: &str) -> Option<PathBuf> {
        let (mount, root) = self.mounts.get(controller)?;
        let path = paths.get(controller)?;
        // /proc/<pid>/cgroup names the path from the hierarchy's root; a
        // mount of a sub-tree (nested daemons) shows only what is below.
        let rel = path
            .strip_prefix(root.trim_end_matches('/'))
            .unwrap_or(path)
            .trim_start_matches('/');
        Some(mount.join(rel))
    }
}

impl CgroupReader for V1Reader {
    fn version(&self) -> u8 {
        1
    }

    fn open(&self, paths: &ControllerPaths) -> ControllerDirs {
        CONTROLLERS
            .iter()
            .filter_map(|c| Some((c.to_string(), CgroupDir::open(&self.dir(paths, c)?)?)))
            .collect()
    }

    fn read_dirs(
        &self,
        dirs: &ControllerDirs,
        machine_memory: u64,
        prev: Option<&CgroupSample>,
    ) -> Option<CgroupSample> {
        let memory_dir = dirs.get("memory");
        let cpuacct_dir = dirs.get("cpuacct");
        let slow = prev.map(SlowFields::of);
        // The cgroup is gone once its memory (or cpuacct) usage no longer
        // reads.
        let memory = match memory_dir {
            Some(d) => read_memory(d, machine_memory, slow)?,
            None => {
                cpuacct_dir?.read("cpuacct.usage")?;
                MemoryStats::default()
            }
        };
        let oom_kills = match (slow, memory_dir) {
            (Some(s), _) => s.oom_kills,
            (None, Some(d)) => read_keyed(d, "memory.oom_control")
                .get("oom_kill")
                .copied()
                .unwrap_or(0),
            (None, None) => 0,
        };
        Some(CgroupSample {
            cpu: read_cpu(cpuacct_dir, dirs.get("cpu")),
            memory,
            blkio: dirs
                .get("blkio")
                .map(|d| {
                    let cfq = *self
                        .cfq
                        .get_or_init(|| d.read("blkio.io_serviced_recursive").is_some());
                    read_blkio(d, cfq)
                })
                .unwrap_or_default(),
            pids: dirs
                .get("pids")
                .map(|d| PidsStats {
                    current: read_u64(d, "pids.current", 0).unwrap_or(0),
                    limit: match slow {
                        Some(s) => s.pids_limit,
                        None => read_u64(d, "pids.max", 0).unwrap_or(0),
                    },
                })
                .unwrap_or_default(),
            oom_kills,
        })
    }

    fn procs(&self, dirs: &ControllerDirs) -> Vec<u32> {
        // Any controller the container is in lists the same processes.
        ["pids", "memory", "cpuacct"]
            .iter()
            .filter_map(|c| dirs.get(*c))
            .map(read_procs)
            .find(|p| !p.is_empty())
            .unwrap_or_default()
    }
}

fn read_cpu(cpuacct: Option<&CgroupDir>, cpu: Option<&CgroupDir>) -> CpuStats {
    let mut stats = CpuStats::default();
    if let Some(d) = cpuacct {
        let acct = read_keyed(d, "cpuacct.stat");
        let ns = |k: &str| acct.get(k).copied().unwrap_or(0) * (1_000_000_000 / CLOCK_TICKS);
        stats.cpu_usage = CpuUsage {
            total_usage: read_u64(d, "cpuacct.usage", 0).unwrap_or(0),
            percpu_usage: read_str(d, "cpuacct.usage_percpu")
                .map(|s| {
                    s.split_whitespace()
                        .filter_map(|v| v.parse().ok())
                        .collect()
                })
                .unwrap_or_default(),
            usage_in_kernelmode: ns("system"),
            usage_in_usermode: ns("user"),
        };
    }
    if let Some(d) = cpu {
        let s = read_keyed(d, "cpu.stat");
        let get = |k: &str| s.get(k).copied().unwrap_or(0);
        stats.throttling_data = ThrottlingData {
            periods: get("nr_periods"),
            throttled_periods: get("nr_throttled"),
            throttled_time: get("throttled_time"),
        };
    }
    stats
}

/// `None` when the cgroup is gone (its usage no longer reads).
fn read_memory(
    d: &CgroupDir,
    machine_memory: u64,
    slow: Option<SlowFields>,
) -> Option<MemoryStats> {
    let usage = read_u64(d, "memory.usage_in_bytes", 0)?;
    let raw = read_keyed(d, "memory.stat");
    let stats = MEMORY_KEYS
        .iter()
        .map(|k| (k.to_string(), raw.get(*k).copied().unwrap_or(0)))
        .collect();
    let (limit, max_usage, failcnt) = match slow {
        Some(s) => (s.memory_limit, s.max_usage, s.failcnt),
        None => {
            let mut limit = read_u64(d, "memory.limit_in_bytes", u64::MAX).unwrap_or(0);
            if machine_memory > 0 && limit > machine_memory {
                limit = machine_memory;
            }
            (
                limit,
                read_u64(d, "memory.max_usage_in_bytes", 0).unwrap_or(0),
                read_u64(d, "memory.failcnt", 0).unwrap_or(0),
            )
        }
    };
    Some(MemoryStats {
        usage,
        max_usage,
        stats,
        failcnt,
        limit,
    })
}

fn read_blkio(d: &CgroupDir, cfq: bool) -> BlkioStats {
    let read = |name: &str| Some(read_blkio_file(d, &format!("blkio.{name}")));
    // CFQ's files, on kernels that still have them; otherwise only the
    // throttle counters exist (containerd's fallback).
    if cfq {
        BlkioStats {
            io_service_bytes_recursive: read("io_service_bytes_recursive"),
            io_serviced_recursive: read("io_serviced_recursive"),
            io_queue_recursive: read("io_queued_recursive"),
            io_service_time_recursive: read("io_service_time_recursive"),
            io_wait_time_recursive: read("io_wait_time_recursive"),
            io_merged_recursive: read("io_merged_recursive"),
            io_time_recursive: read("time_recursive"),
            sectors_recursive: read("sectors_recursive"),
        }
    } else {
        BlkioStats {
            io_service_bytes_recursive: read("throttle.io_service_bytes"),
            io_serviced_recursive: read("throttle.io_serviced"),
            io_queue_recursive: Some(Vec::new()),
            io_service_time_recursive: Some(Vec::new()),
            io_wait_time_recursive: Some(Vec::new()),
            io_merged_recursive: Some(Vec::new()),
            io_time_recursive: Some(Vec::new()),
            sectors_recursive: Some(Vec::new()),
        }
    }
}

fn read_blkio_file(d: &CgroupDir, file: &str) -> Vec<BlkioStatEntry> {
    d.read(file).map(|t| parse_blkio(&t)).unwrap_or_default()
}

/// `8:0 Read 4096` (or `8:0 4096` for time and sectors); the `Total`
/// line is skipped.
pub fn parse_blkio(text: &str) -> Vec<BlkioStatEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split([' ', ':']).filter(|s| !s.is_empty()).collect();
            if f.len() < 3 {
                return None;
            }
            let (op, value) = if f.len() >= 4 {
                (f[2].to_string(), f[3])
            } else {
                (String::new(), f[2])
            };
            Some(BlkioStatEntry {
                major: f[0].parse().ok()?,
                minor: f[1].parse().ok()?,
                op,
                value: value.parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// A v1 tree as the kernel lays it out for container `abc` under
    /// `/berth`, with cpu and cpuacct mounted separately (this host's way).
    fn fixture(root: &Path) -> V1Reader {
        let c = "berth/abc";
        write(root, &format!("cpuacct/{c}/cpuacct.usage"), "2500000000\n");
        write(
            root,
            &format!("cpuacct/{c}/cpuacct.usage_percpu"),
            "1000000000 1500000000 \n",
        );
        write(
            root,
            &format!("cpuacct/{c}/cpuacct.stat"),
            "user 150\nsystem 50\n",
        );
        write(
            root,
            &format!("cpu/{c}/cpu.stat"),
            "nr_periods 10\nnr_throttled 2\nthrottled_time 3000\n",
        );
        write(
            root,
            &format!("memory/{c}/memory.usage_in_bytes"),
            "104857600\n",
        );
        write(
            root,
            &format!("memory/{c}/memory.max_usage_in_bytes"),
            "209715200\n",
        );
        write(
            root,
            &format!("memory/{c}/memory.limit_in_bytes"),
            "9223372036854771712\n",
        );
        write(root, &format!("memory/{c}/memory.failcnt"), "0\n");
        write(
            root,
            &format!("memory/{c}/memory.stat"),
            "cache 4096\nrss 104000000\ntotal_inactive_file 8192\nshmem 0\n",
        );
        write(
            root,
            &format!("blkio/{c}/blkio.throttle.io_service_bytes"),
            "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 12288\n8:0 Discard 0\n8:0 Total 12288\nTotal 12288\n",
        );
        write(
            root,
            &format!("blkio/{c}/blkio.throttle.io_serviced"),
            "8:0 Read 1\n8:0 Write 2\nTotal 3\n",
        );
        write(root, &format!("pids/{c}/pids.current"), "3\n");
        write(root, &format!("pids/{c}/pids.max"), "max\n");
        let mounts = ["cpu", "cpuacct", "memory", "blkio", "pids"]
            .into_iter()
            .map(|ctl| (ctl.to_string(), (root.join(ctl), "/".to_string())))
            .collect();
        V1Reader::new(mounts)
    }

    fn paths() -> ControllerPaths {
        super::super::cgroup::locate(0, "/berth/abc")
    }

    #[test]
    fn reads_a_v1_tree_as_dockerd_reports_it() {
        let dir = tempfile::tempdir().unwrap();
        let reader = fixture(dir.path());
        let s = reader.read(&paths(), 16 << 30).unwrap();
        assert_eq!(s.cpu.cpu_usage.total_usage, 2_500_000_000);
        assert_eq!(
            s.cpu.cpu_usage.percpu_usage,
            vec![1_000_000_000, 1_500_000_000]
        );
        assert_eq!(s.cpu.cpu_usage.usage_in_usermode, 1_500_000_000);
        assert_eq!(s.cpu.cpu_usage.usage_in_kernelmode, 500_000_000);
        assert_eq!(s.cpu.throttling_data.periods, 10);
        assert_eq!(s.cpu.throttling_data.throttled_periods, 2);
        assert_eq!(s.cpu.throttling_data.throttled_time, 3000);
        assert_eq!(s.memory.usage, 104_857_600);
        assert_eq!(s.memory.max_usage, 209_715_200);
        // Unlimited is reported as the machine's memory.
        assert_eq!(s.memory.limit, 16 << 30);
        assert_eq!(s.memory.stats.len(), 32);
        assert_eq!(s.memory.stats["rss"], 104_000_000);
        assert_eq!(s.memory.stats["total_inactive_file"], 8192);
        assert_eq!(s.memory.stats["pgfault"], 0);
        assert!(!s.memory.stats.contains_key("shmem"));
        let bytes = s.blkio.io_service_bytes_recursive.unwrap();
        assert_eq!(bytes.len(), 6);
        assert_eq!(
            bytes[0],
            BlkioStatEntry {
                major: 8,
                minor: 0,
                op: "Read".into(),
                value: 4096
            }
        );
        assert_eq!(s.blkio.io_serviced_recursive.unwrap().len(), 2);
        assert_eq!(s.blkio.sectors_recursive, Some(Vec::new()));
        assert_eq!(s.pids.current, 3);
        assert_eq!(s.pids.limit, 0);
    }

    #[test]
    fn cfq_files_win_when_present() {
        let dir = tempfile::tempdir().unwrap();
        let reader = fixture(dir.path());
        let c = "blkio/berth/abc";
        write(
            dir.path(),
            &format!("{c}/blkio.io_serviced_recursive"),
            "8:0 Read 7\n",
        );
        write(
            dir.path(),
            &format!("{c}/blkio.sectors_recursive"),
            "8:0 16\n",
        );
        let s = reader.read(&paths(), 0).unwrap();
        assert_eq!(s.blkio.io_serviced_recursive.unwrap()[0].value, 7);
        let sectors = s.blkio.sectors_recursive.unwrap();
        assert_eq!(sectors[0].op, "");
        assert_eq!(sectors[0].value, 16);
        // No machine memory known: the raw limit stays.
        assert_eq!(s.memory.limit, 9_223_372_036_854_771_712);
    }

    #[test]
    fn a_removed_cgroup_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let reader = fixture(dir.path());
        assert!(reader
            .read(&super::super::cgroup::locate(0, "/berth/gone"), 0)
            .is_none());
    }

    #[test]
    fn sub_tree_mounts_strip_their_root() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "memory/abc/memory.usage_in_bytes", "5\n");
        let mounts = BTreeMap::from([(
            "memory".to_string(),
            (dir.path().join("memory"), "/berth".to_string()),
        )]);
        let s = V1Reader::new(mounts).read(&paths(), 0).unwrap();
        assert_eq!(s.memory.usage, 5);
    }
}

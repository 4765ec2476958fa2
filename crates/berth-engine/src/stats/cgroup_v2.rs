//! cgroup v2: one unified hierarchy. CPU from `cpu.stat` (microseconds,
//! no per-CPU figures), memory from `memory.current`/`memory.max`/
//! `memory.stat` with dockerd's v2 `stats` keys and `memory.events` oom
//! as failcnt, I/O bytes from `io.stat`, pids from `pids.*`.

use std::path::PathBuf;

use super::cgroup::{
    parse_keyed, read_keyed, read_procs, read_str, read_u64, CgroupDir, CgroupReader, CgroupSample,
    ControllerDirs, ControllerPaths, SlowFields,
};
use super::response::{
    BlkioStatEntry, BlkioStats, CpuStats, CpuUsage, MemoryStats, PidsStats, ThrottlingData,
};

/// The `memory_stats.stats` keys dockerd reports on v2.
const MEMORY_KEYS: [&str; 31] = [
    "anon",
    "file",
    "kernel_stack",
    "slab",
    "sock",
    "shmem",
    "file_mapped",
    "file_dirty",
    "file_writeback",
    "anon_thp",
    "inactive_anon",
    "active_anon",
    "inactive_file",
    "active_file",
    "unevictable",
    "slab_reclaimable",
    "slab_unreclaimable",
    "pgfault",
    "pgmajfault",
    "workingset_refault",
    "workingset_activate",
    "workingset_nodereclaim",
    "pgrefill",
    "pgscan",
    "pgsteal",
    "pgactivate",
    "pgdeactivate",
    "pglazyfree",
    "pglazyfreed",
    "thp_fault_alloc",
    "thp_collapse_alloc",
];

/// Reads the unified hierarchy mounted at `root`.
pub struct V2Reader {
    root: PathBuf,
}

impl V2Reader {
    pub fn new(root: PathBuf) -> Self {
        V2Reader { root }
    }
}

impl CgroupReader for V2Reader {
    fn version(&self) -> u8 {
        2
    }

    fn open(&self, paths: &ControllerPaths) -> ControllerDirs {
        match paths.get("").map(|p| p.trim_start_matches('/')) {
            // The root cgroup is the host's, never a container's.
            Some(rel) if !rel.is_empty() => CgroupDir::open(&self.root.join(rel))
                .map(|d| ControllerDirs::from([(String::new(), d)]))
                .unwrap_or_default(),
            _ => ControllerDirs::new(),
        }
    }

    fn read_dirs(
        &self,
        dirs: &ControllerDirs,
        machine_memory: u64,
        prev: Option<&CgroupSample>,
    ) -> Option<CgroupSample> {
        let dir = dirs.get("")?;
        let slow = prev.map(SlowFields::of);
        // Every cgroup has cpu.stat; a removed one reads nothing.
        let cpu = parse_keyed(&dir.read("cpu.stat")?);
        // memory.events gives both dockerd's failcnt (`oom`) and the OOM
        // kills.
        let (failcnt, oom_kills) = match slow {
            Some(s) => (s.failcnt, s.oom_kills),
            None => {
                let events = read_keyed(dir, "memory.events");
                let get = |k: &str| events.get(k).copied().unwrap_or(0);
                (get("oom"), get("oom_kill"))
            }
        };
        let mut memory = read_memory(dir, machine_memory, slow);
        memory.failcnt = failcnt;
        Some(CgroupSample {
            cpu: cpu_from(&cpu),
            memory,
            blkio: BlkioStats {
                io_service_bytes_recursive: read_io(dir),
                ..Default::default()
            },
            pids: PidsStats {
                current: read_u64(dir, "pids.current", 0).unwrap_or(0),
                limit: match slow {
                    Some(s) => s.pids_limit,
                    None => read_u64(dir, "pids.max", 0).unwrap_or(0),
                },
            },
            oom_kills,
        })
    }

    fn procs(&self, dirs: &ControllerDirs) -> Vec<u32> {
        dirs.get("").map(read_procs).unwrap_or_default()
    }
}

fn cpu_from(s: &std::collections::BTreeMap<String, u64>) -> CpuStats {
    let us = |k: &str| s.get(k).copied().unwrap_or(0) * 1000;
    CpuStats {
        cpu_usage: CpuUsage {
            total_usage: us("usage_usec"),
            percpu_usage: Vec::new(),
            usage_in_kernelmode: us("system_usec"),
            usage_in_usermode: us("user_usec"),
        },
        throttling_data: ThrottlingData {
            periods: s.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: s.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: us("throttled_usec"),
        },
        ..Default::default()
    }
}

/// Memory without failcnt (the caller reads `memory.events` once for it
/// and the OOM kills).
fn read_memory(dir: &CgroupDir, machine_memory: u64, slow: Option<SlowFields>) -> MemoryStats {
    let raw = read_keyed(dir, "memory.stat");
    let stats = MEMORY_KEYS
        .iter()
        .map(|k| (k.to_string(), raw.get(*k).copied().unwrap_or(0)))
        .collect();
    let limit = match slow {
        Some(s) => s.memory_limit,
        None => {
            let limit = read_u64(dir, "memory.max", u64::MAX).unwrap_or(0);
            if machine_memory > 0 && limit > machine_memory {
                machine_memory
            } else {
                limit
            }
        }
    };
    MemoryStats {
        usage: read_u64(dir, "memory.current", 0).unwrap_or(0),
        max_usage: 0,
        stats,
        failcnt: 0,
        limit,
    }
}

/// `io.stat` as dockerd reports it: a `read` and a `write` entry per
/// device; `None` (JSON null) when no device has I/O yet.
fn read_io(dir: &CgroupDir) -> Option<Vec<BlkioStatEntry>> {
    read_str(dir, "io.stat").and_then(|t| parse_io_stat(&t))
}

pub fn parse_io_stat(text: &str) -> Option<Vec<BlkioStatEntry>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some((major, minor)) = fields.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse::<u64>(), minor.parse::<u64>()) else {
            continue;
        };
        let (mut rbytes, mut wbytes) = (0, 0);
        for kv in fields {
            match kv.split_once('=') {
                Some(("rbytes", v)) => rbytes = v.parse().unwrap_or(0),
                Some(("wbytes", v)) => wbytes = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        for (op, value) in [("read", rbytes), ("write", wbytes)] {
            out.push(BlkioStatEntry {
                major,
                minor,
                op: op.to_string(),
                value,
            });
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(file), text).unwrap();
    }

    fn paths() -> ControllerPaths {
        super::super::cgroup::parse_proc_cgroup("0::/berth/abc\n")
    }

    #[test]
    fn reads_a_v2_tree_as_dockerd_reports_it() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path().join("berth/abc");
        write(
            &d,
            "cpu.stat",
            "usage_usec 2000000\nuser_usec 1500000\nsystem_usec 500000\nnr_periods 4\nnr_throttled 1\nthrottled_usec 250\n",
        );
        write(&d, "memory.current", "104857600\n");
        write(&d, "memory.max", "max\n");
        write(
            &d,
            "memory.stat",
            "anon 100000000\nfile 4096\ninactive_file 2048\nworkingset_refault_anon 3\n",
        );
        write(
            &d,
            "memory.events",
            "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n",
        );
        write(
            &d,
            "io.stat",
            "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
        );
        write(&d, "pids.current", "2\n");
        write(&d, "pids.max", "100\n");
        let s = V2Reader::new(root.path().to_path_buf())
            .read(&paths(), 8 << 30)
            .unwrap();
        assert_eq!(s.cpu.cpu_usage.total_usage, 2_000_000_000);
        assert_eq!(s.cpu.cpu_usage.usage_in_usermode, 1_500_000_000);
        assert_eq!(s.cpu.cpu_usage.usage_in_kernelmode, 500_000_000);
        assert!(s.cpu.cpu_usage.percpu_usage.is_empty());
        assert_eq!(s.cpu.throttling_data.throttled_time, 250_000);
        assert_eq!(s.memory.usage, 104_857_600);
        assert_eq!(s.memory.limit, 8 << 30);
        assert_eq!(s.memory.failcnt, 1);
        assert_eq!(s.memory.max_usage, 0);
        assert_eq!(s.memory.stats.len(), 31);
        assert_eq!(s.memory.stats["anon"], 100_000_000);
        assert_eq!(s.memory.stats["inactive_file"], 2048);
        assert_eq!(s.memory.stats["workingset_refault"], 0);
        let io = s.blkio.io_service_bytes_recursive.clone().unwrap();
        assert_eq!(io.len(), 2);
        assert_eq!((io[0].op.as_str(), io[0].value), ("read", 4096));
        assert_eq!((io[1].op.as_str(), io[1].value), ("write", 8192));
        assert!(s.blkio.io_serviced_recursive.is_none());
        assert_eq!(s.pids.current, 2);
        assert_eq!(s.pids.limit, 100);
        assert_eq!(s.oom_kills, 1);

        // A partial read takes limits and counters that rarely move from
        // the previous sample, and still reads what moves.
        let reader = V2Reader::new(root.path().to_path_buf());
        let dirs = reader.open(&paths());
        write(&d, "pids.max", "7\n");
        write(&d, "pids.current", "3\n");
        let partial = reader.read_dirs(&dirs, 8 << 30, Some(&s)).unwrap();
        assert_eq!(partial.pids.limit, 100);
        assert_eq!(partial.pids.current, 3);
        assert_eq!(partial.memory.failcnt, 1);
        let full = reader.read_dirs(&dirs, 8 << 30, None).unwrap();
        assert_eq!(full.pids.limit, 7);
    }

    #[test]
    fn empty_io_stat_is_null_and_root_is_refused() {
        assert_eq!(parse_io_stat(""), None);
        let root = tempfile::tempdir().unwrap();
        let reader = V2Reader::new(root.path().to_path_buf());
        assert!(reader
            .read(&super::super::cgroup::parse_proc_cgroup("0::/\n"), 0)
            .is_none());
        assert!(reader.read(&paths(), 0).is_none());
    }
}

//! The sampler's long memory for the dashboard: per container and for the
//! host, a ring of compact points (raw counters, a hundred bytes each)
//! appended once per tick, long enough for 16 minutes at 1 s. The full
//! stats bodies stay in the short window; these rings are what charts read.

use std::collections::VecDeque;

use serde::Serialize;

use super::cgroup::CgroupSample;
use super::response::NetworkStats;

/// Points kept per ring: 16 minutes 40 seconds at the default 1 s
/// interval (the dashboard promises 15 minutes). About 130 KB per
/// container.
pub const HISTORY_POINTS: usize = 1000;

/// One container at one tick: counters as read (rates are the reader's
/// business: a restart shows as a counter going down).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Point {
    /// Unix milliseconds of the tick.
    pub t: i64,
    /// CPU time in nanoseconds: total, user, system, throttled.
    pub cpu: u64,
    pub cpu_user: u64,
    pub cpu_system: u64,
    pub cpu_throttled: u64,
    /// Memory in bytes: usage, working set (usage less inactive file
    /// pages, as cAdvisor reports it), limit (machine memory when none).
    pub mem: u64,
    pub working_set: u64,
    pub mem_limit: u64,
    /// Network bytes over all interfaces.
    pub rx: u64,
    pub tx: u64,
    /// Block I/O bytes.
    pub blk_read: u64,
    pub blk_write: u64,
    pub pids: u64,
    /// Writable-layer bytes from the storage cache (refreshed every few
    /// seconds, not every tick); `None` until first measured.
    pub fs: Option<u64>,
}

impl Point {
    /// The point of one cgroup read plus its network counters.
    pub fn from_sample(
        t: i64,
        cg: &CgroupSample,
        networks: &std::collections::BTreeMap<String, NetworkStats>,
        fs: Option<u64>,
    ) -> Point {
        let (blk_read, blk_write) = block_io_bytes(cg);
        Point {
            t,
            cpu: cg.cpu.cpu_usage.total_usage,
            cpu_user: cg.cpu.cpu_usage.usage_in_usermode,
            cpu_system: cg.cpu.cpu_usage.usage_in_kernelmode,
            cpu_throttled: cg.cpu.throttling_data.throttled_time,
            mem: cg.memory.usage,
            working_set: working_set(cg),
            mem_limit: cg.memory.limit,
            rx: networks.values().map(|n| n.rx_bytes).sum(),
            tx: networks.values().map(|n| n.tx_bytes).sum(),
            blk_read,
            blk_write,
            pids: cg.pids.current,
            fs,
        }
    }
}

/// cAdvisor's working set: usage less inactive file-backed pages (v1
/// `total_inactive_file`, v2 `inactive_file`), never below zero.
pub fn working_set(cg: &CgroupSample) -> u64 {
    let stats = &cg.memory.stats;
    let inactive = stats
        .get("total_inactive_file")
        .or_else(|| stats.get("inactive_file"))
        .copied()
        .unwrap_or(0);
    cg.memory.usage.saturating_sub(inactive)
}

/// Bytes read and written over all devices (v1 `Read`/`Write`, v2
/// `read`/`write` entries of `io_service_bytes_recursive`).
pub fn block_io_bytes(cg: &CgroupSample) -> (u64, u64) {
    let mut out = (0, 0);
    for e in cg.blkio.io_service_bytes_recursive.iter().flatten() {
        if e.op.eq_ignore_ascii_case("read") {
            out.0 += e.value;
        } else if e.op.eq_ignore_ascii_case("write") {
            out.1 += e.value;
        }
    }
    out
}

/// The host at one tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct HostPoint {
    /// Unix milliseconds of the tick.
    pub t: i64,
    /// CPU time over all CPUs in nanoseconds: busy and total (idle and
    /// iowait are the difference).
    pub cpu_busy: u64,
    pub cpu_total: u64,
    pub cpus: u32,
    /// Memory in bytes: total and available (`MemAvailable`).
    pub mem_total: u64,
    pub mem_available: u64,
    /// Load averages (1, 5, 15 minutes).
    pub load: [f64; 3],
}

/// A bounded ring, oldest first.
#[derive(Debug, Clone)]
pub struct Ring<T> {
    points: VecDeque<T>,
    cap: usize,
}

impl<T: Copy> Ring<T> {
    pub fn new(cap: usize) -> Self {
        Ring {
            points: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    pub fn push(&mut self, p: T) {
        if self.points.len() == self.cap {
            self.points.pop_front();
        }
        self.points.push_back(p);
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn last(&self) -> Option<T> {
        self.points.back().copied()
    }

    /// The newest `n` points, oldest first.
    pub fn tail(&self, n: usize) -> Vec<T> {
        let skip = self.points.len().saturating_sub(n);
        self.points.iter().skip(skip).copied().collect()
    }

    /// The newest points for which `newer` holds plus the one before
    /// them (rates of the first need it), oldest first.
    pub fn newer_with_previous(&self, newer: impl Fn(&T) -> bool) -> Vec<T> {
        let fresh = self.points.iter().rev().take_while(|p| newer(p)).count();
        self.tail(fresh + 1)
    }

    /// Every point for which `keep` holds, oldest first.
    pub fn filtered(&self, keep: impl Fn(&T) -> bool) -> Vec<T> {
        self.points.iter().filter(|p| keep(p)).copied().collect()
    }
}

/// `/proc/stat`'s first line as (busy, total) nanoseconds and the CPU
/// count; busy is everything but idle and iowait; steal and guest are
/// left out of both, as `system_cpu_usage` leaves them out.
pub fn parse_host_cpu(text: &str) -> Option<(u64, u64, u32)> {
    let mut out = None;
    let mut cpus = 0;
    for line in text.lines() {
        if !line.starts_with("cpu") {
            break;
        }
        let mut f = line.split_whitespace();
        let name = f.next()?;
        if name == "cpu" {
            let t: Vec<u64> = f.take(7).filter_map(|v| v.parse().ok()).collect();
            if t.len() < 7 {
                return None;
            }
            let total: u64 = t.iter().sum();
            let idle = t[3] + t[4];
            // USER_HZ is 100 on Linux: 10 ms per tick.
            out = Some((total.saturating_sub(idle) * 10_000_000, total * 10_000_000));
        } else {
            cpus += 1;
        }
    }
    out.map(|(b, t)| (b, t, cpus))
}

/// `MemTotal` and `MemAvailable` of `/proc/meminfo`, in bytes.
pub fn parse_meminfo(text: &str) -> (u64, u64) {
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("MemTotal:"), field("MemAvailable:"))
}

/// The three load averages of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (slot, v) in out.iter_mut().zip(text.split_whitespace()) {
        *slot = v.parse().unwrap_or(0.0);
    }
    out
}

/// The host now (the sampler calls this once per tick).
pub fn read_host(t: i64) -> HostPoint {
    let (cpu_busy, cpu_total, cpus) = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| parse_host_cpu(&s))
        .unwrap_or((0, 0, 0));
    let (mem_total, mem_available) = std::fs::read_to_string("/proc/meminfo")
        .map(|s| parse_meminfo(&s))
        .unwrap_or((0, 0));
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| parse_loadavg(&s))
        .unwrap_or_default();
    HostPoint {
        t,
        cpu_busy,
        cpu_total,
        cpus,
        mem_total,
        mem_available,
        load,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::response::BlkioStatEntry;

    #[test]
    fn ring_keeps_the_newest() {
        let mut r = Ring::new(3);
        for i in 0..5 {
            r.push(i);
        }
        assert_eq!(r.tail(10), vec![2, 3, 4]);
        assert_eq!(r.tail(2), vec![3, 4]);
        assert_eq!(r.last(), Some(4));
        assert_eq!(r.filtered(|v| *v > 2), vec![3, 4]);
        assert_eq!(r.newer_with_previous(|v| *v > 3), vec![3, 4]);
        assert_eq!(r.newer_with_previous(|v| *v > 9), vec![4]);
    }

    #[test]
    fn host_files_parse() {
        let stat =
            "cpu  100 0 50 800 10 5 5 7 0 0\ncpu0 1 1 1 1 1 1 1\ncpu1 1 1 1 1 1 1 1\nintr 1\n";
        // busy = 970 - 810 = 160 ticks.
        assert_eq!(
            parse_host_cpu(stat),
            Some((1_600_000_000, 9_700_000_000, 2))
        );
        let mem = "MemTotal:       1000 kB\nMemFree:  10 kB\nMemAvailable:    500 kB\n";
        assert_eq!(parse_meminfo(mem), (1_024_000, 512_000));
        assert_eq!(parse_loadavg("0.50 1.25 2.00 1/100 42\n"), [0.5, 1.25, 2.0]);
    }

    #[test]
    fn working_set_and_io_follow_cadvisor() {
        let mut cg = CgroupSample::default();
        cg.memory.usage = 1000;
        cg.memory.stats.insert("total_inactive_file".into(), 300);
        assert_eq!(working_set(&cg), 700);
        cg.memory.stats.insert("total_inactive_file".into(), 3000);
        assert_eq!(working_set(&cg), 0);
        let entry = |op: &str, value| BlkioStatEntry {
            major: 8,
            minor: 0,
            op: op.into(),
            value,
        };
        cg.blkio.io_service_bytes_recursive = Some(vec![
            entry("Read", 10),
            entry("Write", 20),
            entry("Sync", 30),
            entry("read", 1),
        ]);
        assert_eq!(block_io_bytes(&cg), (11, 20));
    }
}

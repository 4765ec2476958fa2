//! What the sampler reads from /proc besides cgroups: the host's CPU time
//! and online CPUs (`/proc/stat`, once per tick for every container, as
//! `system_cpu_usage`), the machine's memory, and a container's interface
//! counters from its network namespace (`/proc/<pid>/net/dev`).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use super::response::NetworkStats;

/// USER_HZ, the unit of /proc/stat (fixed at 100 on Linux).
const CLOCK_TICKS: u64 = 100;

/// Host CPU time in nanoseconds over all CPUs and the number of CPUs, as
/// dockerd computes them: the first seven fields of the `cpu` line, and
/// the count of `cpuN` lines.
pub fn parse_proc_stat(text: &str) -> Option<(u64, u32)> {
    let mut total = None;
    let mut cpus = 0u32;
    for line in text.lines() {
        if !line.starts_with("cpu") {
            break;
        }
        let mut fields = line.split_whitespace();
        let name = fields.next()?;
        if name == "cpu" {
            let ticks: Vec<u64> = fields.take(7).filter_map(|f| f.parse().ok()).collect();
            if ticks.len() < 7 {
                return None;
            }
            total = Some(ticks.iter().sum::<u64>() * (1_000_000_000 / CLOCK_TICKS));
        } else if name[3..].bytes().all(|b| b.is_ascii_digit()) {
            cpus += 1;
        }
    }
    Some((total?, cpus))
}

/// `/proc/stat` now.
pub fn system_cpu() -> Option<(u64, u32)> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// MemTotal in bytes.
pub fn machine_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

/// Interfaces of a `/proc/<pid>/net/dev`, loopback left out as dockerd's
/// sandbox statistics leave it out.
pub fn parse_net_dev(text: &str) -> BTreeMap<String, NetworkStats> {
    let mut out = BTreeMap::new();
    // Two header lines, then `  eth0: rx_bytes rx_packets rx_errs rx_drop
    // fifo frame compressed multicast tx_bytes tx_packets tx_errs tx_drop ...`.
    for line in text.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let v: Vec<u64> = counters
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        if v.len() < 12 {
            continue;
        }
        out.insert(
            name.to_string(),
            NetworkStats {
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            },
        );
    }
    out
}

/// Whether `pid` has a network namespace of its own (not the daemon's):
/// without one (`--network host`) dockerd reports no networks.
/// Fixed for the life of the process: the sampler asks once per container
/// process.
pub fn has_own_netns(pid: u32) -> bool {
    let ns = |p: &str| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    let theirs = ns(&format!("/proc/{pid}/ns/net"));
    theirs.is_some() && theirs != ns("/proc/self/ns/net")
}

/// The interfaces of `/proc/<pid>/net/dev`.
pub fn net_dev(pid: u32) -> BTreeMap<String, NetworkStats> {
    std::fs::read_to_string(format!("/proc/{pid}/net/dev"))
        .map(|t| parse_net_dev(&t))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_gives_nanoseconds_and_cpus() {
        let text = "cpu  100 0 50 800 10 5 5 7 0 0\ncpu0 50 0 25 400 5 2 3 0 0 0\ncpu1 50 0 25 400 5 3 2 7 0 0\nintr 1 2 3\ncpu9 1 1 1 1 1 1 1\n";
        // 100+0+50+800+10+5+5 = 970 ticks; steal (7) is not counted.
        assert_eq!(parse_proc_stat(text), Some((9_700_000_000, 2)));
        assert_eq!(parse_proc_stat("intr 1\n"), None);
    }

    #[test]
    fn net_dev_skips_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0
  eth0:    2048      10    1    2    0     0          0         0     1024       8    3    4    0     0       0          0
";
        let n = parse_net_dev(text);
        assert_eq!(n.len(), 1);
        assert_eq!(
            n["eth0"],
            NetworkStats {
                rx_bytes: 2048,
                rx_packets: 10,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 1024,
                tx_packets: 8,
                tx_errors: 3,
                tx_dropped: 4,
            }
        );
    }

    #[test]
    fn own_namespace_reports_no_networks() {
        assert!(!has_own_netns(std::process::id()));
        assert!(machine_memory() > 0);
        assert!(system_cpu().is_some_and(|(t, n)| t > 0 && n > 0));
    }
}

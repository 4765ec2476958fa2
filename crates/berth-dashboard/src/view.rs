//! The dashboard's JSON shapes, the same for this daemon and for remote
//! hosts: a host's facts (from `/info` and `/version`, local or remote), a
//! container row, and chart series computed from history points (rates
//! from counters; a counter that went down — a restart — leaves a gap).

use berth_engine::stats::history::{HostPoint, Point};
use serde::Serialize;
use serde_json::Value;

/// What the host cards and the daemon panel show.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostInfo {
    pub name: String,
    /// `berth` or the `Platform.Name` dockerd reports.
    pub platform: String,
    pub server_version: String,
    pub api_version: String,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub ncpu: i64,
    pub mem_total: i64,
    pub driver: String,
    pub driver_status: Vec<(String, String)>,
    pub debug: bool,
    pub cgroup_version: String,
    pub root_dir: String,
    pub containers: i64,
    pub running: i64,
    pub paused: i64,
    pub stopped: i64,
    pub images: i64,
    pub warnings: Vec<String>,
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

impl HostInfo {
    /// From `/info` and `/version` bodies (any daemon's).
    pub fn from_remote(info: &Value, version: &Value) -> HostInfo {
        HostInfo {
            name: s(&info["Name"]),
            platform: s(&version["Platform"]["Name"]),
            server_version: s(&info["ServerVersion"]),
            api_version: s(&version["ApiVersion"]),
            os: s(&info["OperatingSystem"]),
            kernel: s(&info["KernelVersion"]),
            arch: s(&info["Architecture"]),
            ncpu: info["NCPU"].as_i64().unwrap_or(0),
            mem_total: info["MemTotal"].as_i64().unwrap_or(0),
            driver: s(&info["Driver"]),
            driver_status: info["DriverStatus"]
                .as_array()
                .map(|pairs| pairs.iter().map(|p| (s(&p[0]), s(&p[1]))).collect())
                .unwrap_or_default(),
            debug: info["Debug"].as_bool().unwrap_or(false),
            cgroup_version: s(&info["CgroupVersion"]),
            root_dir: s(&info["DockerRootDir"]),
            containers: info["Containers"].as_i64().unwrap_or(0),
            running: info["ContainersRunning"].as_i64().unwrap_or(0),
            paused: info["ContainersPaused"].as_i64().unwrap_or(0),
            stopped: info["ContainersStopped"].as_i64().unwrap_or(0),
            images: info["Images"].as_i64().unwrap_or(0),
            warnings: info["Warnings"]
                .as_array()
                .map(|w| w.iter().map(s).collect())
                .unwrap_or_default(),
        }
    }
}

/// A remote container as `/containers/json` lists it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RemoteContainer {
    pub id: String,
    pub name: String,
    pub image: String,
    pub state: String,
    pub status: String,
    pub created: i64,
}

impl RemoteContainer {
    pub fn from_summary(v: &Value) -> RemoteContainer {
        RemoteContainer {
            id: s(&v["Id"]),
            name: v["Names"][0]
                .as_str()
                .unwrap_or("")
                .trim_start_matches('/')
                .to_string(),
            image: s(&v["Image"]),
            state: s(&v["State"]),
            status: s(&v["Status"]),
            created: v["Created"].as_i64().unwrap_or(0),
        }
    }

    pub fn running(&self) -> bool {
        self.state == "running"
    }
}

/// A history point from a `/containers/{id}/stats` body (dockerd's or
/// berth's): the same counters the local sampler keeps.
pub fn point_from_stats(v: &Value) -> Point {
    let u = |v: &Value| v.as_u64().unwrap_or(0);
    let t = v["read"]
        .as_str()
        .and_then(|r| chrono::DateTime::parse_from_rfc3339(r).ok())
        .map(|d| d.timestamp_millis())
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    let cpu = &v["cpu_stats"];
    let mem = &v["memory_stats"];
    let usage = u(&mem["usage"]);
    let inactive = mem["stats"]["total_inactive_file"]
        .as_u64()
        .or_else(|| mem["stats"]["inactive_file"].as_u64())
        .unwrap_or(0);
    let (mut rx, mut tx) = (0, 0);
    if let Some(nets) = v["networks"].as_object() {
        for n in nets.values() {
            rx += u(&n["rx_bytes"]);
            tx += u(&n["tx_bytes"]);
        }
    }
    let (mut blk_read, mut blk_write) = (0, 0);
    for e in v["blkio_stats"]["io_service_bytes_recursive"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match e["op"].as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => blk_read += u(&e["value"]),
            Some("write") => blk_write += u(&e["value"]),
            _ => {}
        }
    }
    Point {
        t,
        cpu: u(&cpu["cpu_usage"]["total_usage"]),
        cpu_user: u(&cpu["cpu_usage"]["usage_in_usermode"]),
        cpu_system: u(&cpu["cpu_usage"]["usage_in_kernelmode"]),
        cpu_throttled: u(&cpu["throttling_data"]["throttled_time"]),
        mem: usage,
        working_set: usage.saturating_sub(inactive),
        mem_limit: u(&mem["limit"]),
        rx,
        tx,
        blk_read,
        blk_write,
        pids: u(&v["pids_stats"]["current"]),
        fs: None,
    }
}

/// Chart series of one container, column by column (compact JSON).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Series {
    /// Unix milliseconds.
    pub t: Vec<i64>,
    /// CPU in cores (1.0 = one CPU busy); `null` where unknown.
    pub cpu: Vec<Option<f64>>,
    pub mem: Vec<u64>,
    pub working_set: Vec<u64>,
    pub mem_limit: Vec<u64>,
    /// Bytes per second.
    pub rx: Vec<Option<f64>>,
    pub tx: Vec<Option<f64>>,
    pub blk_read: Vec<Option<f64>>,
    pub blk_write: Vec<Option<f64>>,
    pub pids: Vec<u64>,
    /// Writable-layer bytes.
    pub fs: Vec<Option<u64>>,
}

fn rate(now: u64, before: u64, secs: f64) -> Option<f64> {
    (now >= before && secs > 0.0).then(|| (now - before) as f64 / secs)
}

impl Series {
    /// Series of `points` (oldest first), keeping only those after
    /// `since`; the point before each kept one gives its rates.
    pub fn from_points(points: &[Point], since: Option<i64>) -> Series {
        let mut out = Series::default();
        for (i, p) in points.iter().enumerate() {
            if since.is_some_and(|s| p.t <= s) {
                continue;
            }
            let prev = i.checked_sub(1).map(|j| points[j]);
            let secs = prev.map_or(0.0, |q| (p.t - q.t) as f64 / 1000.0);
            let r = |f: fn(&Point) -> u64| prev.and_then(|q| rate(f(p), f(&q), secs));
            out.t.push(p.t);
            out.cpu.push(r(|p| p.cpu).map(|ns| ns / 1e9));
            out.mem.push(p.mem);
            out.working_set.push(p.working_set);
            out.mem_limit.push(p.mem_limit);
            out.rx.push(r(|p| p.rx));
            out.tx.push(r(|p| p.tx));
            out.blk_read.push(r(|p| p.blk_read));
            out.blk_write.push(r(|p| p.blk_write));
            out.pids.push(p.pids);
            out.fs.push(p.fs);
        }
        out
    }
}

/// The host's chart series.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostSeries {
    pub t: Vec<i64>,
    /// Busy share of all CPUs, 0..1.
    pub cpu: Vec<Option<f64>>,
    pub mem_used: Vec<u64>,
    pub mem_total: Vec<u64>,
    pub load1: Vec<f64>,
    pub load5: Vec<f64>,
    pub load15: Vec<f64>,
}

impl HostSeries {
    pub fn from_points(points: &[HostPoint], since: Option<i64>) -> HostSeries {
        let mut out = HostSeries::default();
        for (i, p) in points.iter().enumerate() {
            if since.is_some_and(|s| p.t <= s) {
                continue;
            }
            let cpu = i.checked_sub(1).map(|j| points[j]).and_then(|q| {
                let total = p.cpu_total.checked_sub(q.cpu_total)?;
                let busy = p.cpu_busy.checked_sub(q.cpu_busy)?;
                (total > 0).then(|| busy as f64 / total as f64)
            });
            out.t.push(p.t);
            out.cpu.push(cpu);
            out.mem_used
                .push(p.mem_total.saturating_sub(p.mem_available));
            out.mem_total.push(p.mem_total);
            out.load1.push(p.load[0]);
            out.load5.push(p.load[1]);
            out.load15.push(p.load[2]);
        }
        out
    }
}

/// One row of the merged container table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ContainerRow {
    /// The dashboard's host ID (`local`, `h1`, ...) and its name.
    pub host: String,
    pub host_name: String,
    pub id: String,
    pub name: String,
    pub image: String,
    pub state: String,
    pub status: String,
    /// Storage size limit (`--storage-opt size=`), where known.
    pub fs_limit: Option<u64>,
    /// Series since the `since` the request gave (sparklines).
    pub series: Series,
    /// Whether the host is down (the row is what was last known).
    pub stale: bool,
}

/// A process table: titles and rows, as `docker top` shapes it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcessTable {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
}

impl ProcessTable {
    /// From this daemon's cgroup process list.
    pub fn from_local(list: &[berth_engine::stats::processes::ProcessInfo]) -> ProcessTable {
        ProcessTable {
            titles: [
                "PID", "PPID", "UID", "STATE", "THREADS", "CPU TIME", "RSS", "COMMAND",
            ]
            .map(String::from)
            .to_vec(),
            processes: list
                .iter()
                .map(|p| {
                    vec![
                        p.pid.to_string(),
                        p.ppid.to_string(),
                        p.uid.to_string(),
                        p.state.clone(),
                        p.threads.to_string(),
                        format!("{:.2}s", p.cpu_seconds),
                        human_bytes(p.rss),
                        p.command.clone(),
                    ]
                })
                .collect(),
        }
    }

    /// From a `/containers/{id}/top` body.
    pub fn from_top(v: &Value) -> ProcessTable {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| a.iter().map(s).collect())
                .unwrap_or_default()
        };
        ProcessTable {
            titles: strings(&v["Titles"]),
            processes: v["Processes"]
                .as_array()
                .map(|rows| rows.iter().map(strings).collect())
                .unwrap_or_default(),
        }
    }
}

/// `12.3MiB`-style sizes for the process table.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn point(t: i64, cpu: u64, rx: u64) -> Point {
        Point {
            t,
            cpu,
            rx,
            ..Default::default()
        }
    }

    #[test]
    fn rates_from_counters_with_gaps_at_resets() {
        let pts = [
            point(1000, 0, 0),
            point(2000, 500_000_000, 1000),
            point(3000, 1_500_000_000, 3000),
            point(4000, 10, 0),
        ];
        let s = Series::from_points(&pts, None);
        assert_eq!(s.cpu, vec![None, Some(0.5), Some(1.0), None]);
        assert_eq!(s.rx, vec![None, Some(1000.0), Some(2000.0), None]);
        let s = Series::from_points(&pts, Some(2000));
        assert_eq!(s.t, vec![3000, 4000]);
        assert_eq!(s.cpu, vec![Some(1.0), None]);
    }

    #[test]
    fn remote_stats_become_points() {
        let v = json!({
            "read": "2026-01-01T00:00:01.5Z",
            "cpu_stats": {"cpu_usage": {"total_usage": 7, "usage_in_usermode": 5, "usage_in_kernelmode": 2},
                          "throttling_data": {"throttled_time": 1}},
            "memory_stats": {"usage": 100, "limit": 1000, "stats": {"inactive_file": 30}},
            "networks": {"eth0": {"rx_bytes": 10, "tx_bytes": 20}, "eth1": {"rx_bytes": 1, "tx_bytes": 2}},
            "blkio_stats": {"io_service_bytes_recursive": [
                {"major": 8, "minor": 0, "op": "Read", "value": 4},
                {"major": 8, "minor": 0, "op": "write", "value": 6}]},
            "pids_stats": {"current": 3}
        });
        let p = point_from_stats(&v);
        assert_eq!(p.t, 1_767_225_601_500);
        assert_eq!(
            (p.cpu, p.cpu_user, p.cpu_system, p.cpu_throttled),
            (7, 5, 2, 1)
        );
        assert_eq!((p.mem, p.working_set, p.mem_limit), (100, 70, 1000));
        assert_eq!(
            (p.rx, p.tx, p.blk_read, p.blk_write, p.pids),
            (11, 22, 4, 6, 3)
        );
    }

    #[test]
    fn host_cpu_share() {
        let a = HostPoint {
            t: 0,
            cpu_busy: 100,
            cpu_total: 1000,
            ..Default::default()
        };
        let b = HostPoint {
            t: 1000,
            cpu_busy: 350,
            cpu_total: 2000,
            mem_total: 10,
            mem_available: 4,
            ..Default::default()
        };
        let s = HostSeries::from_points(&[a, b], None);
        assert_eq!(s.cpu, vec![None, Some(0.25)]);
        assert_eq!(s.mem_used[1], 6);
        assert_eq!(human_bytes(1536), "1.5KiB");
    }
}

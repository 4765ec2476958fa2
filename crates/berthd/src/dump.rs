//! SIGUSR1: writes the daemon's state to `<exec-root>/berthd-dump-<time>.log`
//! for a hang the logs do not explain — every thread (name, state, CPU
//! time, wait channel, kernel stack), the async runtime's metrics, and the
//! engine's monitoring and container state — as dockerd writes goroutine
//! stacks on SIGUSR1.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use berth_engine::Engine;
use tokio::runtime::RuntimeMetrics;

/// Writes the dump; returns its path.
pub fn write(exec_root: &Path, engine: &Engine, metrics: &RuntimeMetrics) -> Result<PathBuf> {
    let now = chrono::Utc::now();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "berthd {} pid {} at {}\n",
        berth_engine::VERSION,
        std::process::id(),
        now.to_rfc3339()
    );
    out.push_str("== async runtime ==\n");
    out.push_str(&runtime_report(metrics));
    out.push_str("\n== engine ==\n");
    out.push_str(&engine.state_report());
    out.push_str("\n== threads ==\n");
    out.push_str(&threads_report(Path::new("/proc/self/task")));
    let path = exec_root.join(format!(
        "berthd-dump-{}.log",
        now.format("%Y-%m-%dT%H%M%S%.9fZ")
    ));
    std::fs::write(&path, out).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

fn runtime_report(m: &RuntimeMetrics) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "workers={} alive_tasks={} global_queue_depth={}",
        m.num_workers(),
        m.num_alive_tasks(),
        m.global_queue_depth()
    );
    for w in 0..m.num_workers() {
        let _ = writeln!(
            out,
            "  worker {w}: busy={:?} parks={}",
            m.worker_total_busy_duration(w),
            m.worker_park_count(w)
        );
    }
    out
}

/// One block per thread of the process under `task_dir`.
fn threads_report(task_dir: &Path) -> String {
    let mut tids: Vec<u64> = std::fs::read_dir(task_dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    tids.sort_unstable();
    let mut out = String::new();
    for tid in tids {
        let dir = task_dir.join(tid.to_string());
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        let name = read("comm");
        let (state, utime, stime) = parse_stat(&read("stat"));
        let _ = writeln!(
            out,
            "thread {tid} {:?} state={state} utime={utime} stime={stime} (ticks) wchan={}",
            name.trim(),
            read("wchan").trim()
        );
        // The kernel stack (root only): where a blocked thread waits.
        for frame in read("stack").lines() {
            let _ = writeln!(out, "    {frame}");
        }
    }
    out
}

/// State, utime and stime of a `/proc/<pid>/task/<tid>/stat` line (the
/// name in parentheses may contain spaces, so parse after the last `)`).
fn parse_stat(stat: &str) -> (String, u64, u64) {
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return ("?".into(), 0, 0);
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
    (f.first().unwrap_or(&"?").to_string(), num(11), num(12))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_the_name() {
        let stat = "123 (tokio worker) S 1 2 3 4 5 6 7 8 9 10 42 17 0 0";
        assert_eq!(parse_stat(stat), ("S".to_string(), 42, 17));
        assert_eq!(parse_stat("garbage").0, "?");
    }

    #[test]
    fn reports_this_process_threads() {
        let r = threads_report(Path::new("/proc/self/task"));
        assert!(
            r.contains(&format!("thread {} ", std::process::id())),
            "{r}"
        );
    }
}

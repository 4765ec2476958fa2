//! A container's processes for the dashboard's process table: the pids of
//! its cgroup (where the sampler already found it) and each one's
//! `/proc/<pid>/{stat,status,cmdline}`. Unlike `docker top` this runs no
//! `ps` and publishes no `top` event, so a page can refresh it freely.

use serde::Serialize;

/// One process of a container.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    /// Real user id.
    pub uid: u32,
    /// `R`, `S`, `D`, `Z`, ... as the kernel reports it.
    pub state: String,
    /// Threads.
    pub threads: u64,
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size, in bytes.
    pub rss: u64,
    /// Seconds since the host booted when the process started.
    pub started: f64,
    /// The command line (the command name in brackets for kernel threads
    /// and zombies, as ps shows them).
    pub command: String,
}

/// USER_HZ, the unit of `/proc/<pid>/stat` times (100 on Linux).
const CLOCK_TICKS: f64 = 100.0;

/// Parses `/proc/<pid>/stat`; the command name is in parentheses and may
/// itself hold spaces and parentheses, so fields are counted from the last
/// `)`.
pub fn parse_stat(pid: u32, text: &str, page_size: u64) -> Option<ProcessInfo> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = &text[open + 1..close];
    let f: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // After the name: state(0) ppid(1) ... utime(11) stime(12) ...
    // num_threads(17) starttime(19) vsize(20) rss(21).
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Some(ProcessInfo {
        pid,
        ppid: num(1) as u32,
        uid: 0,
        state: f.first()?.to_string(),
        threads: num(17),
        cpu_seconds: (num(11) + num(12)) as f64 / CLOCK_TICKS,
        rss: num(21) * page_size,
        started: num(19) as f64 / CLOCK_TICKS,
        command: format!("[{comm}]"),
    })
}

/// The real uid of a `/proc/<pid>/status`.
fn parse_uid(status: &str) -> u32 {
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// What `/proc` tells about each of `pids`, ordered by pid; processes
/// that exited meanwhile are left out.
pub fn read_processes(pids: &[u32]) -> Vec<ProcessInfo> {
    // SAFETY: sysconf reads a constant of the running kernel; no memory is passed.
    let page_size = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as u64,
        _ => 4096,
    };
    let mut out: Vec<ProcessInfo> = pids
        .iter()
        .filter_map(|&pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let mut p = parse_stat(pid, &stat, page_size)?;
            if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                p.uid = parse_uid(&status);
            }
            if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
                let words: Vec<String> = cmd
                    .split(|b| *b == 0)
                    .filter(|w| !w.is_empty())
                    .map(|w| String::from_utf8_lossy(w).into_owned())
                    .collect();
                if !words.is_empty() {
                    p.command = words.join(" ");
                }
            }
            Some(p)
        })
        .collect();
    out.sort_by_key(|p| p.pid);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_names_parses() {
        let text = "42 (sh (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 3 0 12345 1000000 25 18446744073709551615";
        let p = parse_stat(42, text, 4096).unwrap();
        assert_eq!(p.pid, 42);
        assert_eq!(p.ppid, 1);
        assert_eq!(p.state, "S");
        assert_eq!(p.threads, 3);
        assert_eq!(p.cpu_seconds, 2.0);
        assert_eq!(p.rss, 25 * 4096);
        assert_eq!(p.started, 123.45);
        assert_eq!(p.command, "[sh (x) y]");
        assert_eq!(parse_uid("Name:\tsh\nUid:\t1000\t1000\t1000\t1000\n"), 1000);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let list = read_processes(&[me, u32::MAX]);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].pid, me);
        assert!(list[0].rss > 0);
        assert!(!list[0].command.is_empty());
    }
}

//! What the results were measured on: the machine (CPUs, memory, kernel,
//! load average) and the versions of everything compared (berth's commit,
//! dockerd, containerd, runc, the docker CLI).

use std::path::Path;
use std::process::Command;

/// `nproc`, the CPU model, memory, kernel and host name.
pub fn describe() -> Vec<(String, String)> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    vec![
        ("host".into(), hostname()),
        ("CPUs (nproc)".into(), format!("{cpus} × {model}")),
        (
            "memory".into(),
            format!("{:.1} GiB", mem_kib as f64 / 1024.0 / 1024.0),
        ),
        ("kernel".into(), first_line(&["uname", "-srm"])),
    ]
}

/// The short host name, as the results file name uses it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// `/proc/loadavg`'s three averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Versions of the daemons, runtimes and CLI compared, and berth's commit.
pub fn versions(
    repo: &Path,
    berthd: &Path,
    dockerd: &Path,
    docker: &Path,
) -> Vec<(String, String)> {
    let commit = first_line(&[
        "git",
        "-C",
        &repo.display().to_string(),
        "describe",
        "--always",
        "--dirty",
    ]);
    vec![
        ("berth commit".into(), commit),
        (
            "berthd".into(),
            first_line(&[&berthd.display().to_string(), "--version"]),
        ),
        (
            "dockerd".into(),
            first_line(&[&dockerd.display().to_string(), "--version"]),
        ),
        (
            "containerd".into(),
            first_line(&["containerd", "--version"]),
        ),
        ("runc".into(), first_line(&["runc", "--version"])),
        (
            "docker CLI".into(),
            first_line(&[&docker.display().to_string(), "--version"]),
        ),
    ]
}

fn first_line(argv: &[&str]) -> String {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

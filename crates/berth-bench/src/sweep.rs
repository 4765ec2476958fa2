//! `berth-bench sweep DIR`, which bench/run's trap calls so that a killed
//! or crashed run leaves nothing behind: processes started under DIR and the
//! containers they ran, zpools and loop devices backed by files in DIR,
//! mounts below DIR, the bridges the run made — then DIR itself. A run that
//! finished cleanly leaves nothing for it to do.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_testkit::leaks::processes_where;
use berth_testkit::loopfs::loops_backed_under;
use berth_testkit::mountinfo;
use berth_testkit::network::{firewall_table, remove_leftovers};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Removes everything the run in `dir` left; prints what it found.
pub fn sweep(dir: &Path) {
    let Ok(dir) = dir.canonicalize() else {
        return;
    };
    let dir_text = dir.display().to_string();
    // Daemons, containerd, shims, the registry and container processes
    // (found by their root directory). zfs-fuse stays until its pools go.
    let killed = kill_matching(|cmdline, root| {
        !cmdline.starts_with("zfs-fuse") && (cmdline.contains(&dir_text) || root.starts_with(&dir))
    });
    for (pid, cmd) in &killed {
        println!("sweep: killed {pid}: {cmd}");
    }
    destroy_pools(&dir_text);
    let _ =
        kill_matching(|cmdline, _| cmdline.starts_with("zfs-fuse") && cmdline.contains(&dir_text));
    if let Ok(mounts) = mountinfo::unmount_all_under(&dir) {
        for m in mounts {
            println!("sweep: unmounted {}", m.mount_point.display());
        }
    }
    if let Ok(loops) = loops_backed_under(&dir) {
        for l in loops {
            println!("sweep: detaching {}", l.device.display());
            let _ = Command::new("losetup").arg("-d").arg(&l.device).status();
        }
    }
    let bridges: Vec<String> = std::fs::read_to_string(dir.join("bridges"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    for b in &bridges {
        remove_leftovers(std::slice::from_ref(b), &firewall_table(b));
    }
    let still_mounted = mountinfo::mounts_under(&dir)
        .map(|m| !m.is_empty())
        .unwrap_or(true);
    if still_mounted {
        println!("sweep: {} still has mounts; left in place", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// SIGKILLs processes `matches(cmdline, root)` accepts and waits for them.
fn kill_matching(matches: impl Fn(&str, &Path) -> bool) -> Vec<(i32, String)> {
    let found = processes_where(matches);
    for (pid, _) in &found {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while found
        .iter()
        .any(|(p, _)| kill(Pid::from_raw(*p), None).is_ok())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    found
}

/// `zpool destroy -f` of every pool whose vdev file is under `dir`.
fn destroy_pools(dir: &str) {
    let Ok(out) = Command::new("zpool")
        .args(["list", "-H", "-o", "name"])
        .stderr(Stdio::null())
        .output()
    else {
        return;
    };
    for pool in String::from_utf8_lossy(&out.stdout).lines() {
        let status = Command::new("zpool")
            .args(["status", "-P", pool])
            .stderr(Stdio::null())
            .output();
        let mentions = status
            .map(|s| String::from_utf8_lossy(&s.stdout).contains(dir))
            .unwrap_or(false);
        if mentions {
            println!("sweep: destroying zpool {pool}");
            let _ = berth_testkit::zfs::with_mount_lock(|| {
                Command::new("zpool").args(["destroy", "-f", pool]).status()
            });
        }
    }
}

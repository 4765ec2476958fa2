//! Container lifecycle rows, through the docker CLI and timed from its spawn
//! to its exit: create, rm, run --rm, run -d then stop, commit. What each
//! row leaves (containers, images) is removed untimed so the next row and
//! the next repetition start from the same state.

use std::time::{Duration, Instant};

use crate::engines::Engine;
use crate::samples::Unit;
use crate::suite::{ms, Suite, IMAGE};

/// A container that exits at once on SIGTERM. `sh` as PID 1 has no
/// default signal handlers, so a plain `sleep` would make `docker stop`
/// wait out its 10 s grace period and time the timeout, not the stop.
pub const STOPPABLE: &[&str] = &["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"];

/// `docker create IMG true`, then `docker rm` of each created container.
pub fn create_and_rm(s: &mut Suite) {
    let mut made: [Vec<String>; 2] = Default::default();
    let times = s.alternate(s.reps.create, |e, _| {
        let (t, out) = e.time_output(&["create", IMAGE, "true"]);
        made[e.side.index()].push(out.trim().to_string());
        ms(t)
    });
    let row = s.row("docker create", Unit::Millis, &times);
    s.push(row);
    let times = s.alternate(s.reps.create, |e, i| {
        ms(e.time(&["rm", &made[e.side.index()][i]]))
    });
    let row = s.row("docker rm (created container)", Unit::Millis, &times);
    s.push(row);
}

/// `docker run --rm IMG true`: create, start, attach, wait, remove.
pub fn run_rm(s: &mut Suite) {
    let times = s.alternate(s.reps.run_rm, |e, _| {
        ms(e.time(&["run", "--rm", IMAGE, "true"]))
    });
    let row = s.row("docker run --rm IMG true", Unit::Millis, &times);
    s.push(row);
}

/// `docker run -d` of a long-running container, then `docker stop` of it,
/// one pair per repetition (so only one container runs at a time).
pub fn run_detached_and_stop(s: &mut Suite) {
    let pairs = s.alternate(s.reps.run_stop, |e, _| {
        let mut args = vec!["run", "-d", IMAGE];
        args.extend_from_slice(STOPPABLE);
        let (run, out) = e.time_output(&args);
        let id = out.trim().to_string();
        wait_for_term_trap(e, &id);
        let stop = e.time(&["stop", &id]);
        e.docker(&["rm", &id]);
        (ms(run), ms(stop))
    });
    let run = pairs.clone().map(|v| v.iter().map(|p| p.0).collect());
    let stop = pairs.map(|v| v.iter().map(|p| p.1).collect());
    let row = s.row("docker run -d (long-running)", Unit::Millis, &run);
    s.push(row);
    let row = s
        .row("docker stop", Unit::Millis, &stop)
        .with_note("container exits on SIGTERM");
    s.push(row);
}

/// Waits (untimed) until the container's shell has installed its SIGTERM
/// trap: `run -d` returns once the process exists, and a stop that beats
/// the `trap` builtin would be ignored by PID 1 and time the 10 s grace
/// period instead (seen on zfs-fuse, where start-up is slower).
fn wait_for_term_trap(e: &Engine, id: &str) {
    let pid = e.api("GET", &format!("/containers/{id}/json"), None).json()["State"]["Pid"]
        .as_i64()
        .unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .unwrap_or(0);
        if caught & (1 << (libc::SIGTERM - 1)) != 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("{}: container {id} never trapped SIGTERM", e.name());
}

/// `docker commit` of a stopped container with one changed file. The
/// container stays (it counts among the df and ps containers later).
pub fn commit(s: &mut Suite) {
    for e in s.engines() {
        e.docker(&[
            "run",
            "--name",
            "bench-commit",
            IMAGE,
            "sh",
            "-c",
            "echo committed > /committed.txt",
        ]);
    }
    let times = s.alternate(s.reps.commit, |e, i| {
        let tag = format!("bench/commit:{i}");
        let t = e.time(&["commit", "bench-commit", &tag]);
        e.docker(&["rmi", &tag]);
        ms(t)
    });
    let row = s.row(
        "docker commit (stopped, one file changed)",
        Unit::Millis,
        &times,
    );
    s.push(row);
}

//! Live restore through the real docker CLI: berthd is killed with SIGKILL
//! while containers run, one of them exits and another writes output while
//! it is down; after a fresh start (twice) `docker ps`, `logs [-f]`, `exec`,
//! `stop`, `wait`, `unpause` and `attach` work on the re-adopted containers,
//! and the one that exited shows its real exit code.

#[macro_use]
mod support;

use std::path::Path;

use berth_testkit::busybox;
use support::containers::{wait_until, Background, ContainerHost};
use support::Backend;

const IMG: &str = busybox::IMAGE;

per_driver_split!(
    all: [],
    btrfs_overlay2: [containers_outlive_a_killed_daemon],
);

/// Whether process `pid` still exists (a zombie counts as gone).
fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st != "Z"))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

fn containers_outlive_a_killed_daemon(backend: Backend) {
    let mut h = ContainerHost::start(backend);
    // The containers take their cues from files the test creates in a
    // bind-mounted directory, so nothing here depends on timing.
    let ctl = h.scratch_dir().join("ctl");
    std::fs::create_dir_all(&ctl).unwrap();
    let bind = format!("{}:/ctl", ctl.display());
    h.run_detached(&[
        "--name",
        "steady",
        "-v",
        &bind,
        IMG,
        "sh",
        "-c",
        "trap 'echo got TERM; exit 0' TERM; echo before; \
         while [ ! -e /ctl/go ]; do sleep 0.1; done; echo while-down; touch /ctl/said; \
         while [ ! -e /ctl/again ]; do sleep 0.1; done; echo after-restart; \
         while :; do sleep 0.1; done",
    ]);
    h.run_detached(&[
        "--name",
        "leaver",
        "-v",
        &bind,
        IMG,
        "sh",
        "-c",
        "while [ ! -e /ctl/exit ]; do sleep 0.1; done; exit 42",
    ]);
    // Two more that end while berthd is down: one --rm (it must be gone
    // afterwards) and one whose on-failure policy wants one more run.
    h.run_detached(&[
        "--rm",
        "--name",
        "ephemeral",
        "-v",
        &bind,
        IMG,
        "sh",
        "-c",
        "while [ ! -e /ctl/exit ]; do sleep 0.1; done; exit 3",
    ]);
    h.run_detached(&[
        "--name",
        "retry",
        "--restart",
        "on-failure:1",
        "-v",
        &bind,
        IMG,
        "sh",
        "-c",
        "echo run; while [ ! -e /ctl/exit ]; do sleep 0.1; done; exit 4",
    ]);
    h.run_detached(&["--name", "waited", IMG, "sleep", "1000"]);
    h.run_detached(&["--name", "frozen", IMG, "sleep", "1000"]);
    h.run_detached(&["-it", "--name", "tty", IMG, "sh"]);
    h.docker(&["pause", "frozen"]).ok();
    h.wait_for_log("steady", "before");
    let leaver_pid = h.state("leaver")["Pid"].as_i64().unwrap();
    let ended_pids: Vec<i64> = ["ephemeral", "retry"]
        .iter()
        .map(|n| h.state(n)["Pid"].as_i64().unwrap())
        .collect();
    let pids: Vec<(String, i64)> = ["steady", "waited", "frozen", "tty"]
        .iter()
        .map(|n| (n.to_string(), h.state(n)["Pid"].as_i64().unwrap()))
        .collect();

    h.kill9();
    std::fs::write(ctl.join("go"), "").unwrap();
    std::fs::write(ctl.join("exit"), "").unwrap();
    wait_until("steady to write while berthd is down", || {
        Path::new(&ctl.join("said")).exists()
    });
    wait_until("leaver to exit while berthd is down", || !alive(leaver_pid));
    for pid in ended_pids {
        wait_until("the others to exit while berthd is down", || !alive(pid));
    }
    h.start();

    let ps = h.docker(&["ps", "--format", "{{.Names}} {{.Status}}"]).ok();
    let mut running: Vec<&str> = ps
        .lines()
        .iter()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    running.sort();
    assert_eq!(running, ["frozen", "steady", "tty", "waited"], "{ps}");
    assert!(ps.stdout.contains("(Paused)"), "{ps}");
    for (name, pid) in &pids {
        assert_eq!(
            h.state(name)["Pid"].as_i64(),
            Some(*pid),
            "{name} kept its process"
        );
    }

    // The one that exited meanwhile: its real exit code, everywhere.
    let state = h.state("leaver");
    assert_eq!(
        (state["Status"].as_str(), state["ExitCode"].as_i64()),
        (Some("exited"), Some(42)),
        "{state}"
    );
    assert_eq!(h.docker(&["wait", "leaver"]).ok().out(), "42");
    let ps = h
        .docker(&[
            "ps",
            "-a",
            "--filter",
            "name=leaver",
            "--format",
            "{{.Status}}",
        ])
        .ok();
    assert!(ps.out().starts_with("Exited (42)"), "{ps}");

    // The --rm one is removed; the on-failure one ran once more (and, its
    // trigger still there, ended again).
    wait_until("ephemeral to be removed", || {
        !h.docker(&["ps", "-a", "--format", "{{.Names}}"])
            .ok()
            .lines()
            .contains(&"ephemeral")
    });
    wait_until("retry to use its one restart", || {
        let c = h.inspect("retry");
        c["State"]["Status"] == "exited" && c["RestartCount"] == 1
    });
    assert_eq!(h.state("retry")["ExitCode"], 4);
    assert_eq!(h.logs("retry"), "run\nrun\n");

    // Output written while berthd was down is in the log, and a follower
    // started now sees what comes next.
    assert_eq!(h.logs("steady"), "before\nwhile-down\n");
    h.docker(&["exec", "steady", "true"]).ok();
    let follow = Background::start(&h, &["logs", "-f", "steady"]);
    std::fs::write(ctl.join("again"), "").unwrap();
    h.wait_for_log("steady", "after-restart");

    // A second crash re-adopts the re-adopted containers.
    h.kill9();
    let (_, out, _) = follow.finish();
    assert!(out.starts_with("before\nwhile-down\n"), "{out}");
    h.start();
    for (name, pid) in &pids {
        assert_eq!(
            h.state(name)["Pid"].as_i64(),
            Some(*pid),
            "{name} after a second crash"
        );
    }
    let follow = Background::start(&h, &["logs", "-f", "steady"]);

    // wait, then stop: the waiter gets the exit code.
    let waiter = Background::start(&h, &["wait", "waited"]);
    h.docker(&["kill", "waited"]).ok();
    let (code, out, err) = waiter.finish();
    assert_eq!((code, out.trim()), (Some(0), "137"), "{err}");

    h.docker(&["stop", "-t", "1", "steady"]).ok();
    assert_eq!(h.state("steady")["ExitCode"], 0);
    let all = "before\nwhile-down\nafter-restart\ngot TERM\n";
    assert_eq!(h.logs("steady"), all);
    let (code, out, err) = follow.finish();
    assert_eq!((code, out.as_str()), (Some(0), all), "{err}");

    h.docker(&["unpause", "frozen"]).ok();
    h.docker(&["exec", "frozen", "true"]).ok();

    let mut term = berth_testkit::Terminal::spawn(&h.docker_command(&["attach", "tty"]));
    term.send(b"echo back-$((4*4))\r");
    term.expect("back-16");
    term.send(b"exit 3\r");
    let (status, screen) = term.wait();
    assert_eq!(status.code(), Some(3), "{screen}");
}

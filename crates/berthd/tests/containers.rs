//! Containers through the real docker CLI on each storage driver: run and
//! exit codes, logs/stop/wait/pause/top/rename, exec and attach on a real
//! pty, cp/commit/diff/export (and cp paths that try to leave the rootfs),
//! volumes and mounts, memory and pids limits, restart policies, bad input.
//! Every test ends by checking that its containers left nothing behind.

#[macro_use]
mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use berth_testkit::archive::{members, sha256_digest};
use berth_testkit::scratch::unique_name;
use berth_testkit::terminal::DETACH_KEYS;
use berth_testkit::{busybox, leaks, Terminal};
use serde_json::json;
use support::containers::{exit_code, wait_until, Background, ContainerHost};
use support::Backend;

const IMG: &str = busybox::IMAGE;

per_driver_split!(
    all: [
        run_exit_codes_and_settings,
        copy_commit_diff_export,
        bad_input_is_refused_like_dockerd,
    ],
    btrfs_overlay2: [
        logs_stop_wait_pause_top_rename,
        exec_and_attach_on_a_pty,
        volumes_and_mounts,
        memory_and_pids_limits,
        restart_policies,
    ],
);

/// The content of `file` in a container's cgroup (the first controller
/// that has it), `None` when no cgroup of the container has that file.
fn cgroup_value(id: &str, file: &str) -> Option<String> {
    let path = leaks::cgroup_files(id, file).into_iter().next()?;
    Some(std::fs::read_to_string(path).ok()?.trim().to_string())
}

/// Whether the kernel holds the container's processes frozen (cgroup v1
/// freezer or v2 `cgroup.freeze`).
#[track_caller]
fn frozen(id: &str) -> bool {
    match (
        cgroup_value(id, "freezer.state"),
        cgroup_value(id, "cgroup.freeze"),
    ) {
        (Some(state), _) => state == "FROZEN",
        (None, Some(freeze)) => freeze == "1",
        (None, None) => panic!("no freezer cgroup for {id}"),
    }
}

/// `docker run --rm IMG echo hello`, exit codes through run/inspect/wait,
/// stdout and stderr kept apart, `-e`/`-w`/`-u`, `--init`, the hostname,
/// rename.
fn run_exit_codes_and_settings(backend: Backend) {
    let h = ContainerHost::start(backend);

    let out = h.docker(&["run", "--rm", IMG, "echo", "hello"]).ok();
    assert_eq!(out.stdout, "hello\n", "{out}");

    let out = h.docker(&["run", "--name", "three", IMG, "sh", "-c", "exit 3"]);
    assert_eq!(exit_code(&out), Some(3), "{out}");
    let state = h.state("three");
    assert_eq!(state["Status"], "exited");
    assert_eq!(state["ExitCode"], 3);
    assert_eq!(state["Running"], false);
    assert_eq!(h.docker(&["wait", "three"]).ok().out(), "3");

    let out = h
        .docker(&["run", "--rm", IMG, "sh", "-c", "echo out; echo err >&2"])
        .ok();
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("out\n", "err\n")
    );

    // -e, -w (made when missing, as dockerd does), -u by name.
    let out = h
        .docker(&[
            "run",
            "--rm",
            "-e",
            "GREETING=hi there",
            "-w",
            "/made/by/workdir",
            "-u",
            "nobody",
            IMG,
            "sh",
            "-c",
            "echo \"$GREETING\"; pwd; id -u; id -g; touch /x 2>/dev/null || echo denied",
        ])
        .ok();
    assert_eq!(
        out.lines(),
        ["hi there", "/made/by/workdir", "65534", "65534", "denied"],
        "{out}"
    );
    // -u uid:gid that the image does not name.
    let out = h
        .docker(&[
            "run",
            "--rm",
            "-u",
            "1234:5678",
            IMG,
            "sh",
            "-c",
            "id -u; id -g",
        ])
        .ok();
    assert_eq!(out.lines(), ["1234", "5678"], "{out}");
    let out = h.docker(&["run", "--rm", "-u", "nosuchuser", IMG, "true"]);
    assert!(
        !out.success() && out.stderr.contains("unable to find user nosuchuser"),
        "{out}"
    );

    // The hostname is the short ID, in /etc/hostname too.
    h.docker(&[
        "create",
        "--name",
        "named",
        IMG,
        "sh",
        "-c",
        "hostname; cat /etc/hostname",
    ])
    .ok();
    let id = h.id_of("named");
    let out = h.docker(&["start", "-a", "named"]).ok();
    assert_eq!(out.lines(), [&id[..12], &id[..12]], "{out}");

    // --init: tini is PID 1 and passes SIGTERM on, so `sleep` (which has
    // no handler of its own as PID 1) dies of it: 143, not a SIGKILL's 137.
    let out = h
        .docker(&["run", "--rm", "--init", IMG, "cat", "/proc/1/cmdline"])
        .ok();
    assert!(
        out.stdout.starts_with("/sbin/docker-init\0--\0cat"),
        "{out:?}"
    );
    h.run_detached(&["--init", "--name", "initted", IMG, "sleep", "1000"]);
    h.docker(&["stop", "-t", "60", "initted"]).ok();
    assert_eq!(h.state("initted")["ExitCode"], 143);

    // rename: the old name is free, the new one answers.
    h.docker(&["rename", "three", "renamed"]).ok();
    assert_eq!(h.inspect("renamed")["Name"], "/renamed");
    let out = h.docker(&["inspect", "three"]);
    assert!(
        !out.success() && out.stderr.contains("No such object: three"),
        "{out}"
    );
    h.docker(&["create", "--name", "three", IMG, "true"]).ok();
    let out = h.docker(&["rename", "renamed", "three"]);
    assert!(!out.success() && out.stderr.contains("Conflict."), "{out}");
}

/// `docker logs -f` ends when the container stops; `docker stop` honours a
/// SIGTERM trap, and SIGKILLs after `-t 1` when SIGTERM is ignored;
/// `docker wait` returns the exit code; pause freezes the cgroup; top lists
/// the processes; rename and restart.
fn logs_stop_wait_pause_top_rename(backend: Backend) {
    let h = ContainerHost::start(backend);

    h.run_detached(&[
        "--name",
        "talker",
        IMG,
        "sh",
        "-c",
        "echo one; echo two >&2; trap 'echo got TERM; exit 7' TERM; echo ready; \
         while :; do sleep 0.1; done",
    ]);
    h.wait_for_log("talker", "ready");
    let follow = Background::start(&h, &["logs", "-f", "talker"]);
    let waiter = Background::start(&h, &["wait", "talker"]);
    h.docker(&["stop", "talker"]).ok();
    let (code, out, err) = follow.finish();
    assert_eq!(code, Some(0), "logs -f: {out}{err}");
    assert_eq!(out, "one\nready\ngot TERM\n");
    assert_eq!(err, "two\n");
    let (code, out, _) = waiter.finish();
    assert_eq!((code, out.trim()), (Some(0), "7"));
    assert_eq!(h.state("talker")["ExitCode"], 7);

    h.run_detached(&[
        "--name",
        "stubborn",
        IMG,
        "sh",
        "-c",
        "trap '' TERM; echo ready; while :; do sleep 0.1; done",
    ]);
    h.wait_for_log("stubborn", "ready");
    h.docker(&["stop", "-t", "1", "stubborn"]).ok();
    let state = h.state("stubborn");
    assert_eq!(
        (state["Status"].clone(), state["ExitCode"].clone()),
        (json!("exited"), json!(137))
    );
    // SIGTERM, then SIGKILL once the timeout passed. (`--until 0s` leaves
    // out the current second, as with dockerd: poll until it is over.)
    wait_until("the kill events of stubborn", || {
        let signals = h
            .docker(&[
                "events",
                "--since",
                "0",
                "--until",
                "0s",
                "--filter",
                "container=stubborn",
                "--filter",
                "event=kill",
                "--format",
                "{{.Actor.Attributes.signal}}",
            ])
            .ok();
        signals.lines() == ["15", "9"]
    });

    // stop and kill racing the process's own exit: the container exists
    // throughout, so never "No such container"; stop succeeds, kill
    // succeeds or finds it not running (dockerd's 409).
    for i in 0..10 {
        let name = format!("brief{i}");
        h.run_detached(&["--name", &name, IMG, "true"]);
        let kill = h.docker(&["kill", &name]);
        assert!(
            kill.success() || kill.stderr.contains("is not running"),
            "{kill}"
        );
        h.docker(&["stop", &name]).ok();
        h.docker(&["rm", &name]).ok();
    }

    // pause / unpause: the freezer holds every process; exec is refused
    // while paused; top still answers.
    let id = h.run_detached(&["--name", "sleeper", IMG, "sleep", "1000"]);
    h.docker(&["pause", "sleeper"]).ok();
    let state = h.state("sleeper");
    assert_eq!(
        (state["Status"].clone(), state["Paused"].clone()),
        (json!("paused"), json!(true))
    );
    assert!(frozen(&id));
    let out = h.docker(&["exec", "sleeper", "true"]);
    assert!(!out.success() && out.stderr.contains("is paused"), "{out}");
    let out = h.docker(&["pause", "sleeper"]);
    assert!(
        !out.success() && out.stderr.contains("is already paused"),
        "{out}"
    );
    assert!(h
        .docker(&["ps", "--filter", "name=sleeper", "--format", "{{.Status}}"])
        .ok()
        .out()
        .ends_with("(Paused)"));
    h.docker(&["unpause", "sleeper"]).ok();
    assert_eq!(h.state("sleeper")["Status"], "running");
    assert!(!frozen(&id));
    h.docker(&["exec", "sleeper", "true"]).ok();

    // top: ps's header and the container's processes only.
    let top = h.docker(&["top", "sleeper"]).ok();
    let lines = top.lines();
    assert!(
        lines[0].contains("PID") && lines[0].contains("CMD"),
        "{top}"
    );
    assert_eq!(lines.len(), 2, "{top}");
    assert!(lines[1].ends_with("sleep 1000"), "{top}");
    let pid = h.state("sleeper")["Pid"].to_string();
    let top = h.docker(&["top", "sleeper", "-o", "pid,args"]).ok();
    assert_eq!(
        top.lines()[1].split_whitespace().collect::<Vec<_>>(),
        [pid.as_str(), "sleep", "1000"]
    );

    // rename keeps it running; restart gives it a new process.
    h.docker(&["rename", "sleeper", "napper"]).ok();
    let names = h.docker(&["ps", "--format", "{{.Names}}"]).ok();
    assert_eq!(names.lines(), ["napper"]);
    h.docker(&["restart", "-t", "1", "napper"]).ok();
    let state = h.state("napper");
    assert_eq!(state["Status"], "running");
    assert_ne!(state["Pid"].to_string(), pid);
    h.docker(&["kill", "napper"]).ok();
    assert_eq!(h.docker(&["wait", "napper"]).ok().out(), "137");
}

/// `docker exec` with and without a TTY (output, stdin, exit codes, user
/// and workdir), `docker run -it`, and `docker attach` on a real pty:
/// typing, output, detaching with Ctrl-P Ctrl-Q, and attaching again.
fn exec_and_attach_on_a_pty(backend: Backend) {
    let h = ContainerHost::start(backend);
    h.run_detached(&["--name", "box", IMG, "sleep", "1000"]);

    let out = h.docker(&["exec", "box", "sh", "-c", "echo out; echo err >&2; exit 5"]);
    assert_eq!(exit_code(&out), Some(5), "{out}");
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("out\n", "err\n")
    );
    let out = h
        .docker_stdin(
            &["exec", "-i", "box", "sh", "-c", "cat; echo done"],
            b"piped\n",
        )
        .ok();
    assert_eq!(out.stdout, "piped\ndone\n");
    // Without a TTY stdin is data, copied as is (as dockerd does): bytes
    // that happen to spell ctrl-p ctrl-q are no detach.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let want = format!(
        "{}  -\n",
        sha256_digest(&data).trim_start_matches("sha256:")
    );
    let out = h
        .docker_stdin(&["exec", "-i", "box", "sha256sum"], &data)
        .ok();
    assert_eq!(out.stdout, want, "exec -i");
    let out = h
        .docker_stdin(&["run", "-i", "--rm", IMG, "sha256sum"], &data)
        .ok();
    assert_eq!(out.stdout, want, "run -i");
    let out = h
        .docker(&[
            "exec",
            "-u",
            "nobody",
            "-w",
            "/tmp",
            "-e",
            "X=1",
            "box",
            "sh",
            "-c",
            "id -u; pwd; echo $X",
        ])
        .ok();
    assert_eq!(out.lines(), ["65534", "/tmp", "1"]);
    // dockerd answers 126 here (and prints runc's message on stdout).
    let out = h.docker(&["exec", "box", "no-such-command"]);
    assert_eq!(exit_code(&out), Some(126), "{out}");
    assert!(out.stdout.contains("executable file not found"), "{out}");

    // Finished execs leave the container's ExecIDs (as in dockerd) and
    // nothing of theirs on disk.
    let id = h.id_of("box");
    assert_eq!(
        h.docker(&["inspect", "--format", "{{json .ExecIDs}}", "box"])
            .ok()
            .out(),
        "null"
    );
    let exec_dir = h.data_root().join("containers").join(&id).join("exec");
    wait_until("the exec state to be removed", || {
        std::fs::read_dir(&exec_dir).map_or(true, |mut d| d.next().is_none())
    });

    // exec -it: a prompt, a round trip through the shell, the exit code.
    let mut term = Terminal::spawn(&h.docker_command(&["exec", "-it", "box", "sh"]));
    term.expect("/ # ");
    term.send(b"echo hi-$((6*7)); tty\r");
    term.expect("hi-42");
    term.expect("/dev/pts/");
    term.send(b"exit 4\r");
    let (status, screen) = term.wait();
    assert_eq!(status.code(), Some(4), "{screen}");

    // run -it --rm.
    let mut term = Terminal::spawn(&h.docker_command(&["run", "-it", "--rm", IMG, "sh"]));
    term.expect("/ # ");
    term.send(b"echo run-$((5*5))\r");
    term.expect("run-25");
    term.send(b"exit 6\r");
    let (status, screen) = term.wait();
    assert_eq!(status.code(), Some(6), "{screen}");

    // attach to a TTY container, type, detach: it keeps running.
    h.run_detached(&["-it", "--name", "shell", IMG, "sh"]);
    let mut term = Terminal::spawn(&h.docker_command(&["attach", "shell"]));
    term.send(b"echo attached-$((3*3))\r");
    term.expect("attached-9");
    term.send(DETACH_KEYS);
    let (_, screen) = term.wait();
    assert!(screen.contains("read escape sequence"), "{screen}");
    assert_eq!(h.state("shell")["Status"], "running");
    // The CLI caught those keys itself; an API client that sends them has
    // berthd detach it, with dockerd's `detach` event.
    detach_over_the_api(h.socket(), "shell");
    assert_eq!(h.state("shell")["Status"], "running");
    wait_until("the detach event", || {
        let until = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() + 1)
            .to_string();
        h.docker(&[
            "events",
            "--since",
            "0",
            "--until",
            &until,
            "--filter",
            "container=shell",
            "--filter",
            "event=detach",
            "--format",
            "{{.Action}}",
        ])
        .ok()
        .lines()
            == ["detach"]
    });
    // Attach again; the shell's exit ends the container and the attach.
    let mut term = Terminal::spawn(&h.docker_command(&["attach", "shell"]));
    term.send(b"echo again-$((2*2))\r");
    term.expect("again-4");
    term.send(b"exit 9\r");
    let (status, screen) = term.wait();
    assert_eq!(status.code(), Some(9), "{screen}");
    assert_eq!(h.state("shell")["ExitCode"], 9);

    // run -it, detach, attach again: typing still reaches the shell (a
    // TTY's stdin is not closed when the first client goes, even with the
    // StdinOnce that `run -i` sets).
    let mut term =
        Terminal::spawn(&h.docker_command(&["run", "-it", "--name", "again", IMG, "sh"]));
    term.send(b"echo first-$((1+1))\r");
    term.expect("first-2");
    term.send(DETACH_KEYS);
    let (status, screen) = term.wait();
    assert_eq!(status.code(), Some(0), "{screen}");
    assert_eq!(h.state("again")["Status"], "running");
    let mut term = Terminal::spawn(&h.docker_command(&["attach", "again"]));
    term.send(b"echo second-$((2+2))\r");
    term.expect("second-4");
    term.send(b"exit 7\r");
    let (status, screen) = term.wait();
    assert_eq!(status.code(), Some(7), "{screen}");

    // attach without a TTY: stdin reaches the process, output comes back,
    // the attach ends with the container's exit code. The client's stdin
    // stays open until then: dockerd ends a non-StdinOnce attach's output
    // as soon as the client's stdin ends (berth keeps it flowing).
    h.run_detached(&[
        "-i",
        "--name",
        "reader",
        IMG,
        "sh",
        "-c",
        "read line; echo got:$line; exit 2",
    ]);
    let (attach, mut input) = Background::start_with_stdin(&h, &["attach", "reader"]);
    input.write_all(b"hello\n").unwrap();
    let (code, out, err) = attach.finish();
    drop(input);
    assert_eq!((code, out.as_str()), (Some(2), "got:hello\n"), "{err}");
}

/// docker cp both ways on a running and a stopped container, commit and a
/// container from the new image, diff, export; cp paths that climb out with
/// `..` or through symlinks stay inside the container.
fn copy_commit_diff_export(backend: Backend) {
    let h = ContainerHost::start(backend);
    let host = h.scratch_dir().join("cp");
    std::fs::create_dir_all(host.join("tree/sub")).unwrap();
    std::fs::write(host.join("from-host.txt"), "from the host\n").unwrap();
    std::fs::write(host.join("tree/sub/deep.txt"), "deep\n").unwrap();

    h.run_detached(&["--name", "files", IMG, "sleep", "1000"]);
    // A fresh container has no changes (its hosts/hostname/resolv.conf
    // mount points live below the writable layer, as dockerd's init layer).
    assert_eq!(h.docker(&["diff", "files"]).ok().out(), "");
    h.docker(&[
        "exec",
        "files",
        "sh",
        "-c",
        "echo made inside > /made.txt; rm /data/keep.txt; echo more >> /etc/berth-release; \
         mkdir /newdir; echo x > /newdir/f",
    ])
    .ok();

    // cp into and out of the running container.
    let src = host.join("from-host.txt");
    h.docker(&["cp", src.to_str().unwrap(), "files:/tmp/from-host.txt"])
        .ok();
    h.docker(&["cp", host.join("tree").to_str().unwrap(), "files:/copied"])
        .ok();
    let out = h
        .docker(&[
            "exec",
            "files",
            "cat",
            "/tmp/from-host.txt",
            "/copied/sub/deep.txt",
        ])
        .ok();
    assert_eq!(out.stdout, "from the host\ndeep\n");
    let back = host.join("made.txt");
    h.docker(&["cp", "files:/made.txt", back.to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "made inside\n");
    let data = h.cli().run(&["cp", "files:/data", "-"]);
    assert!(data.success(), "{data}");

    let changes: BTreeSet<String> = h
        .docker(&["diff", "files"])
        .ok()
        .lines()
        .into_iter()
        .map(str::to_string)
        .collect();
    let want: BTreeSet<String> = [
        "A /made.txt",
        "C /data",
        "D /data/keep.txt",
        "C /etc",
        "C /etc/berth-release",
        "A /newdir",
        "A /newdir/f",
        "C /tmp",
        "A /tmp/from-host.txt",
        "A /copied",
        "A /copied/sub",
        "A /copied/sub/deep.txt",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(changes, want);

    // commit: a container from the new image sees the changes.
    h.docker(&["commit", "files", "berth-test/committed:v1"])
        .ok();
    let out = h
        .docker(&[
            "run",
            "--rm",
            "berth-test/committed:v1",
            "sh",
            "-c",
            "cat /made.txt /tmp/from-host.txt /etc/berth-release; test -e /data/keep.txt || echo keep.txt gone",
        ])
        .ok();
    assert_eq!(
        out.stdout,
        "made inside\nfrom the host\nberth test image\nmore\nkeep.txt gone\n"
    );
    let layers = |image: &str| {
        h.docker(&[
            "image",
            "inspect",
            "--format",
            "{{len .RootFS.Layers}}",
            image,
        ])
        .ok()
        .out()
        .parse::<usize>()
        .unwrap()
    };
    assert_eq!(layers("berth-test/committed:v1"), layers(IMG) + 1);

    // export: the whole filesystem, changes included.
    let tar = host.join("export.tar");
    h.docker(&["export", "-o", tar.to_str().unwrap(), "files"])
        .ok();
    let exported = members(&std::fs::read(&tar).unwrap()).unwrap();
    for want in [
        "bin/busybox",
        "data/hello.txt",
        "made.txt",
        "newdir/f",
        "copied/sub/deep.txt",
    ] {
        assert!(
            exported.contains_key(want),
            "{want} missing from export: {:?}",
            exported.keys()
        );
    }
    assert!(!exported.contains_key("data/keep.txt"));
    assert_eq!(exported["made.txt"], b"made inside\n");

    // Paths that try to leave the rootfs: symlinks to / and to a relative
    // climb, and `..` in the path itself.
    h.docker(&[
        "exec",
        "files",
        "sh",
        "-c",
        "ln -s / /escape; ln -s ../../../../../../.. /rel",
    ])
    .ok();
    check_cp_stays_inside(&h, "files", &host, "running");
    h.docker(&["kill", "files"]).ok();
    // Stopped: cp in and out, diff, and the escapes again.
    h.docker(&["cp", src.to_str().unwrap(), "files:/stopped-copy.txt"])
        .ok();
    let back = host.join("stopped-copy.txt");
    h.docker(&["cp", "files:/stopped-copy.txt", back.to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "from the host\n");
    assert!(h
        .docker(&["diff", "files"])
        .ok()
        .lines()
        .contains(&"A /stopped-copy.txt"));
    check_cp_stays_inside(&h, "files", &host, "stopped");
}

/// `docker cp` through `/escape -> /`, `/rel -> ../../..` and `..` in the
/// container path: writes land inside the container (or are refused),
/// reads see the container's files, and the host never sees a marker.
#[track_caller]
fn check_cp_stays_inside(h: &ContainerHost, name: &str, host: &Path, when: &str) {
    let marker = unique_name("berth-cp-escape");
    let src = host.join(&marker);
    std::fs::write(&src, "must stay in the container\n").unwrap();
    let src = src.to_str().unwrap();
    let host_tmp = Path::new("/tmp").join(&marker);
    let host_dir = host.display().to_string();
    let attempts = [
        format!("{name}:/escape/tmp/{marker}"),
        format!("{name}:/rel/tmp/{marker}"),
        format!("{name}:/rel{host_dir}/{marker}.rel"),
        format!("{name}:../../../../tmp/{marker}"),
        format!("{name}:/../../../..{host_dir}/{marker}.dots"),
    ];
    for dst in &attempts {
        // Success (inside the container) and refusal are both fine; the
        // host must not change.
        let _ = h.docker(&["cp", src, dst]);
    }
    assert!(
        !host_tmp.exists(),
        "{when}: {} written on the host",
        host_tmp.display()
    );
    for suffix in [".rel", ".dots"] {
        let p = host.join(format!("{marker}{suffix}"));
        assert!(!p.exists(), "{when}: {} written on the host", p.display());
    }
    let secret = host.join(format!("{marker}.secret"));
    std::fs::write(&secret, "host secret\n").unwrap();
    for path in [
        format!("{name}:/rel{}", secret.display()),
        format!("{name}:/escape{}", secret.display()),
        format!("{name}:/../../..{}", secret.display()),
    ] {
        let out = h.docker(&["cp", &path, "-"]);
        assert!(
            !out.success() && !out.stdout.contains("host secret"),
            "{when}: {out}"
        );
    }
    // Through the symlink to /, a read finds the container's own file.
    let out = h
        .docker(&["cp", &format!("{name}:/escape/etc/berth-release"), "-"])
        .ok();
    assert!(out.stdout.contains("berth test image\n"), "{when}: {out}");
}

/// Named volumes persist (copied up from the image on first use) and are
/// refused removal while used; anonymous volumes go with `rm -v`;
/// `--read-only` refuses writes except to tmpfs and volumes; `--tmpfs`
/// size; read-only and read-write bind mounts.
fn volumes_and_mounts(backend: Backend) {
    let h = ContainerHost::start(backend);

    let out = h
        .docker(&[
            "run",
            "--rm",
            "-v",
            "keep:/data",
            IMG,
            "sh",
            "-c",
            "cat /data/hello.txt; echo persisted > /data/f",
        ])
        .ok();
    assert_eq!(out.stdout, "hello from layer 3\n", "{out}");
    h.docker(&[
        "run",
        "--name",
        "user",
        "-v",
        "keep:/data",
        IMG,
        "cat",
        "/data/f",
    ])
    .ok();
    assert_eq!(h.logs("user"), "persisted\n");
    let mountpoint = h
        .docker(&["volume", "inspect", "--format", "{{.Mountpoint}}", "keep"])
        .ok();
    assert_eq!(
        std::fs::read_to_string(Path::new(mountpoint.out()).join("f")).unwrap(),
        "persisted\n"
    );
    let out = h.docker(&["volume", "rm", "keep"]);
    assert!(
        !out.success() && out.stderr.contains("volume is in use"),
        "{out}"
    );
    h.docker(&["rm", "user"]).ok();
    h.docker(&["volume", "rm", "keep"]).ok();

    h.docker(&[
        "run",
        "--name",
        "anon",
        "-v",
        "/anon",
        IMG,
        "sh",
        "-c",
        "echo a > /anon/f",
    ])
    .ok();
    let mounts = h.inspect("anon")["Mounts"].clone();
    assert_eq!(mounts[0]["Type"], "volume", "{mounts}");
    let vol = mounts[0]["Name"].as_str().unwrap().to_string();
    assert_eq!(vol.len(), 64, "{mounts}");
    h.docker(&["rm", "-v", "anon"]).ok();
    let vols = h.docker(&["volume", "ls", "-q"]).ok();
    assert!(!vols.lines().contains(&vol.as_str()), "{vols}");

    let out = h.docker(&["run", "--rm", "--read-only", IMG, "sh", "-c", "echo x > /x"]);
    assert!(
        exit_code(&out) == Some(1) && out.stderr.contains("Read-only file system"),
        "{out}"
    );
    let out = h
        .docker(&[
            "run",
            "--rm",
            "--read-only",
            "--tmpfs",
            "/scratch",
            "-v",
            "rw:/v",
            IMG,
            "sh",
            "-c",
            "echo t > /scratch/t && echo v > /v/v && cat /scratch/t /v/v",
        ])
        .ok();
    assert_eq!(out.stdout, "t\nv\n");

    let out = h
        .docker(&[
            "run",
            "--rm",
            "--tmpfs",
            "/small:size=1m",
            IMG,
            "sh",
            "-c",
            "grep ' /small ' /proc/mounts; head -c 2000000 /dev/zero > /small/big || echo full",
        ])
        .ok();
    let lines = out.lines();
    assert!(
        lines[0].starts_with("tmpfs /small tmpfs") && lines[0].contains("size=1024k"),
        "{out}"
    );
    assert_eq!(lines.last(), Some(&"full"), "{out}");

    let bind = h.scratch_dir().join("bind");
    std::fs::create_dir_all(&bind).unwrap();
    std::fs::write(bind.join("f"), "on the host\n").unwrap();
    let spec = format!("type=bind,src={},dst=/b,readonly", bind.display());
    let out = h
        .docker(&[
            "run",
            "--rm",
            "--mount",
            &spec,
            IMG,
            "sh",
            "-c",
            "cat /b/f; echo changed > /b/f || echo refused",
        ])
        .ok();
    assert!(
        out.stdout.starts_with("on the host\n") && out.stdout.ends_with("refused\n"),
        "{out}"
    );
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    assert_eq!(
        std::fs::read_to_string(bind.join("f")).unwrap(),
        "on the host\n"
    );
    let rw = format!("{}:/b", bind.display());
    h.docker(&[
        "run",
        "--rm",
        "-v",
        &rw,
        IMG,
        "sh",
        "-c",
        "echo from the container > /b/g",
    ])
    .ok();
    assert_eq!(
        std::fs::read_to_string(bind.join("g")).unwrap(),
        "from the container\n"
    );
    let missing = h.scratch_dir().join("no-such-dir");
    let spec = format!("type=bind,src={},dst=/b", missing.display());
    let out = h.docker(&["run", "--rm", "--mount", &spec, IMG, "true"]);
    assert!(
        !out.success() && out.stderr.contains("bind source path does not exist"),
        "{out}"
    );
    assert!(!missing.exists());
}

/// `-m 32m` with a process that allocates more ends `OOMKilled: true`;
/// one that stays below does not; `--pids-limit` bounds a fork bomb and
/// the container still answers.
fn memory_and_pids_limits(backend: Backend) {
    let h = ContainerHost::start(backend);

    // `tail` keeps the whole (newline-free) input in memory.
    let out = h.docker(&[
        "run",
        "--name",
        "oom",
        "-m",
        "32m",
        IMG,
        "sh",
        "-c",
        "head -c 100m /dev/zero | tail",
    ]);
    assert_eq!(exit_code(&out), Some(137), "{out}");
    let state = h.state("oom");
    assert_eq!(
        (state["OOMKilled"].clone(), state["ExitCode"].clone()),
        (json!(true), json!(137)),
        "{state}"
    );
    assert_eq!(h.inspect("oom")["HostConfig"]["Memory"], 32 * 1024 * 1024);
    h.docker(&[
        "run",
        "--name",
        "fits",
        "-m",
        "32m",
        IMG,
        "sh",
        "-c",
        "head -c 4m /dev/zero | tail | wc -c",
    ])
    .ok();
    assert_eq!(h.state("fits")["OOMKilled"], false);

    let id = h.run_detached(&[
        "--name",
        "bounded",
        "--pids-limit",
        "10",
        IMG,
        "sleep",
        "1000",
    ]);
    assert_eq!(cgroup_value(&id, "pids.max").as_deref(), Some("10"));
    // Thirty background sleeps; most forks fail. Their output goes nowhere
    // so the exec's streams end with the shell.
    let _ = h.docker(&[
        "exec",
        "bounded",
        "sh",
        "-c",
        "i=0; while [ $i -lt 30 ]; do (sleep 1000 </dev/null >/dev/null 2>&1 &) 2>/dev/null; i=$((i+1)); done",
    ]);
    let top = h.docker(&["top", "bounded"]).ok();
    let sleeps = top
        .lines()
        .iter()
        .filter(|l| l.ends_with("sleep 1000"))
        .count();
    assert!(
        (2..=10).contains(&sleeps),
        "{sleeps} sleeps under a limit of 10:\n{top}"
    );
    assert_eq!(h.state("bounded")["Status"], "running");
    h.docker(&["stop", "-t", "1", "bounded"]).ok();
    assert_eq!(h.state("bounded")["Status"], "exited");
}

/// `--restart on-failure:2` runs three times; `always` comes back after a
/// daemon restart, also when its process died while the daemon was down;
/// `unless-stopped` stays stopped once stopped.
fn restart_policies(backend: Backend) {
    let mut h = ContainerHost::start(backend);

    h.run_detached(&[
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        IMG,
        "sh",
        "-c",
        "echo run; exit 1",
    ]);
    wait_until("flaky to give up", || {
        let c = h.inspect("flaky");
        c["State"]["Status"] == "exited" && c["RestartCount"] == 2
    });
    assert_eq!(h.logs("flaky"), "run\nrun\nrun\n");
    assert_eq!(h.state("flaky")["ExitCode"], 1);
    h.docker(&[
        "run",
        "--name",
        "fine",
        "--restart",
        "on-failure:2",
        IMG,
        "true",
    ])
    .ok();
    h.wait_for_status("fine", "exited");
    assert_eq!(h.inspect("fine")["RestartCount"], 0);

    h.run_detached(&[
        "--name",
        "phoenix",
        "--restart",
        "always",
        IMG,
        "sleep",
        "1000",
    ]);
    h.run_detached(&[
        "--name",
        "quiet",
        "--restart",
        "unless-stopped",
        IMG,
        "sleep",
        "1000",
    ]);
    h.docker(&["stop", "-t", "1", "quiet"]).ok();
    h.restart();
    h.wait_for_status("phoenix", "running");
    h.docker(&["exec", "phoenix", "true"]).ok();
    assert_eq!(h.state("quiet")["Status"], "exited");

    // The process dies while the daemon is down: the next start notices and
    // restarts it by its policy.
    let pid = h.state("phoenix")["Pid"].as_i64().unwrap();
    h.stop();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    h.start();
    wait_until("phoenix to run a new process", || {
        let state = h.state("phoenix");
        state["Status"] == "running" && state["Pid"].as_i64() != Some(pid)
    });
    h.docker(&["exec", "phoenix", "true"]).ok();
    assert_eq!(h.state("quiet")["Status"], "exited");
}

/// Unknown image → 404 `No such image`; a taken name → 409; memory and
/// CPU values dockerd refuses → 400 with its wording (API and CLI);
/// removing a running container without force → 409. Nothing is left of
/// the refused creates.
fn bad_input_is_refused_like_dockerd(backend: Backend) {
    let h = ContainerHost::start(backend);

    let r = h.api(
        "POST",
        "/containers/create",
        Some(r#"{"Image":"nosuch/image:v1"}"#),
    );
    assert_eq!(
        (r.status, r.json()["message"].clone()),
        (404, json!("No such image: nosuch/image:v1")),
        "{}",
        r.body
    );
    let out = h.docker(&["run", "--pull", "never", "nosuch/image:v1", "true"]);
    assert!(
        exit_code(&out) == Some(125) && out.stderr.contains("No such image: nosuch/image:v1"),
        "{out}"
    );

    h.docker(&["create", "--name", "twin", IMG, "true"]).ok();
    let twin = h.id_of("twin");
    let r = h.api(
        "POST",
        "/containers/create?name=twin",
        Some(&json!({"Image": IMG}).to_string()),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(
        r.json()["message"],
        format!("Conflict. The container name \"/twin\" is already in use by container \"{twin}\". You have to remove (or rename) that container to be able to reuse that name.")
    );
    let out = h.docker(&["create", "--name", "twin", IMG, "true"]);
    assert!(
        !out.success() && out.stderr.contains("is already in use"),
        "{out}"
    );

    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpus_available = [
        "/sys/fs/cgroup/cpuset/cpuset.cpus",
        "/sys/fs/cgroup/cpuset.cpus.effective",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .map(|s| s.trim().to_string())
    .unwrap_or_else(|| format!("0-{}", ncpu - 1));
    let refused: Vec<(serde_json::Value, String)> = vec![
        (
            json!({"Memory": 1024}),
            "Minimum memory limit allowed is 6MB".into(),
        ),
        (
            json!({"Memory": 64 << 20, "MemorySwap": 32 << 20}),
            "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
        ),
        (
            json!({"NanoCpus": (ncpu as i64 + 1) * 1_000_000_000}),
            format!(
                "Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
            ),
        ),
        (
            json!({"CpuQuota": 100}),
            "CPU cfs quota can not be less than 1ms (i.e. 1000)".into(),
        ),
        (
            json!({"CpuPeriod": 100}),
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
                .into(),
        ),
        (
            json!({"CpuShares": -5}),
            "invalid CPU shares (-5): value must be a positive integer".into(),
        ),
        (
            json!({"CpusetCpus": "4096"}),
            format!(
                "Requested CPUs are not available - requested 4096, available: {cpus_available}"
            ),
        ),
    ];
    for (host_config, message) in &refused {
        let body = json!({"Image": IMG, "HostConfig": host_config}).to_string();
        let r = h.api("POST", "/containers/create", Some(&body));
        assert_eq!(
            (r.status, r.json()["message"].clone()),
            (400, json!(message)),
            "{host_config}"
        );
    }
    for (args, message) in [
        (
            &["-m", "1k"][..],
            "Minimum memory limit allowed is 6MB".to_string(),
        ),
        (
            &["--cpus", "1000"][..],
            format!("Range of CPUs is from 0.01 to {ncpu}.00"),
        ),
        (
            &["--cpuset-cpus", "4096"][..],
            "Requested CPUs are not available".to_string(),
        ),
    ] {
        let mut full = vec!["run", "--rm"];
        full.extend_from_slice(args);
        full.extend_from_slice(&[IMG, "true"]);
        let out = h.docker(&full);
        assert!(
            exit_code(&out) == Some(125) && out.stderr.contains(&message),
            "{out}"
        );
    }
    assert_eq!(
        h.docker(&["ps", "-aq", "--no-trunc"]).ok().lines(),
        [twin.as_str()]
    );

    h.run_detached(&["--name", "busy", IMG, "sleep", "1000"]);
    let r = h.api("DELETE", "/containers/busy", None);
    assert_eq!(r.status, 409, "{}", r.body);
    let out = h.docker(&["rm", "busy"]);
    assert!(
        !out.success()
            && out.stderr.contains(
                "cannot remove container \"/busy\": container is running: stop the container before removing or force remove"
            ),
        "{out}"
    );
    assert_eq!(h.state("busy")["Status"], "running");
    h.docker(&["rm", "-f", "busy"]).ok();
    let r = h.api("POST", "/containers/busy/start", None);
    assert_eq!(
        (r.status, r.json()["message"].clone()),
        (404, json!("No such container: busy"))
    );
}

/// A raw hijacked attach (`POST /containers/{name}/attach`, stdin and
/// stdout) that types ctrl-p ctrl-q: berthd must end the session.
fn detach_over_the_api(socket: &Path, name: &str) {
    use std::io::Read;
    let mut conn = std::os::unix::net::UnixStream::connect(socket).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        conn,
        "POST /containers/{name}/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\n\
         Host: berth\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    conn.write_all(&[0x10, 0x11]).unwrap();
    // berthd closes the stream: EOF, not the read timeout.
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).unwrap();
}

/// Creates racing each other: generated names never collide, and of
/// several creates asking for one name exactly one gets it (the others get
/// dockerd's 409), with nothing of theirs left.
#[test]
fn racing_creates_get_distinct_names() {
    let h = ContainerHost::start(Backend::Vfs);
    let unnamed: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    (0..5)
                        .map(|_| h.docker(&["create", IMG, "true"]).ok().out().to_string())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert_eq!(unnamed.len(), 40);
    let names: BTreeSet<String> = h
        .docker(&["ps", "-a", "--format", "{{.Names}}"])
        .ok()
        .lines()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(names.len(), 40, "{names:?}");

    let outcomes: Vec<_> = std::thread::scope(|s| {
        let racers: Vec<_> = (0..6)
            .map(|_| s.spawn(|| h.docker(&["create", "--name", "only", IMG, "true"])))
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let won = outcomes.iter().filter(|o| o.status.success()).count();
    assert_eq!(won, 1, "{outcomes:#?}");
    for lost in outcomes.iter().filter(|o| !o.status.success()) {
        assert!(
            lost.stderr
                .contains("The container name \"/only\" is already in use"),
            "{lost}"
        );
    }
    let all = h.docker(&["ps", "-aq"]).ok().lines().len();
    assert_eq!(all, 41);
}

//! Monitoring through the real docker CLI: `docker events` filters, replay
//! after a restart and the gap notice of a paused reader; `docker stats`
//! against the cgroup files; `docker system df [-v]` against dockerd's
//! definitions; health checks and their events; SIGHUP reloading debug
//! mode and SIGUSR1's state dump.

#[macro_use]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use berth_testkit::{busybox, Daemon};
use serde_json::{json, Value};
use support::{load_busybox, Backend};

per_driver!(system_df_follows_dockerd_definitions);

/// A `docker events` process whose JSON lines arrive on a channel.
struct EventsReader {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl EventsReader {
    fn start(d: &Daemon, args: &[&str]) -> EventsReader {
        let mut full = vec!["events", "--format", "{{json .}}"];
        full.extend_from_slice(args);
        let mut child = d
            .docker_command(&full)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn docker events");
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        EventsReader { child, lines: rx }
    }

    /// Events until (and including) the first that `last` matches.
    #[track_caller]
    fn until(&self, last: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut got = Vec::new();
        loop {
            // A safety net against a hang, not a performance assertion.
            match self.lines.recv_timeout(Duration::from_secs(120)) {
                Ok(v) => {
                    let done = last(&v);
                    got.push(v);
                    if done {
                        return got;
                    }
                }
                Err(e) => panic!("docker events ended or stalled ({e}) after {got:#?}"),
            }
        }
    }
}

impl Drop for EventsReader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn action(v: &Value) -> &str {
    v["Action"].as_str().unwrap_or("")
}

fn attr<'a>(v: &'a Value, key: &str) -> &'a str {
    v["Actor"]["Attributes"][key].as_str().unwrap_or("")
}

/// `docker events --filter type=image` while images are loaded, tagged and
/// removed, with container activity in between: exactly the image events.
/// Then, after a restart, `--since 1h --until 0s` replays them from the log.
#[test]
fn image_events_filter_and_replay_after_restart() {
    let mut d = Backend::Overlay2.daemon();
    let reader = EventsReader::start(&d, &["--filter", "type=image"]);
    // The reader is connected once it counts as a listener.
    wait_for(|| info(&d)["NEventsListener"] == 1);

    let image = load_busybox(&d);
    d.docker(&["tag", busybox::IMAGE, "extra:one"]).ok();
    d.docker(&["create", "--name", "noise", busybox::IMAGE, "true"])
        .ok();
    d.docker(&["rm", "noise"]).ok();
    d.docker(&["rmi", "extra:one"]).ok();
    d.docker(&["tag", busybox::IMAGE, "marker:end"]).ok();
    let got = reader.until(|v| action(v) == "tag" && attr(v, "name") == "marker:end");
    let seen: Vec<(&str, &str)> = got.iter().map(|v| (action(v), attr(v, "name"))).collect();
    let id = image.id.as_str();
    assert_eq!(
        seen,
        vec![
            ("load", id),
            ("tag", busybox::IMAGE),
            ("tag", "extra:one"),
            ("untag", id),
            ("tag", "marker:end"),
        ],
        "{got:#?}"
    );
    assert!(got
        .iter()
        .all(|v| v["Type"] == "image" && v["Actor"]["ID"] == id));
    // Image events carry the legacy fields older clients read.
    let tag = got.iter().find(|v| attr(v, "name") == "extra:one").unwrap();
    assert_eq!(tag["status"], "tag");
    assert_eq!(tag["id"], tag["Actor"]["ID"]);
    drop(reader);

    d.restart();
    next_second();
    let replay = d
        .docker(&[
            "events",
            "--since",
            "1h",
            "--until",
            "0s",
            "--format",
            "{{json .}}",
        ])
        .ok();
    let events: Vec<Value> = replay
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let has = |typ: &str, act: &str, name: &str| {
        events
            .iter()
            .any(|v| v["Type"] == typ && action(v) == act && attr(v, "name") == name)
    };
    assert!(has("image", "tag", "extra:one"), "{events:#?}");
    assert!(has("image", "untag", id), "{events:#?}");
    assert!(has("container", "create", "noise"), "{events:#?}");
    assert!(has("container", "destroy", "noise"), "{events:#?}");
    // Replay is in publication order.
    let pos = |act: &str| events.iter().position(|v| action(v) == act).unwrap();
    assert!(pos("create") < pos("destroy"));
}

/// `--filter type=container --filter event=die` shows each exit with its
/// `exitCode`; an `exec_start` prefix filter matches `exec_start: <cmd>`.
#[test]
fn die_events_carry_exit_code() {
    let d = Backend::Overlay2.daemon();
    load_busybox(&d);
    let reader = EventsReader::start(&d, &["--filter", "type=container", "--filter", "event=die"]);
    wait_for(|| info(&d)["NEventsListener"] == 1);
    let code = d.docker(&[
        "run",
        "--name",
        "three",
        busybox::IMAGE,
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(code.status.code(), Some(3), "{code}");
    let got = reader.until(|v| attr(v, "name") == "three");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(action(&got[0]), "die");
    assert_eq!(attr(&got[0], "exitCode"), "3");
    assert_eq!(attr(&got[0], "image"), busybox::IMAGE);
    assert_eq!(got[0]["from"], busybox::IMAGE);

    d.docker(&[
        "run",
        "-d",
        "--name",
        "sleeper",
        busybox::IMAGE,
        "sleep",
        "300",
    ])
    .ok();
    d.docker(&["exec", "sleeper", "true"]).ok();
    next_second();
    let execs = d
        .docker(&[
            "events",
            "--since",
            "1h",
            "--until",
            "0s",
            "--filter",
            "event=exec_start",
            "--format",
            "{{.Action}}",
        ])
        .ok();
    assert_eq!(execs.lines(), vec!["exec_start: true"], "{execs}");
    d.docker(&["rm", "-f", "sleeper", "three"]).ok();
}

/// A reader stopped (SIGSTOP) while 10,000 events are produced: the engine
/// keeps answering, the reader later finds an `events-dropped` notice,
/// the count shows in `/info` and the log, and the missed events replay
/// from the log with the notice's since/until.
#[test]
fn paused_reader_gets_a_gap_notice() {
    let d = Backend::Overlay2.daemon();
    load_busybox(&d);
    d.docker(&[
        "run",
        "-d",
        "--name",
        "target",
        busybox::IMAGE,
        "sleep",
        "600",
    ])
    .ok();
    let reader = EventsReader::start(&d, &[]);
    wait_for(|| info(&d)["NEventsListener"] == 1);
    let pid = nix::unistd::Pid::from_raw(reader.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();

    // 10,000 exec_create events over one keep-alive connection.
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}\\n",
            "--unix-socket",
        ])
        .arg(d.socket())
        .args([
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"Cmd":["true"]}"#,
        ])
        .arg("http://localhost/containers/target/exec?n=[1-10000]")
        .output()
        .unwrap();
    let codes = String::from_utf8_lossy(&out.stdout);
    assert_eq!(codes.lines().filter(|c| *c == "201").count(), 10_000);
    // The engine kept serving throughout.
    d.docker(&["ps"]).ok();
    let dropped = info(&d)["EventsDropped"].as_u64().unwrap();
    assert!(dropped > 0, "nothing was dropped");

    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    let got = reader.until(|v| action(v) == "events-dropped");
    let notice = got.last().unwrap();
    assert_eq!(notice["Type"], "daemon");
    assert_eq!(attr(notice, "dropped"), dropped.to_string());
    let delivered = got
        .iter()
        .filter(|v| action(v).starts_with("exec_create"))
        .count();
    assert!(delivered > 0 && delivered < 10_000, "{delivered}");
    assert!(d.log().contains("events reader missed"), "no log line");

    let replay = d
        .docker(&[
            "events",
            "--since",
            attr(notice, "since"),
            "--until",
            attr(notice, "until"),
            "--format",
            "{{.Action}}",
        ])
        .ok();
    assert_eq!(replay.lines().len() as u64, dropped, "replay of the gap");
    d.docker(&["rm", "-f", "target"]).ok();
}

/// `docker stats --no-stream` lists every running container; a busy loop
/// shows about a CPU; a container holding 100 MB shows about 100 MB; the
/// API's numbers agree with the cgroup files.
#[test]
fn stats_match_the_cgroup() {
    let d = Backend::Overlay2.daemon();
    load_busybox(&d);
    d.docker(&[
        "run",
        "-d",
        "--name",
        "busy",
        busybox::IMAGE,
        "sh",
        "-c",
        "while :; do :; done",
    ])
    .ok();
    d.docker(&[
        "run",
        "-d",
        "--name",
        "hold",
        "--tmpfs",
        "/hold:size=200m",
        busybox::IMAGE,
        "sh",
        "-c",
        "head -c 104857600 /dev/zero > /hold/x && sleep 600",
    ])
    .ok();
    let hold_id = d
        .docker(&["inspect", "-f", "{{.Id}}", "hold"])
        .ok()
        .out()
        .to_string();
    // Until the 100 MB are written and two samples are in the window.
    wait_for(|| memory_file(&hold_id).is_some_and(|m| m >= 100 << 20));
    let busy_id = d
        .docker(&["inspect", "-f", "{{.Id}}", "busy"])
        .ok()
        .out()
        .to_string();
    // The busy loop's share of the host as measured independently, from
    // its cgroup and /proc/stat, around the sampler window docker reports.
    let before = (cpu_file(&busy_id), berth_testkit::leaks::host_cpu_nanos());
    std::thread::sleep(Duration::from_secs(2));

    let out = d
        .docker(&[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}} {{.CPUPerc}} {{.MemUsage}}",
        ])
        .ok();
    let lines = out.lines();
    assert_eq!(lines.len(), 2, "{out}");
    let busy = lines.iter().find(|l| l.starts_with("busy ")).unwrap();
    let cpu: f64 = busy
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches('%')
        .parse()
        .unwrap();
    let after = (cpu_file(&busy_id), berth_testkit::leaks::host_cpu_nanos());
    let cpus = std::thread::available_parallelism().unwrap().get() as f64;
    let measured = (after.0 - before.0) as f64 / (after.1 - before.1) as f64 * cpus * 100.0;
    // One busy thread: about one CPU on an idle machine. On a loaded test
    // machine it gets less; docker stats must then show what it really got.
    assert!(cpu <= 110.0, "busy loop at {cpu}%: {out}");
    assert!(
        (cpu - measured).abs() <= 25.0,
        "docker stats says {cpu}%, the cgroup {measured:.1}%: {out}"
    );
    let hold = lines.iter().find(|l| l.starts_with("hold ")).unwrap();
    let mem = hold.split_whitespace().nth(2).unwrap();
    let mib: f64 = mem.trim_end_matches("MiB").parse().unwrap_or(0.0);
    assert!((95.0..=110.0).contains(&mib), "holder at {mem}: {out}");

    // The API's memory usage against memory.usage_in_bytes read now.
    let v = d
        .api("GET", "/containers/hold/stats?stream=false", None)
        .json();
    let api = v["memory_stats"]["usage"].as_u64().unwrap() as f64;
    let file = memory_file(&hold_id).unwrap() as f64;
    assert!(
        (api - file).abs() / file < 0.05,
        "api {api} vs cgroup {file}"
    );
    // stream=false has a real precpu_stats, taken one interval earlier.
    assert!(
        v["precpu_stats"]["cpu_usage"]["total_usage"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(v["precpu_stats"]["system_cpu_usage"].as_u64().unwrap() > 0);
    assert_ne!(v["preread"], "0001-01-01T00:00:00Z");
    assert_eq!(v["name"], "/hold");

    // The all-containers stream: one array holding both.
    let all = d.api("GET", "/containers/stats?stream=false", None);
    let batch: Value = serde_json::from_str(all.body.lines().next().unwrap()).unwrap();
    let names: Vec<&str> = batch
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["/busy", "/hold"]);
    d.docker(&["rm", "-f", "busy", "hold"]).ok();
}

/// cpuacct.usage (v1) or cpu.stat usage (v2) of a container, nanoseconds.
fn cpu_file(id: &str) -> u64 {
    let v1 = format!("/sys/fs/cgroup/cpuacct/berth/{id}/cpuacct.usage");
    if let Ok(text) = std::fs::read_to_string(v1) {
        return text.trim().parse().unwrap();
    }
    let v2 = std::fs::read_to_string(format!("/sys/fs/cgroup/berth/{id}/cpu.stat")).unwrap();
    v2.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .unwrap()
        .trim()
        .parse::<u64>()
        .unwrap()
        * 1000
}

/// memory.usage_in_bytes (v1) or memory.current (v2) of a container.
fn memory_file(id: &str) -> Option<u64> {
    let v1 = format!("/sys/fs/cgroup/memory/berth/{id}/memory.usage_in_bytes");
    let v2 = format!("/sys/fs/cgroup/berth/{id}/memory.current");
    std::fs::read_to_string(v1)
        .or_else(|_| std::fs::read_to_string(v2))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `docker system df` and `-v` with dockerd's definitions: LayersSize is
/// the image's recorded size, SharedSize what two images share, container
/// SizeRw what it wrote, volume size what was written into it.
fn system_df_follows_dockerd_definitions(backend: Backend) {
    let d = backend.daemon();
    let image = load_busybox(&d);
    d.docker(&[
        "run",
        "--name",
        "writer",
        busybox::IMAGE,
        "sh",
        "-c",
        "head -c 5000000 /dev/zero > /big",
    ])
    .ok();
    d.docker(&["volume", "create", "vol"]).ok();
    d.docker(&[
        "run",
        "--rm",
        "-v",
        "vol:/v",
        busybox::IMAGE,
        "sh",
        "-c",
        "head -c 3000000 /dev/zero > /v/f",
    ])
    .ok();
    d.docker(&["commit", "writer", "derived:one"]).ok();

    let df = d.api("GET", "/system/df", None).json();
    let image_size = d
        .docker(&["image", "inspect", "-f", "{{.Size}}", busybox::IMAGE])
        .ok()
        .out()
        .parse::<i64>()
        .unwrap();
    assert_eq!(image_size as u64, image.size());
    let derived_size = d
        .docker(&["image", "inspect", "-f", "{{.Size}}", "derived:one"])
        .ok()
        .out()
        .parse::<i64>()
        .unwrap();
    // Both images' layers, each counted once.
    assert_eq!(df["LayersSize"], json!(derived_size));
    let img = |tag: &str| {
        df["Images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["RepoTags"].as_array().unwrap().contains(&json!(tag)))
            .unwrap()
            .clone()
    };
    let base = img(busybox::IMAGE);
    assert_eq!(base["Size"], json!(image_size));
    assert_eq!(base["SharedSize"], json!(image_size), "all of it shared");
    assert_eq!(base["Containers"], 1);
    let derived = img("derived:one");
    assert_eq!(derived["SharedSize"], json!(image_size));
    assert_eq!(derived["Containers"], 0);

    let writer = df["Containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["Names"][0] == "/writer")
        .unwrap()
        .clone();
    let rw = writer["SizeRw"].as_i64().unwrap();
    assert!((rw - 5_000_000).abs() < 250_000, "SizeRw {rw}");
    assert_eq!(writer["SizeRootFs"].as_i64().unwrap(), rw + image_size);
    let vol = df["Volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["Name"] == "vol")
        .unwrap()
        .clone();
    let vsize = vol["UsageData"]["Size"].as_i64().unwrap();
    assert!((vsize - 3_000_000).abs() < 150_000, "volume {vsize}");
    assert_eq!(vol["UsageData"]["RefCount"], 0);
    assert_eq!(df["BuildCache"], json!([]));

    // A change through docker cp is seen (the cached size is invalidated
    // by the container's extract-to-dir event).
    let extra = d.scratch_dir().join("extra.bin");
    std::fs::write(&extra, vec![7u8; 2_000_000]).unwrap();
    d.docker(&["cp", extra.to_str().unwrap(), "writer:/extra.bin"])
        .ok();
    let df = d.api("GET", "/system/df?type=container", None).json();
    assert!(df["Images"].is_null() && df["Volumes"].is_null());
    let rw2 = df["Containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["Names"][0] == "/writer")
        .unwrap()["SizeRw"]
        .as_i64()
        .unwrap();
    assert!((rw2 - 7_000_000).abs() < 350_000, "after cp: {rw2}");

    let text = d.docker(&["system", "df"]).ok();
    assert!(text.stdout.contains("Images"), "{text}");
    assert!(text.stdout.contains("Local Volumes"), "{text}");
    let verbose = d.docker(&["system", "df", "-v"]).ok();
    for want in ["derived", "writer", "vol", "Build cache usage: 0B"] {
        assert!(
            verbose.stdout.contains(want),
            "missing {want} in\n{verbose}"
        );
    }
    let bad = d.api("GET", "/system/df?type=bogus", None);
    assert_eq!(bad.status, 400);
    d.docker(&["rm", "writer"]).ok();
}

/// SIGHUP after flipping `debug` in daemon.json switches the request log
/// on without a restart and publishes `daemon reload`; SIGUSR1 writes a
/// state dump into the exec root.
#[test]
fn sighup_reloads_debug_and_sigusr1_dumps_state() {
    let mut d = support::builder()
        .debug(false)
        .config_json(json!({"labels": ["tier=a"]}))
        .start();
    assert_eq!(info(&d)["Debug"], false);
    assert_eq!(info(&d)["Labels"], json!(["tier=a"]));
    let reader = EventsReader::start(&d, &["--filter", "type=daemon"]);
    wait_for(|| info(&d)["NEventsListener"] == 1);
    std::fs::write(
        d.config_path(),
        json!({"debug": true, "labels": ["tier=b"]}).to_string(),
    )
    .unwrap();
    let pid = nix::unistd::Pid::from_raw(d.pid().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let got = reader.until(|v| action(v) == "reload");
    assert_eq!(attr(&got[0], "debug"), "true");
    assert_eq!(attr(&got[0], "labels"), r#"["tier=b"]"#);
    assert_eq!(info(&d)["Debug"], true);
    assert_eq!(info(&d)["Labels"], json!(["tier=b"]));
    d.docker(&["ps"]).ok();
    wait_for(|| d.run_log().contains("path=/v1.47/containers/json"));

    // A broken file changes nothing and the daemon keeps running.
    std::fs::write(d.config_path(), "{ nope").unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_for(|| d.run_log().contains("Error reloading configuration"));
    assert_eq!(info(&d)["Debug"], true);

    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1).unwrap();
    wait_for(|| d.run_log().contains("daemon state written to"));
    let dump = std::fs::read_dir(d.exec_root())
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("berthd-dump-"))
        .expect("dump file");
    let text = std::fs::read_to_string(dump.path()).unwrap();
    for want in [
        "== async runtime ==",
        "== threads ==",
        "events: listeners=1",
        "berth-stats",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    drop(reader);
    assert!(d.is_running());
}

/// The CLI sends `--until 0s` as whole seconds (as to dockerd): let the
/// clock pass the second of the events a replay must include.
fn next_second() {
    std::thread::sleep(Duration::from_millis(1100));
}

fn info(d: &Daemon) -> Value {
    d.api("GET", "/info", None).json()
}

/// Polls `cond` (a safety net of two minutes against a hang).
#[track_caller]
fn wait_for(cond: impl Fn() -> bool) {
    for _ in 0..1200 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("condition not met");
}

/// Health checks as dockerd runs them: `--health-cmd` probes as execs,
/// `starting` → `unhealthy` after the retries → `healthy` once the probe
/// passes, with `health_status` events on each change only; `docker ps`
/// shows the state and filters on it; the log keeps five results; a probe
/// past its timeout is killed and logged as dockerd words it;
/// `--no-healthcheck` turns an image's check off; bad values are refused.
#[test]
fn health_checks_like_dockerd() {
    let d = Backend::Vfs.daemon();
    load_busybox(&d);
    let reader = EventsReader::start(&d, &["--filter", "event=health_status"]);
    wait_for(|| info(&d)["NEventsListener"] == 1);
    d.docker(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "test -f /tmp/ok && echo fine",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        busybox::IMAGE,
        "sleep",
        "300",
    ])
    .ok();
    let health =
        |name: &str| d.docker(&["inspect", name]).ok().json()[0]["State"]["Health"].clone();
    let got = reader.until(|v| action(v) == "health_status: unhealthy");
    assert_eq!(got.len(), 1, "no event for starting: {got:#?}");
    let h = health("hc");
    assert_eq!(h["Status"], "unhealthy");
    assert!(h["FailingStreak"].as_i64().unwrap() >= 2, "{h}");
    assert_eq!(h["Log"][0]["ExitCode"], 1, "{h}");
    let ps = |filter: &str| {
        d.docker(&[
            "ps",
            "--filter",
            filter,
            "--format",
            "{{.Names}} {{.Status}}",
        ])
        .ok()
        .stdout
    };
    assert!(
        ps("health=unhealthy").contains("hc Up"),
        "{}",
        ps("health=unhealthy")
    );
    assert!(ps("health=unhealthy").contains("(unhealthy)"));
    assert_eq!(ps("health=healthy"), "");

    d.docker(&["exec", "hc", "touch", "/tmp/ok"]).ok();
    let got = reader.until(|v| action(v) == "health_status: healthy");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(attr(&got[0], "name"), "hc");
    // Five more probes: the log holds the last five, the newest passed.
    wait_for(|| {
        let h = health("hc");
        h["Log"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["ExitCode"] == 0)
            .count()
            >= 5
    });
    let h = health("hc");
    assert_eq!(h["Log"].as_array().unwrap().len(), 5, "{h}");
    assert_eq!(h["FailingStreak"], 0);
    assert_eq!(h["Log"][4]["Output"], "fine\n");
    assert!(
        ps("health=healthy").contains("(healthy)"),
        "{}",
        ps("health=healthy")
    );
    // Probes are not kept as exec instances of the container.
    let execs = d
        .docker(&["inspect", "--format", "{{json .ExecIDs}}", "hc"])
        .ok()
        .stdout;
    assert!(execs.trim() == "null" || execs.trim().len() < 80, "{execs}");

    // A probe past its timeout: -1 and dockerd's message; it is killed.
    d.docker(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "sleep 30",
        "--health-interval",
        "200ms",
        "--health-timeout",
        "500ms",
        "--health-retries",
        "1",
        busybox::IMAGE,
        "sleep",
        "300",
    ])
    .ok();
    reader.until(|v| attr(v, "name") == "slow" && action(v) == "health_status: unhealthy");
    let h = health("slow");
    assert_eq!(h["Log"][0]["ExitCode"], -1, "{h}");
    assert_eq!(
        h["Log"][0]["Output"],
        "Health check exceeded timeout (500ms)"
    );
    let top = d.docker(&["top", "slow"]).ok().stdout;
    assert!(
        top.matches("sleep 30").count() <= 1,
        "probes pile up:\n{top}"
    );

    // --no-healthcheck, and dockerd's refusals.
    d.docker(&[
        "run",
        "-d",
        "--name",
        "none",
        "--no-healthcheck",
        busybox::IMAGE,
        "sleep",
        "300",
    ])
    .ok();
    assert_eq!(health("none"), Value::Null);
    assert!(
        ps("health=none").contains("none Up"),
        "{}",
        ps("health=none")
    );
    // The CLI checks these itself; the API answers as dockerd does.
    for (field, value, message) in [
        ("Retries", -1, "Retries in Healthcheck cannot be negative"),
        (
            "Interval",
            1000,
            "Interval in Healthcheck cannot be less than 1ms",
        ),
    ] {
        let body = json!({"Image": busybox::IMAGE, "Healthcheck": {"Test": ["CMD", "true"], field: value}});
        let r = d.api("POST", "/containers/create", Some(&body.to_string()));
        assert_eq!(
            (r.status, r.json()["message"].clone()),
            (400, json!(message))
        );
    }
    let bad = d.docker(&["ps", "--filter", "health=great"]);
    assert!(
        bad.stderr.contains("invalid filter 'health=great'"),
        "{bad}"
    );
    d.docker(&["rm", "-f", "hc", "slow", "none"]).ok();
}

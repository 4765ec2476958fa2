//! One daemon under benchmark — berthd or Debian's dockerd — on its own
//! data root, socket and exec root (testkit's `Daemon`; dockerd also on its
//! own pre-created bridge), and what the bench asks of it: timed docker CLI
//! commands, bulk set-up through the API, and the memory and CPU of the
//! daemon with its helper processes (shims; containerd for dockerd).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_testkit::{scratch, Daemon};
use serde_json::{json, Value};

use crate::api::{self, Response, API};

/// Which daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Berth,
    Dockerd,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Berth => "berthd",
            Side::Dockerd => "dockerd",
        }
    }

    /// Index into per-side state arrays.
    pub fn index(self) -> usize {
        match self {
            Side::Berth => 0,
            Side::Dockerd => 1,
        }
    }
}

/// How to start one daemon.
#[derive(Debug, Clone)]
pub struct EngineSpec {
    pub side: Side,
    pub binary: PathBuf,
    /// `-s`: btrfs, overlay2, zfs.
    pub driver: String,
    pub data_root: PathBuf,
    /// berthd's `--metrics-addr`, when this berthd has the flag.
    pub metrics_addr: Option<String>,
}

/// Memory of a daemon and its helpers, summed over processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub pss_kib: u64,
    pub processes: usize,
}

/// A running daemon. Fields drop in order: the daemon stops before its
/// bridge is deleted.
pub struct Engine {
    pub side: Side,
    daemon: Daemon,
    metrics_addr: Option<String>,
    _bridge: Option<Bridge>,
}

impl Engine {
    /// Starts the daemon and waits for `/_ping`. Debug logging is off for
    /// both: the request log would be measured too.
    pub fn start(spec: EngineSpec) -> Engine {
        let bridge = (spec.side == Side::Dockerd).then(Bridge::create);
        let mut builder = Daemon::builder(&spec.binary)
            .data_root(&spec.data_root)
            .storage_driver(&spec.driver)
            .debug(false)
            .start_timeout(Duration::from_secs(300));
        if let Some(bridge) = &bridge {
            // A second dockerd must not touch docker0 (`--bridge=none`
            // would delete it) nor the host's iptables.
            builder = builder
                .arg(format!("--bridge={}", bridge.name))
                .arg("--iptables=false")
                .arg("--ip-masq=false");
        }
        if let Some(addr) = &spec.metrics_addr {
            builder = builder.arg("--metrics-addr").arg(addr);
        }
        let daemon = builder.start();
        if let Some(name) = daemon.bridge() {
            // berthd's own bridge (testkit-named): the sweep of a killed
            // run needs to know it, as it knows dockerd's.
            record_bridge(name);
        }
        Engine {
            side: spec.side,
            daemon,
            metrics_addr: spec.metrics_addr,
            _bridge: bridge,
        }
    }

    pub fn name(&self) -> &'static str {
        self.side.name()
    }

    pub fn socket(&self) -> &Path {
        self.daemon.socket()
    }

    pub fn data_root(&self) -> &Path {
        self.daemon.data_root()
    }

    pub fn metrics_addr(&self) -> Option<&str> {
        self.metrics_addr.as_deref()
    }

    /// `docker ARGS`, timed from spawn to exit; stdout discarded.
    pub fn time(&self, args: &[&str]) -> Duration {
        self.run_cli(args, false).0
    }

    /// `docker ARGS`, timed, with its stdout.
    pub fn time_output(&self, args: &[&str]) -> (Duration, String) {
        self.run_cli(args, true)
    }

    /// `docker ARGS` for set-up; its trimmed stdout.
    pub fn docker(&self, args: &[&str]) -> String {
        self.run_cli(args, true).1.trim().to_string()
    }

    /// A `docker` command aimed at this daemon, for callers that keep it
    /// running (`docker events`).
    pub fn command(&self, args: &[&str]) -> Command {
        self.daemon.cli().command(args)
    }

    fn run_cli(&self, args: &[&str], capture: bool) -> (Duration, String) {
        let mut cmd = self.daemon.cli().command(args);
        cmd.stdin(Stdio::null()).stderr(Stdio::piped());
        cmd.stdout(if capture {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        // The CLI is waited for directly (no polling) so the time is the
        // command's, to the microsecond.
        let start = Instant::now();
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("spawning docker {args:?}: {e}"));
        let took = start.elapsed();
        if !out.status.success() {
            panic!(
                "{}: `docker {}` failed ({})\n{}\n--- daemon log tail ---\n{}",
                self.name(),
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr),
                self.daemon.log_tail(40)
            );
        }
        (took, String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// An Engine API request (`path` without the version prefix); panics
    /// when the daemon refuses it.
    pub fn api(&self, method: &str, path: &str, body: Option<&Value>) -> Response {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let body = bytes.as_deref().map(|b| ("application/json", b));
        self.api_raw(method, path, body)
    }

    /// Like [`Engine::api`] with a body of any type (a tar for load).
    pub fn api_raw(&self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> Response {
        let full = format!("{API}{path}");
        let resp = api::unix(self.socket(), method, &full, body)
            .unwrap_or_else(|e| panic!("{}: {method} {full}: {e}", self.name()));
        if !resp.is_success() {
            panic!(
                "{}: {method} {full} answered {}: {}",
                self.name(),
                resp.status,
                resp.text()
            );
        }
        resp
    }

    /// `POST /containers/create`; the new container's ID.
    pub fn create(&self, image: &str, cmd: &[&str]) -> String {
        let resp = self.api(
            "POST",
            "/containers/create",
            Some(&json!({ "Image": image, "Cmd": cmd })),
        );
        resp.json()["Id"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: create answered {}", self.name(), resp.text()))
            .to_string()
    }

    /// Creates and starts a container running `cmd`; its ID.
    pub fn run_detached(&self, image: &str, cmd: &[&str]) -> String {
        let id = self.create(image, cmd);
        self.api("POST", &format!("/containers/{id}/start"), None);
        id
    }

    /// IDs of running containers (or all with `all`).
    pub fn container_ids(&self, all: bool) -> Vec<String> {
        let path = format!("/containers/json?all={}", if all { 1 } else { 0 });
        match self.api("GET", &path, None).json() {
            Value::Array(list) => list
                .iter()
                .filter_map(|c| c["Id"].as_str().map(str::to_string))
                .collect(),
            other => panic!("{}: container list was {other}", self.name()),
        }
    }

    /// Number of images (`docker images -a`).
    pub fn image_count(&self) -> usize {
        match self.api("GET", "/images/json?all=1", None).json() {
            Value::Array(list) => list.len(),
            _ => 0,
        }
    }

    /// SIGKILLs every running container and waits until none runs.
    pub fn kill_running(&self) {
        for id in self.container_ids(false) {
            // A container that exits on its own meanwhile answers 409.
            let _ = api::unix(
                self.socket(),
                "POST",
                &format!("{API}/containers/{id}/kill"),
                None,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.container_ids(false).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the daemon (SIGTERM, as an operator would) and starts it
    /// again; the time from spawn to the first answered `/_ping`.
    pub fn restart_timed(&mut self) -> Duration {
        self.daemon.stop();
        // dockerd stops its containerd on the way out; the next dockerd
        // must not find the old one still exiting.
        self.wait_for_helpers_to_exit();
        let start = Instant::now();
        self.daemon.start();
        start.elapsed()
    }

    fn wait_for_helpers_to_exit(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let left = self
                .helper_processes()
                .into_iter()
                .filter(|(_, cmd)| !cmd.contains("shim"))
                .count();
            if left == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's pid.
    pub fn pid(&self) -> i32 {
        self.daemon.pid().expect("daemon running") as i32
    }

    /// Processes other than the daemon whose command line names its exec
    /// root: berthd's shims; dockerd's containerd and containerd shims.
    fn helper_processes(&self) -> Vec<(i32, String)> {
        let needle = self.daemon.exec_root().display().to_string();
        let me = std::process::id() as i32;
        let daemon = self.daemon.pid().map(|p| p as i32);
        let mut found = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return found;
        };
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if pid == me || Some(pid) == daemon {
                continue;
            }
            let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            // runc invocations are transient and not the daemon's memory.
            if cmdline.contains(&needle) && !cmdline.starts_with("runc") {
                found.push((pid, cmdline));
            }
        }
        found
    }

    /// RSS and PSS of the daemon plus its helpers.
    pub fn memory(&self) -> Memory {
        let mut pids = vec![self.pid()];
        pids.extend(self.helper_processes().into_iter().map(|(p, _)| p));
        let mut m = Memory::default();
        for pid in pids {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let rollup =
                std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
            if let Some(rss) = kib_field(&status, "VmRSS:") {
                m.rss_kib += rss;
                m.pss_kib += kib_field(&rollup, "Pss:").unwrap_or(0);
                m.processes += 1;
            }
        }
        m
    }

    /// User plus system CPU time of the daemon process alone, in seconds.
    pub fn daemon_cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are
        // fields 14 and 15 of the whole line.
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = fields
            .get(11..13)
            .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
            .unwrap_or(0);
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        ticks as f64 / hz
    }

    /// Kills running containers, stops the daemon and removes what it
    /// left; a description of leftovers (empty when clean).
    pub fn shutdown(&mut self) -> String {
        if self.daemon.pid().is_some() {
            self.kill_running();
        }
        let leftovers = self.daemon.shutdown();
        if leftovers.is_empty() {
            String::new()
        } else {
            leftovers.to_string()
        }
    }
}

fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// The list of bridges this run made, for `berth-bench sweep`.
pub fn bridges_file() -> PathBuf {
    scratch::base_dir().join("bridges")
}

fn record_bridge(name: &str) {
    let _ = std::fs::create_dir_all(scratch::base_dir());
    if let Ok(mut f) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(bridges_file())
    {
        let _ = writeln!(f, "{name}");
    }
}

/// A Linux bridge made for one dockerd and deleted when dropped.
struct Bridge {
    name: String,
}

impl Bridge {
    fn create() -> Bridge {
        use std::sync::atomic::{AtomicU32, Ordering};
        static MADE: AtomicU32 = AtomicU32::new(0);
        // At most 15 bytes (a pid is at most 7 hex digits); unique per run
        // and per dockerd.
        let name = format!(
            "bb{:x}x{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        );
        record_bridge(&name);
        let status = Command::new("ip")
            .args(["link", "add", "name", &name, "type", "bridge"])
            .status()
            .expect("running ip");
        assert!(status.success(), "ip link add {name} type bridge failed");
        Bridge { name }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "delete", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

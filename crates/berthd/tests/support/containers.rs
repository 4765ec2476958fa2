//! `ContainerHost`: a daemon on one backend with the busybox test image
//! loaded, for the container tests. Its drop removes every container and then
//! checks, from outside, that nothing of them is left: cgroups, shims, mounts,
//! bundles, records — and, once the daemon is gone, the loop device.

use std::collections::BTreeSet;
use std::io::Read;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Stdio};
use std::time::{Duration, Instant};

use berth_testkit::loopfs::loops_backed_under;
use berth_testkit::{leaks, Daemon, DaemonBuilder, DockerOutput};
use serde_json::Value;

use super::{load_busybox, Backend};

/// How long a condition gets to come true before the test fails: a safety
/// net against hangs, never a performance assertion.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// A daemon with the test image, checked for leftovers on drop.
pub struct ContainerHost {
    daemon: Option<Daemon>,
    /// Mount points under the data and exec roots before any container ran
    /// (a driver may keep mounts of its own).
    baseline_mounts: BTreeSet<PathBuf>,
}

impl ContainerHost {
    /// berthd on a fresh loop filesystem for `backend`, image loaded.
    #[track_caller]
    pub fn start(backend: Backend) -> ContainerHost {
        Self::from_builder(backend.builder())
    }

    /// Like [`ContainerHost::start`], from a builder with extra settings.
    #[track_caller]
    pub fn from_builder(builder: DaemonBuilder) -> ContainerHost {
        let daemon = builder.start();
        load_busybox(&daemon);
        let baseline_mounts = daemon.mounts().into_iter().map(|m| m.mount_point).collect();
        ContainerHost {
            daemon: Some(daemon),
            baseline_mounts,
        }
    }

    /// `docker inspect` of one container.
    #[track_caller]
    pub fn inspect(&self, name: &str) -> Value {
        self.docker(&["container", "inspect", name]).ok().json()[0].clone()
    }

    /// `.State` of one container.
    #[track_caller]
    pub fn state(&self, name: &str) -> Value {
        self.inspect(name)["State"].clone()
    }

    /// The full ID of a container.
    #[track_caller]
    pub fn id_of(&self, name: &str) -> String {
        self.inspect(name)["Id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// `docker logs NAME`, stdout then stderr.
    #[track_caller]
    pub fn logs(&self, name: &str) -> String {
        let out = self.docker(&["logs", name]).ok();
        format!("{}{}", out.stdout, out.stderr)
    }

    /// `docker run -d ARGS`; returns the container ID.
    #[track_caller]
    pub fn run_detached(&self, args: &[&str]) -> String {
        let mut full = vec!["run", "-d"];
        full.extend_from_slice(args);
        self.docker(&full).ok().out().to_string()
    }

    /// Waits until the container's logs contain `needle`.
    #[track_caller]
    pub fn wait_for_log(&self, name: &str, needle: &str) {
        wait_until(&format!("{needle:?} in the logs of {name}"), || {
            self.logs(name).contains(needle)
        });
    }

    /// Waits until `.State.Status` is `status`.
    #[track_caller]
    pub fn wait_for_status(&self, name: &str, status: &str) {
        wait_until(&format!("{name} to be {status}"), || {
            self.state(name)["Status"] == status
        });
    }

    /// The IDs of containers this daemon created, from its event log
    /// (containers run with `--rm` are gone from `docker ps -a`). `--until
    /// 0s` leaves out the current second; the caller adds `docker ps -a`.
    fn ids_ever_created(&self) -> Vec<String> {
        let out = self.docker(&[
            "events",
            "--since",
            "0",
            "--until",
            "0s",
            "--filter",
            "type=container",
            "--filter",
            "event=create",
            "--format",
            "{{.Actor.ID}}",
        ]);
        let mut ids: Vec<String> = out.lines().into_iter().map(str::to_string).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Removes every container (`rm -fv`) and lists what is left of them.
    fn remove_all_and_find_leftovers(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut ever = self.ids_ever_created();
        let all = self.docker(&["ps", "-aq", "--no-trunc"]);
        let ids = all.lines();
        ever.extend(ids.iter().map(|s| s.to_string()));
        if !ids.is_empty() {
            let mut args = vec!["rm", "-fv"];
            args.extend(ids.iter().copied());
            let rm = self.docker(&args);
            if !rm.success() {
                problems.push(format!("removing the containers failed: {rm}"));
            }
        }
        let cgroups = leaks::cgroups_named(&ever);
        if !cgroups.is_empty() {
            problems.push(format!("cgroups left: {cgroups:?}"));
        }
        let shims = leaks::shims_serving(self.exec_root());
        if !shims.is_empty() {
            problems.push(format!("shims left: {shims:?}"));
        }
        let mounts: Vec<PathBuf> = self
            .mounts()
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|m| !self.baseline_mounts.contains(m))
            .collect();
        if !mounts.is_empty() {
            problems.push(format!("mounts left: {mounts:?}"));
        }
        for dir in [
            self.data_root().join("containers"),
            self.exec_root().join("bundles"),
        ] {
            let left: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map(|rd| rd.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            if !left.is_empty() {
                problems.push(format!("{} not empty: {left:?}", dir.display()));
            }
        }
        problems
    }
}

impl Deref for ContainerHost {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        self.daemon.as_ref().expect("daemon")
    }
}

impl DerefMut for ContainerHost {
    fn deref_mut(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("daemon")
    }
}

impl Drop for ContainerHost {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        let mut problems = Vec::new();
        let running = self.daemon.as_mut().is_some_and(|d| d.is_running());
        if running {
            problems = self.remove_all_and_find_leftovers();
        }
        let Some(daemon) = self.daemon.take() else {
            return;
        };
        let log_tail = daemon.log_tail(80);
        let image_dir = daemon
            .loopfs()
            .and_then(|fs| fs.image().parent().map(PathBuf::from));
        // Stops berthd; panics itself on mounts or processes it left.
        drop(daemon);
        if let Some(dir) = image_dir {
            // The loop device is attached with autoclear: the kernel may let
            // go of it a moment after the last unmount.
            let start = Instant::now();
            let mut left = loops_backed_under(&dir).unwrap_or_default();
            while !left.is_empty() && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
                left = loops_backed_under(&dir).unwrap_or_default();
            }
            if !left.is_empty() {
                problems.push(format!("loop devices left: {left:?}"));
            }
        }
        if !problems.is_empty() && !panicking {
            panic!(
                "containers left things behind:\n  {}\n--- berthd log tail ---\n{log_tail}",
                problems.join("\n  ")
            );
        }
    }
}

/// A docker command running in the background whose output is collected
/// until it ends (`docker logs -f`, `docker wait`).
pub struct Background {
    child: Child,
    label: String,
}

impl Background {
    pub fn start(d: &Daemon, args: &[&str]) -> Background {
        Self::spawn(d, args, Stdio::null())
    }

    /// Like [`Background::start`], with a stdin the caller writes to (and
    /// keeps open for as long as it holds it).
    pub fn start_with_stdin(d: &Daemon, args: &[&str]) -> (Background, ChildStdin) {
        let mut bg = Self::spawn(d, args, Stdio::piped());
        let stdin = bg.child.stdin.take().expect("piped stdin");
        (bg, stdin)
    }

    fn spawn(d: &Daemon, args: &[&str], stdin: Stdio) -> Background {
        let child = d
            .docker_command(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn docker");
        Background {
            child,
            label: format!("docker {}", args.join(" ")),
        }
    }

    /// Waits for the command to end on its own; returns (exit code,
    /// stdout, stderr).
    #[track_caller]
    pub fn finish(mut self) -> (Option<i32>, String, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if start.elapsed() > PATIENCE {
                panic!("`{}` did not end within {PATIENCE:?}", self.label);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut s) = self.child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if let Some(mut s) = self.child.stderr.take() {
            let _ = s.read_to_string(&mut err);
        }
        (status.code(), out, err)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `cond` until it holds; fails the test after [`PATIENCE`].
#[track_caller]
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > PATIENCE {
            panic!("gave up waiting for {what} after {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The exit code docker reported (`None` if killed by a signal).
pub fn exit_code(out: &DockerOutput) -> Option<i32> {
    out.status.code()
}

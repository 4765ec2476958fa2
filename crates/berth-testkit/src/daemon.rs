//! `Daemon`: one berthd under test with its own data root (on a [`LoopFs`] or
//! a scratch dir), exec root, unix socket, pidfile, test-owned daemon.json
//! and log file; the docker CLI pointed at it; kill -9 / stop / restart; and
//! a Drop that stops it, then unmounts and reports whatever it left mounted.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::docker_cli::{DockerCli, DockerOutput};
use crate::loopfs::LoopFs;
use crate::mountinfo::{self, Mount};
use crate::scratch;

/// What goes into the test-owned `--config-file`.
#[derive(Debug, Clone)]
pub enum ConfigFile {
    /// Serialized as JSON.
    Json(serde_json::Value),
    /// Written verbatim (for invalid-JSON tests).
    Raw(String),
}

/// How berthd is started; kept by the [`Daemon`] so it can start again, and
/// changeable between a stop and the next start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `-s`; `None` lets berthd choose.
    pub storage_driver: Option<String>,
    /// `--storage-opt` values.
    pub storage_opts: Vec<String>,
    /// Passed after the standard flags.
    pub extra_args: Vec<OsString>,
    pub config: ConfigFile,
    /// `-D` (default on: tests want the request log).
    pub debug: bool,
    /// How long to wait for `/_ping` before giving up (a safety net, not a
    /// performance assertion).
    pub start_timeout: Duration,
    /// How long SIGTERM gets before SIGKILL.
    pub stop_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            storage_driver: None,
            storage_opts: Vec::new(),
            extra_args: Vec::new(),
            config: ConfigFile::Json(serde_json::json!({})),
            debug: true,
            start_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(60),
        }
    }
}

/// Configures a [`Daemon`].
#[derive(Debug)]
pub struct DaemonBuilder {
    binary: PathBuf,
    loopfs: Option<LoopFs>,
    data_root: Option<PathBuf>,
    settings: Settings,
}

impl DaemonBuilder {
    /// `binary` is berthd's path; integration tests in `crates/berthd/tests`
    /// pass `env!("CARGO_BIN_EXE_berthd")`.
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        DaemonBuilder {
            binary: binary.into(),
            loopfs: None,
            data_root: None,
            settings: Settings::default(),
        }
    }

    /// Puts the data root at `<fs>/data-root` and keeps `fs` alive (and
    /// mounted) until the daemon is gone.
    pub fn on_loopfs(mut self, fs: LoopFs) -> Self {
        self.loopfs = Some(fs);
        self
    }

    /// An explicit data root (default: `<scratch>/data-root`, or the
    /// LoopFs's). Not created beforehand: berthd must create it.
    pub fn data_root(mut self, path: impl Into<PathBuf>) -> Self {
        self.data_root = Some(path.into());
        self
    }

    pub fn storage_driver(mut self, name: &str) -> Self {
        self.settings.storage_driver = Some(name.to_string());
        self
    }

    pub fn storage_opt(mut self, opt: &str) -> Self {
        self.settings.storage_opts.push(opt.to_string());
        self
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.settings.extra_args.push(arg.into());
        self
    }

    /// The daemon.json contents (default `{}`).
    pub fn config_json(mut self, config: serde_json::Value) -> Self {
        self.settings.config = ConfigFile::Json(config);
        self
    }

    /// daemon.json written verbatim.
    pub fn config_raw(mut self, text: &str) -> Self {
        self.settings.config = ConfigFile::Raw(text.to_string());
        self
    }

    pub fn debug(mut self, on: bool) -> Self {
        self.settings.debug = on;
        self
    }

    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.settings.start_timeout = timeout;
        self
    }

    /// Starts berthd and waits for `/_ping`; panics with its log if it
    /// exits or never answers.
    #[track_caller]
    pub fn start(self) -> Daemon {
        match self.try_start() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts berthd; `Err` carries its exit status and log when it refuses
    /// to start (what the bad-configuration tests expect).
    pub fn try_start(self) -> Result<Daemon, StartFailure> {
        let scratch = scratch::scratch_dir("berthd-").map_err(|e| StartFailure {
            exit: None,
            reason: format!("making a scratch dir: {e}"),
            log: String::new(),
        })?;
        let dir = scratch.path().to_path_buf();
        let data_root = self.data_root.unwrap_or_else(|| match &self.loopfs {
            Some(fs) => fs.path().join("data-root"),
            None => dir.join("data-root"),
        });
        let socket = dir.join("berth.sock");
        let cli = DockerCli::new(
            format!("unix://{}", socket.display()),
            &dir.join("docker-config"),
        );
        let mut daemon = Daemon {
            child: None,
            binary: self.binary,
            settings: self.settings,
            data_root,
            exec_root: dir.join("exec"),
            socket,
            pidfile: dir.join("berthd.pid"),
            config_path: dir.join("daemon.json"),
            log_path: dir.join("berthd.log"),
            cli,
            starts: 0,
            run_log_offset: 0,
            scratch: Some(scratch),
            bridge: None,
            loopfs: self.loopfs,
        };
        daemon.bridge = crate::network::wants_own_bridge(&daemon.binary, &daemon.settings)
            .then(|| crate::network::bridge_name(&dir));
        daemon.try_start()?;
        Ok(daemon)
    }
}

/// berthd exited or never answered `/_ping`.
#[derive(Debug, Clone)]
pub struct StartFailure {
    /// The exit status if it exited (a refusal), `None` if it hung.
    pub exit: Option<ExitStatus>,
    pub reason: String,
    /// Everything berthd printed (stdout and stderr) in this attempt.
    pub log: String,
}

impl std::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "berthd did not start: {}\n--- berthd log ---\n{}",
            self.reason, self.log
        )
    }
}

/// A running (or stopped, between restarts) berthd.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    binary: PathBuf,
    settings: Settings,
    data_root: PathBuf,
    exec_root: PathBuf,
    socket: PathBuf,
    pidfile: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    cli: DockerCli,
    starts: u32,
    /// Where the latest run's output starts in the log file.
    run_log_offset: u64,
    scratch: Option<TempDir>,
    /// The default bridge given to berthd (`--bridge`), unique per daemon so
    /// parallel tests never share a bridge, subnet or nftables table.
    bridge: Option<String>,
    /// Last field: dropped after everything above, so the filesystem is
    /// unmounted only once the daemon is gone.
    loopfs: Option<LoopFs>,
}

impl Daemon {
    /// Shorthand for [`DaemonBuilder::new`].
    pub fn builder(binary: impl Into<PathBuf>) -> DaemonBuilder {
        DaemonBuilder::new(binary)
    }

    pub fn data_root(&self) -> &Path {
        &self.data_root
    }

    pub fn exec_root(&self) -> &Path {
        &self.exec_root
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `unix:///…/berth.sock`, the `DOCKER_HOST` value.
    pub fn host(&self) -> &str {
        self.cli.host()
    }

    pub fn pidfile(&self) -> &Path {
        &self.pidfile
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The scratch directory holding socket, exec root, log, config.
    pub fn scratch_dir(&self) -> &Path {
        self.scratch.as_ref().expect("scratch dir").path()
    }

    /// The filesystem under the data root, if the daemon was given one.
    pub fn loopfs(&self) -> Option<&LoopFs> {
        self.loopfs.as_ref()
    }

    /// berthd's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether berthd is still running (reaps it if it has exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Everything berthd has printed so far, all runs.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// What berthd printed in its latest run only.
    pub fn run_log(&self) -> String {
        let bytes = std::fs::read(&self.log_path).unwrap_or_default();
        let from = (self.run_log_offset as usize).min(bytes.len());
        String::from_utf8_lossy(&bytes[from..]).into_owned()
    }

    /// The docker CLI for this daemon.
    pub fn cli(&self) -> &DockerCli {
        &self.cli
    }

    /// `docker ARGS` against this daemon.
    pub fn docker(&self, args: &[&str]) -> DockerOutput {
        self.cli.run(args)
    }

    /// `docker ARGS` with `stdin` fed to it.
    pub fn docker_stdin(&self, args: &[&str], stdin: &[u8]) -> DockerOutput {
        self.cli.run_with_stdin(args, stdin)
    }

    /// A `docker ARGS` command to spawn yourself (background, streaming stdin).
    pub fn docker_command(&self, args: &[&str]) -> Command {
        self.cli.command(args)
    }

    /// Changes how the next start runs (only while stopped to take effect).
    pub fn settings_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }

    /// Raw HTTP to the socket through `curl --unix-socket` (a real client,
    /// for status codes, headers and bodies the docker CLI hides). `path`
    /// may carry a version prefix and query: `/v1.24/images/json?all=1`.
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> ApiResponse {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-i", "--max-time", "120", "--unix-socket"])
            .arg(&self.socket)
            .args(["-X", method]);
        if method == "HEAD" {
            cmd.arg("--head");
        }
        if let Some(body) = body {
            cmd.args([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                body,
            ]);
        }
        cmd.arg(format!("http://localhost{path}"));
        let out = cmd.output().unwrap_or_else(|e| panic!("running curl: {e}"));
        ApiResponse::parse(&out.stdout, &out.stderr)
    }

    /// Starts berthd again (after [`Daemon::stop`] or [`Daemon::kill9`]) and
    /// waits for `/_ping`; panics with its log on failure.
    #[track_caller]
    pub fn start(&mut self) {
        if let Err(e) = self.try_start() {
            panic!("{e}");
        }
    }

    /// Like [`Daemon::start`], returning the failure instead of panicking.
    pub fn try_start(&mut self) -> Result<(), StartFailure> {
        assert!(self.child.is_none(), "berthd is already running");
        self.write_config().map_err(|e| StartFailure {
            exit: None,
            reason: format!("writing {}: {e}", self.config_path.display()),
            log: String::new(),
        })?;
        self.starts += 1;
        self.run_log_offset = std::fs::metadata(&self.log_path)
            .map(|m| m.len())
            .unwrap_or(0);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("opening berthd log");
        let _ = writeln!(log, "=== berth-testkit: start #{} ===", self.starts);
        let mut cmd = Command::new(&self.binary);
        cmd.args(self.argv())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log);
        // If the test process dies without running Drop (killed by a test
        // runner's timeout), do not leave a daemon behind. Tied to the
        // spawning thread: create and drop a Daemon on the same thread.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| StartFailure {
            exit: None,
            reason: format!("spawning {}: {e}", self.binary.display()),
            log: String::new(),
        })?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn write_config(&self) -> std::io::Result<()> {
        let text = match &self.settings.config {
            ConfigFile::Json(v) => serde_json::to_string_pretty(v)?,
            ConfigFile::Raw(s) => s.clone(),
        };
        std::fs::write(&self.config_path, text)
    }

    /// The full berthd command line.
    pub fn argv(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--data-root".into(),
            self.data_root.clone().into(),
            "--exec-root".into(),
            self.exec_root.clone().into(),
            "-H".into(),
            self.cli.host().into(),
            "--pidfile".into(),
            self.pidfile.clone().into(),
            "--config-file".into(),
            self.config_path.clone().into(),
        ];
        if self.settings.debug {
            args.push("-D".into());
        }
        if let Some(driver) = &self.settings.storage_driver {
            args.push("--storage-driver".into());
            args.push(driver.into());
        }
        for opt in &self.settings.storage_opts {
            args.push("--storage-opt".into());
            args.push(opt.into());
        }
        if let Some(bridge) = &self.bridge {
            args.push("--bridge".into());
            args.push(bridge.into());
            if !crate::network::mentions(&self.settings, "default-address-pool") {
                args.push("--default-address-pool".into());
                args.push(crate::network::TEST_POOL.into());
            }
        }
        args.extend(self.settings.extra_args.iter().cloned());
        args
    }

    /// The default bridge the testkit gave berthd, if it did.
    pub fn bridge(&self) -> Option<&str> {
        self.bridge.as_deref()
    }

    /// berthd's nftables table for that bridge.
    pub fn firewall_table(&self) -> Option<String> {
        self.bridge.as_deref().map(crate::network::firewall_table)
    }

    fn wait_ready(&mut self) -> Result<(), StartFailure> {
        let start = Instant::now();
        loop {
            let child = self.child.as_mut().expect("spawned");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(StartFailure {
                    exit: Some(status),
                    reason: format!("berthd exited ({status}) before answering /_ping"),
                    log: self.run_log(),
                });
            }
            if ping(&self.socket) {
                return Ok(());
            }
            if start.elapsed() > self.settings.start_timeout {
                let _ = self.kill_now();
                return Err(StartFailure {
                    exit: None,
                    reason: format!(
                        "no answer on {} after {:?}; killed",
                        self.socket.display(),
                        self.settings.start_timeout
                    ),
                    log: self.run_log(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash would; reaps it. Mounts and the socket stay.
    pub fn kill9(&mut self) -> Option<ExitStatus> {
        self.kill_now()
    }

    fn kill_now(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        child.wait().ok()
    }

    /// SIGTERM and wait for exit (SIGKILL after `stop_timeout`). Returns how
    /// it exited, `None` if it was not running.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let start = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if start.elapsed() < self.settings.stop_timeout => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    eprintln!(
                        "berth-testkit: berthd ignored SIGTERM for {:?}; SIGKILL",
                        self.settings.stop_timeout
                    );
                    let _ = child.kill();
                    return child.wait().ok();
                }
            }
        }
    }

    /// [`Daemon::stop`] then [`Daemon::start`].
    #[track_caller]
    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    /// Mounts at or below the data root and exec root right now.
    pub fn mounts(&self) -> Vec<Mount> {
        let mut all = mountinfo::mounts_under(&self.data_root).unwrap_or_default();
        all.extend(mountinfo::mounts_under(&self.exec_root).unwrap_or_default());
        all
    }

    /// Stops berthd, then unmounts and kills whatever it left behind.
    /// Returns the leftovers; [`Drop`] panics on them.
    pub fn shutdown(&mut self) -> Leftovers {
        let bridges = self.network_bridges();
        self.stop();
        let mut leftovers = Leftovers::default();
        for root in [&self.data_root, &self.exec_root] {
            if let Ok(found) = mountinfo::unmount_all_under(root) {
                leftovers.mounts.extend(found);
            }
        }
        leftovers.processes =
            kill_processes_mentioning(&[self.scratch_dir().to_path_buf(), self.data_root.clone()]);
        if let Some(table) = self.firewall_table() {
            crate::network::remove_leftovers(&bridges, &table);
        }
        leftovers
    }

    /// The Linux bridges of the daemon's bridge networks (asked while it
    /// runs, for the clean-up after it stops).
    fn network_bridges(&mut self) -> Vec<String> {
        let mut out: Vec<String> = self.bridge.iter().cloned().collect();
        if self.bridge.is_none() || !self.is_running() {
            return out;
        }
        let resp = self.api("GET", "/networks", None);
        if let Ok(serde_json::Value::Array(nets)) = serde_json::from_str(&resp.body) {
            for n in nets {
                if let Some(b) = n["Options"]["com.docker.network.bridge.name"].as_str() {
                    if !out.iter().any(|o| o == b) {
                        out.push(b.to_string());
                    }
                }
            }
        }
        out
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let leftovers = self.shutdown();
        if std::thread::panicking() {
            // The test failed: the daemon's side of the story helps most.
            eprintln!(
                "--- berthd log ({}), last 200 lines ---\n{}\n--- end of berthd log ---",
                self.log_path.display(),
                self.log_tail(200)
            );
            if !leftovers.is_empty() {
                eprintln!("berth-testkit: also cleaned up {leftovers}");
            }
        } else if !leftovers.is_empty() {
            let tail = self.log_tail(50);
            panic!("berthd left things behind (cleaned up now): {leftovers}\n--- berthd log tail ---\n{tail}");
        }
    }
}

/// What a stopped daemon left behind.
#[derive(Debug, Default)]
pub struct Leftovers {
    pub mounts: Vec<Mount>,
    /// `(pid, cmdline)` of processes that mentioned the daemon's paths.
    pub processes: Vec<(i32, String)>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.mounts.is_empty() && self.processes.is_empty()
    }
}

impl std::fmt::Display for Leftovers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for m in &self.mounts {
            write!(
                f,
                "\n  mount {} ({} from {})",
                m.mount_point.display(),
                m.fs_type,
                m.source
            )?;
        }
        for (pid, cmd) in &self.processes {
            write!(f, "\n  process {pid}: {cmd}")?;
        }
        Ok(())
    }
}

/// A response from [`Daemon::api`].
#[derive(Debug, Clone, Default)]
pub struct ApiResponse {
    /// HTTP status (0 if curl could not connect).
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub stderr: String,
}

impl ApiResponse {
    fn parse(raw: &[u8], stderr: &[u8]) -> ApiResponse {
        let text = String::from_utf8_lossy(raw).into_owned();
        let mut rest = text.as_str();
        let mut resp = ApiResponse {
            stderr: String::from_utf8_lossy(stderr).into_owned(),
            ..ApiResponse::default()
        };
        // Skip interim responses (100 Continue) to the final header block.
        loop {
            let Some((head, body)) = rest.split_once("\r\n\r\n") else {
                resp.body = rest.to_string();
                return resp;
            };
            let mut lines = head.lines();
            let status_line = lines.next().unwrap_or("");
            let status = status_line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            if (100..200).contains(&status) {
                rest = body;
                continue;
            }
            resp.status = status;
            resp.headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            resp.body = body.to_string();
            return resp;
        }
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// Whether `GET /_ping` on `socket` answers 200.
pub fn ping(socket: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /_ping HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    let mut got = 0;
    while got < head.len() {
        match stream.read(&mut head[got..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200")
}

/// Kills (SIGKILL) processes whose command line mentions one of `paths` —
/// shims or runtimes a daemon left running — and returns them.
fn kill_processes_mentioning(paths: &[PathBuf]) -> Vec<(i32, String)> {
    let needles: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let found =
        crate::leaks::processes_where(|cmdline, _| needles.iter().any(|n| cmdline.contains(n)));
    for (pid, _) in &found {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    found
}

/// Relative paths of the entries at depth 1 and 2 under `layers/`, `images/`
/// and `<driver>/` of a data root (DESIGN.md §3): the set that must be
/// unchanged by a failed load, and back to its old value after a crash and
/// restart.
pub fn layer_state(data_root: &Path, driver: &str) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for top in ["layers", "images", driver] {
        let top_path = data_root.join(top);
        let Ok(level1) = std::fs::read_dir(&top_path) else {
            continue;
        };
        for e1 in level1.flatten() {
            let rel1 = PathBuf::from(top).join(e1.file_name());
            out.insert(rel1.clone());
            if e1.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                if let Ok(level2) = std::fs::read_dir(e1.path()) {
                    for e2 in level2.flatten() {
                        out.insert(rel1.join(e2.file_name()));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_curl_include_output() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nApi-Version: 1.51\r\nContent-Type: application/json\r\n\r\n{\"message\":\"page not found\"}\n";
        let r = ApiResponse::parse(raw, b"");
        assert_eq!(r.status, 404);
        assert_eq!(r.header("api-version"), Some("1.51"));
        assert_eq!(r.json()["message"], "page not found");
    }

    #[test]
    fn layer_state_lists_two_levels() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("layers/sha256/abc/deeper")).unwrap();
        std::fs::create_dir_all(dir.path().join("vfs/dir/x")).unwrap();
        std::fs::create_dir_all(dir.path().join("other/ignored")).unwrap();
        let s = layer_state(dir.path(), "vfs");
        let expect: BTreeSet<PathBuf> =
            ["layers/sha256", "layers/sha256/abc", "vfs/dir", "vfs/dir/x"]
                .iter()
                .map(PathBuf::from)
                .collect();
        assert_eq!(s, expect);
    }
}

//! Runs the real `docker` CLI (`/usr/local/bin/docker`, or `$BERTH_TEST_DOCKER`)
//! against one daemon: `DOCKER_HOST` set, a private `DOCKER_CONFIG`, nothing
//! from the caller's docker environment. Commands get a generous deadline so
//! a wedged daemon fails the test instead of hanging the suite.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Path of the docker CLI under test.
pub fn docker_path() -> PathBuf {
    std::env::var_os("BERTH_TEST_DOCKER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/local/bin/docker"))
}

/// The docker CLI pointed at one daemon.
#[derive(Debug, Clone)]
pub struct DockerCli {
    host: String,
    config_dir: PathBuf,
    /// Kill a docker command that runs longer than this (not a performance
    /// assertion: a safety net against hangs).
    pub deadline: Duration,
}

impl DockerCli {
    /// `host` is a `DOCKER_HOST` value (`unix:///path/berth.sock`);
    /// `config_dir` becomes `DOCKER_CONFIG` (created if missing).
    pub fn new(host: impl Into<String>, config_dir: &Path) -> Self {
        let _ = std::fs::create_dir_all(config_dir);
        DockerCli {
            host: host.into(),
            config_dir: config_dir.to_path_buf(),
            deadline: Duration::from_secs(600),
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// A `docker` command with the environment set, for tests that need to
    /// drive stdin themselves or run it in the background.
    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(docker_path());
        cmd.args(args)
            .env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", &self.config_dir)
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .env_remove("DOCKER_API_VERSION")
            .env_remove("DOCKER_DEFAULT_PLATFORM")
            .env("DOCKER_CLI_HINTS", "false");
        cmd
    }

    /// Runs `docker ARGS` with empty stdin.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> DockerOutput {
        self.run_with_stdin(args, &[])
    }

    /// Runs `docker ARGS` feeding `stdin` (e.g. `docker load`, `docker import -`).
    pub fn run_with_stdin<S: AsRef<OsStr>>(&self, args: &[S], stdin: &[u8]) -> DockerOutput {
        let mut cmd = self.command(args);
        let label = describe(args);
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", docker_path().display()));
        collect(child, stdin.to_vec(), self.deadline, label)
    }
}

/// What a docker command printed and how it exited.
#[derive(Debug, Clone)]
pub struct DockerOutput {
    /// `docker a b c`, for messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl DockerOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics with everything the command printed unless it succeeded;
    /// returns `self` for chaining.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(self.success(), "{self}");
        self
    }

    /// Panics unless the command failed; returns `self` for chaining.
    #[track_caller]
    pub fn failed(self) -> Self {
        assert!(!self.success(), "expected failure: {self}");
        self
    }

    /// Trimmed stdout.
    pub fn out(&self) -> &str {
        self.stdout.trim()
    }

    /// Non-empty stdout lines, trimmed.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// stdout parsed as JSON (`--format '{{json .}}'`, `inspect`).
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.out())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }
}

impl std::fmt::Display for DockerOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

fn describe<S: AsRef<OsStr>>(args: &[S]) -> String {
    let mut s = String::from("docker");
    for a in args {
        s.push(' ');
        s.push_str(&a.as_ref().to_string_lossy());
    }
    s
}

/// Feeds stdin, drains stdout/stderr on threads (so a chatty command cannot
/// block on a full pipe), and kills the command at the deadline.
fn collect(mut child: Child, stdin: Vec<u8>, deadline: Duration, command: String) -> DockerOutput {
    let mut stdin_pipe = child.stdin.take().expect("piped stdin");
    let feeder = std::thread::spawn(move || {
        // A command that exits early closes the pipe: not an error here.
        let _ = stdin_pipe.write_all(&stdin);
    });
    let mut out_pipe = child.stdout.take().expect("piped stdout");
    let mut err_pipe = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out_pipe.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err_pipe.read_to_end(&mut buf);
        buf
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for docker") {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let status = child.wait().expect("reaping docker");
            let stdout = out_reader.join().unwrap_or_default();
            let stderr = err_reader.join().unwrap_or_default();
            panic!(
                "`{command}` still running after {deadline:?}; killed ({status})\n--- stdout ---\n{}\n--- stderr ---\n{}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = feeder.join();
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    DockerOutput {
        command,
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

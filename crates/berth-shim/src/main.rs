//! berth-shim: one process per container init or exec. berthd runs it; it
//! detaches, has the OCI runtime create (or exec) the process with stdio
//! it owns, reports the pid, then copies output to the json-file log and
//! attached clients, reaps the process, records its exit status in the
//! state directory and answers `wait` — whether or not berthd is alive.

mod cgroup;
mod daemon;
mod fanout;
mod jsonlog;
mod oci;
mod server;
mod stdio;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_shim::protocol::{ExitRecord, LaunchReport, EXIT_FILE, SHIM_PID_FILE};
use chrono::Utc;
use clap::{Args, Parser, Subcommand};
use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::daemon::Reporter;
use crate::fanout::Fanout;
use crate::jsonlog::JsonLog;
use crate::server::{ExitCell, Shared};
use crate::stdio::StdioConfig;

/// How long output may keep flowing after the process exited (dockerd
/// waits as long for a container's streams), e.g. from a background
/// process that inherited the pipes.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an exec's shim waits after the exit for its first client
/// (berthd attaches right after starting the exec).
const FIRST_CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long queued frames may take to reach attached clients at the end.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Parser)]
#[command(
    name = "berth-shim",
    version,
    about = "berth's per-process container shim"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Create a container's init process (`runc create`); berthd starts it.
    Create {
        /// The OCI bundle (config.json and the rootfs path it names).
        #[arg(long)]
        bundle: PathBuf,
        /// The json-file log to append output to.
        #[arg(long)]
        log_path: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Run an extra process in a running container (`runc exec`).
    Exec {
        #[arg(long)]
        exec_id: String,
        /// The process spec (OCI `process` JSON).
        #[arg(long)]
        process: PathBuf,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args)]
struct Common {
    /// The container ID (the runtime's container id).
    #[arg(long)]
    id: String,
    /// The OCI runtime binary.
    #[arg(long)]
    runtime: PathBuf,
    /// The runtime's `--root`.
    #[arg(long)]
    root: PathBuf,
    /// Where the exit record, pid file and shim log live.
    #[arg(long)]
    state_dir: PathBuf,
    /// The unix socket clients connect to.
    #[arg(long)]
    socket: PathBuf,
    #[arg(long)]
    tty: bool,
    /// Keep stdin open for attached clients.
    #[arg(long)]
    stdin: bool,
    /// Close stdin when the first attached client's input ends.
    #[arg(long)]
    stdin_once: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let common = match &cli.mode {
        Mode::Create { common, .. } | Mode::Exec { common, .. } => common,
    };
    let reporter = match daemon::daemonize(&common.state_dir.join("shim.log")) {
        Ok(r) => r,
        Err(e) => {
            println!(
                "{}",
                serde_json::to_string(&LaunchReport::Error {
                    error: format!("berth-shim: {e:#}")
                })
                .unwrap_or_default()
            );
            return ExitCode::FAILURE;
        }
    };
    match supervise(&cli.mode, reporter) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-shim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The shim's life after daemonizing: start the process, serve it until
/// it exits, record the exit.
fn supervise(mode: &Mode, reporter: Reporter) -> anyhow::Result<()> {
    let (common, bundle, log_path) = match mode {
        Mode::Create {
            bundle,
            log_path,
            common,
        } => (common, Some(bundle.as_path()), log_path.as_deref()),
        Mode::Exec {
            common, exec_id, ..
        } => {
            eprintln!("berth-shim: exec {exec_id} in {}", common.id);
            (common, None, None)
        }
    };
    let reporter = std::cell::Cell::new(Some(reporter));
    let fail = |msg: String| -> anyhow::Error {
        // Gone before berthd hears of the failure, so that nothing it
        // asks afterwards finds this shim answering.
        let _ = fs::remove_file(&common.socket);
        if let Some(r) = reporter.take() {
            r.report(&LaunchReport::Error { error: msg.clone() });
        }
        anyhow::anyhow!(msg)
    };

    let setup = || -> anyhow::Result<_> {
        fs::write(
            common.state_dir.join(SHIM_PID_FILE),
            std::process::id().to_string(),
        )
        .context("writing the shim pid file")?;
        // The process becomes the shim's child when the runtime exits.
        nix::sys::prctl::set_child_subreaper(true).context("PR_SET_CHILD_SUBREAPER")?;
        let _ = fs::remove_file(common.state_dir.join(EXIT_FILE));
        let _ = fs::remove_file(&common.socket);
        let listener = UnixListener::bind(&common.socket)
            .with_context(|| format!("binding {}", common.socket.display()))?;
        let bound = fs::metadata(&common.socket)
            .map(|m| (m.dev(), m.ino()))
            .context("stat of the socket")?;
        let log = log_path
            .map(|p| JsonLog::open(p).with_context(|| format!("opening the log {}", p.display())))
            .transpose()?
            .map(Arc::new);
        Ok((listener, bound, log))
    };
    let (listener, bound, log) = setup().map_err(|e| fail(format!("berth-shim: {e:#}")))?;

    let cfg = StdioConfig {
        tty: common.tty,
        stdin: common.stdin,
        stdin_once: common.stdin_once,
    };
    let (process_io, shim_ends) = stdio::prepare(cfg, common.socket.with_extension("con"))
        .map_err(|e| fail(format!("berth-shim: stdio: {e}")))?;
    let runtime_log = match mode {
        Mode::Create { .. } => common.state_dir.join("runtime.log"),
        Mode::Exec { .. } => common.state_dir.join("runtime-exec.log"),
    };
    let rt = oci::Runtime {
        binary: &common.runtime,
        root: &common.root,
        log: &runtime_log,
        id: &common.id,
    };
    let action = match mode {
        Mode::Create { bundle, .. } => oci::Action::Create { bundle },
        Mode::Exec { process, .. } => oci::Action::Exec { process },
    };
    let pid_file = common.state_dir.join("process.pid");
    let started = oci::start(&rt, &action, &pid_file, process_io).map_err(fail)?;

    let exec_mode = matches!(mode, Mode::Exec { .. });
    let fanout = Arc::new(Fanout::new(exec_mode));
    let (input, draining) = stdio::run(cfg, shim_ends, started.console, log, fanout.clone())
        .map_err(|e| fail(format!("berth-shim: stdio: {e}")))?;
    let shared = Arc::new(Shared {
        input,
        fanout: fanout.clone(),
        exit: ExitCell::default(),
    });
    server::serve(listener, shared.clone());
    if let Some(r) = reporter.take() {
        r.report(&LaunchReport::Pid { pid: started.pid });
    }

    let code = reap(started.pid);
    let record = ExitRecord {
        code,
        finished_at: Utc::now(),
        oom_killed: bundle.is_some_and(cgroup::oom_killed),
    };
    // On disk first: if berthd is down, this is what it finds later.
    if let Err(e) = record.store(&common.state_dir) {
        eprintln!("berth-shim: recording the exit status: {e}");
    }
    draining.wait(DRAIN_TIMEOUT);
    shared.exit.set(record);
    fanout.end();
    if exec_mode {
        wait_for_first_client(&fanout);
    }
    fanout.wait_writers(DELIVERY_TIMEOUT);
    // A restarted container's new shim may already have bound the same
    // path: only the socket this shim bound is removed.
    if fs::metadata(&common.socket).is_ok_and(|m| (m.dev(), m.ino()) == bound) {
        let _ = fs::remove_file(&common.socket);
    }
    Ok(())
}

/// Waits for the process (the shim's child since the runtime exited) and
/// turns its wait status into Docker's exit code (128+N for signal N).
/// Other children that exit (orphans reparented to the shim) are reaped
/// along the way.
fn reap(pid: u32) -> i32 {
    let target = Pid::from_raw(pid as i32);
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(p, code)) if p == target => return code,
            Ok(WaitStatus::Signaled(p, sig, _)) if p == target => return 128 + sig as i32,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => return wait_foreign(target),
        }
    }
}

/// The process is not the shim's child (it cannot be, unless something
/// else reparented it): all that can be known is when it is gone.
fn wait_foreign(pid: Pid) -> i32 {
    while nix::sys::signal::kill(pid, None).is_ok() {
        std::thread::sleep(Duration::from_millis(100));
    }
    255
}

fn wait_for_first_client(fanout: &Fanout) {
    let deadline = std::time::Instant::now() + FIRST_CLIENT_TIMEOUT;
    while fanout.awaits_first_client() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

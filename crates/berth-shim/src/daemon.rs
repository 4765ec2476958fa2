//! Detaching the shim from berthd: the process berthd starts (the
//! launcher) forks, the child starts a new session and forks again, and
//! the grandchild — no longer berthd's child, no session leader, stdio on
//! /dev/null and the shim log — is the shim. The launcher relays the
//! shim's one-line report and exits, which is all berthd waits for.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use anyhow::Context;
use berth_shim::protocol::LaunchReport;
use nix::fcntl::OFlag;
use nix::sys::wait::waitpid;
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, fork, pipe2, setsid, ForkResult};

/// The shim's line back to the launcher (and so to berthd).
pub struct Reporter(File);

impl Reporter {
    pub fn report(mut self, report: &LaunchReport) {
        let mut line = serde_json::to_vec(report).unwrap_or_default();
        line.push(b'\n');
        let _ = self.0.write_all(&line);
    }
}

/// Forks the shim off. Returns only in the shim (the grandchild); the
/// launcher prints the report and exits with 0 on `{"pid":N}`, 1 otherwise.
pub fn daemonize(shim_log: &Path) -> anyhow::Result<Reporter> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC).context("report pipe")?;
    // SAFETY: the shim is single-threaded until after daemonizing, so the
    // child may keep running Rust code after fork.
    match unsafe { fork() }.context("fork")? {
        ForkResult::Parent { child } => {
            drop(w);
            let _ = waitpid(child, None);
            let mut out = String::new();
            let _ = File::from(r).read_to_string(&mut out);
            let line = out.lines().next().unwrap_or("").trim().to_string();
            let report = serde_json::from_str::<LaunchReport>(&line).unwrap_or_else(|_| {
                LaunchReport::Error {
                    error: if line.is_empty() {
                        "berth-shim exited before reporting".into()
                    } else {
                        format!("berth-shim reported {line:?}")
                    },
                }
            });
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            std::process::exit(match report {
                LaunchReport::Pid { .. } => 0,
                LaunchReport::Error { .. } => 1,
            });
        }
        ForkResult::Child => {}
    }
    drop(r);
    let reporter = Reporter(File::from(w));
    if let Err(e) = detach(shim_log) {
        reporter.report(&LaunchReport::Error {
            error: format!("berth-shim: {e:#}"),
        });
        // SAFETY: exiting without unwinding or atexit handlers, as a
        // forked child must.
        unsafe { libc::_exit(1) };
    }
    Ok(reporter)
}

fn detach(shim_log: &Path) -> anyhow::Result<()> {
    setsid().context("setsid")?;
    // SAFETY: still single-threaded (see above).
    match unsafe { fork() }.context("second fork")? {
        // SAFETY: the intermediate process only exits.
        ForkResult::Parent { .. } => unsafe { libc::_exit(0) },
        ForkResult::Child => {}
    }
    // berthd's stdout pipe must not stay open in the shim, or berthd
    // would wait for the container to end instead of for the launcher.
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("/dev/null")?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(shim_log)
        .with_context(|| format!("open {}", shim_log.display()))?;
    dup2_stdin(&null).context("dup2 stdin")?;
    dup2_stdout(&null).context("dup2 stdout")?;
    dup2_stderr(&log).context("dup2 stderr")?;
    // Not holding berthd's working directory keeps it unmountable.
    std::env::set_current_dir("/").context("chdir /")?;
    Ok(())
}

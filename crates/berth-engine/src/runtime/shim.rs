//! Starting a `berth-shim` for a container's init (`create`) or an exec,
//! and where each process's shim socket lives. berthd only execs the shim
//! and reads its one-line report; the shim detaches itself, so nothing
//! forks from the daemon and nothing the shim holds belongs to berthd.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_shim::protocol::LaunchReport;
use sha2::{Digest, Sha256};

use super::StdioConfig;
use crate::error::{EngineError, Result};

/// A unix socket path must fit `sun_path` (108 bytes with the NUL); the
/// shim also binds `<socket>.con` for the runtime's console.
const SUN_PATH_MAX: usize = 107 - ".con".len();

/// The socket of a container's init (`exec_id` None) or of an exec:
/// `<exec-root>/s/<24 hex>`, short so that any sane exec root fits.
pub fn socket_path(exec_root: &Path, container_id: &str, exec_id: Option<&str>) -> Result<PathBuf> {
    let mut h = Sha256::new();
    h.update(container_id.as_bytes());
    if let Some(e) = exec_id {
        h.update(b"/");
        h.update(e.as_bytes());
    }
    let name = hex::encode(h.finalize());
    let path = exec_root.join("s").join(&name[..24]);
    if path.as_os_str().len() > SUN_PATH_MAX {
        return Err(EngineError::Internal(format!(
            "exec root {} is too long for shim sockets (at most {} bytes with /s/<24 hex>)",
            exec_root.display(),
            SUN_PATH_MAX - 28
        )));
    }
    Ok(path)
}

/// What the shim runs.
pub enum ShimMode<'a> {
    Create { bundle: &'a Path, log: &'a Path },
    Exec { exec_id: &'a str, process: &'a Path },
}

/// One shim to start.
pub struct Launch<'a> {
    pub shim: &'a Path,
    pub mode: ShimMode<'a>,
    pub container_id: &'a str,
    pub runtime_binary: &'a Path,
    pub runtime_root: &'a Path,
    pub state_dir: &'a Path,
    pub socket: &'a Path,
    pub stdio: StdioConfig,
}

/// Whether a runtime error is the user's (a missing or unrunnable
/// command, a bind onto the wrong file type): dockerd answers those as a
/// bad request and the CLI turns them into exit codes 127 and 126.
fn is_user_error(msg: &str) -> bool {
    let m = msg.to_lowercase();
    [
        "executable file not found",
        "no such file or directory",
        "permission denied",
        "not a directory",
    ]
    .iter()
    .any(|s| m.contains(s))
}

/// Runs the shim and waits for its report: the pid of the process, or
/// the runtime's error.
pub fn launch(l: &Launch<'_>) -> Result<u32> {
    let mut cmd = Command::new(l.shim);
    match l.mode {
        ShimMode::Create { bundle, log } => {
            cmd.arg("create")
                .arg("--bundle")
                .arg(bundle)
                .arg("--log-path")
                .arg(log);
        }
        ShimMode::Exec { exec_id, process } => {
            cmd.arg("exec")
                .arg("--exec-id")
                .arg(exec_id)
                .arg("--process")
                .arg(process);
        }
    }
    cmd.arg("--id")
        .arg(l.container_id)
        .arg("--runtime")
        .arg(l.runtime_binary)
        .arg("--root")
        .arg(l.runtime_root)
        .arg("--state-dir")
        .arg(l.state_dir)
        .arg("--socket")
        .arg(l.socket);
    for (on, flag) in [
        (l.stdio.tty, "--tty"),
        (l.stdio.stdin, "--stdin"),
        (l.stdio.stdin_once, "--stdin-once"),
    ] {
        if on {
            cmd.arg(flag);
        }
    }
    // The launcher exits as soon as the detached shim has reported, so
    // this returns when the process is created, not when it ends.
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| EngineError::io(format!("running the shim {}", l.shim.display()), e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().next().unwrap_or("").trim();
    match serde_json::from_str::<LaunchReport>(line) {
        Ok(LaunchReport::Pid { pid }) => Ok(pid),
        Ok(LaunchReport::Error { error }) => {
            let msg = match l.mode {
                ShimMode::Create { .. } => {
                    format!("failed to create task for container: OCI runtime create failed: {error}: unknown")
                }
                ShimMode::Exec { .. } => format!("OCI runtime exec failed: {error}: unknown"),
            };
            Err(if is_user_error(&error) {
                EngineError::InvalidParameter(msg)
            } else {
                EngineError::Internal(msg)
            })
        }
        Err(_) => Err(EngineError::Internal(format!(
            "berth-shim {} exited with {} without a report: {}",
            l.shim.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_are_short_and_distinct() {
        let root = Path::new("/run/berth");
        let a = socket_path(root, "abc", None).unwrap();
        let b = socket_path(root, "abc", Some("e1")).unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("/run/berth/s"));
        assert_eq!(a.file_name().unwrap().len(), 24);
        let long = PathBuf::from(format!("/{}", "x".repeat(90)));
        assert!(socket_path(&long, "abc", None).is_err());
    }

    #[test]
    fn user_errors_are_recognised() {
        assert!(is_user_error(
            "unable to start container process: exec: \"nope\": executable file not found in $PATH"
        ));
        assert!(!is_user_error("cgroup: something broke"));
    }
}

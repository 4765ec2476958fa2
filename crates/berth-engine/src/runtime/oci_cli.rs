//! The OCI runtime's short commands (runc or crun, same command line):
//! `start`, `kill`, `pause`, `resume`, `delete`, `state`, `update`, `ps`.
//! Each is exec'd and waited for (blocking); its error message is lifted
//! out of the runtime's logrus-style stderr and classified the way the API
//! needs it (no such container, not running, anything else).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use super::TaskStatus;
use crate::error::{EngineError, Result};

/// One runtime binary with its state directory (`--root`).
pub struct OciCli<'a> {
    pub binary: &'a Path,
    pub root: PathBuf,
}

#[derive(Deserialize)]
struct State {
    status: String,
    #[serde(default)]
    pid: u32,
}

/// The message of a runtime's stderr: runc writes logrus lines
/// (`time=... level=error msg="..."`), crun plain text.
fn runtime_message(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    match last.find("msg=\"") {
        Some(i) => {
            let mut out = String::new();
            let mut chars = last[i + 5..].chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    '"' => break,
                    c => out.push(c),
                }
            }
            out
        }
        None => last.to_string(),
    }
}

impl OciCli<'_> {
    /// Whether the runtime has state for the container.
    pub fn exists(&self, id: &str) -> bool {
        self.root.join(id).exists()
    }

    /// Runs `<binary> --root R <args> <id> <trailing>`.
    fn run(
        &self,
        args: &[&str],
        id: &str,
        trailing: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        let mut cmd = Command::new(self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .args(args)
            .arg(id)
            .args(trailing);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| EngineError::io(format!("running {}", self.binary.display()), e))?;
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(data)
                .map_err(|e| EngineError::io(format!("writing to {}", self.binary.display()), e))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| EngineError::io(format!("running {}", self.binary.display()), e))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        let msg = runtime_message(&out.stderr);
        let what = args.first().copied().unwrap_or("");
        Err(if !self.exists(id) || msg.contains("does not exist") {
            EngineError::NotFound(format!("No such container: {id}"))
        } else if msg.contains("not running") || msg.contains("is not running") {
            EngineError::Conflict(format!("Container {id} is not running"))
        } else if msg.contains("not paused") {
            EngineError::Conflict(format!("Container {id} is not paused"))
        } else {
            EngineError::Internal(format!(
                "{} {what} failed: {msg}",
                self.binary
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
            ))
        })
    }

    pub fn start(&self, id: &str) -> Result<()> {
        self.run(&["start"], id, &[], None).map(drop)
    }

    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let args: &[&str] = if all { &["kill", "--all"] } else { &["kill"] };
        self.run(args, id, &[&signal.to_string()], None).map(drop)
    }

    pub fn pause(&self, id: &str) -> Result<()> {
        self.run(&["pause"], id, &[], None).map(drop)
    }

    pub fn resume(&self, id: &str) -> Result<()> {
        self.run(&["resume"], id, &[], None).map(drop)
    }

    /// Removes the container (killing what still runs); no state is fine.
    pub fn delete(&self, id: &str) -> Result<()> {
        if !self.exists(id) {
            return Ok(());
        }
        match self.run(&["delete", "--force"], id, &[], None) {
            Ok(_) | Err(EngineError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn state(&self, id: &str) -> Result<Option<(TaskStatus, u32)>> {
        if !self.exists(id) {
            return Ok(None);
        }
        let out = match self.run(&["state"], id, &[], None) {
            Ok(out) => out,
            Err(EngineError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let st: State = serde_json::from_slice(&out)
            .map_err(|e| EngineError::Internal(format!("runtime state of {id}: {e}")))?;
        let status = match st.status.as_str() {
            "created" | "creating" => TaskStatus::Created,
            "running" => TaskStatus::Running,
            "paused" | "pausing" => TaskStatus::Paused,
            _ => TaskStatus::Stopped,
        };
        Ok(Some((status, st.pid)))
    }

    /// Applies new cgroup limits: JSON on stdin, named `/dev/stdin`
    /// because crun's `--resources` takes a file path (runc's `-` is its
    /// own spelling).
    pub fn update(&self, id: &str, resources: &[u8]) -> Result<()> {
        self.run(
            &["update", "--resources", "/dev/stdin"],
            id,
            &[],
            Some(resources),
        )
        .map(drop)
    }

    pub fn pids(&self, id: &str) -> Result<Vec<u32>> {
        let out = self.run(&["ps", "--format", "json"], id, &[], None)?;
        if out.iter().all(u8::is_ascii_whitespace) {
            return Ok(Vec::new());
        }
        serde_json::from_slice::<Option<Vec<u32>>>(&out)
            .map(Option::unwrap_or_default)
            .map_err(|e| EngineError::Internal(format!("runtime ps of {id}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lifted_from_logrus_lines() {
        assert_eq!(
            runtime_message(b"time=\"2024\" level=error msg=\"container does not exist\"\n"),
            "container does not exist"
        );
        assert_eq!(
            runtime_message(b"time=\"x\" level=error msg=\"exec: \\\"nope\\\": not found\"\n"),
            "exec: \"nope\": not found"
        );
        assert_eq!(runtime_message(b"plain crun error\n\n"), "plain crun error");
    }
}

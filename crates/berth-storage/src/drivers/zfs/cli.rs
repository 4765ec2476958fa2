//! The `zfs` and `zpool` commands as the zfs driver runs them (dockerd does
//! the same): argument vectors in, trimmed stdout or a classified failure
//! out. Byte values come from `get -Hp`; tools that print only human sizes
//! are read with [`parse_human_size`]. zfs-fuse's "dataset is busy" is
//! retried with backoff.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::StorageError;

/// Why a `zfs`/`zpool` command failed, as far as the driver cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// The command is not installed.
    NoCommand,
    /// The tool runs but ZFS does not (no kernel module, no zfs-fuse daemon).
    NoService,
    /// The dataset, snapshot or pool named does not exist.
    NoDataset,
    /// The dataset is mounted or held (zfs-fuse says so for a while after
    /// a clone or an unmount).
    Busy,
    /// The dataset to create exists already.
    Exists,
    /// A filesystem or snapshot still has clones made from it.
    DependentClones,
    /// Anything else; the message says what.
    Other,
}

/// A failed command: what ran and what it said.
#[derive(Debug, Clone)]
pub(super) struct CliError {
    pub kind: Failure,
    pub command: String,
    pub message: String,
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "zfs: `{}` failed: {}", self.command, self.message)
    }
}

impl From<CliError> for StorageError {
    fn from(e: CliError) -> StorageError {
        let text = e.to_string();
        match e.kind {
            Failure::NoCommand | Failure::NoService => StorageError::Unsupported(text),
            Failure::NoDataset => StorageError::NotFound(text),
            Failure::Busy | Failure::Exists | Failure::DependentClones => {
                StorageError::Conflict(text)
            }
            Failure::Other => StorageError::io(
                format!("zfs: `{}`", e.command),
                std::io::Error::other(e.message),
            ),
        }
    }
}

fn classify(stderr: &str) -> Failure {
    let s = stderr.to_ascii_lowercase();
    if s.contains("failed to initialize zfs library")
        || s.contains("modules are not loaded")
        || s.contains("zfs-fuse daemon is running")
    {
        Failure::NoService
    } else if s.contains("does not exist") || s.contains("no such pool") {
        Failure::NoDataset
    } else if s.contains("dependent clones") {
        Failure::DependentClones
    } else if s.contains("is busy") || s.contains("device busy") {
        Failure::Busy
    } else if s.contains("already exists") {
        Failure::Exists
    } else {
        Failure::Other
    }
}

/// Runs `program args...` and returns its stdout without the final newline.
pub(super) fn run(program: &str, args: &[&str]) -> Result<String, CliError> {
    let command = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    tracing::debug!(target: "berth_storage::zfs", "{command}");
    let out = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| CliError {
            kind: if e.kind() == std::io::ErrorKind::NotFound {
                Failure::NoCommand
            } else {
                Failure::Other
            },
            command: command.clone(),
            message: format!("cannot run {program}: {e}"),
        })?;
    if out.status.success() {
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        while text.ends_with('\n') {
            text.pop();
        }
        return Ok(text);
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let message = if stderr.is_empty() {
        format!("exited with {}", out.status)
    } else {
        stderr
    };
    Err(CliError {
        kind: classify(&message),
        command,
        message,
    })
}

/// `zfs args...`.
pub(super) fn zfs(args: &[&str]) -> Result<String, CliError> {
    run("zfs", args)
}

/// `zpool args...`.
pub(super) fn zpool(args: &[&str]) -> Result<String, CliError> {
    run("zpool", args)
}

/// How long a busy dataset is retried before the failure is returned:
/// zfs-fuse reports "dataset is busy" for a few seconds after clones and
/// unmounts.
const BUSY_PATIENCE: Duration = Duration::from_secs(30);

/// `zfs destroy [flags] name`, retried with backoff while the dataset is
/// busy. A dataset that is already gone counts as destroyed.
pub(super) fn destroy(flags: &[&str], name: &str) -> Result<(), CliError> {
    let mut args = vec!["destroy"];
    args.extend_from_slice(flags);
    args.push(name);
    let deadline = Instant::now() + BUSY_PATIENCE;
    let mut pause = Duration::from_millis(50);
    loop {
        match zfs(&args) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind == Failure::NoDataset => return Ok(()),
            Err(e) if e.kind == Failure::Busy && Instant::now() < deadline => {
                tracing::debug!("{e}; retrying in {pause:?}");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether `zfs get -p` (exact numbers) works; zfs-fuse's `list` lacks
/// `-p`, and a tool whose `get` lacks it too is read in human sizes.
static GET_PARSABLE: AtomicBool = AtomicBool::new(true);

/// Properties of `dataset` as `(property, value)` pairs, numbers exact
/// where the tool can print them so.
pub(super) fn get(dataset: &str, properties: &[&str]) -> Result<Vec<(String, String)>, CliError> {
    let list = properties.join(",");
    let parsable = GET_PARSABLE.load(Ordering::Relaxed);
    let flags = if parsable { "-Hp" } else { "-H" };
    let out = match zfs(&["get", flags, "-o", "property,value", &list, dataset]) {
        Err(e) if parsable && e.kind == Failure::Other && e.message.contains("invalid option") => {
            GET_PARSABLE.store(false, Ordering::Relaxed);
            zfs(&["get", "-H", "-o", "property,value", &list, dataset])?
        }
        other => other?,
    };
    Ok(out
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// One property of `dataset`.
pub(super) fn get_one(dataset: &str, property: &str) -> Result<String, CliError> {
    Ok(get(dataset, &[property])?
        .into_iter()
        .next()
        .map(|(_, v)| v)
        .unwrap_or_default())
}

/// A size property's value in bytes: exact digits, or a human size such as
/// `352K` or `1.50G` (ZFS's binary units). `none`, `-` and `0` are `None`.
pub(super) fn size_value(value: &str) -> Option<u64> {
    match value.trim() {
        "" | "-" | "none" | "0" => None,
        v => v.parse().ok().or_else(|| parse_human_size(v)),
    }
}

/// Parses ZFS's human sizes: a number with an optional `B K M G T P E`
/// suffix, powers of 1024, fractions allowed (`1.50G`).
pub(super) fn parse_human_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let power = match unit.trim().to_ascii_uppercase().trim_end_matches('B') {
        "" => 0,
        "K" => 1,
        "M" => 2,
        "G" => 3,
        "T" => 4,
        "P" => 5,
        "E" => 6,
        _ => return None,
    };
    Some((number * 1024f64.powi(power)).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(parse_human_size("352K"), Some(352 * 1024));
        assert_eq!(parse_human_size("472M"), Some(472 * 1024 * 1024));
        assert_eq!(parse_human_size("1.50G"), Some(1536 * 1024 * 1024));
        assert_eq!(parse_human_size("0"), Some(0));
        assert_eq!(parse_human_size("512"), Some(512));
        assert_eq!(parse_human_size("12X"), None);
        assert_eq!(size_value("none"), None);
        assert_eq!(size_value("-"), None);
        assert_eq!(size_value("20971520"), Some(20 * 1024 * 1024));
        assert_eq!(size_value("20M"), Some(20 * 1024 * 1024));
    }

    #[test]
    fn failures_are_classified_by_what_zfs_says() {
        assert_eq!(
            classify("cannot open 'tank/x': dataset does not exist"),
            Failure::NoDataset
        );
        assert_eq!(
            classify("cannot destroy 'tank/x': dataset is busy"),
            Failure::Busy
        );
        assert_eq!(
            classify("cannot destroy 'tank/a': filesystem has dependent clones\nuse '-R'"),
            Failure::DependentClones
        );
        assert_eq!(
            classify("cannot create 'tank/a': dataset already exists"),
            Failure::Exists
        );
        assert_eq!(
            classify(
                "connect: No such file or directory\nPlease make sure that the zfs-fuse daemon \
                 is running.\ninternal error: failed to initialize ZFS library"
            ),
            Failure::NoService
        );
    }
}

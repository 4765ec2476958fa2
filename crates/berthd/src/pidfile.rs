//! The daemon's PID file, held under an exclusive `flock` for the life of
//! the process: a second berthd with the same pidfile is refused while the
//! first lives, and a pidfile left by a crashed daemon is simply reused.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// A held pidfile; removed and unlocked on drop.
pub struct Pidfile {
    path: PathBuf,
    ino: u64,
    _lock: Flock<File>,
}

impl Pidfile {
    /// Takes `path` for this process and writes our PID into it.
    pub fn acquire(path: &Path) -> Result<Pidfile> {
        Self::acquire_inner(path).with_context(|| {
            format!(
                "failed to start daemon, ensure berthd is not running or delete {}",
                path.display()
            )
        })
    }

    fn acquire_inner(path: &Path) -> Result<Pidfile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("create pidfile directory {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .with_context(|| format!("open {}", path.display()))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                match text.trim().parse::<u32>() {
                    Ok(pid) => bail!("process with PID {pid} is still running"),
                    Err(_) => bail!("another process holds {}", path.display()),
                }
            }
            Err((_, e)) => return Err(e).context("lock pidfile"),
        };
        lock.set_len(0)?;
        lock.rewind()?;
        lock.write_all(std::process::id().to_string().as_bytes())?;
        lock.sync_all()?;
        let ino = lock.metadata()?.ino();
        Ok(Pidfile {
            path: path.to_path_buf(),
            ino,
            _lock: lock,
        })
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        // Remove it only while it is still our file (someone may have
        // deleted and recreated it, as dockerd's error tells them to).
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!("remove pidfile {}: {e}", self.path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_and_file_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/berth.pid");
        let held = Pidfile::acquire(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            std::process::id().to_string()
        );
        let err = format!("{:#}", Pidfile::acquire(&path).err().unwrap());
        assert!(
            err.contains(&format!(
                "process with PID {} is still running",
                std::process::id()
            )),
            "{err}"
        );
        assert!(err.starts_with("failed to start daemon"), "{err}");
        drop(held);
        assert!(!path.exists());
    }

    #[test]
    fn stale_pidfile_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.pid");
        std::fs::write(&path, "999999999").unwrap();
        let held = Pidfile::acquire(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            std::process::id().to_string()
        );
        drop(held);
    }
}

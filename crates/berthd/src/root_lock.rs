//! An exclusive claim on the data root for the life of the daemon. Two
//! daemons on one data root would each reconcile away the other's layers;
//! a `flock` on the directory refuses the second one, whatever pidfile or
//! socket it was given, and vanishes with the process even on SIGKILL.

use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The held claim; released when dropped or when the process dies.
pub struct RootLock {
    _lock: Flock<File>,
}

impl RootLock {
    /// Creates `data_root` if needed and claims it.
    pub fn acquire(data_root: &Path) -> Result<RootLock> {
        std::fs::create_dir_all(data_root)
            .with_context(|| format!("create data root {}", data_root.display()))?;
        let dir = File::open(data_root)
            .with_context(|| format!("open data root {}", data_root.display()))?;
        match Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(RootLock { _lock: lock }),
            Err((_, Errno::EWOULDBLOCK)) => bail!(
                "data root {} is in use by another berthd; each daemon needs its own --data-root",
                data_root.display()
            ),
            Err((_, e)) => Err(e).with_context(|| format!("lock {}", data_root.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_claim_is_refused_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let first = RootLock::acquire(&root).unwrap();
        let err = RootLock::acquire(&root).err().unwrap().to_string();
        assert!(err.contains("in use by another berthd"), "{err}");
        drop(first);
        RootLock::acquire(&root).unwrap();
    }
}

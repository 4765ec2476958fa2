//! Scratch space for tests: every temp dir, image file and socket lives under
//! one base directory (`$BERTH_TEST_TMPDIR`, default `/var/tmp/berth-tests`)
//! so `scripts/test` can sweep whatever a killed test run left behind, plus
//! the root check every kernel-touching test starts with.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use tempfile::TempDir;

/// Where scratch directories go. Kept short: unix socket paths must fit in
/// 108 bytes, and the daemon's socket lives in one of these.
pub fn base_dir() -> PathBuf {
    std::env::var_os("BERTH_TEST_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/berth-tests"))
}

/// A fresh directory under [`base_dir`], removed on drop.
pub fn scratch_dir(prefix: &str) -> io::Result<TempDir> {
    let base = base_dir();
    std::fs::create_dir_all(&base)?;
    tempfile::Builder::new().prefix(prefix).tempdir_in(base)
}

/// Panics with a clear message unless the test runs as root: loop devices,
/// mounts and berthd itself need it, and a half-run test that fails on
/// `EPERM` deep inside a helper says much less.
pub fn require_root() {
    if !nix::unistd::Uid::effective().is_root() {
        panic!("this test needs root (loop devices, mounts, berthd): run it through scripts/test as root");
    }
}

/// A name no other test in this run (or a parallel run) will use, for marker
/// files that hostile archives try to plant outside the data root.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos:x}", std::process::id())
}

//! The storage backends berthd's integration tests run on (btrfs on a btrfs
//! loop image, overlay2 on xfs, vfs on ext4), the `per_driver!` macro that
//! turns one test body into `btrfs::NAME`, `overlay2::NAME` and `vfs::NAME`,
//! and the few image-state checks several test files share.
#![allow(dead_code)] // each test binary uses a different part of this

pub mod containers;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use berth_testkit::{busybox, BuiltImage, Daemon, DaemonBuilder, FsKind, LoopFs};

/// berthd under test: the binary Cargo built for this package, unless
/// `BERTH_TEST_DAEMON` names another (e.g. `/usr/sbin/dockerd`, to check the
/// tests' expectations against Docker's own daemon). `BERTH_TEST_DAEMON_ARGS`
/// adds whitespace-separated arguments to every start.
pub fn berthd() -> PathBuf {
    std::env::var_os("BERTH_TEST_DAEMON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_berthd")))
}

/// A builder for berthd with the extra arguments from the environment.
pub fn builder() -> DaemonBuilder {
    berth_testkit::require_root();
    let mut b = Daemon::builder(berthd());
    if let Ok(extra) = std::env::var("BERTH_TEST_DAEMON_ARGS") {
        for arg in extra.split_whitespace() {
            b = b.arg(arg);
        }
    }
    b
}

/// Where a test's data root lives and which driver berthd runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Btrfs,
    Overlay2,
    Vfs,
}

impl Backend {
    /// The `--storage-driver` name.
    pub fn driver(self) -> &'static str {
        match self {
            Backend::Btrfs => "btrfs",
            Backend::Overlay2 => "overlay2",
            Backend::Vfs => "vfs",
        }
    }

    /// The filesystem under the data root: btrfs needs btrfs; overlay2 runs
    /// on xfs (ftype=1, the common production setup); vfs on ext4.
    pub fn fs_kind(self) -> FsKind {
        match self {
            Backend::Btrfs => FsKind::Btrfs,
            Backend::Overlay2 => FsKind::Xfs,
            Backend::Vfs => FsKind::Ext4,
        }
    }

    /// A fresh loop filesystem for this backend.
    pub fn loopfs(self) -> LoopFs {
        berth_testkit::require_root();
        LoopFs::new(self.fs_kind())
            .unwrap_or_else(|e| panic!("making a {:?} loop filesystem: {e}", self.fs_kind()))
    }

    /// A builder with its own loop filesystem and `-s <driver>`.
    pub fn builder(self) -> DaemonBuilder {
        builder()
            .on_loopfs(self.loopfs())
            .storage_driver(self.driver())
    }

    /// berthd running on a fresh loop filesystem with this driver.
    #[track_caller]
    pub fn daemon(self) -> Daemon {
        self.builder().start()
    }

    /// Directories the driver keeps one per layer, in dockerd's layout
    /// (`btrfs/subvolumes/<id>`, `overlay2/<id>` beside `overlay2/l`,
    /// `vfs/dir/<id>`).
    pub fn layer_dirs(self, data_root: &Path) -> Vec<PathBuf> {
        let home = data_root.join(self.driver());
        let dir = match self {
            Backend::Btrfs => home.join("subvolumes"),
            Backend::Overlay2 => home.clone(),
            Backend::Vfs => home.join("dir"),
        };
        // Only directories: overlay2's home also holds files (dockerd keeps
        // `backingFsBlockDev` there) and the short-name dir `l`.
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                    .map(|e| e.path())
                    .filter(|p| !(self == Backend::Overlay2 && p.file_name() == Some("l".as_ref())))
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        found
    }
}

/// Generates one `#[test]` per driver for each listed case:
/// `per_driver!(load_image)` makes `btrfs::load_image`, `overlay2::load_image`
/// and `vfs::load_image`, each calling `load_image(Backend::X)`. Run one
/// driver's tests with `cargo test -p berthd -- btrfs::`.
#[allow(unused_macros)] // files that use `per_driver_split!` instead
macro_rules! per_driver {
    ($($case:ident),* $(,)?) => {
        mod btrfs {
            $( #[test] fn $case() { super::$case(crate::support::Backend::Btrfs) } )*
        }
        mod overlay2 {
            $( #[test] fn $case() { super::$case(crate::support::Backend::Overlay2) } )*
        }
        mod vfs {
            $( #[test] fn $case() { super::$case(crate::support::Backend::Vfs) } )*
        }
    };
}

/// Like `per_driver!`, for files whose costlier cases skip vfs (which copies
/// the whole image for every container and adds nothing to them): the
/// `all` cases run on btrfs, overlay2 and vfs, the `btrfs_overlay2` cases on
/// those two only.
#[allow(unused_macros)] // only some test binaries use it
macro_rules! per_driver_split {
    (all: [$($all:ident),* $(,)?], btrfs_overlay2: [$($cow:ident),* $(,)?] $(,)?) => {
        mod btrfs {
            $( #[test] fn $all() { super::$all(crate::support::Backend::Btrfs) } )*
            $( #[test] fn $cow() { super::$cow(crate::support::Backend::Btrfs) } )*
        }
        mod overlay2 {
            $( #[test] fn $all() { super::$all(crate::support::Backend::Overlay2) } )*
            $( #[test] fn $cow() { super::$cow(crate::support::Backend::Overlay2) } )*
        }
        mod vfs {
            $( #[test] fn $all() { super::$all(crate::support::Backend::Vfs) } )*
        }
    };
}

/// Writes `bytes` to `<daemon scratch>/<name>` (outside the data root) for
/// `docker load -i`.
pub fn archive_file(daemon: &Daemon, name: &str, bytes: &[u8]) -> PathBuf {
    let path = daemon.scratch_dir().join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// `docker load -i` of `image`, asserting success; returns docker's output.
#[track_caller]
pub fn load(daemon: &Daemon, image: &BuiltImage, name: &str) -> String {
    let path = archive_file(daemon, name, &image.bytes);
    let out = daemon.docker(&["load", "-i", path.to_str().unwrap()]).ok();
    out.stdout
}

/// The busybox test image, loaded; returns what was built.
#[track_caller]
pub fn load_busybox(daemon: &Daemon) -> BuiltImage {
    let image = busybox::image()
        .expect("busybox-static test image (apt-get install busybox-static)")
        .build();
    let out = load(daemon, &image, "busybox.tar");
    assert!(
        out.contains(&format!("Loaded image: {}", busybox::IMAGE)),
        "docker load output: {out}"
    );
    image
}

/// Full IDs of all images (`docker images -a -q --no-trunc`), sorted.
#[track_caller]
pub fn image_ids(daemon: &Daemon) -> BTreeSet<String> {
    daemon
        .docker(&["images", "-a", "-q", "--no-trunc"])
        .ok()
        .lines()
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// `repo:tag` of all tagged images, sorted.
#[track_caller]
pub fn image_refs(daemon: &Daemon) -> BTreeSet<String> {
    daemon
        .docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .ok()
        .lines()
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// `docker image inspect` of one image as JSON.
#[track_caller]
pub fn inspect(daemon: &Daemon, name: &str) -> serde_json::Value {
    let v = daemon.docker(&["image", "inspect", name]).ok().json();
    v[0].clone()
}

/// Mount points at or below the daemon's data and exec roots, for
/// before/after comparisons (a daemon may keep mounts of its own while it
/// runs, as dockerd does with its driver home).
pub fn mount_points(daemon: &Daemon) -> BTreeSet<PathBuf> {
    daemon.mounts().into_iter().map(|m| m.mount_point).collect()
}

/// Asserts that nothing of the image store is on disk any more: no layer
/// metadata (`layers/sha256/*`) and no driver layer directories.
#[track_caller]
pub fn assert_no_layers(daemon: &Daemon, backend: Backend) {
    let root = daemon.data_root();
    let meta: Vec<PathBuf> = std::fs::read_dir(root.join("layers/sha256"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(meta.is_empty(), "layer metadata left: {meta:?}");
    let dirs = backend.layer_dirs(root);
    assert!(
        dirs.is_empty(),
        "{} layer dirs left: {dirs:?}",
        backend.driver()
    );
}

//! berth-testkit: the real things berth's integration tests stand on — loop
//! filesystems ([`LoopFs`]), zfs pools ([`ZfsPool`]), berthd driven by the real
//! docker CLI ([`Daemon`]), busybox test images ([`busybox`], [`hostile`]), a
//! real pty ([`terminal`]), outside-in checks ([`mountinfo`], [`btrfs`],
//! [`leaks`]). No mocks: each guard tears its kernel object down in `Drop`.

pub mod archive;
pub mod btrfs;
pub mod busybox;
pub mod chromium;
pub mod daemon;
pub mod docker_cli;
pub mod hostile;
pub mod layer;
pub mod leaks;
pub mod loopfs;
pub mod microvm;
pub mod mountinfo;
pub mod network;
pub mod scratch;
pub mod terminal;
pub mod zfs;

pub use archive::{BuiltImage, Compression, ImageBuilder, Layout};
pub use daemon::{
    ApiResponse, ConfigFile, Daemon, DaemonBuilder, Leftovers, Settings, StartFailure,
};
pub use docker_cli::{DockerCli, DockerOutput};
pub use hostile::{Hostile, HostileArchive};
pub use layer::LayerTar;
pub use loopfs::{FsKind, LoopFs};
pub use microvm::{MicroVm, Payload};
pub use scratch::require_root;
pub use terminal::Terminal;
pub use zfs::{ZfsPool, ZfsService};

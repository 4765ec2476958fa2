//! `berth storage setup`: a device or a new image file made into a data
//! root for one storage driver. A [`Request`] is checked (nothing is touched
//! that holds a filesystem unless forced) and turned into a [`Plan`] of exact
//! steps; a dry run prints them, a real run executes them in order and
//! undoes what it did when a step fails.

mod btrfs;
mod probe;
mod step;
mod xfs;
mod zfs;

use std::io::Write;
use std::path::{Path, PathBuf};

pub use step::Step;

/// The drivers `berth storage setup` prepares storage for. (devicemapper,
/// a thin pool on a device or on loop files, joins these as a module of its
/// own beside `btrfs`, `zfs` and `xfs`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupDriver {
    Btrfs,
    Zfs,
    /// overlay2 with per-container size limits: xfs mounted with `pquota`.
    Overlay2,
}

impl SetupDriver {
    /// The driver's name as berthd's `--storage-driver` takes it.
    pub fn name(self) -> &'static str {
        match self {
            SetupDriver::Btrfs => "btrfs",
            SetupDriver::Zfs => "zfs",
            SetupDriver::Overlay2 => "overlay2",
        }
    }

    /// The smallest image file the filesystem can be made on.
    fn min_file_size(self) -> u64 {
        match self {
            // mkfs.btrfs refuses below about 114 MiB with default profiles.
            SetupDriver::Btrfs => 128 << 20,
            // ZFS refuses vdevs below 64 MiB.
            SetupDriver::Zfs => 64 << 20,
            // mkfs.xfs refuses filesystems below 300 MB.
            SetupDriver::Overlay2 => 300_000_000,
        }
    }
}

/// Where the filesystem goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A block device, used whole.
    Device(PathBuf),
    /// A sparse image file of `size` bytes, created by the set-up.
    File { path: PathBuf, size: u64 },
}

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub driver: SetupDriver,
    pub target: Target,
    pub data_root: PathBuf,
    /// Erase an existing filesystem or replace an existing image file.
    pub force: bool,
    /// Add an entry to this fstab (`--fstab`), so the mount survives a reboot.
    pub fstab: Option<PathBuf>,
    /// The zfs pool to create.
    pub pool: String,
}

/// Why a set-up was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The request itself is wrong (a missing size, a relative path...).
    #[error("{0}")]
    Invalid(String),
    /// Going on would destroy or hide data, or collide with what exists.
    #[error("{0}")]
    Refused(String),
    /// A step failed; the steps before it were undone.
    #[error("step {number} failed: {step}\n  {message}")]
    StepFailed {
        number: usize,
        step: String,
        message: String,
    },
}

/// The checked target, as the driver modules build steps from it.
#[derive(Debug, Clone)]
struct Checked {
    /// The device or image file, absolute.
    target: PathBuf,
    /// A new (or replaced) image file of this size; `None` for a device.
    file_size: Option<u64>,
    data_root: PathBuf,
    /// Whether mkfs must be told to overwrite (`--force`).
    overwrite: bool,
    /// Whether the data root directory must be made.
    make_data_root: bool,
    fstab: Option<PathBuf>,
    /// The UUID the new filesystem gets, so the fstab entry can name it
    /// before mkfs runs (and a dry run shows the exact command).
    uuid: String,
}

impl Checked {
    fn is_file(&self) -> bool {
        self.file_size.is_some()
    }

    fn target_text(&self) -> String {
        self.target.to_string_lossy().into_owned()
    }

    fn data_root_text(&self) -> String {
        self.data_root.to_string_lossy().into_owned()
    }

    /// Creating the image file, when the target is one.
    fn create_file_step(&self) -> Option<Step> {
        self.file_size.map(|size| Step::CreateFile {
            path: self.target.clone(),
            size,
        })
    }

    fn make_dir_step(&self) -> Option<Step> {
        self.make_data_root.then(|| Step::MakeDir {
            path: self.data_root.clone(),
        })
    }
}

/// The checked, ordered steps of one set-up.
#[derive(Debug, Clone)]
pub struct Plan {
    pub driver: SetupDriver,
    pub data_root: PathBuf,
    /// One line saying what will be made where.
    pub summary: String,
    pub steps: Vec<Step>,
    /// Things the operator should know (printed after the steps).
    pub notes: Vec<String>,
}

/// A random version-4 UUID.
fn new_uuid() -> Result<String, SetupError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| SetupError::Invalid(format!("random: {e}")))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

fn absolute(path: &Path, what: &str) -> Result<PathBuf, SetupError> {
    std::path::absolute(path)
        .map_err(|e| SetupError::Invalid(format!("{what} {}: {e}", path.display())))
}

/// The size as an operator reads it (`2 GiB`).
pub fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn check_target(req: &Request) -> Result<(PathBuf, Option<u64>, bool), SetupError> {
    match &req.target {
        Target::Device(device) => {
            let device = absolute(device, "device")?;
            let meta = std::fs::metadata(&device)
                .map_err(|e| SetupError::Invalid(format!("{}: {e}", device.display())))?;
            if !std::os::unix::fs::FileTypeExt::is_block_device(&meta.file_type()) {
                return Err(SetupError::Invalid(format!(
                    "{} is not a block device (use --file PATH --size SIZE for an image file)",
                    device.display()
                )));
            }
            if let Some(point) = probe::mounted_at(&device) {
                return Err(SetupError::Refused(format!(
                    "{} is mounted on {}; berth storage setup never formats a mounted device",
                    device.display(),
                    point.display()
                )));
            }
            if probe::capacity(&device) == 0 {
                return Err(SetupError::Invalid(format!(
                    "{} has no capacity (an unattached loop device?)",
                    device.display()
                )));
            }
            if let Some(kind) = probe::signature(&device) {
                if !req.force {
                    return Err(SetupError::Refused(format!(
                        "{} is in use: it holds a `{kind}` signature (a filesystem or \
                         partition table); berth storage setup will not erase it. Pass \
                         --force to overwrite it",
                        device.display()
                    )));
                }
            }
            Ok((device, None, req.force))
        }
        Target::File { path, size } => {
            let path = absolute(path, "image file")?;
            let min = req.driver.min_file_size();
            if *size < min {
                return Err(SetupError::Invalid(format!(
                    "--size {} is too small for {}: at least {} is needed",
                    size_text(*size),
                    req.driver.name(),
                    size_text(min)
                )));
            }
            let parent = path.parent().unwrap_or(Path::new("/"));
            if !parent.is_dir() {
                return Err(SetupError::Invalid(format!(
                    "{} does not exist: the image file's directory must",
                    parent.display()
                )));
            }
            if path.exists() && !req.force {
                return Err(SetupError::Refused(format!(
                    "{} exists; berth storage setup makes a new image file and will not \
                     overwrite it. Pass --force to replace it",
                    path.display()
                )));
            }
            // A replaced file is truncated to nothing first: mkfs needs no
            // force of its own.
            Ok((path, Some(*size), false))
        }
    }
}

fn check_data_root(req: &Request, data_root: &Path) -> Result<bool, SetupError> {
    if !data_root.exists() {
        return Ok(true);
    }
    if !data_root.is_dir() {
        return Err(SetupError::Invalid(format!(
            "{} exists and is not a directory",
            data_root.display()
        )));
    }
    if probe::is_mount_point(data_root) {
        return Err(SetupError::Refused(format!(
            "something is already mounted on {}; unmount it or choose another --data-root",
            data_root.display()
        )));
    }
    let empty = std::fs::read_dir(data_root)
        .map_err(|e| SetupError::Invalid(format!("{}: {e}", data_root.display())))?
        .next()
        .is_none();
    if !empty {
        // ZFS will not mount on a non-empty directory at all.
        if req.driver == SetupDriver::Zfs || !req.force {
            return Err(SetupError::Refused(format!(
                "{} is not empty; the new filesystem would hide what it holds{}",
                data_root.display(),
                if req.driver == SetupDriver::Zfs {
                    ""
                } else {
                    ". Pass --force to mount over it anyway"
                }
            )));
        }
    }
    Ok(false)
}

/// Checks `req` against the system (read-only) and lays out its steps.
pub fn plan(req: &Request) -> Result<Plan, SetupError> {
    let data_root = absolute(&req.data_root, "data root")?;
    let (target, file_size, overwrite) = check_target(req)?;
    if target.starts_with(&data_root) {
        return Err(SetupError::Invalid(format!(
            "the image file {} cannot live inside the data root {} it is mounted on",
            target.display(),
            data_root.display()
        )));
    }
    let make_data_root = check_data_root(req, &data_root)?;
    if let Some(fstab) = &req.fstab {
        if req.driver != SetupDriver::Zfs && probe::fstab_mounts(fstab, &data_root) {
            return Err(SetupError::Refused(format!(
                "{} already has an entry for {}",
                fstab.display(),
                data_root.display()
            )));
        }
    }
    let checked = Checked {
        target,
        file_size,
        data_root,
        overwrite,
        make_data_root,
        fstab: req.fstab.clone(),
        uuid: new_uuid()?,
    };
    let what = match checked.file_size {
        Some(size) => format!(
            "a new {} image file {}",
            size_text(size),
            checked.target.display()
        ),
        None => format!("device {}", checked.target.display()),
    };
    let (summary, mut steps, mut notes) = match req.driver {
        SetupDriver::Btrfs => btrfs::plan(&checked, &what),
        SetupDriver::Zfs => zfs::plan(&checked, &what, &req.pool)?,
        SetupDriver::Overlay2 => xfs::plan(&checked, &what),
    };
    steps.push(Step::OpenDriver {
        driver: req.driver.name().to_string(),
        data_root: checked.data_root.clone(),
    });
    notes.push(format!(
        "then start the daemon with: berthd --data-root {} --storage-driver {}",
        step::shell_word(&checked.data_root.to_string_lossy()),
        req.driver.name()
    ));
    Ok(Plan {
        driver: req.driver,
        data_root: checked.data_root,
        summary,
        steps,
        notes,
    })
}

impl Plan {
    /// The plan as printed: a summary, numbered steps, notes.
    pub fn render(&self, dry_run: bool) -> String {
        let mut out = format!("{}\n", self.summary);
        if dry_run {
            out.push_str("dry run: these steps would run; nothing was changed\n");
        }
        for (i, step) in self.steps.iter().enumerate() {
            out.push_str(&format!("  {}. {}\n", i + 1, step.describe()));
        }
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        out
    }

    /// Runs the steps in order, printing each to `log` as it starts. When
    /// one fails, what the earlier ones did is undone, last first.
    pub fn execute(&self, log: &mut dyn Write) -> Result<(), SetupError> {
        if self.driver != SetupDriver::Zfs {
            return self.run_steps(log);
        }
        // `zfs create` mounts the data root; zfs-fuse must never mount two
        // datasets at once (see the zfs driver's FUSE_MOUNT_LOCK).
        berth_storage::drivers::zfs::with_fuse_mount_lock(|| self.run_steps(log)).map_err(|e| {
            SetupError::Refused(format!(
                "cannot take {}: {e}",
                berth_storage::drivers::zfs::FUSE_MOUNT_LOCK
            ))
        })?
    }

    fn run_steps(&self, log: &mut dyn Write) -> Result<(), SetupError> {
        let _ = writeln!(log, "{}", self.summary);
        let mut done = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            let _ = writeln!(log, "+ {}", step.describe());
            match step.execute() {
                Ok(undo) => done.push(undo),
                Err(message) => {
                    let _ = writeln!(log, "failed: {message}");
                    for undo in done.iter().rev() {
                        if let Some(text) = undo.describe() {
                            let _ = writeln!(log, "undo: {text}");
                        }
                        if let Err(e) = undo.execute() {
                            let _ = writeln!(log, "undo failed: {e}");
                        }
                    }
                    return Err(SetupError::StepFailed {
                        number: i + 1,
                        step: step.describe(),
                        message,
                    });
                }
            }
        }
        for note in &self.notes {
            let _ = writeln!(log, "note: {note}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4() {
        let u = new_uuid().unwrap();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
        assert_ne!(u, new_uuid().unwrap());
    }

    #[test]
    fn sizes_for_operators() {
        assert_eq!(size_text(2 << 30), "2 GiB");
        assert_eq!(size_text(1536 << 20), "1.5 GiB");
        assert_eq!(size_text(300_000_000), "286.1 MiB");
    }
}

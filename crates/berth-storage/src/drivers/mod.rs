//! The storage drivers and how one is chosen at start-up: an existing data
//! root keeps the driver it was made with (recorded in `engine.json`);
//! a new one gets btrfs on btrfs, zfs on a ZFS dataset, else overlay2 where
//! the kernel has it, else vfs — dockerd's order. Daemon-wide
//! `--storage-opt`s are parsed here and handed to the chosen driver, which
//! refuses the ones it does not know.

pub mod btrfs;
pub mod devicemapper;
mod fsinfo;
mod mount_refs;
pub mod overlay2;
mod tree_copy;
pub mod vfs;
pub mod xfs_quota;
pub mod zfs;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::driver::Driver;
use crate::error::{Result, StorageError};

pub use fsinfo::{backing_fs_name, FsMagic};
pub use tree_copy::copy_tree;

/// Daemon-wide driver configuration.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// `--data-root`.
    pub data_root: PathBuf,
    /// `-s`; `None` selects as dockerd does.
    pub name: Option<String>,
    /// `--storage-opt`, raw `key=value` strings.
    pub options: Vec<String>,
}

/// The drivers berth knows, in auto-selection order after btrfs.
pub const DRIVERS: &[&str] = &["btrfs", "zfs", "overlay2", "vfs", "devicemapper"];

/// `<data-root>/engine.json`: which driver made this data root.
#[derive(Debug, Serialize, Deserialize)]
struct EngineRecord {
    driver: String,
    version: u32,
}

const FORMAT_VERSION: u32 = 1;

/// `--storage-opt` pairs, keys lowercased as dockerd does.
#[derive(Debug, Clone, Default)]
pub struct DriverOptions(Vec<(String, String)>);

impl DriverOptions {
    /// Parses `key=value` strings.
    pub fn parse(raw: &[String]) -> Result<DriverOptions> {
        let mut out = Vec::new();
        for opt in raw {
            let (k, v) = opt.split_once('=').ok_or_else(|| {
                StorageError::InvalidOption(format!(
                    "invalid storage option {opt:?}: expected key=value"
                ))
            })?;
            out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        Ok(DriverOptions(out))
    }

    /// The pairs in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Parses a size as dockerd does for storage options (`10G`, `512m`,
/// `1.5GB`; binary multiples).
pub fn parse_size(value: &str) -> Result<u64> {
    let config = parse_size::Config::new().with_binary();
    config
        .parse_size(value)
        .map_err(|_| StorageError::InvalidOption(format!("invalid size: '{value}'")))
}

/// Formats a size as dockerd's `units.HumanSize` does in `docker info` and
/// in its error messages: decimal units, four significant digits
/// (`10.74GB`, `65.54kB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    // %.4g: four significant digits, trailing zeros dropped.
    let digits = if value > 0.0 {
        value.log10().floor() as i32 + 1
    } else {
        1
    };
    let decimals = (4 - digits).max(0) as usize;
    let mut text = format!("{value:.decimals$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{text}{}", UNITS[unit])
}

/// Opens the configured (or auto-selected) driver on `cfg.data_root`.
pub fn open_driver(cfg: &DriverConfig) -> Result<Arc<dyn Driver>> {
    let record_path = cfg.data_root.join("engine.json");
    let recorded = read_record(&record_path)?;
    let name = match (&cfg.name, &recorded) {
        (Some(want), Some(rec)) if *want != rec.driver => {
            return Err(StorageError::Unsupported(format!(
                "{} was set up with storage driver {:?}; starting with {:?} would hide its images \
                 and containers. Start with -s {} or use another --data-root",
                cfg.data_root.display(),
                rec.driver,
                want,
                rec.driver
            )))
        }
        (Some(want), _) => want.clone(),
        (None, Some(rec)) => rec.driver.clone(),
        (None, None) => auto_select(&cfg.data_root),
    };
    let options = DriverOptions::parse(&cfg.options)?;
    let driver: Arc<dyn Driver> = match name.as_str() {
        "vfs" => Arc::new(vfs::Vfs::open(&cfg.data_root.join("vfs"), &options)?),
        "overlay2" => Arc::new(overlay2::Overlay2::open(
            &cfg.data_root.join("overlay2"),
            &options,
        )?),
        "btrfs" => Arc::new(btrfs::Btrfs::open(&cfg.data_root.join("btrfs"), &options)?),
        "devicemapper" => Arc::new(devicemapper::DeviceMapper::open(
            &cfg.data_root.join("devicemapper"),
            &options,
        )?),
        "zfs" => Arc::new(zfs::Zfs::open(&cfg.data_root.join("zfs"), &options)?),
        other => {
            return Err(StorageError::Unsupported(format!(
                "storage driver {other:?} is not supported; choose one of {}",
                DRIVERS.join(", ")
            )))
        }
    };
    if recorded.is_none() {
        crate::atomic::write_json(
            &record_path,
            &EngineRecord {
                driver: name,
                version: FORMAT_VERSION,
            },
        )?;
    }
    Ok(driver)
}

fn read_record(path: &Path) -> Result<Option<EngineRecord>> {
    match std::fs::read(path) {
        Ok(data) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| StorageError::Unsupported(format!("{} is corrupt: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::at(path, "read", e)),
    }
}

fn auto_select(data_root: &Path) -> String {
    if fsinfo::magic(data_root) == Some(FsMagic::Btrfs) {
        return "btrfs".into();
    }
    if zfs::dataset_of(data_root).is_some() {
        return "zfs".into();
    }
    if overlay2::supported(data_root) {
        return "overlay2".into();
    }
    "vfs".into()
}

/// Refuses an option the driver does not know, in dockerd's words.
pub(crate) fn unknown_option(driver: &str, key: &str) -> StorageError {
    StorageError::InvalidOption(format!("{driver}: unknown option {key}"))
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn human_size_matches_dockerd() {
        assert_eq!(human_size(10 * 1024 * 1024 * 1024), "10.74GB");
        assert_eq!(human_size(65536), "65.54kB");
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(2_000_000), "2MB");
        assert_eq!(human_size(107_374_182_400), "107.4GB");
    }
}

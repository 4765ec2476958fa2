//! The devicemapper driver's `dm.*` options, parsed and checked once at
//! start with dockerd's names, defaults and error texts, and the two
//! filesystems a base device can carry.

use super::pool::PoolSource;
use crate::drivers::{parse_size, unknown_option, DriverOptions};
use crate::error::{Result, StorageError};

pub(super) const GIB: u64 = 1024 * 1024 * 1024;
pub(super) const DEFAULT_BASE_SIZE: u64 = 10 * GIB;
pub(super) const DEFAULT_DATA_LOOP_SIZE: u64 = 100 * GIB;
pub(super) const DEFAULT_METADATA_LOOP_SIZE: u64 = 2 * GIB;
pub(super) const DEFAULT_BLOCK_SIZE: u64 = 64 * 1024;
pub(super) const DEFAULT_MIN_FREE_PERCENT: u32 = 10;

/// The filesystem on the thin devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Filesystem {
    Xfs,
    Ext4,
}

impl Filesystem {
    pub(super) fn parse(name: &str) -> Result<Filesystem> {
        match name {
            "xfs" => Ok(Filesystem::Xfs),
            "ext4" => Ok(Filesystem::Ext4),
            other => Err(StorageError::InvalidOption(format!(
                "devmapper: Unsupported filesystem {other}"
            ))),
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Filesystem::Xfs => "xfs",
            Filesystem::Ext4 => "ext4",
        }
    }

    /// Mount options every mount of a layer needs.
    pub(super) fn mount_options(self) -> &'static str {
        match self {
            // Every snapshot carries its origin's UUID.
            Filesystem::Xfs => "nouuid",
            // The inode tables were left unzeroed at mkfs (a fresh thin
            // device reads as zeros); background zeroing would only
            // provision pool blocks in every container.
            Filesystem::Ext4 => "noinit_itable",
        }
    }
}

/// `dm.*` options.
#[derive(Debug, Clone)]
pub(super) struct Options {
    pub(super) source: PoolSource,
    pub(super) base_size: Option<u64>,
    pub(super) filesystem: Option<Filesystem>,
    pub(super) min_free_percent: u32,
    pub(super) block_size: u64,
    pub(super) mkfs_args: Vec<String>,
    pub(super) mount_options: Vec<String>,
}

impl Options {
    pub(super) fn parse(options: &DriverOptions) -> Result<Options> {
        let mut pool_dev = None;
        let mut data_size = DEFAULT_DATA_LOOP_SIZE;
        let mut metadata_size = DEFAULT_METADATA_LOOP_SIZE;
        let mut out = Options {
            source: PoolSource::Existing(String::new()),
            base_size: None,
            filesystem: None,
            min_free_percent: DEFAULT_MIN_FREE_PERCENT,
            block_size: DEFAULT_BLOCK_SIZE,
            mkfs_args: Vec::new(),
            mount_options: Vec::new(),
        };
        for (key, value) in options.iter() {
            match key {
                "dm.thinpooldev" => pool_dev = Some(value.to_string()),
                "dm.loopdatasize" => data_size = parse_size(value)?,
                "dm.loopmetadatasize" => metadata_size = parse_size(value)?,
                "dm.basesize" => out.base_size = Some(parse_size(value)?),
                "dm.fs" => out.filesystem = Some(Filesystem::parse(value)?),
                "dm.min_free_space" => out.min_free_percent = parse_min_free(value)?,
                "dm.blocksize" => {
                    let size = parse_size(value)?;
                    if !(64 * 1024..=GIB).contains(&size) || size % (64 * 1024) != 0 {
                        return Err(StorageError::InvalidOption(format!(
                            "devmapper: dm.blocksize must be a multiple of 64K between 64K and \
                             1G, not {value}"
                        )));
                    }
                    out.block_size = size;
                }
                "dm.mkfsarg" => out.mkfs_args.push(value.to_string()),
                "dm.mountopt" => out.mount_options.push(value.to_string()),
                // Accepted for dockerd compatibility: berth removes devices
                // at once and does not wait for udev.
                "dm.use_deferred_removal"
                | "dm.use_deferred_deletion"
                | "dm.override_udev_sync_check" => {
                    value.parse::<bool>().map_err(|_| {
                        StorageError::InvalidOption(format!(
                            "devmapper: invalid boolean {value:?} for {key}"
                        ))
                    })?;
                }
                _ => return Err(unknown_option("devicemapper", key)),
            }
        }
        out.source = match pool_dev {
            Some(name) if !name.is_empty() => PoolSource::Existing(name),
            _ => PoolSource::Loopback {
                data_size,
                metadata_size,
            },
        };
        Ok(out)
    }
}

fn parse_min_free(value: &str) -> Result<u32> {
    let number = value.strip_suffix('%').ok_or_else(|| {
        StorageError::InvalidOption("devmapper: Option dm.min_free_space requires % suffix".into())
    })?;
    let percent: u32 = number.parse().map_err(|_| {
        StorageError::InvalidOption(format!(
            "devmapper: Invalid value {value} for option dm.min_free_space"
        ))
    })?;
    if percent >= 100 {
        return Err(StorageError::InvalidOption(format!(
            "devmapper: Invalid value {value} for option dm.min_free_space"
        )));
    }
    Ok(percent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[&str]) -> Result<Options> {
        let raw: Vec<String> = pairs.iter().map(|s| s.to_string()).collect();
        Options::parse(&DriverOptions::parse(&raw)?)
    }

    #[test]
    fn options_default_to_a_loopback_pool_and_xfs() {
        let o = opts(&[]).unwrap();
        assert!(matches!(
            o.source,
            PoolSource::Loopback {
                data_size: DEFAULT_DATA_LOOP_SIZE,
                metadata_size: DEFAULT_METADATA_LOOP_SIZE
            }
        ));
        assert_eq!(o.base_size, None);
        assert_eq!(o.min_free_percent, 10);
        let o = opts(&[
            "dm.thinpooldev=/dev/mapper/tp",
            "dm.basesize=20G",
            "dm.fs=ext4",
        ])
        .unwrap();
        assert!(matches!(o.source, PoolSource::Existing(ref n) if n == "/dev/mapper/tp"));
        assert_eq!(o.base_size, Some(20 * GIB));
        assert_eq!(o.filesystem, Some(Filesystem::Ext4));
    }

    #[test]
    fn bad_options_get_dockerds_words() {
        let e = opts(&["dm.min_free_space=10"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "devmapper: Option dm.min_free_space requires % suffix"
        );
        let e = opts(&["dm.min_free_space=100%"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "devmapper: Invalid value 100% for option dm.min_free_space"
        );
        assert!(opts(&["dm.fs=btrfs"]).is_err());
        assert!(opts(&["dm.nosuch=1"]).is_err());
        assert!(opts(&["dm.blocksize=4K"]).is_err());
    }
}

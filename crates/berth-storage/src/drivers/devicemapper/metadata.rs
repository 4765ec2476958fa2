//! What the devicemapper driver persists under its home: the pool it uses,
//! the base device's size and filesystem, and each layer's thin device id
//! and virtual size (`metadata.json`, rewritten atomically). Thin device ids
//! are reserved in the file *before* the pool creates the device, so a crash
//! in between is undone at the next start instead of leaking or reusing one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};

/// The pool's 24-bit device id space.
pub const MAX_DEVICE_ID: u32 = 0x00ff_ffff;

/// One thin device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceRecord {
    /// The thin device id inside the pool.
    pub device_id: u32,
    /// Virtual size in bytes.
    pub size: u64,
}

/// A thin device id handed out but not yet recorded as a device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pending {
    pub device_id: u32,
    pub layer: String,
}

/// The whole file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Metadata {
    pub version: u32,
    /// The pool's device-mapper name.
    pub pool_name: String,
    /// `xfs` or `ext4`.
    pub filesystem: String,
    /// The base device (device id and size).
    pub base: Option<DeviceRecord>,
    /// The next id to hand out.
    pub next_device_id: u32,
    pub pending: Option<Pending>,
    /// Layers by id.
    pub devices: BTreeMap<String, DeviceRecord>,
}

/// `metadata.json` and its in-memory copy.
pub struct MetadataFile {
    path: PathBuf,
    pub data: Metadata,
}

impl MetadataFile {
    /// Reads `<home>/metadata.json`, or starts a new one.
    pub fn load(home: &Path, pool_name: &str, filesystem: &str) -> Result<MetadataFile> {
        let path = home.join("metadata.json");
        let data = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                StorageError::Unsupported(format!(
                    "devicemapper: {} is corrupt: {e}",
                    path.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Metadata {
                version: 1,
                pool_name: pool_name.to_string(),
                filesystem: filesystem.to_string(),
                base: None,
                // Id 0 is left unused, as dockerd does.
                next_device_id: 1,
                pending: None,
                devices: BTreeMap::new(),
            },
            Err(e) => return Err(StorageError::at(&path, "read", e)),
        };
        Ok(MetadataFile { path, data })
    }

    /// Writes the file atomically.
    pub fn save(&self) -> Result<()> {
        crate::atomic::write_json(&self.path, &self.data)
    }

    /// Reserves the next free id for `layer` and persists the reservation.
    pub fn reserve(&mut self, layer: &str) -> Result<u32> {
        let used: std::collections::BTreeSet<u32> = self
            .data
            .devices
            .values()
            .chain(self.data.base.iter())
            .map(|d| d.device_id)
            .collect();
        let mut id = self.data.next_device_id;
        for _ in 0..=MAX_DEVICE_ID {
            if id == 0 || id > MAX_DEVICE_ID {
                id = 1;
            }
            if !used.contains(&id) {
                break;
            }
            id += 1;
        }
        if used.contains(&id) {
            return Err(StorageError::Unsupported(
                "devmapper: Unable to find a free device ID".into(),
            ));
        }
        self.data.pending = Some(Pending {
            device_id: id,
            layer: layer.to_string(),
        });
        self.data.next_device_id = id + 1;
        self.save()?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_skip_used_ids_and_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = MetadataFile::load(dir.path(), "pool", "xfs").unwrap();
        m.data.base = Some(DeviceRecord {
            device_id: 1,
            size: 10,
        });
        let id = m.reserve("a").unwrap();
        assert_eq!(id, 2);
        let again = MetadataFile::load(dir.path(), "pool", "xfs").unwrap();
        assert_eq!(
            again.data.pending,
            Some(Pending {
                device_id: 2,
                layer: "a".into()
            })
        );
        assert_eq!(again.data.next_device_id, 3);
    }
}

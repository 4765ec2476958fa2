//! The layers' thin devices: a layer's device made as a snapshot of its
//! parent's (or the base's) under an id reserved in the metadata first,
//! devices activated and deactivated, dockerd's free-space check before
//! any new device, and the bytes a device has mapped (layer usage).

use std::path::PathBuf;
use std::time::Duration;

use super::dm_ioctl::{device_path, Control, Target};
use super::metadata::DeviceRecord;
use super::{DeviceMapper, State, BASE};
use crate::driver::Driver;
use crate::drivers::human_size;
use crate::error::{Result, StorageError};

impl DeviceMapper {
    pub(super) fn record(st: &State, key: &str) -> Result<DeviceRecord> {
        let found = if key == BASE {
            st.meta.data.base.clone()
        } else {
            st.meta.data.devices.get(key).cloned()
        };
        found.ok_or_else(|| StorageError::NotFound(format!("devicemapper: no layer {key}")))
    }

    /// Activates `key`'s thin device with its recorded size; returns its node.
    pub(super) fn activate(&self, st: &mut State, key: &str) -> Result<PathBuf> {
        let record = Self::record(st, key)?;
        let name = self.dm_name(key);
        if let Some(info) = st.dm.info(&name)? {
            st.active.insert(key.to_string());
            return Ok(device_path(info.dev));
        }
        let table = [Target {
            start: 0,
            length: record.size / 512,
            kind: "thin".into(),
            params: format!("{} {}", st.pool.dev.table_name(), record.device_id),
        }];
        let dev = st.dm.create(&name)?;
        if let Err(e) = st.dm.load(&name, &table).and_then(|_| st.dm.resume(&name)) {
            let _ = st.dm.remove(&name);
            return Err(e);
        }
        st.active.insert(key.to_string());
        let path = device_path(dev);
        // devtmpfs adds the node when the disk goes live; give it a moment.
        for _ in 0..200 {
            if path.exists() {
                return Ok(path);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(StorageError::io(
            format!("devicemapper: activate {name}"),
            std::io::Error::other(format!("{} did not appear", path.display())),
        ))
    }

    pub(super) fn deactivate(&self, st: &mut State, key: &str) -> Result<()> {
        let name = self.dm_name(key);
        if st.dm.info(&name)?.is_some() {
            remove_with_retry(&st.dm, &name)?;
        }
        st.active.remove(key);
        Ok(())
    }

    /// dockerd's `dm.min_free_space` check, made before every new device
    /// so a nearly full pool refuses work instead of hanging writes.
    pub(super) fn check_free_space(&self, st: &State) -> Result<()> {
        let status = st.pool.status(&st.dm)?;
        if status.read_only {
            return Err(StorageError::Unsupported(format!(
                "devmapper: thin pool {} is read-only (out of metadata space, or it needs a \
                 check); new layers cannot be made",
                st.pool.name
            )));
        }
        if self.min_free_percent == 0 {
            return Ok(());
        }
        let pct = self.min_free_percent as u64;
        let (data_used, data_total) = status.data_blocks;
        let min_data = (data_total * pct / 100).max(1);
        let data_free = data_total.saturating_sub(data_used);
        if data_free < min_data {
            return Err(StorageError::Unsupported(format!(
                "devmapper: Thin Pool has {data_free} free data blocks which is less than \
                 minimum required {min_data} free data blocks. Create more free space in thin \
                 pool or use dm.min_free_space option to change behavior"
            )));
        }
        let (meta_used, meta_total) = status.metadata_blocks;
        let min_meta = (meta_total * pct / 100).max(1);
        let meta_free = meta_total.saturating_sub(meta_used);
        if meta_free < min_meta {
            return Err(StorageError::Unsupported(format!(
                "devmapper: Thin Pool has {meta_free} free metadata blocks which is less than \
                 minimum required {min_meta} free metadata blocks. Create more free metadata \
                 space in thin pool or use dm.min_free_space option to change behavior"
            )));
        }
        Ok(())
    }

    /// Makes layer `id` as a snapshot of `parent` (or of the base), of
    /// `size` bytes when given (never below the origin's size).
    pub(super) fn create_layer(
        &self,
        id: &str,
        parent: Option<&str>,
        size: Option<u64>,
        container: bool,
    ) -> Result<()> {
        if id == BASE {
            return Err(StorageError::InvalidOption(format!(
                "devicemapper: layer id {id:?} is reserved"
            )));
        }
        let mut st = self.lock();
        if st.meta.data.devices.contains_key(id) {
            return Err(StorageError::Conflict(format!(
                "devmapper: device {id} already exists"
            )));
        }
        let origin_key = parent.unwrap_or(BASE);
        let origin = Self::record(&st, origin_key)?;
        let base_size = Self::record(&st, BASE)?.size;
        if let Some(want) = size {
            if want < origin.size {
                return Err(StorageError::InvalidOption(format!(
                    "devmapper: Container size cannot be smaller than {}",
                    human_size(origin.size)
                )));
            }
        }
        // A raised dm.basesize reaches containers of images made before it.
        let size = match (size, container) {
            (Some(want), _) => want,
            (None, true) => origin.size.max(base_size),
            (None, false) => origin.size,
        };
        self.check_free_space(&st)?;
        let device_id = st.meta.reserve(id)?;
        if let Err(e) = self.snapshot(&mut st, device_id, origin_key, origin.device_id) {
            st.meta.data.pending = None;
            st.meta.save()?;
            return Err(e);
        }
        st.meta.data.devices.insert(
            id.to_string(),
            DeviceRecord {
                device_id,
                size: origin.size,
            },
        );
        st.meta.data.pending = None;
        st.meta.save()?;
        if size > origin.size {
            if let Some(rec) = st.meta.data.devices.get_mut(id) {
                rec.size = size;
            }
            let grown = st.meta.save().and_then(|_| self.grow_fs(&mut st, id));
            if let Err(e) = grown {
                drop(st);
                let _ = self.remove(id);
                return Err(e);
            }
        }
        Ok(())
    }

    /// `create_snap` in the pool; an active origin is suspended meanwhile
    /// so the snapshot sees all its writes.
    fn snapshot(&self, st: &mut State, id: u32, origin_key: &str, origin_id: u32) -> Result<()> {
        let origin_name = self.dm_name(origin_key);
        let active = st.dm.info(&origin_name)?.is_some();
        if active {
            st.dm.suspend(&origin_name)?;
        }
        let made = st
            .dm
            .message(&st.pool.name, &format!("create_snap {id} {origin_id}"));
        if active {
            st.dm.resume(&origin_name)?;
        }
        made
    }

    /// Bytes the thin device of `key` has mapped in the pool.
    pub(super) fn mapped_bytes(&self, st: &mut State, key: &str) -> Result<u64> {
        let was_active = st.dm.info(&self.dm_name(key))?.is_some();
        if !was_active {
            self.activate(st, key)?;
        }
        let status = st.dm.status(&self.dm_name(key));
        if !was_active {
            let _ = self.deactivate(st, key);
        }
        let line = status?
            .first()
            .map(|t| t.params.clone())
            .unwrap_or_default();
        // "<mapped sectors> <highest mapped sector>", or "-" when empty.
        Ok(line
            .split_whitespace()
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
            * 512)
    }
}

/// Removes a device-mapper device, retrying while something (udev's probe,
/// a closing file) still holds it open for a moment.
pub(super) fn remove_with_retry(dm: &Control, name: &str) -> Result<()> {
    let mut last = None;
    for _ in 0..50 {
        match dm.remove(name) {
            Ok(()) => return Ok(()),
            Err(StorageError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENXIO) => {
                return Ok(())
            }
            Err(StorageError::Io { context, source })
                if source.raw_os_error() == Some(libc::EBUSY) =>
            {
                last = Some(StorageError::Io { context, source });
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| StorageError::Conflict(format!("devmapper: {name} is busy"))))
}

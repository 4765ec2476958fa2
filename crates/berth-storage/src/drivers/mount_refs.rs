//! Reference counts of a driver's mounts: the first `mount` of a layer
//! mounts it, the last `unmount` unmounts it. Shared by the drivers that
//! really mount something (overlay2, and later zfs and devicemapper).

use std::collections::HashMap;
use std::sync::Mutex;

/// Mount counts by layer id.
#[derive(Default)]
pub struct MountRefs {
    counts: Mutex<HashMap<String, usize>>,
}

impl MountRefs {
    /// Takes a reference on `id`; runs `mount` when it is the first. The
    /// lock is held across `mount` so two first-mounts cannot race.
    pub fn acquire<T>(
        &self,
        id: &str,
        mount: impl FnOnce() -> crate::Result<T>,
        already: impl FnOnce() -> T,
    ) -> crate::Result<T> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        match counts.get_mut(id) {
            Some(n) => {
                *n += 1;
                Ok(already())
            }
            None => {
                let value = mount()?;
                counts.insert(id.to_string(), 1);
                Ok(value)
            }
        }
    }

    /// Drops a reference on `id`; runs `unmount` when it was the last.
    /// Releasing an id that is not held is a no-op.
    pub fn release(
        &self,
        id: &str,
        unmount: impl FnOnce() -> crate::Result<()>,
    ) -> crate::Result<()> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        match counts.get_mut(id) {
            Some(n) if *n > 1 => {
                *n -= 1;
                Ok(())
            }
            Some(_) => {
                unmount()?;
                counts.remove(id);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Forgets `id` whatever its count, running `unmount` if it was held.
    pub fn force_release(
        &self,
        id: &str,
        unmount: impl FnOnce() -> crate::Result<()>,
    ) -> crate::Result<()> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.remove(id).is_some() {
            unmount()?;
        }
        Ok(())
    }

    /// Records `id` as mounted once without mounting (a mount found at start-up).
    pub fn adopt(&self, id: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.entry(id.to_string()).or_insert(1);
    }

    /// Every held id (for cleanup at shutdown).
    pub fn held(&self) -> Vec<String> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.keys().cloned().collect()
    }
}

//! User-namespace id mappings as the layer store applies them: container
//! uid/gid ranges laid over host ranges (`/etc/subuid`, `/etc/subgid`),
//! the host pair that container root becomes, and the translation of a
//! tar entry's owner to the host when a layer is unpacked. The identity
//! mapping (no `--userns-remap`) changes nothing.

use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};

/// One contiguous range: container ids `container..container+size` are
/// host ids `host..host+size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

/// The uid and gid mappings of remapped containers. Empty lists mean no
/// remapping: every id is itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
}

fn to_host(id: u32, ranges: &[IdRange]) -> Option<u32> {
    if ranges.is_empty() {
        return Some(id);
    }
    ranges.iter().find_map(|r| {
        let off = id.checked_sub(r.container)?;
        (off < r.size).then(|| r.host + off)
    })
}

fn to_container(id: u32, ranges: &[IdRange]) -> Option<u32> {
    if ranges.is_empty() {
        return Some(id);
    }
    ranges.iter().find_map(|r| {
        let off = id.checked_sub(r.host)?;
        (off < r.size).then(|| r.container + off)
    })
}

impl IdMap {
    /// No remapping.
    pub fn identity() -> IdMap {
        IdMap::default()
    }

    /// Subordinate ranges stacked from container id 0 upwards, in the
    /// order given, as dockerd builds them from `/etc/subuid`.
    pub fn stacked(uid_ranges: &[(u32, u32)], gid_ranges: &[(u32, u32)]) -> IdMap {
        let stack = |ranges: &[(u32, u32)]| {
            let mut next = 0u32;
            ranges
                .iter()
                .map(|&(host, size)| {
                    let r = IdRange {
                        container: next,
                        host,
                        size,
                    };
                    next = next.saturating_add(size);
                    r
                })
                .collect()
        };
        IdMap {
            uids: stack(uid_ranges),
            gids: stack(gid_ranges),
        }
    }

    pub fn is_identity(&self) -> bool {
        self.uids.is_empty() && self.gids.is_empty()
    }

    /// The host uid and gid of container root (`0:0` without remapping).
    pub fn root(&self) -> (u32, u32) {
        (
            to_host(0, &self.uids).unwrap_or(0),
            to_host(0, &self.gids).unwrap_or(0),
        )
    }

    /// The host owner of a container-side `uid:gid`; ids outside the
    /// ranges cannot be stored (dockerd refuses them the same way).
    pub fn to_host(&self, uid: u32, gid: u32) -> Result<(u32, u32)> {
        match (to_host(uid, &self.uids), to_host(gid, &self.gids)) {
            (Some(u), Some(g)) => Ok((u, g)),
            _ => Err(StorageError::InvalidArchive(format!(
                "container ID {uid}:{gid} cannot be mapped to a host ID"
            ))),
        }
    }

    /// The container-side owner of a host `uid:gid`, for writing a tar
    /// from a remapped layer; ids from outside the ranges (files a bind
    /// mount or the host put there) are refused.
    pub fn to_container(&self, uid: u32, gid: u32) -> Result<(u32, u32)> {
        match (to_container(uid, &self.uids), to_container(gid, &self.gids)) {
            (Some(u), Some(g)) => Ok((u, g)),
            _ => Err(StorageError::InvalidArchive(format!(
                "host ID {uid}:{gid} cannot be mapped to a container ID"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_changes_nothing() {
        let m = IdMap::identity();
        assert!(m.is_identity());
        assert_eq!(m.root(), (0, 0));
        assert_eq!(m.to_host(1000, 5).unwrap(), (1000, 5));
        assert_eq!(m.to_container(4_000_000, 0).unwrap(), (4_000_000, 0));
    }

    #[test]
    fn stacked_ranges_translate_both_ways() {
        let m = IdMap::stacked(&[(100_000, 65_536), (300_000, 10)], &[(200_000, 65_536)]);
        assert_eq!(m.root(), (100_000, 200_000));
        assert_eq!(m.to_host(1000, 1000).unwrap(), (101_000, 201_000));
        assert_eq!(m.to_host(65_537, 0).unwrap(), (300_001, 200_000));
        assert!(m.to_host(65_546, 0).is_err());
        assert!(m.to_host(0, 65_536).is_err());
        assert_eq!(m.to_container(101_000, 200_005).unwrap(), (1000, 5));
        assert_eq!(m.to_container(300_009, 200_000).unwrap(), (65_545, 0));
        assert!(m.to_container(0, 200_000).is_err());
    }
}

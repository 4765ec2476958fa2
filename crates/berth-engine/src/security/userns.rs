//! `--userns-remap`: the host user whose subordinate id ranges
//! (`/etc/subuid`, `/etc/subgid`) remapped containers run in — `berthremap`,
//! made on demand for `default` as dockerd makes `dockremap` — and the data
//! root of its own, `<data-root>/<uid>.<gid>`, that keeps each mapping's
//! layers, containers and volumes apart from every other's.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_storage::IdMap;
use nix::unistd::{Gid, Group, Uid, User};

use crate::error::{EngineError, Result};

/// The user `--userns-remap default` uses.
pub const DEFAULT_USER: &str = "berthremap";
/// Length and lowest start of a subordinate range made for [`DEFAULT_USER`].
const RANGE_LEN: u64 = 65536;
const RANGE_START: u64 = 100_000;

/// The remapping in force: the user and group named, and their ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remap {
    pub user: String,
    pub group: String,
    pub ids: IdMap,
}

fn bad(msg: String) -> EngineError {
    EngineError::InvalidParameter(msg)
}

fn lookup_user(name: &str) -> Result<Option<User>> {
    User::from_name(name).map_err(|e| bad(format!("Error during uid lookup for {name:?}: {e}")))
}

fn lookup_group(name: &str) -> Result<Option<Group>> {
    Group::from_name(name).map_err(|e| bad(format!("Error during gid lookup for {name:?}: {e}")))
}

impl Remap {
    /// Resolves a `--userns-remap` value and loads the user's ranges.
    /// `None`: `root` cannot be remapped onto itself, so remapping is off
    /// (dockerd warns and carries on the same way).
    pub fn setup(spec: &str) -> Result<Option<Remap>> {
        let (user, group) = parse_remapped_root(spec)?;
        if user == "root" {
            tracing::warn!(
                "User namespaces: root cannot be remapped with itself; user namespaces are OFF"
            );
            return Ok(None);
        }
        tracing::info!(
            "User namespaces: ID ranges will be mapped to subuid/subgid ranges of: {user}"
        );
        let uid = lookup_user(&user)?
            .ok_or_else(|| bad(format!("could not get user for username {user}")))?
            .uid
            .as_raw();
        let uids = sub_ranges(Path::new("/etc/subuid"), &user, uid)?;
        let gids = sub_ranges(Path::new("/etc/subgid"), &user, uid)?;
        if uids.is_empty() {
            return Err(bad(format!(
                "error creating ID mappings: no subuid ranges found for user {user:?}"
            )));
        }
        if gids.is_empty() {
            return Err(bad(format!(
                "error creating ID mappings: no subgid ranges found for user {user:?}"
            )));
        }
        Ok(Some(Remap {
            user,
            group,
            ids: IdMap::stacked(&uids, &gids),
        }))
    }

    /// Makes and returns the data root of this mapping below `top`, with
    /// dockerd's permissions: `top` traversable by anyone (0711) and
    /// group-owned by the remapped root; `<uid>.<gid>` 0710 `root:<gid>`,
    /// so the remapped root can reach layer mounts and container files
    /// and others cannot. Every directory above must let the remapped
    /// root through, or containers could not start.
    pub fn prepare_data_root(&self, top: &Path) -> Result<PathBuf> {
        let (uid, gid) = self.ids.root();
        let io = |what: &str, p: &Path, e: std::io::Error| {
            EngineError::io(format!("{what} {}", p.display()), e)
        };
        std::fs::create_dir_all(top).map_err(|e| io("create", top, e))?;
        std::fs::set_permissions(top, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| io("chmod", top, e))?;
        std::os::unix::fs::chown(top, Some(0), Some(gid)).map_err(|e| io("chown", top, e))?;
        let root = top.join(format!("{uid}.{gid}"));
        match std::fs::create_dir(&root) {
            Ok(()) => std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o710))
                .map_err(|e| io("chmod", &root, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("create", &root, e)),
        }
        std::os::unix::fs::chown(&root, Some(0), Some(gid)).map_err(|e| io("chown", &root, e))?;
        let mut dir = root.as_path();
        while let Some(parent) = dir.parent() {
            if parent == Path::new("/") || parent.as_os_str().is_empty() {
                break;
            }
            if !can_traverse(parent, uid, gid) {
                return Err(bad(format!(
                    "a subdirectory in your graphroot path ({}) restricts access to the remapped root uid/gid; please fix by allowing 'o+x' permissions on existing directories",
                    root.display()
                )));
            }
            dir = parent;
        }
        Ok(root)
    }
}

/// Whether `uid:gid` may search `dir`, by its permission bits (dockerd's
/// `canAccess`).
fn can_traverse(dir: &Path, uid: u32, gid: u32) -> bool {
    let Ok(meta) = std::fs::metadata(dir) else {
        return false;
    };
    let mode = meta.mode();
    mode & 0o001 != 0
        || (meta.uid() == uid && mode & 0o100 != 0)
        || (meta.gid() == gid && mode & 0o010 != 0)
}

/// `default` → `berthremap` (made if missing), `name`, `name:group`,
/// `uid`, `uid:gid`: resolved to user and group names with dockerd's
/// rules and messages.
fn parse_remapped_root(spec: &str) -> Result<(String, String)> {
    let parts: Vec<&str> = spec.split(':').collect();
    if parts.len() > 2 {
        return Err(bad(format!(
            "Invalid user/group specification in --userns-remap: {spec:?}"
        )));
    }
    let mut group = String::new();
    let user = match parts[0].parse::<i32>() {
        Ok(uid) => {
            let u = User::from_uid(Uid::from_raw(uid as u32))
                .ok()
                .flatten()
                .ok_or_else(|| bad(format!("Uid {uid} has no entry in /etc/passwd")))?;
            if parts.len() == 1 {
                group = Group::from_gid(Gid::from_raw(uid as u32))
                    .ok()
                    .flatten()
                    .ok_or_else(|| bad(format!("Gid {uid} has no entry in /etc/group")))?
                    .name;
            }
            u.name
        }
        Err(_) => {
            let name = if parts[0] == "default" {
                DEFAULT_USER
            } else {
                parts[0]
            };
            match lookup_user(name)? {
                Some(u) => {
                    if parts.len() == 1 {
                        group = lookup_group(name)?
                            .ok_or_else(|| {
                                bad(format!(
                                    "Error during gid lookup for {name:?}: no such group"
                                ))
                            })?
                            .name;
                    }
                    u.name
                }
                None if parts[0] == "default" => {
                    add_remap_user(DEFAULT_USER).map_err(|e| {
                        bad(format!("Error during {DEFAULT_USER:?} user creation: {e}"))
                    })?;
                    return Ok((DEFAULT_USER.to_string(), DEFAULT_USER.to_string()));
                }
                None => {
                    return Err(bad(format!(
                        "Error during uid lookup for {name:?}: no such user"
                    )))
                }
            }
        }
    };
    if let Some(g) = parts.get(1) {
        group = match g.parse::<i32>() {
            Ok(gid) => {
                Group::from_gid(Gid::from_raw(gid as u32))
                    .ok()
                    .flatten()
                    .ok_or_else(|| bad(format!("Gid {gid} has no entry in /etc/passwd")))?
                    .name
            }
            Err(_) => {
                lookup_group(g)?.ok_or_else(|| {
                    bad(format!(
                        "Error during groupname lookup for {g:?}: no such group"
                    ))
                })?;
                g.to_string()
            }
        };
    }
    Ok((user, group))
}

/// The `start:count` ranges of `user` (by name or uid) in a subordinate
/// id file, in file order.
fn sub_ranges(path: &Path, user: &str, uid: u32) -> Result<Vec<(u32, u32)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(EngineError::io(format!("read {}", path.display()), e)),
    };
    Ok(parse_sub_ranges(&text, |name| {
        name == user || name == uid.to_string()
    }))
}

fn parse_sub_ranges(text: &str, wanted: impl Fn(&str) -> bool) -> Vec<(u32, u32)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let start: u32 = f.next()?.trim().parse().ok()?;
            let count: u32 = f.next()?.trim().parse().ok()?;
            wanted(name).then_some((start, count))
        })
        .collect()
}

/// The first start at or above [`RANGE_START`] where a range of
/// [`RANGE_LEN`] overlaps none of `ranges` (dockerd's `findNextRangeStart`).
fn next_range_start(mut ranges: Vec<(u32, u32)>) -> u64 {
    ranges.sort();
    let mut start = RANGE_START;
    for (s, count) in ranges {
        let (s, count) = (s as u64, count as u64);
        let end = start + RANGE_LEN;
        if (start >= s && start <= s + count) || (end <= s + count && end >= s) {
            start = s + count;
        }
    }
    start
}

fn run(cmd: &mut Command) -> std::result::Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Adds the system user and group `name` (adduser where present, else
/// useradd, as dockerd picks), then gives it a uid and a gid range unless
/// the distribution's tools already did.
fn add_remap_user(name: &str) -> std::result::Result<(), String> {
    let found = |bin: &str| {
        ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(bin))
            .find(|p| p.exists())
    };
    if let Some(adduser) = found("adduser") {
        run(Command::new(adduser).args([
            "--system",
            "--shell",
            "/bin/false",
            "--no-create-home",
            "--disabled-login",
            "--disabled-password",
            "--group",
            name,
        ]))?;
    } else if let Some(useradd) = found("useradd") {
        run(Command::new(useradd).args(["-r", "-s", "/bin/false", name]))?;
    } else {
        return Err("cannot add user; no useradd/adduser binary found".into());
    }
    for (file, flag) in [("/etc/subuid", "-v"), ("/etc/subgid", "-w")] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if !parse_sub_ranges(&text, |n| n == name).is_empty() {
            continue;
        }
        let start = next_range_start(parse_sub_ranges(&text, |_| true));
        let range = format!("{start}-{}", start + RANGE_LEN - 1);
        run(Command::new("usermod").args([flag, &range, name]))
            .map_err(|e| format!("unable to add {file} range to user {name:?}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_files() {
        let text = "# comment\nalice:100000:65536\nbob:165536:65536\n1001:300000:10\nalice:400000:5\nbroken:x:1\n";
        assert_eq!(
            parse_sub_ranges(text, |n| n == "alice" || n == "1001"),
            vec![(100_000, 65_536), (300_000, 10), (400_000, 5)]
        );
        assert!(parse_sub_ranges(text, |n| n == "carol").is_empty());
    }

    #[test]
    fn new_ranges_go_after_the_ones_in_use() {
        assert_eq!(next_range_start(vec![]), 100_000);
        assert_eq!(next_range_start(vec![(100_000, 65_536)]), 165_536);
        assert_eq!(
            next_range_start(vec![(165_536, 65_536), (100_000, 65_536)]),
            231_072
        );
        // A range far above leaves the default start free.
        assert_eq!(next_range_start(vec![(1_000_000, 65_536)]), 100_000);
    }

    #[test]
    fn specs_dockerd_refuses() {
        assert!(parse_remapped_root("a:b:c")
            .unwrap_err()
            .to_string()
            .starts_with("Invalid user/group specification"));
        assert!(parse_remapped_root("no-such-user-berth")
            .unwrap_err()
            .to_string()
            .starts_with("Error during uid lookup"));
        assert_eq!(
            parse_remapped_root("root").unwrap(),
            ("root".to_string(), "root".to_string())
        );
        assert_eq!(
            parse_remapped_root("0:0").unwrap(),
            ("root".to_string(), "root".to_string())
        );
        assert!(Remap::setup("root").unwrap().is_none());
    }

    #[test]
    fn traversal_by_permission_bits() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(!can_traverse(p, 100_000, 100_000));
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o710)).unwrap();
        std::os::unix::fs::chown(p, Some(0), Some(100_000)).unwrap();
        assert!(can_traverse(p, 100_000, 100_000));
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o701)).unwrap();
        assert!(can_traverse(p, 5, 5));
    }
}

//! `User` (`name`, `uid`, `name:group`, `uid:gid`, ...) resolved against
//! the image's /etc/passwd and /etc/group with the rules dockerd takes from
//! moby/sys/user: numeric ids need no entry, a matched user's groups become
//! supplementary gids, `--group-add` entries are names or gids.

use std::path::Path;

use oci_spec::runtime::{User, UserBuilder};

use super::rootfs;
use crate::error::{EngineError, Result};

/// Ids must fit a signed 32-bit int, as moby/sys/user demands.
const MAX_ID: i64 = i32::MAX as i64;
/// A passwd or group file larger than this is not an account database.
const ACCOUNT_FILE_LIMIT: u64 = 64 << 20;

/// The resolved user: the primary ids and the supplementary gids found
/// for it (not yet including the primary gid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub sgids: Vec<u32>,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: i64,
    gid: i64,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: i64,
    members: Vec<&'a str>,
}

/// Go's `strconv.Atoi` as `parseLine` uses it: unparsable is 0.
fn atoi(s: &str) -> i64 {
    s.trim().parse().unwrap_or(0)
}

fn passwd_entries(data: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    data.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut f = l.split(':');
            PasswdEntry {
                name: f.next().unwrap_or(""),
                uid: atoi(f.nth(1).unwrap_or("")),
                gid: atoi(f.next().unwrap_or("")),
            }
        })
}

fn group_entries(data: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    data.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut f = l.split(':');
            GroupEntry {
                name: f.next().unwrap_or(""),
                gid: atoi(f.nth(1).unwrap_or("")),
                members: f
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .collect(),
            }
        })
}

fn in_range(id: i64) -> std::result::Result<u32, String> {
    if (0..=MAX_ID).contains(&id) {
        Ok(id as u32)
    } else {
        Err(format!("uids and gids must be in range 0-{MAX_ID}"))
    }
}

/// Resolves a user spec against the account files' contents (`None`: the
/// file does not exist, which is fine for numeric ids).
pub fn resolve(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> std::result::Result<ExecUser, String> {
    let mut parts = spec.splitn(3, ':');
    let user_arg = parts.next().unwrap_or("");
    let group_arg = parts.next().unwrap_or("");
    let uid_num = user_arg.parse::<i64>().ok();
    let gid_num = group_arg.parse::<i64>().ok();

    let mut user = ExecUser {
        uid: 0,
        gid: 0,
        sgids: Vec::new(),
    };
    let matched = passwd.and_then(|p| {
        passwd_entries(p).find(|e| match (user_arg, uid_num) {
            // No user given: the default (root) as the file describes it.
            ("", _) => e.uid == 0,
            (_, Some(n)) => e.uid == n,
            _ => e.name == user_arg,
        })
    });
    let matched_name = match &matched {
        Some(e) => {
            user.uid = e.uid as u32;
            user.gid = e.gid as u32;
            Some(e.name)
        }
        None if user_arg.is_empty() => None,
        None => match uid_num {
            Some(n) => {
                user.uid = in_range(n)?;
                None
            }
            None => {
                return Err(format!(
                    "unable to find user {user_arg}: no matching entries in passwd file"
                ))
            }
        },
    };

    if !group_arg.is_empty() {
        let found = group.and_then(|g| {
            group_entries(g).find(|e| match gid_num {
                Some(n) => e.gid == n,
                None => e.name == group_arg,
            })
        });
        user.gid = match (found, gid_num) {
            (Some(e), _) => e.gid as u32,
            (None, Some(n)) => in_range(n)?,
            (None, None) => {
                return Err(format!(
                    "unable to find group {group_arg}: no matching entries in group file"
                ))
            }
        };
    } else if let (Some(name), Some(g)) = (matched_name, group) {
        // Supplementary groups only in the implicit form (no group given).
        user.sgids = group_entries(g)
            .filter(|e| e.members.contains(&name))
            .map(|e| e.gid as u32)
            .collect();
    }
    Ok(user)
}

/// `--group-add`: group names or gids, each at most once.
pub fn additional_groups(
    wanted: &[String],
    group: Option<&str>,
) -> std::result::Result<Vec<u32>, String> {
    let mut gids: Vec<u32> = Vec::new();
    for ag in wanted {
        let found = group.and_then(|g| {
            group_entries(g)
                .find(|e| e.name == ag || e.gid.to_string() == *ag)
                .map(|e| e.gid as u32)
        });
        let gid = match found {
            Some(g) => g,
            None => match ag.parse::<i64>() {
                Ok(n) => in_range(n)?,
                Err(_) => {
                    return Err(format!(
                        "Unable to find group {ag}: no matching entries in group file"
                    ))
                }
            },
        };
        if !gids.contains(&gid) {
            gids.push(gid);
        }
    }
    Ok(gids)
}

fn account_file(rootfs: &Path, path: &str) -> Result<Option<String>> {
    let data = rootfs::read_file(rootfs, Path::new(path), ACCOUNT_FILE_LIMIT)
        .map_err(|e| EngineError::io(format!("reading {path} of the container"), e))?;
    Ok(data.map(|d| String::from_utf8_lossy(&d).into_owned()))
}

/// The OCI user for `spec` in the rootfs: uid, gid and the additional
/// gids dockerd gives (primary gid first, then the user's groups, then
/// `group_add`).
pub fn lookup(rootfs: &Path, spec: &str, group_add: &[String]) -> Result<User> {
    let passwd = account_file(rootfs, "/etc/passwd")?;
    let group = account_file(rootfs, "/etc/group")?;
    let u = resolve(spec, passwd.as_deref(), group.as_deref())
        .map_err(EngineError::InvalidParameter)?;
    let added =
        additional_groups(group_add, group.as_deref()).map_err(EngineError::InvalidParameter)?;
    let mut gids = vec![u.gid];
    gids.extend(u.sgids);
    gids.extend(added);
    UserBuilder::default()
        .uid(u.uid)
        .gid(u.gid)
        .additional_gids(gids)
        .build()
        .map_err(|e| EngineError::Internal(format!("spec user: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
        app:x:1000:1001:App:/home/app:/bin/sh\n\
        dup:x:1000:5:first match wins:/:/bin/sh\n";
    const GROUP: &str = "root:x:0:\n\
        wheel:x:10:root,app\n\
        staff:x:50:app\n\
        appgrp:x:1001:\n";

    fn r(spec: &str) -> std::result::Result<ExecUser, String> {
        resolve(spec, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn names_and_numbers() {
        assert_eq!(
            r("").unwrap(),
            ExecUser {
                uid: 0,
                gid: 0,
                sgids: vec![10]
            }
        );
        assert_eq!(
            r("app").unwrap(),
            ExecUser {
                uid: 1000,
                gid: 1001,
                sgids: vec![10, 50]
            }
        );
        // A numeric user is a uid even when it names an entry.
        assert_eq!(r("1000").unwrap().gid, 1001);
        // Unknown numeric ids need no entry.
        assert_eq!(
            r("4242").unwrap(),
            ExecUser {
                uid: 4242,
                gid: 0,
                sgids: vec![]
            }
        );
        assert_eq!(
            r("nobody").unwrap_err(),
            "unable to find user nobody: no matching entries in passwd file"
        );
        assert!(r("-1").is_err());
    }

    #[test]
    fn explicit_groups_replace_the_primary_and_drop_supplementary() {
        assert_eq!(
            r("app:staff").unwrap(),
            ExecUser {
                uid: 1000,
                gid: 50,
                sgids: vec![]
            }
        );
        assert_eq!(r("app:77").unwrap().gid, 77);
        assert_eq!(r("4242:10").unwrap().gid, 10);
        assert_eq!(
            r("app:nogroup").unwrap_err(),
            "unable to find group nogroup: no matching entries in group file"
        );
    }

    #[test]
    fn missing_files_allow_numeric_ids_only() {
        assert_eq!(
            resolve("5:6", None, None).unwrap(),
            ExecUser {
                uid: 5,
                gid: 6,
                sgids: vec![]
            }
        );
        assert_eq!(resolve("", None, None).unwrap().uid, 0);
        assert!(resolve("app", None, None).is_err());
    }

    #[test]
    fn group_add_takes_names_and_gids() {
        assert_eq!(
            additional_groups(
                &["staff".into(), "10".into(), "999".into(), "50".into()],
                Some(GROUP)
            )
            .unwrap(),
            vec![50, 10, 999]
        );
        assert!(additional_groups(&["nope".into()], Some(GROUP)).is_err());
    }

    #[test]
    fn lookup_reads_the_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
        std::fs::write(dir.path().join("etc/group"), GROUP).unwrap();
        let u = lookup(dir.path(), "app", &["root".into()]).unwrap();
        assert_eq!((u.uid(), u.gid()), (1000, 1001));
        assert_eq!(u.additional_gids().as_deref(), Some(&[1001, 10, 50, 0][..]));
        assert_eq!(
            lookup(dir.path(), "ghost", &[]).unwrap_err().kind(),
            crate::error::ErrorKind::InvalidParameter
        );
    }
}

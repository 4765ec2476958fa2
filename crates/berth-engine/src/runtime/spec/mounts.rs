//! The container's mounts as dockerd lays them out: its default kernel
//! filesystems (/proc, /dev, /dev/pts, /sys, cgroup, /dev/mqueue,
//! /dev/shm), the init binary, then the user's mounts sorted parents
//! first — binds, volumes, tmpfs (merged options) and the /etc/hosts,
//! /etc/resolv.conf, /etc/hostname files — with read-only rootfs and
//! privileged adjustments.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Mount;

use super::rootfs::lexical_clean;
use super::{MountKind, MountSpec};
use crate::error::{EngineError, Result};

/// dockerd's `--shm-size` default.
pub const DEFAULT_SHM_SIZE: i64 = 64 << 20;

/// What decides the mount table besides the user's mounts.
pub struct MountInputs<'a> {
    pub user: &'a [MountSpec],
    /// HostConfig.Tmpfs: destination → options (`size=64m,mode=1777`).
    pub tmpfs: Option<&'a HashMap<String, String>>,
    /// (host file, destination) for hosts, resolv.conf and hostname.
    pub network_files: [(&'a Path, &'static str); 3],
    pub shm_size: i64,
    /// IpcMode `none`: no /dev/shm at all.
    pub ipc_none: bool,
    pub readonly_rootfs: bool,
    /// /sys writable (`--privileged`).
    pub privileged: bool,
    /// The cgroup tree writable (`--privileged`, `writable-cgroups`, or a
    /// remapped container).
    pub writable_cgroups: bool,
    /// The init binary to bind at /sbin/docker-init.
    pub init: Option<&'a Path>,
}

/// Where `--init` puts the init binary.
pub const INIT_PATH: &str = "/sbin/docker-init";

fn mount(dest: &str, typ: &str, source: impl Into<PathBuf>, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(source.into()));
    m.set_options(Some(options.iter().map(|s| s.to_string()).collect()));
    m
}

fn default_mounts(shm_size: i64) -> Vec<Mount> {
    let shm = format!("size={shm_size}");
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["ro", "nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm],
        ),
    ]
}

/// Which mount flags collide (a later one wins over an earlier one of the
/// same group), as moby/sys/mount's MergeTmpfsOptions groups them.
fn flag_group(option: &str) -> Option<&'static str> {
    Some(match option {
        "ro" | "rw" => "rdonly",
        "suid" | "nosuid" => "nosuid",
        "dev" | "nodev" => "nodev",
        "exec" | "noexec" => "noexec",
        "sync" | "async" => "sync",
        "dirsync" => "dirsync",
        "remount" => "remount",
        "mand" | "nomand" => "mand",
        "atime" | "noatime" => "noatime",
        "diratime" | "nodiratime" => "nodiratime",
        "bind" => "bind",
        "rbind" => "rbind",
        "unbindable" | "runbindable" | "private" | "rprivate" | "shared" | "rshared" | "slave"
        | "rslave" => "propagation",
        "relatime" | "norelatime" => "relatime",
        "strictatime" | "nostrictatime" => "strictatime",
        _ => return None,
    })
}

/// tmpfs options after dockerd's merge: later options override earlier
/// ones of the same kind; only tmpfs's own `key=value` options are valid.
pub fn merge_tmpfs_options(options: &[String]) -> Result<Vec<String>> {
    const DATA_KEYS: [&str; 7] = [
        "size",
        "mode",
        "uid",
        "gid",
        "nr_inodes",
        "nr_blocks",
        "mpol",
    ];
    let mut seen: Vec<&str> = Vec::new();
    let mut out: Vec<String> = Vec::new();
    for option in options.iter().rev() {
        if option == "defaults" || option.is_empty() {
            continue;
        }
        let key = match flag_group(option) {
            Some(group) => group,
            None => match option.split_once('=') {
                Some((k, _)) if DATA_KEYS.contains(&k) => k,
                _ => {
                    let parts: Vec<&str> = option.splitn(2, '=').collect();
                    return Err(EngineError::InvalidParameter(format!(
                        "invalid tmpfs option {parts:?}"
                    )));
                }
            },
        };
        if !seen.contains(&key) {
            seen.push(key);
            out.insert(0, option.clone());
        }
    }
    Ok(out)
}

fn tmpfs_mount(dest: &str, options: &[String], read_only: bool) -> Result<Mount> {
    let mut all: Vec<String> = ["noexec", "nosuid", "nodev", "rprivate"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    all.extend(options.iter().cloned());
    if read_only {
        all.push("ro".into());
    }
    let merged = merge_tmpfs_options(&all)?;
    let mut m = mount(dest, "tmpfs", "tmpfs", &[]);
    m.set_options(Some(merged));
    Ok(m)
}

fn bind_mount(
    dest: &str,
    source: &Path,
    read_only: bool,
    propagation: Option<&str>,
    extra: &[String],
) -> Mount {
    let recursive = !extra.iter().any(|o| o == "bind");
    let mut opts = vec![if recursive { "rbind" } else { "bind" }.to_string()];
    if read_only {
        opts.push("ro".into());
    }
    if let Some(p) = propagation {
        opts.push(p.to_string());
    }
    for o in extra {
        if o != "bind" && o != "rbind" && !opts.contains(o) {
            opts.push(o.clone());
        }
    }
    let mut m = mount(dest, "bind", source, &[]);
    m.set_options(Some(opts));
    m
}

fn options_of(m: &Mount) -> Vec<String> {
    m.options().clone().unwrap_or_default()
}

/// The mount table and, when a shared or slave bind asks for it, the
/// rootfs propagation the runtime must use.
pub fn build(m: &MountInputs<'_>) -> Result<(Vec<Mount>, Option<String>)> {
    let mut rootfs_propagation: Option<String> = None;
    // Everything the user asked for, and its cleaned destinations.
    let mut user: Vec<Mount> = Vec::new();
    let mut dests: Vec<String> = Vec::new();
    let clean = |d: &str| lexical_clean(d).to_string_lossy().into_owned();

    for spec in m.user {
        let dest = clean(&spec.destination);
        let mnt = match spec.kind {
            MountKind::Tmpfs => tmpfs_mount(&dest, &spec.options, spec.read_only)?,
            MountKind::Bind | MountKind::Volume => {
                // Binds default to rprivate as in dockerd; volumes carry
                // no propagation unless one was asked for.
                let propagation = spec.propagation.as_deref().or(match spec.kind {
                    MountKind::Bind => Some("rprivate"),
                    _ => None,
                });
                match propagation {
                    Some("shared") | Some("rshared") => {
                        rootfs_propagation = Some("shared".into());
                    }
                    Some("slave") | Some("rslave") if rootfs_propagation.is_none() => {
                        rootfs_propagation = Some("rslave".into());
                    }
                    _ => {}
                }
                bind_mount(
                    &dest,
                    &spec.source,
                    spec.read_only,
                    propagation,
                    &spec.options,
                )
            }
        };
        dests.push(dest);
        user.push(mnt);
    }
    if let Some(tmpfs) = m.tmpfs {
        let mut entries: Vec<(&String, &String)> = tmpfs.iter().collect();
        entries.sort();
        for (dest, opts) in entries {
            let dest = clean(dest);
            if dests.contains(&dest) {
                continue;
            }
            let opts: Vec<String> = opts.split(',').map(str::to_string).collect();
            user.push(tmpfs_mount(&dest, &opts, false)?);
            dests.push(dest);
        }
    }
    for (source, dest) in m.network_files {
        if dests.iter().any(|d| d == dest) {
            continue;
        }
        user.push(bind_mount(
            dest,
            source,
            m.readonly_rootfs,
            Some("rprivate"),
            &[],
        ));
        dests.push(dest.to_string());
    }
    // Parents before children, so a mount is never hidden by its parent.
    user.sort_by_key(|mnt| mnt.destination().components().count());

    let mut mounts: Vec<Mount> = Vec::new();
    let user_dev = dests.iter().any(|d| d == "/dev");
    let mut defaults = default_mounts(m.shm_size);
    if let Some(init) = m.init {
        defaults.push(mount(INIT_PATH, "bind", init, &["bind", "ro"]));
    }
    for d in defaults {
        let dest = d.destination().to_string_lossy().into_owned();
        if dests.contains(&dest)
            || (user_dev && dest.starts_with("/dev/"))
            || (dest == "/dev/shm" && m.ipc_none)
        {
            continue;
        }
        mounts.push(d);
    }
    mounts.extend(user);

    if m.readonly_rootfs {
        for mnt in mounts.iter_mut() {
            let dest = mnt.destination().to_string_lossy().into_owned();
            let exempt = ["/proc", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev"];
            if exempt.contains(&dest.as_str()) || dests.contains(&dest) {
                continue;
            }
            let mut opts = options_of(mnt);
            if !opts.iter().any(|o| o == "ro") {
                opts.push("ro".into());
                mnt.set_options(Some(opts));
            }
        }
    }
    if m.privileged || m.writable_cgroups {
        for mnt in mounts.iter_mut() {
            let sys = m.privileged && mnt.destination() == Path::new("/sys");
            let cgroup = m.writable_cgroups && mnt.typ().as_deref() == Some("cgroup");
            if sys || cgroup {
                let opts: Vec<String> = options_of(mnt).into_iter().filter(|o| o != "ro").collect();
                mnt.set_options(Some(opts));
            }
        }
    }
    Ok((mounts, rootfs_propagation))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn inputs<'a>(
        user: &'a [MountSpec],
        tmpfs: Option<&'a HashMap<String, String>>,
    ) -> MountInputs<'a> {
        MountInputs {
            user,
            tmpfs,
            network_files: [
                (Path::new("/h/hosts"), "/etc/hosts"),
                (Path::new("/h/resolv.conf"), "/etc/resolv.conf"),
                (Path::new("/h/hostname"), "/etc/hostname"),
            ],
            shm_size: DEFAULT_SHM_SIZE,
            ipc_none: false,
            readonly_rootfs: false,
            privileged: false,
            writable_cgroups: false,
            init: None,
        }
    }

    fn find<'a>(mounts: &'a [Mount], dest: &str) -> Option<&'a Mount> {
        mounts.iter().find(|m| m.destination() == Path::new(dest))
    }

    #[test]
    fn tmpfs_options_merge_like_dockerd() {
        assert_eq!(
            merge_tmpfs_options(&s(&[
                "noexec", "nosuid", "nodev", "rprivate", "exec", "size=1m", "size=2m", "shared"
            ]))
            .unwrap(),
            s(&["nosuid", "nodev", "exec", "size=2m", "shared"])
        );
        assert!(merge_tmpfs_options(&s(&["bogus=1"])).is_err());
        assert!(merge_tmpfs_options(&s(&["bogus"])).is_err());
    }

    #[test]
    fn defaults_binds_and_sorting() {
        let user = vec![
            MountSpec {
                kind: MountKind::Bind,
                source: "/srv/a".into(),
                destination: "/data/sub".into(),
                read_only: true,
                options: vec![],
                propagation: None,
            },
            MountSpec {
                kind: MountKind::Volume,
                source: "/var/lib/berth/volumes/v/_data".into(),
                destination: "/data".into(),
                read_only: false,
                options: vec![],
                propagation: None,
            },
        ];
        let tmpfs: HashMap<String, String> = [("/run".to_string(), "size=1m".to_string())].into();
        let (mounts, prop) = build(&inputs(&user, Some(&tmpfs))).unwrap();
        assert_eq!(prop, None);
        let dests: Vec<String> = mounts
            .iter()
            .map(|m| m.destination().to_string_lossy().into_owned())
            .collect();
        let pos = |d: &str| dests.iter().position(|x| x == d).unwrap();
        assert!(pos("/proc") < pos("/data") && pos("/data") < pos("/data/sub"));
        assert_eq!(
            options_of(find(&mounts, "/data/sub").unwrap()),
            s(&["rbind", "ro", "rprivate"])
        );
        assert_eq!(options_of(find(&mounts, "/data").unwrap()), s(&["rbind"]));
        assert_eq!(
            options_of(find(&mounts, "/run").unwrap()),
            s(&["noexec", "nosuid", "nodev", "rprivate", "size=1m"])
        );
        assert_eq!(
            options_of(find(&mounts, "/etc/hosts").unwrap()),
            s(&["rbind", "rprivate"])
        );
        assert!(
            options_of(find(&mounts, "/dev/shm").unwrap()).contains(&"size=67108864".to_string())
        );
    }

    #[test]
    fn user_mounts_replace_defaults_and_dev_takes_its_children() {
        let user = vec![MountSpec {
            kind: MountKind::Bind,
            source: "/dev".into(),
            destination: "/dev".into(),
            read_only: false,
            options: vec![],
            propagation: Some("rslave".into()),
        }];
        let (mounts, prop) = build(&inputs(&user, None)).unwrap();
        assert_eq!(prop.as_deref(), Some("rslave"));
        assert!(find(&mounts, "/dev/pts").is_none() && find(&mounts, "/dev/shm").is_none());
        assert_eq!(
            find(&mounts, "/dev").unwrap().typ().as_deref(),
            Some("bind")
        );
    }

    #[test]
    fn readonly_rootfs_and_privileged() {
        let mut i = inputs(&[], None);
        i.readonly_rootfs = true;
        i.ipc_none = true;
        let (mounts, _) = build(&i).unwrap();
        assert!(find(&mounts, "/dev/shm").is_none());
        assert!(options_of(find(&mounts, "/etc/hosts").unwrap()).contains(&"ro".to_string()));
        assert!(!options_of(find(&mounts, "/dev").unwrap()).contains(&"ro".to_string()));
        assert!(
            options_of(find(&mounts, "/dev/mqueue").unwrap()) == s(&["nosuid", "noexec", "nodev"])
        );

        let mut i = inputs(&[], None);
        i.privileged = true;
        i.writable_cgroups = true;
        i.init = Some(Path::new("/usr/bin/tini"));
        let (mounts, _) = build(&i).unwrap();
        assert!(!options_of(find(&mounts, "/sys").unwrap()).contains(&"ro".to_string()));
        assert!(!options_of(find(&mounts, "/sys/fs/cgroup").unwrap()).contains(&"ro".to_string()));
        assert_eq!(
            options_of(find(&mounts, INIT_PATH).unwrap()),
            s(&["bind", "ro"])
        );
    }
}
